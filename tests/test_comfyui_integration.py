"""The pack inside a real ComfyUI server (CPU: the embedded ViZDoom model and tiny random-weight models).

Needs a ComfyUI checkout: ``COMFYUI_PATH`` (the folder with ``main.py``) and ``COMFYUI_PYTHON``
(its venv's python; default: this python). ``tools/setup_comfyui.sh`` makes both. Skipped, with
that reason, when ``COMFYUI_PATH`` is unset.

The server runs ``main.py --cpu --listen 127.0.0.1`` on a free port with ``--base-directory`` set
to a temporary folder, so the checkout is not touched: the pack is linked into that folder's
``custom_nodes/``, the demo inputs are copied into its ``input/``, and its ``models/`` holds the
files the tests need (a tiny random VAE saved as ``models/vae/wan_2.1_vae.safetensors`` so that the
example workflows' core Load VAE node runs unchanged; a tiny gta_drive DiT for the wrong-mode test).
Checks: every node in ``/object_info`` with its inputs, outputs and tooltips; the CPU workflow as
shipped (the embedded ViZDoom model: mp4 files at its frame size, frame count and fps, progress and
preview frames on the websocket) and core VAE Decode on its LATENT; each mode's API workflow (switched
to the tiny models, as is the test-only graph ``tests/fixtures/workflow_api_cpu_tiny_random.json``)
queued with ``POST /prompt`` and awaited on ``/history``, with the mp4 files' frame counts and sizes; ``POST /interrupt``
mid-sampling; bad inputs as per-node errors in ``/history``; ComfyUI's own CLIP vision and VAE
objects against the engine, inside the server's python.
"""
import base64
import copy
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMFY = os.environ.get("COMFYUI_PATH")
PY = os.environ.get("COMFYUI_PYTHON") or sys.executable
pytestmark = pytest.mark.skipif(
    not COMFY, reason="COMFYUI_PATH is unset: set it to a ComfyUI checkout (and COMFYUI_PYTHON to its venv's "
                      "python; tools/setup_comfyui.sh makes both) to run the real-server tests")

PACK = "ComfyUI-MatrixGame"
TINY_MODEL = "random-tiny (untrained, CPU test)"
TINY_PART = "random-tiny (untrained)"
WF = os.path.join(ROOT, "workflows", "api")
UI_WF = os.path.join(ROOT, "workflows")
MODEL_EXT = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf")
MODE_WORKFLOWS = ["matrix_game_universal", "matrix_game_gta_drive", "matrix_game_templerun"]
#: The CPU workflow as shipped: the embedded ViZDoom model, the Doom tour track.
CPU_WORKFLOW = "matrix_game_cpu_embedded_vizdoom"
#: The graph the tiny-model tests switch and break (tests only; no shipped workflow uses random-tiny).
TINY_WORKFLOW = os.path.join(ROOT, "tests", "fixtures", "workflow_api_cpu_tiny_random.json")
EMBEDDED = "embedded ViZDoom (CPU)"
NODE_IDS = ["MatrixGameModelLoader", "MatrixGameVAELoader", "MatrixGameImageEncoderLoader",
            "MatrixGameEncodeStartImage", "MatrixGameActionsFromJSON", "MatrixGameBenchmarkActions",
            "MatrixGameActionsFromFile", "MatrixGameConcatActions", "MatrixGameSampler", "MatrixGameDecode",
            "MatrixGameOverlay"]


# ================================================================================================ plumbing
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, base, port, proc, log):
        self.base, self.port, self.proc, self.log = base, port, proc, log
        self.url = f"http://127.0.0.1:{port}"

    def http(self, method, path, body=None, timeout=60):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def alive(self) -> bool:
        try:
            return self.http("GET", "/system_stats", timeout=10)[0] == 200
        except OSError:
            return False

    def queue(self, prompt, client_id=None):
        """POST /prompt -> prompt id (asserting the prompt was accepted)."""
        body = {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex}
        code, resp = self.http("POST", "/prompt", body)
        assert code == 200, f"prompt rejected ({code}): {json.dumps(resp)[:2000]}"
        return resp["prompt_id"]

    def wait(self, prompt_id, timeout=900):
        """Poll /history until the prompt finished; returns its history entry."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            code, hist = self.http("GET", f"/history/{prompt_id}")
            if code == 200 and hist and prompt_id in hist and hist[prompt_id].get("status", {}).get("completed") is not None:
                entry = hist[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            assert self.proc.poll() is None, "the server died; log:\n" + self.tail()
            time.sleep(0.5)
        raise AssertionError(f"prompt {prompt_id} did not finish in {timeout} s; log:\n{self.tail()}")

    def run(self, prompt, timeout=900):
        return self.wait(self.queue(prompt), timeout)

    def tail(self, n=60):
        with open(self.log, "r", errors="replace") as f:
            return "".join(f.readlines()[-n:])


class WebSocket:
    """A minimal websocket client (RFC 6455, stdlib only) for ComfyUI's ``/ws`` messages."""

    def __init__(self, port, client_id):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=900)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            assert chunk, "websocket handshake failed"
            head += chunk
        assert b" 101 " in head.split(b"\r\n")[0], head

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("websocket closed")
            buf += chunk
        return buf

    def recv(self):
        """Next message: ``("text", dict)`` or ``("binary", bytes)``."""
        while True:
            b0, b1 = self._read(2)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            if op == 1:
                return "text", json.loads(payload)
            if op == 2:
                return "binary", payload
            if op == 8:
                raise ConnectionError("websocket closed by server")

    def close(self):
        self.sock.close()


def _tiny_file_setup(base):
    """Model files for the test server, written by the engine (this python)."""
    sys.path.insert(0, ROOT)
    import torch
    from safetensors.torch import save_file
    from matrix_game_core.checkpoints import save_dit
    from matrix_game_core.pipeline import random_tiny
    vae = random_tiny("universal", seed=0).vae       # the same weights as the pack's random-tiny VAE entry
    os.makedirs(os.path.join(base, "models", "vae"), exist_ok=True)
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()},
              os.path.join(base, "models", "vae", "wan_2.1_vae.safetensors"))
    mg = os.path.join(base, "models", "matrix_game")
    os.makedirs(mg, exist_ok=True)
    gta = random_tiny("gta_drive", seed=0).dit
    save_dit(gta, os.path.join(mg, "tiny_gta_drive.safetensors"))
    gta.cfg.save(os.path.join(mg, "config.json"))
    from PIL import Image
    Image.new("RGB", (17, 9), (200, 30, 30)).save(os.path.join(base, "input", "matrixgame_bad_17x9.png"))
    del torch


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("comfy_base"))
    for d in ("custom_nodes", "input", "output", "models", "user", "temp"):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    os.symlink(ROOT, os.path.join(base, "custom_nodes", PACK))
    # the demo inputs the workflows reference (the pack also copies missing ones when it loads)
    sys.path.insert(0, ROOT)
    from nodes.logic import demo_inputs
    for src, name in demo_inputs():
        shutil.copyfile(src, os.path.join(base, "input", name))
    _tiny_file_setup(base)
    port = _free_port()
    log = os.path.join(base, "server.log")
    cmd = [PY, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--base-directory", base,
           "--database-url", f"sqlite:///{os.path.join(base, 'comfyui.db')}", "--disable-api-nodes"]
    with open(log, "w") as lf:
        proc = subprocess.Popen(cmd, cwd=COMFY, stdout=lf, stderr=subprocess.STDOUT)
    srv = Server(base, port, proc, log)
    deadline = time.time() + 300
    while time.time() < deadline and not srv.alive():
        assert proc.poll() is None, "ComfyUI exited during start-up:\n" + srv.tail()
        time.sleep(0.5)
    assert srv.alive(), "ComfyUI did not answer within 300 s:\n" + srv.tail()
    yield srv
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def load_api(name):
    """An API workflow: a shipped one by name, or a file path (:data:`TINY_WORKFLOW`)."""
    with open(name if os.path.isabs(name) else os.path.join(WF, name + ".json")) as f:
        return json.load(f)


def embedded_info():
    """``(video (width, height), fps)`` of the shipped embedded model, from its config."""
    sys.path.insert(0, ROOT)
    from matrix_game_core import embedded
    h, w = embedded.video_size()
    return (w, h), embedded.fps()


def tiny_variant(prompt, frames=6, encode_length=None):
    """A workflow switched to the tiny models and ``frames`` latent frames (the graph is unchanged
    otherwise; core's CLIPVisionLoader cannot read a tiny tower, so it becomes our loader's
    random-tiny entry). ``encode_length``: latent frames the start image is encoded for (default
    ``frames``; the sampler repeats the last one beyond)."""
    p = copy.deepcopy(prompt)
    for nid, n in p.items():
        c, i = n["class_type"], n["inputs"]
        if c == "MatrixGameModelLoader":
            i["checkpoint"] = TINY_MODEL
        elif c == "CLIPVisionLoader":
            p[nid] = {"class_type": "MatrixGameImageEncoderLoader", "inputs": {"clip_name": TINY_PART}}
        elif c in ("MatrixGameVAELoader", "MatrixGameImageEncoderLoader"):
            i[next(iter(i))] = TINY_PART
        elif c == "MatrixGameSampler":
            i["latent_frames"] = frames
        elif c == "MatrixGameEncodeStartImage":
            i["length"] = encode_length or frames
        elif c == "MatrixGameBenchmarkActions":
            i["latent_frames"] = frames
    return p


def find(prompt, cls):
    ids = [k for k, v in prompt.items() if v["class_type"] == cls]
    assert ids, f"no {cls} node"
    return ids[0]


def videos(server, entry):
    """Paths of the mp4 files a finished prompt saved."""
    out = []
    for node_out in entry["outputs"].values():
        for item in node_out.get("images", []):
            if str(item.get("filename", "")).endswith(".mp4"):
                out.append(os.path.join(server.base, item.get("type", "output"), item.get("subfolder", ""),
                                        item["filename"]))
    return out


def mp4_info(path):
    import imageio_ffmpeg
    gen = imageio_ffmpeg.read_frames(path)
    meta = next(gen)
    n = sum(1 for _ in gen)
    return n, tuple(meta["size"]), meta.get("fps")


def error_of(entry):
    """``(node_id, node_type, message)`` of a failed prompt's execution error."""
    assert entry["status"]["status_str"] == "error", entry["status"]
    for kind, data in entry["status"]["messages"]:
        if kind == "execution_error":
            return data["node_id"], data["node_type"], data["exception_message"]
    raise AssertionError(f"no execution_error in {entry['status']['messages']}")


# ================================================================================================ tests
def test_pack_loads_without_import_errors(server):
    log = open(server.log, errors="replace").read()
    assert "IMPORT FAILED" not in log and f"Cannot import {server.base}" not in log, log[-4000:]
    assert f"custom_nodes/{PACK}" in log


def test_object_info_lists_every_node_with_tooltips(server):
    code, info = server.http("GET", "/object_info")
    assert code == 200
    ours = sorted(k for k, v in info.items() if v.get("category", "").startswith("MatrixGame"))
    assert set(ours) >= set(NODE_IDS) and all(k.startswith("MatrixGame") for k in ours), ours
    for nid in ours:                                  # the pack's rules hold for every node it lists
        d = info[nid]
        assert d["category"] == "MatrixGame" and d["display_name"].startswith("Matrix-Game"), nid
        inputs = {**d["input"].get("required", {}), **d["input"].get("optional", {})}
        assert inputs, nid
        for name, spec in inputs.items():
            assert isinstance(spec[1], dict) and spec[1].get("tooltip"), (nid, name)
        assert d["output"] and len(d["output_tooltips"]) == len(d["output"]) and all(d["output_tooltips"]), nid
    s = info["MatrixGameSampler"]
    assert [s["input"]["required"][k][0] for k in ("model", "conditioning", "actions", "seed", "latent_frames")] == \
        ["MATRIX_GAME_MODEL", "MATRIX_GAME_CONDITIONING", "MATRIX_GAME_ACTIONS", "INT", "INT"]
    assert s["input"]["optional"]["vae"][0] == "VAE" and s["output"] == ["LATENT"]
    assert all(s["input"]["required"][k][1].get("advanced") for k in ("local_attn_size", "sink_size", "denoising_steps"))
    e = info["MatrixGameEncodeStartImage"]
    assert e["input"]["optional"]["clip_vision"][0] == "CLIP_VISION"
    assert e["input"]["optional"]["clip_vision_output"][0] == "CLIP_VISION_OUTPUT"
    assert e["output"] == ["MATRIX_GAME_CONDITIONING"]
    assert info["MatrixGameVAELoader"]["output"] == ["VAE"]
    assert info["MatrixGameImageEncoderLoader"]["output"] == ["CLIP_VISION"]
    assert info["MatrixGameDecode"]["output"] == ["IMAGE"] and info["MatrixGameOverlay"]["output"] == ["IMAGE"]
    ck = info["MatrixGameModelLoader"]["input"]["required"]["checkpoint"]
    opts = ck[1]["options"] if ck[0] == "COMBO" else ck[0]
    assert TINY_MODEL in opts and "tiny_gta_drive.safetensors" in opts and opts[0] == EMBEDDED
    for node, key in (("MatrixGameVAELoader", "vae_name"), ("MatrixGameImageEncoderLoader", "clip_name")):
        spec = info[node]["input"]["required"][key]
        assert EMBEDDED in (spec[1]["options"] if spec[0] == "COMBO" else spec[0]), node
    files = info["MatrixGameActionsFromFile"]["input"]["required"]["file"][1]["options"]
    assert "matrixgame_doom_tour.json" in files
    images = info["LoadImage"]["input"]["required"]["image"]
    images = images[1]["options"] if images[0] == "COMBO" else images[0]
    assert {"matrixgame_doom_map02.png", "matrixgame_doom_map15.png", "matrixgame_doom_map27.png"} <= set(images)
    assert "matrixgame_templerun_demo.json" in info["MatrixGameActionsFromFile"]["input"]["required"]["file"][1]["options"]


def _ui_workflows():
    """File names of the shipped UI-format workflows (the pack's templates)."""
    return sorted(f for f in os.listdir(UI_WF) if f.endswith(".json"))


def _get_raw(server, path):
    with urllib.request.urlopen(server.url + path, timeout=60) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


def test_templates_have_readable_titles_a_category_and_thumbnails(server):
    """ComfyUI's template browser (frontend 1.49) lists a pack's templates by file name only: the name
    is the card's title, ``/api/workflow_templates/<pack>/<name>.jpg`` its thumbnail, and the
    category label comes from the pack's ``locales`` (``templateWorkflows.category.<pack>``)."""
    code, tpl = server.http("GET", "/api/workflow_templates")
    assert code == 200 and sorted(tpl[PACK]) == [f[:-5] for f in _ui_workflows()], tpl.get(PACK)
    for name in tpl[PACK]:
        assert name.startswith("Matrix-Game ") and " - " in name and "_" not in name, name   # a title, not an id
        quoted = "/api/workflow_templates/" + urllib.parse.quote(PACK) + "/" + urllib.parse.quote(name)
        code, ctype, body = _get_raw(server, quoted + ".json")
        assert code == 200 and json.loads(body)["nodes"], name
        code, ctype, body = _get_raw(server, quoted + ".jpg")
        assert code == 200 and ctype == "image/jpeg" and body[:3] == b"\xff\xd8\xff", (name, ctype)
        from PIL import Image
        im = Image.open(io.BytesIO(body))
        assert im.size[0] >= 300 and im.size[1] >= 200, (name, im.size)
    code, i18n = server.http("GET", "/i18n")
    assert code == 200 and i18n["en"]["templateWorkflows"]["category"][PACK] == "Matrix-Game 2.0"


def test_workflows_name_every_model_file_with_its_download_url_and_folder(server):
    """Every model file a shipped workflow selects carries ``properties.models`` (name, url,
    directory) on its node, as core's templates do: what ComfyUI's missing-model list reads to offer
    the download. The DiT's URL is the official file of that mode; the directories are model
    folders this server knows."""
    sys.path.insert(0, ROOT)
    from matrix_game_core.checkpoints import DIT_FILES, HF_REPO
    code, folders = server.http("GET", "/api/experiment/models")
    assert code == 200
    dirs = {f["name"] for f in folders}
    assert "matrix_game" in dirs
    dits = set()
    for fname in _ui_workflows():
        with open(os.path.join(UI_WF, fname)) as f:
            wf = json.load(f)
        for n in wf["nodes"]:
            files = [v for v in n.get("widgets_values") or [] if isinstance(v, str) and v.lower().endswith(MODEL_EXT)]
            meta = {m["name"]: m for m in (n.get("properties") or {}).get("models", [])}
            for v in files:
                m = meta.get(v)
                assert m, f"{fname}: node {n['id']} ({n['type']}) selects {v} without properties.models for it"
                assert m["directory"] in dirs, (fname, m)
                assert m["url"].startswith("https://huggingface.co/") and m["url"].endswith("/" + os.path.basename(v))
                if n["type"] == "MatrixGameModelLoader":
                    assert m["directory"] == "matrix_game" and v in DIT_FILES.values(), (fname, m)
                    assert m["url"] == f"https://huggingface.co/{HF_REPO}/resolve/main/{v}"
                    dits.add(v)
    assert dits == set(DIT_FILES.values())       # each official checkpoint, in the workflow of its mode


@pytest.mark.parametrize("name", MODE_WORKFLOWS)
def test_mode_workflow_runs_on_the_tiny_model(server, name):
    prompt = tiny_variant(load_api(name), frames=3)
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    files = videos(server, entry)
    assert len(files) == 2, entry["outputs"]
    for f in files:
        n, size, fps = mp4_info(f)
        assert (n, size) == (9, (640, 352)), (f, n, size)
        assert abs(fps - 25) < 0.01
    actions_id = prompt[find(prompt, "MatrixGameSampler")]["inputs"]["actions"][0]
    text = entry["outputs"][actions_id]["text"][0]
    assert "video frames" in text and "keys held" in text


def test_cpu_workflow_runs_as_shipped_with_progress_and_previews(server):
    prompt = load_api(CPU_WORKFLOW)
    sampler = find(prompt, "MatrixGameSampler")
    n_blocks = prompt[sampler]["inputs"]["latent_frames"] // 3
    cid = uuid.uuid4().hex
    ws = WebSocket(server.port, cid)
    try:
        pid = server.queue(prompt, cid)
        progress, previews, executing = [], 0, None
        while True:
            kind, msg = ws.recv()
            if kind == "binary":
                previews += executing == sampler
                continue
            t, d = msg["type"], msg.get("data", {})
            if d.get("prompt_id") not in (None, pid):
                continue
            if t == "executing":
                executing = d.get("node")
                if executing is None:
                    break
            elif t == "progress" and d.get("node") == sampler:
                progress.append((d["value"], d["max"]))
            elif t in ("execution_error", "execution_interrupted"):
                raise AssertionError(msg)
    finally:
        ws.close()
    assert [v for v, m in progress] == list(range(1, n_blocks + 1)) and {m for _, m in progress} == {n_blocks}
    assert previews >= n_blocks                       # a preview frame per block
    entry = server.wait(pid)
    files = videos(server, entry)
    size, fps = embedded_info()
    assert n_blocks == 10 and len(files) == 2, (n_blocks, files)     # the Doom tour: 117 frames = 30 latent frames
    for f in files:
        n, got_size, got_fps = mp4_info(f)
        assert (n, got_size) == (117, size) and abs(got_fps - fps) < 0.01, (f, n, got_size, got_fps)
    # the sampler ran the embedded model (its LATENT is the model's 8x smaller frame grid)
    assert size == (112, 64)


def test_core_vae_decode_reads_the_embedded_models_latent(server):
    """The embedded VAE is a native VAE: core VAE Decode on the sampler's LATENT gives the same
    frames, at the model's size, as Matrix-Game Decode."""
    p = load_api(CPU_WORKFLOW)
    p[find(p, "MatrixGameSampler")]["inputs"]["latent_frames"] = 3
    assert _core_and_our_decode(server, p) == (9, embedded_info()[0])


def _core_and_our_decode(server, p):
    """Add core VAE Decode on the sampler's LATENT (with the graph's VAE loader) beside Matrix-Game
    Decode, run, and return ``(frames, (width, height))`` that both gave (they must agree)."""
    vae = find(p, "MatrixGameVAELoader")
    p["51"] = {"class_type": "VAEDecode", "inputs": {"samples": [find(p, "MatrixGameSampler"), 0], "vae": [vae, 0]}}
    p["52"] = {"class_type": "PreviewImage", "inputs": {"images": ["51", 0]}}
    p["53"] = {"class_type": "PreviewImage", "inputs": {"images": [find(p, "MatrixGameDecode"), 0]}}
    entry = server.run(p)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    core, ours = entry["outputs"]["52"]["images"], entry["outputs"]["53"]["images"]
    from PIL import Image
    sizes = {Image.open(os.path.join(server.base, i["type"], i["subfolder"], i["filename"])).size
             for i in (core[0], ours[0])}
    assert len(core) == len(ours) and len(sizes) == 1, (len(core), len(ours), sizes)
    return len(ours), sizes.pop()


@pytest.mark.parametrize("swap", ["model", "vae", "clip"])
def test_embedded_parts_mixed_with_others_give_one_error_naming_the_fix(server, swap):
    """One of the three loaders on the embedded model, the others on random-tiny (or vice versa):
    one per-node error that says to pick the embedded entry in all three."""
    p = tiny_variant(load_api(TINY_WORKFLOW), frames=3)
    key = {"model": ("MatrixGameModelLoader", "checkpoint"), "vae": ("MatrixGameVAELoader", "vae_name"),
           "clip": ("MatrixGameImageEncoderLoader", "clip_name")}[swap]
    p[find(p, key[0])]["inputs"][key[1]] = EMBEDDED
    entry = server.run(p)
    node_id, node_type, message = error_of(entry)
    assert node_type == {"model": "MatrixGameSampler", "vae": "MatrixGameEncodeStartImage",
                         "clip": "MatrixGameEncodeStartImage"}[swap], (node_type, message)
    assert "pick 'embedded ViZDoom (CPU)' in all three" in message, message
    assert server.alive()


def test_core_vae_decode_and_clip_vision_encode_interoperate(server):
    """Core VAE Decode reads our LATENT (raw latents) and gives as many frames as ours; core CLIP
    Vision Encode's CLIP_VISION_OUTPUT feeds our encode node."""
    p = tiny_variant(load_api(TINY_WORKFLOW), frames=3)
    enc, clip = find(p, "MatrixGameEncodeStartImage"), find(p, "MatrixGameImageEncoderLoader")
    p["50"] = {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": [clip, 0], "image": ["1", 0], "crop": "none"}}
    p[enc]["inputs"].pop("clip_vision")
    p[enc]["inputs"]["clip_vision_output"] = ["50", 0]
    assert _core_and_our_decode(server, p) == (9, (640, 352))


def test_interrupt_mid_sampling_then_the_next_prompt_succeeds(server):
    prompt = tiny_variant(load_api(TINY_WORKFLOW), frames=45, encode_length=3)
    sampler = find(prompt, "MatrixGameSampler")
    cid = uuid.uuid4().hex
    ws = WebSocket(server.port, cid)
    t0 = None
    try:
        pid = server.queue(prompt, cid)
        while True:                                   # wait until the sampler finished its first block
            kind, msg = ws.recv()
            if kind == "text" and msg["type"] == "progress" and msg["data"].get("node") == sampler:
                break
            if kind == "text" and msg["type"] in ("execution_error", "execution_success"):
                raise AssertionError(msg)
        t0 = time.time()
        assert server.http("POST", "/interrupt", {})[0] == 200
        while True:
            kind, msg = ws.recv()
            if kind == "text" and msg["type"] == "execution_interrupted":
                assert msg["data"]["node_id"] == sampler
                break
            if kind == "text" and msg["type"] == "progress" and msg["data"].get("node") == sampler:
                assert msg["data"]["value"] <= 3, "sampling went on after the interrupt"
    finally:
        ws.close()
        if t0 is None:                                # failed before interrupting: don't block later tests
            server.http("POST", "/interrupt", {})
    stopped_in = time.time() - t0
    entry = server.wait(pid)
    assert entry["status"]["status_str"] == "error"
    assert any(k == "execution_interrupted" for k, _ in entry["status"]["messages"])
    assert stopped_in < 30 and server.alive()
    ok = server.run(tiny_variant(load_api(TINY_WORKFLOW), frames=3))
    assert ok["status"]["status_str"] == "success", json.dumps(ok["status"])[:3000]


def _bad_wrong_mode(p):
    p[find(p, "MatrixGameModelLoader")]["inputs"]["checkpoint"] = "tiny_gta_drive.safetensors"
    return "MatrixGameModelLoader", ["'gta_drive' checkpoint but mode 'universal'", "pick mode"]


def _bad_frames(p):
    p[find(p, "MatrixGameSampler")]["inputs"]["latent_frames"] = 10
    return "MatrixGameSampler", ["multiple of 3", "Use 9 or 12"]


def _bad_json(p):
    p[find(p, "MatrixGameBenchmarkActions")] = {"class_type": "MatrixGameActionsFromJSON",
                                                "inputs": {"track_json": '{"mode": "universal", "frames": [1, 2'}}
    return "MatrixGameActionsFromJSON", ["JSON"]


def _bad_short_track(p):
    p[find(p, "MatrixGameBenchmarkActions")]["inputs"]["latent_frames"] = 3
    return "MatrixGameSampler", ["has 9 video frames but 6 latent frames need 21", "lengthen the track"]


def _bad_image(p):
    p[find(p, "LoadImage")]["inputs"]["image"] = "matrixgame_bad_17x9.png"
    return "MatrixGameEncodeStartImage", ["17x9", "at least 64 px"]


def _bad_traversal(p):
    p[find(p, "MatrixGameModelLoader")]["inputs"]["checkpoint"] = "../../models/vae/wan_2.1_vae.safetensors"
    return "MatrixGameModelLoader", ["outside ComfyUI's model folders", "models/matrix_game/"]


@pytest.mark.parametrize("breaker", [_bad_wrong_mode, _bad_frames, _bad_json, _bad_short_track, _bad_image,
                                     _bad_traversal], ids=lambda f: f.__name__[5:])
def test_bad_input_is_a_per_node_error_that_says_how_to_fix_it(server, breaker):
    p = tiny_variant(load_api(TINY_WORKFLOW), frames=6, encode_length=1)
    node_type, needles = breaker(p)
    entry = server.run(p)
    node_id, got_type, message = error_of(entry)
    assert got_type == node_type and p[node_id]["class_type"] == node_type, (node_id, got_type, message)
    for s in needles:
        assert s in message, message
    assert server.alive()


CHECK_SCRIPT = r"""
import importlib.util, json, os, sys
comfy, root = sys.argv[1], sys.argv[2]
sys.path.insert(0, comfy)
import comfy.options
comfy.options.enable_args_parsing()
sys.argv = [sys.argv[0], "--cpu"]
import comfy.cli_args
import torch
sys.path.insert(0, root)
spec = importlib.util.spec_from_file_location("mg_nodes", os.path.join(root, "nodes", "__init__.py"),
                                              submodule_search_locations=[os.path.join(root, "nodes")])
pkg = importlib.util.module_from_spec(spec); sys.modules["mg_nodes"] = pkg; spec.loader.exec_module(pkg)
import importlib
logic = importlib.import_module("mg_nodes.logic"); host = importlib.import_module("mg_nodes.host")
import comfy.clip_vision, comfy.sd, comfy.model_management as mm
from matrix_game_core.image_encoder import CLIPVisionTower, VisionConfig, encode_image, preprocess
from matrix_game_core.pipeline import prepare_image
from matrix_game_core.vae import StreamingDecoder
out = {"in_comfy": host.in_comfy()}
torch.manual_seed(0)
img = prepare_image(torch.rand(1, 300, 500, 3))
# 1. our CLIP loader -> ComfyUI's own ClipVisionModel; ComfyUI's forward on the official pixels (224^2
#    squash, no crop) == the encode node's engine tower built from that object's weights
cv = logic.load_clip_vision(logic.TINY_PART)
out["clip_type"] = type(cv).__module__ + "." + type(cv).__name__
mm.load_model_gpu(cv.patcher)
comfy_feats = cv.model(pixel_values=preprocess(img), intermediate_output=-2)[1].float()
ours = encode_image(logic.engine_clip(cv).module, img)
out["clip_comfy_vs_node"] = (comfy_feats - ours).abs().max().item()
# 2. the same weights in the official layout (engine tower) give the same features
tiny = logic.tiny_components("universal").image_encoder
ref_tower = CLIPVisionTower(tiny.cfg)
hf = cv.model.state_dict()          # ComfyUI keeps some tensors in fp16, some (norms) in fp32: round alike
ref_tower.load_state_dict({k: v.to(hf[next(iter(logic.engine_clip_to_hf({k: v})))].dtype).float()
                           for k, v in tiny.state_dict().items()})
out["clip_official_vs_node"] = (encode_image(ref_tower, img) - ours).abs().max().item()
out["clip_scale"] = ours.abs().max().item()
# 3. our VAE loader -> comfy.sd.VAE; core's one-shot decode of raw latents == our streaming decode node
vae = logic.load_vae(logic.TINY_PART)
out["vae_type"] = type(vae).__module__ + "." + type(vae).__name__
z = torch.randn(1, 16, 5, 8, 10, generator=torch.Generator().manual_seed(1))
core = vae.decode(z)
core = core.reshape(-1, *core.shape[-3:]).float()
node = logic.decode(vae, {"samples": z})
out["decode_shapes"] = [list(core.shape), list(node.shape)]
out["vae_core_vs_node"] = (core - node).abs().max().item()
# 4. the model handle is a ModelPatcher-managed CausalWanModel
m = logic.load_model("universal", logic.TINY_MODEL)
out["patcher"] = type(m.patcher).__name__ if m.patcher is not None else None
print("RESULT " + json.dumps(out))
"""


def test_comfy_objects_match_the_engine_inside_comfyui(tmp_path):
    """Runs in ComfyUI's python with ComfyUI's modules: our loaders return ComfyUI's own objects,
    and ComfyUI's CLIP forward / VAE decode agree with what the nodes compute from them."""
    script = tmp_path / "check.py"
    script.write_text(CHECK_SCRIPT)
    r = subprocess.run([PY, str(script), os.path.abspath(COMFY), ROOT], cwd=str(tmp_path), capture_output=True,
                       text=True, timeout=600)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert r.returncode == 0 and line, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(line[0][7:])
    assert res["in_comfy"] is True
    assert res["clip_type"] == "comfy.clip_vision.ClipVisionModel" and res["vae_type"] == "comfy.sd.VAE"
    assert res["patcher"] == "ModelPatcher"
    assert res["clip_comfy_vs_node"] < 1e-4 * max(1.0, res["clip_scale"]), res
    assert res["clip_official_vs_node"] < 1e-5 * max(1.0, res["clip_scale"]), res
    assert res["decode_shapes"][0] == res["decode_shapes"][1] == [17, 64, 80, 3]
    assert res["vae_core_vs_node"] < 1e-3, res
