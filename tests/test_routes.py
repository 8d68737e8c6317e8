"""Live sessions over real HTTP / websockets (aiohttp's test server) on the untrained tiny model.

The session manager, the block loop (:func:`nodes.interactive.play`) and the routes run exactly as
inside ComfyUI, minus ComfyUI: the world is a :class:`WorldSession` of ``random_tiny`` at a small
frame size (64x128) so that a block takes about a second on a CPU. Also here: the Python half of the
shared action-track fixtures (``tests/fixtures``) that ``js/tests`` reads too.
"""
import asyncio
import gc
import io
import json
import os
import sys
import threading
import time
import weakref

import pytest
import torch
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from matrix_game_core.actions import ActionTrack, bench_actions, format_number  # noqa: E402
from matrix_game_core.errors import MatrixGameError  # noqa: E402
from matrix_game_core.pipeline import encode_conditioning, prepare_image, random_tiny  # noqa: E402
from matrix_game_core.sampling import WorldSession  # noqa: E402
from matrix_game_core.vae import StreamingDecoder  # noqa: E402

from nodes import interactive as live  # noqa: E402

FIX = os.path.join(ROOT, "tests", "fixtures")
H, W = 64, 128


# ================================================================================================ fixtures
@pytest.fixture(scope="module")
def tiny():
    c = random_tiny("universal", seed=0)
    img = prepare_image(torch.linspace(0, 1, H * W * 3).view(1, H, W, 3), height=H, width=W)
    cond = encode_conditioning(c.vae, c.image_encoder, img, 3)
    return c, cond


def new_world(tiny, seed=0):
    c, cond = tiny
    return WorldSession(c.dit, cond, decoder=StreamingDecoder(c.vae), seed=seed)


class Player(threading.Thread):
    """Runs ``live.play`` in a thread (as ComfyUI's executor thread runs the node)."""

    def __init__(self, session, world, **kw):
        super().__init__(daemon=True)
        self.session, self.world, self.kw = session, world, kw
        self.result, self.error = None, None

    def run(self):
        try:
            self.result = live.play(self.session, self.world, **self.kw)
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            self.error = e
        finally:
            self.world = None

    def finish(self, timeout=120):
        self.join(timeout)
        assert not self.is_alive(), "the session loop did not end"
        return self.result


def serve(manager, body):
    """Run ``await body(client)`` against a real aiohttp server with the session routes."""
    async def main():
        client = TestClient(TestServer(live.make_app(manager)))
        await client.start_server()
        try:
            return await body(client)
        finally:
            await client.close()
    return asyncio.run(main())


async def recv_until(ws, kind, timeout=90):
    """Collect messages until a text message of type ``kind``; returns (texts, frames)."""
    texts, frames = [], []
    deadline = time.monotonic() + timeout
    while True:
        m = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if m.type == WSMsgType.TEXT:
            d = json.loads(m.data)
            texts.append(d)
            if d["type"] == kind:
                return texts, frames
        elif m.type == WSMsgType.BINARY:
            frames.append(live.parse_frame_message(m.data))
        else:
            raise AssertionError(f"websocket closed before a {kind!r} message: {m}")


async def recv_block(ws, n_frames):
    texts, frames = await recv_until(ws, "block")
    block = texts[-1]
    while len(frames) < n_frames:
        m = await ws.receive(timeout=30)
        assert m.type == WSMsgType.BINARY, m
        frames.append(live.parse_frame_message(m.data))
    return block, frames


def jpeg_to_tensor(data):
    from PIL import Image
    import numpy as np
    return torch.from_numpy(np.array(Image.open(io.BytesIO(data)).convert("RGB")))


def f32(x):
    return torch.tensor(x, dtype=torch.float32).item()


# ================================================================================================ streaming
def test_actions_sent_stream_frames_and_the_recorded_track_is_what_was_sent(tiny):
    """Lock-step session over the websocket: each block's input -> its frames (JPEG, headers with the
    echoed input id) -> the recorded ActionTrack has exactly the sent rows, and replaying that track
    offline through a fresh WorldSession reproduces the live video frame for frame."""
    mgr = live.SessionManager(max_sessions=1)
    s = mgr.open("universal", idle_timeout=60, wait_for_input=60, max_blocks=3, seed=7)
    world = new_world(tiny, seed=7)
    world_ref = weakref.ref(world)
    player = Player(s, world)
    del world
    player.start()
    sent = [
        {"type": "input", "id": 1, "keys": ["forward"], "mouse": [0.02, 0.05], "t": 1000.0},
        {"type": "input", "id": 2, "keys": [0, 1, 0, 1], "mouse": [-0.01, -0.3], "t": 2000.0},
        {"type": "input", "id": 3, "keys": [], "look": [0.1, 0.0], "t": 3000.0},
    ]

    async def body(client):
        ws = await client.ws_connect(f"/matrix_game/session/{s.id}/ws")
        hello = json.loads((await ws.receive(timeout=10)).data)
        assert hello["type"] == "session" and hello["session"] == s.id and hello["keys"] == ["forward", "back", "left", "right"]
        blocks, frames = [], []
        for i, msg in enumerate(sent):
            await ws.send_str(json.dumps(msg))
            b, fr = await recv_block(ws, 9 if i == 0 else 12)
            blocks.append(b)
            frames += fr
        texts, more = await recv_until(ws, "ended")
        assert not more
        end = texts[-1]
        closed = await ws.receive(timeout=10)
        assert closed.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
        r_track = await client.get(f"/matrix_game/session/{s.id}/track")
        r_info = await client.get(f"/matrix_game/session/{s.id}")
        r_late = await client.post(f"/matrix_game/session/{s.id}/input", json={"type": "input", "keys": []})
        return blocks, frames, end, (r_track.status, await r_track.text()), await r_info.json(), r_late.status

    blocks, frames, end, (track_status, track_text), info, late = serve(mgr, body)
    video, track, final = player.finish()
    assert player.error is None

    # blocks: 9 frames then 12, each conditioned on (and echoing) the input sent for it
    assert [b["block"] for b in blocks] == [0, 1, 2]
    assert [b["action_id"] for b in blocks] == [1, 2, 3]
    assert [b["frames"] for b in blocks] == [9, 12, 12]
    assert [b["client_t"] for b in blocks] == [1000.0, 2000.0, 3000.0]
    assert blocks[1]["keys"] == [0, 1, 0, 1]
    # every decoded frame streamed once, in order, as a JPEG of the right size close to the output
    assert [h["frame"] for h, _ in frames] == list(range(33))
    assert [h["action_id"] for h, _ in frames] == [1] * 9 + [2] * 12 + [3] * 12
    assert video.shape == (33, H, W, 3) and video.dtype == torch.uint8
    for h, jpg in frames[::4]:
        img = jpeg_to_tensor(jpg)
        assert img.shape == (H, W, 3)
        err = (video.float() - img.float()).abs().mean(dim=(1, 2, 3))       # vs every decoded frame
        assert int(err.argmin()) == h["frame"], "a streamed JPEG is not the frame its header names"

    # the recorded track holds exactly the sent actions, row for row
    kb = torch.zeros(33, 4)
    ms = torch.zeros(33, 2)
    kb[:9, 0] = 1
    ms[:9] = torch.tensor([0.02, 0.05])
    kb[9:21, 1] = kb[9:21, 3] = 1
    ms[9:21] = torch.tensor([-0.01, -0.3])
    ms[21:] = torch.tensor([0.1, 0.0])
    want = ActionTrack("universal", kb, ms, 25.0, {"source": "ComfyUI-MatrixGame live session", "seed": 7})
    assert track == want
    assert ActionTrack.from_json(end["track"]) == want and end["reason"] == "max_blocks" and end["block"] == 3
    assert track_status == 200 and ActionTrack.from_json(track_text) == want
    assert info["state"] == "ended" and info["reason"] == "max_blocks" and info["frames"] == 33
    assert late == 410
    assert final["reason"] == "max_blocks"

    # ended: nothing keeps the world session (KV caches, decoder cache) alive
    assert mgr.list() == [] and mgr.get(s.id) is None
    player.world = None
    gc.collect()
    assert world_ref() is None, "the world session was not freed"

    # the recorded track re-rendered offline gives the same video (it is what the blocks were made with)
    replay = new_world(tiny, seed=7)
    k, m = track.tensors()
    _, frames_offline = replay.generate(k, m, 9, decode=True)
    assert torch.equal(live.frames_u8(frames_offline), video)


def test_http_inputs_free_running_then_stop(tiny):
    """Free-running session driven by POST: keys are the latest state for every later block; POST
    /stop ends it with the frames played; the ended session answers 410 and keeps its info."""
    mgr = live.SessionManager(max_sessions=1)
    s = mgr.open("universal", idle_timeout=60, wait_for_input=0, max_blocks=50)
    player = Player(s, new_world(tiny))
    player.start()

    async def body(client):
        url = f"/matrix_game/session/{s.id}"
        r = await client.post(url + "/input", json={"type": "input", "id": 5, "keys": ["forward", "left"]})
        assert r.status == 200 and (await r.json())["ok"]
        for _ in range(600):
            info = await (await client.get(url)).json()
            if info["block"] >= 2:
                break
            await asyncio.sleep(0.05)
        assert info["state"] == "running" and info["block"] >= 2
        listed = await (await client.get("/matrix_game/sessions")).json()
        assert [x["session"] for x in listed["sessions"]] == [s.id] and listed["max_sessions"] == 1
        r = await client.post(url + "/stop")
        assert r.status == 200
        player.finish()
        ended = await client.get(url)
        again = await client.post(url + "/stop")
        return await ended.json(), again.status

    info, again = serve(mgr, body)
    video, track, final = player.result
    assert final["reason"] == "stopped" and info["reason"] == "stopped" and again == 410
    n = track.num_frames
    assert n == 9 + 12 * (final["block"] - 1) and (n - 1) % 4 == 0 and video.shape[0] == n
    assert torch.equal(track.keyboard, torch.tensor([[1.0, 0, 1, 0]]).repeat(n, 1))
    assert torch.equal(track.mouse, torch.zeros(n, 2))


# ================================================================================================ errors
def test_unknown_sessions_malformed_and_oversized_payloads():
    mgr = live.SessionManager(max_sessions=1, max_input_bytes=1024)
    s = mgr.open("gta_drive", idle_timeout=60)

    async def body(client):
        url = f"/matrix_game/session/{s.id}"
        out = {}
        for path in ("/matrix_game/session/0123456789abcdef", "/matrix_game/session/nothex"):
            out[path] = [(await client.get(path)).status, (await client.post(path + "/input", json={})).status,
                         (await client.post(path + "/stop")).status, (await client.get(path + "/track")).status,
                         (await client.get(path + "/ws")).status]
        bad = {
            "not json": b"{keys: [1]}",
            "array": b"[1, 0]",
            "wrong key count": json.dumps({"type": "input", "keys": [1, 0, 0, 0]}).encode(),
            "unknown key": json.dumps({"type": "input", "keys": ["left"]}).encode(),
            "key value 2": json.dumps({"type": "input", "keys": [2, 0]}).encode(),
            "NaN mouse": b'{"type": "input", "mouse": [NaN, 0]}',
            "huge mouse": json.dumps({"type": "input", "mouse": [0, 1e6]}).encode(),
            "look beyond limit": json.dumps({"type": "input", "look": [0, 1.5]}).encode(),
            "bool id": json.dumps({"type": "input", "id": True}).encode(),
            "unknown field": json.dumps({"type": "input", "jump": 1}).encode(),
            "unknown type": json.dumps({"type": "teleport"}).encode(),
        }
        for name, payload in bad.items():
            r = await client.post(url + "/input", data=payload)
            out[name] = (r.status, (await r.json())["error"])
        big = json.dumps({"type": "input", "keys": [0, 0], "t": 1, "pad": "x" * 2000}).encode()
        r = await client.post(url + "/input", data=big)
        out["oversize"] = r.status
        r = await client.post(url + "/input", json={"type": "ping", "t": 5})
        out["ping"] = (r.status, await r.json())
        r = await client.get(url + "/track")
        out["no track yet"] = r.status
        # websocket: a malformed message gets an error reply and the socket stays usable ...
        ws = await client.ws_connect(url + "/ws")
        assert json.loads((await ws.receive(timeout=10)).data)["type"] == "session"
        await ws.send_str('{"type": "input", "keys": [3, 0]}')
        out["ws error"] = json.loads((await ws.receive(timeout=10)).data)
        await ws.send_str('{"type": "ping", "t": 1.5}')
        out["ws pong"] = json.loads((await ws.receive(timeout=10)).data)
        await ws.send_str(json.dumps({"type": "input", "keys": [1, 0], "mouse": [0, 0.1]}))
        await asyncio.sleep(0.2)
        out["applied"] = (s.keys, s.mouse_sum, s.inputs)
        # ... an oversized one closes it (1009 message too big)
        await ws.send_str(json.dumps({"type": "input", "pad": "x" * 4000}))
        m = await ws.receive(timeout=10)
        while m.type not in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
            m = await ws.receive(timeout=10)
        out["ws oversize"] = ws.close_code
        return out

    out = serve(mgr, body)
    for path in ("/matrix_game/session/0123456789abcdef", "/matrix_game/session/nothex"):
        assert out[path] == [404] * 5, (path, out[path])
    for name in ("not json", "array", "wrong key count", "unknown key", "key value 2", "NaN mouse", "huge mouse",
                 "look beyond limit", "bool id", "unknown field", "unknown type"):
        assert out[name][0] == 400, (name, out[name])
    assert "forward, back" in out["wrong key count"][1] and "'left'" in out["unknown key"][1]
    assert "finite" in out["NaN mouse"][1] and "'jump'" in out["unknown field"][1]
    assert out["oversize"] == 413
    assert out["ping"][0] == 200 and out["ping"][1]["type"] == "pong" and out["ping"][1]["t"] == 5
    assert out["no track yet"] == 404
    assert out["ws error"]["type"] == "error" and "keys[0]" in out["ws error"]["message"]
    assert out["ws pong"]["type"] == "pong" and out["ws pong"]["t"] == 1.5
    assert out["applied"] == ([1.0, 0.0], [0.0, 0.1], 1)
    assert out["ws oversize"] == 1009
    mgr.close(s, "stopped")


def test_hostile_json_is_a_400_and_a_websocket_error_message():
    """JSON nested 2,000 deep or holding 400-digit integers (within the default 4 KiB message limit):
    HTTP 400 with the reason, and on the websocket an error message while the socket stays open."""
    mgr = live.SessionManager(max_sessions=1)
    s = mgr.open("universal", idle_timeout=60)
    hostile = {
        "nested 2000 deep": b"[" * 2000 + b"]" * 2000,
        "nested object": b'{"type": "input", "keys": ' + b"[" * 1500 + b"]" * 1500 + b"}",
        "400-digit mouse": b'{"type": "input", "mouse": [0, ' + b"9" * 400 + b"]}",
        "400-digit t": b'{"type": "ping", "t": -' + b"9" * 400 + b"}",
        "binary": b"\xff\xfe\x00{",
    }

    async def body(client):
        url = f"/matrix_game/session/{s.id}"
        out = {}
        for name, payload in hostile.items():
            r = await client.post(url + "/input", data=payload)
            out[name] = (r.status, (await r.json())["error"])
        ws = await client.ws_connect(url + "/ws")
        assert json.loads((await ws.receive(timeout=10)).data)["type"] == "session"
        for name, payload in hostile.items():
            if name != "binary":
                await ws.send_str(payload.decode())
                out["ws " + name] = json.loads((await ws.receive(timeout=10)).data)
        await ws.send_str('{"type": "ping", "t": 2}')
        out["ws pong"] = json.loads((await ws.receive(timeout=10)).data)
        await ws.close()
        return out

    out = serve(mgr, body)
    for name in hostile:
        assert out[name][0] == 400, (name, out[name])
    for name in ("nested 2000 deep", "nested object"):
        assert "nested too deeply" in out[name][1] and "nested too deeply" in out["ws " + name]["message"]
    for name in ("400-digit mouse", "400-digit t"):
        assert "integer with 400 digits" in out[name][1] and out["ws " + name]["type"] == "error"
    assert "not UTF-8" in out["binary"][1]
    assert out["ws pong"]["type"] == "pong" and out["ws pong"]["t"] == 2           # the socket still works
    mgr.close(s, "stopped")


def test_session_cap_is_enforced_and_freed_on_close():
    mgr = live.SessionManager(max_sessions=2)
    a = mgr.open("universal")
    b = mgr.open("templerun")
    with pytest.raises(live.SessionLimitError, match="MATRIX_GAME_MAX_SESSIONS"):
        mgr.open("universal")

    async def body(client):
        return await (await client.get("/matrix_game/sessions")).json()

    listed = serve(mgr, body)
    assert sorted(x["session"] for x in listed["sessions"]) == sorted([a.id, b.id]) and listed["max_sessions"] == 2
    mgr.close(a, "stopped")
    c = mgr.open("gta_drive")            # a slot is free again
    assert {x["session"] for x in mgr.list()} == {b.id, c.id}
    os.environ["MATRIX_GAME_MAX_SESSIONS"] = "3"
    try:
        assert live.SessionManager().max_sessions == 3
    finally:
        del os.environ["MATRIX_GAME_MAX_SESSIONS"]


def test_idle_timeout_before_and_after_playing_and_browser_disconnect(tiny):
    mgr = live.SessionManager(max_sessions=3, disconnect_grace=0.3)
    # nobody plays: the session ends "idle" without a block
    s = mgr.open("universal", idle_timeout=0.5)
    t0 = time.monotonic()
    video, track, info = live.play(s, new_world(tiny))
    assert info["reason"] == "idle" and track is None and video is None and time.monotonic() - t0 < 5
    assert mgr.get(s.id) is None and mgr.ended(s.id)["reason"] == "idle"

    # played, then no more input: ends "idle" after the timeout with what was played
    s2 = mgr.open("universal", idle_timeout=1.5, wait_for_input=0.0, max_blocks=100)
    s2.apply(live.parse_message({"type": "input", "keys": ["right"]}, "universal"))
    video, track, info = live.play(s2, new_world(tiny))
    assert info["reason"] == "idle" and info["block"] >= 1 and track.num_frames == video.shape[0]
    assert torch.all(track.keyboard[:, 3] == 1)

    # the browser's websocket goes away: ends "disconnected" after the grace period
    s3 = mgr.open("universal", idle_timeout=60, wait_for_input=0.0, max_blocks=100)
    player = Player(s3, new_world(tiny))
    player.start()

    async def body(client):
        ws = await client.ws_connect(f"/matrix_game/session/{s3.id}/ws")
        await ws.send_str(json.dumps({"type": "input", "keys": ["forward"]}))
        await recv_until(ws, "block")
        await ws.close()
        t = time.monotonic()
        while player.is_alive() and time.monotonic() - t < 60:
            await asyncio.sleep(0.05)
        return time.monotonic() - t

    serve(mgr, body)
    video, track, info = player.finish()
    assert info["reason"] == "disconnected" and track.num_frames >= 9
    assert mgr.list() == []


class InterruptProcessingException(Exception):
    """Same name as ComfyUI's (comfy.model_management) interrupt exception."""


def test_comfyui_interrupt_ends_the_session_and_tells_the_browser(tiny):
    mgr = live.SessionManager(max_sessions=1)
    s = mgr.open("universal", idle_timeout=60, wait_for_input=0.0, max_blocks=100)
    state = {"blocks": 0}

    def progress(b):
        state["blocks"] = b

    def check_interrupt():
        if state["blocks"] >= 2:
            raise InterruptProcessingException()

    player = Player(s, new_world(tiny), check_interrupt=check_interrupt, progress=progress)
    player.start()

    async def body(client):
        ws = await client.ws_connect(f"/matrix_game/session/{s.id}/ws")
        await ws.send_str(json.dumps({"type": "input", "id": 9, "keys": ["back"]}))
        texts, frames = await recv_until(ws, "ended")
        return texts[-1], frames

    end, frames = serve(mgr, body)
    player.finish()
    assert isinstance(player.error, InterruptProcessingException)
    # the block stepped while block 2 was being shipped (issue 12: shipping overlaps the next block)
    # is shipped too when the interrupt comes in between
    assert end["reason"] == "interrupted" and end["block"] in (2, 3)
    assert len(frames) == 9 + 12 * (end["block"] - 1)
    assert ActionTrack.from_json(end["track"]).num_frames == len(frames)
    assert mgr.list() == [] and mgr.ended(s.id)["reason"] == "interrupted"


def test_keys_are_latest_state_and_mouse_deltas_are_summed_per_block():
    mgr = live.SessionManager(max_sessions=2)
    s = mgr.open("universal")
    for m in ({"keys": ["forward"], "mouse": [0.01, 0.02]}, {"mouse": [0.03, -0.5], "id": 4},
              {"keys": ["left", "back"], "mouse": [0.0, -0.8], "look": [0.0, 0.1], "t": 9.5}):
        s.apply(live.parse_message({"type": "input", **m}, "universal"))
    kb, ms, act = s.take_action(12)
    assert kb.shape == (12, 4) and torch.equal(kb, torch.tensor([[0.0, 1, 1, 0]]).repeat(12, 1))
    assert ms.shape == (12, 2)
    assert torch.allclose(ms[0], torch.tensor([0.04, -1.0]))          # -1.28 + 0.1 look, clamped to the limit
    assert act["action_id"] == 4 and act["client_t"] == 9.5
    kb, ms, act = s.take_action(9)                                     # deltas were consumed; look and keys held
    assert kb.shape == (9, 4) and kb[0].tolist() == [0, 1, 1, 0]
    assert ms[0].tolist() == [0.0, f32(0.1)]
    t = mgr.open("templerun")
    t.apply(live.parse_message({"type": "input", "keys": ["jump", "left_side"], "mouse": [1, 1]}, "templerun"))
    kb, ms, _ = t.take_action(12)
    assert ms is None and kb[0].tolist() == [0, 1, 0, 0, 0, 1, 0]


# ================================================================================================ node logic
def test_live_session_node_logic_with_the_tiny_model(tiny):
    """run_live_session (what the node's execute calls): the ComfyUI-side events, the IMAGE + track
    outputs, the error when nobody plays, and the session cap."""
    from nodes import host, logic
    from matrix_game_core.sampling import Conditioning

    model = logic.load_model("universal", logic.TINY_MODEL)
    vae = logic.load_vae(logic.TINY_PART)
    c, cond = tiny
    cond = Conditioning(cond.cond_concat, cond.visual_context)
    mgr = live.SessionManager(max_sessions=1)
    events = []
    out = {}

    def run():
        try:
            out["result"] = live.run_live_session(model, cond, vae, seed=3, max_blocks=2, idle_timeout=30,
                                                  node_id="12", manager=mgr, notify=events.append)
        except BaseException as e:  # noqa: BLE001
            out["error"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()
    for _ in range(400):
        if mgr.list():
            break
        time.sleep(0.05)
    sid = mgr.list()[0]["session"]
    with pytest.raises(live.SessionLimitError):
        live.run_live_session(model, cond, vae, max_blocks=1, manager=mgr, notify=events.append)
    mgr.get(sid).apply(live.parse_message({"type": "input", "keys": ["left"], "mouse": [0, 0.2]}, "universal"))
    th.join(120)
    assert "error" not in out, out.get("error")
    images, track = out["result"]
    assert images.shape == (21, H, W, 3) and images.dtype == torch.float32 and 0 <= images.min() <= images.max() <= 1
    assert track.num_frames == 21 and torch.all(track.keyboard[:, 2] == 1)
    assert torch.allclose(track.mouse[:9], torch.tensor([0.0, 0.2]).expand(9, 2))
    assert torch.equal(track.mouse[9:], torch.zeros(12, 2))            # the delta was used by block 0 only
    assert [e["event"] for e in events] == ["started", "ended"]
    assert events[0]["session"] == sid and events[0]["node"] == "12" and events[0]["keys"][0] == "forward"
    assert events[1]["reason"] == "max_blocks" and ActionTrack.from_json(events[1]["track"]) == track

    events.clear()
    with pytest.raises(MatrixGameError, match="before its first block"):
        live.run_live_session(model, cond, vae, idle_timeout=0.3, manager=mgr, notify=events.append)
    assert [e["event"] for e in events] == ["started", "ended"] and events[1]["reason"] == "idle"
    with pytest.raises(MatrixGameError, match="VAE"):
        live.run_live_session(model, cond, None, manager=mgr)
    assert mgr.list() == []
    assert host.in_comfy() is False


def test_node_schema_and_registration():
    import comfy_stubs
    stubbed = comfy_stubs.install()
    try:
        from nodes import nodes_interactive
        s = nodes_interactive.MatrixGameLiveSession.define_schema()
        assert s.node_id == "MatrixGameLiveSession" and s.category == "MatrixGame"
        assert s.display_name.startswith("Matrix-Game") and s.description and s.is_output_node
        assert all(i.tooltip and len(i.tooltip) > 15 for i in s.inputs)
        assert [o.io_type for o in s.outputs] == ["IMAGE", "MATRIX_GAME_ACTIONS"]
        assert nodes_interactive.NODES == [nodes_interactive.MatrixGameLiveSession]
        assert live.register_comfy_routes() is False          # no ComfyUI server here
    finally:
        if stubbed:
            for k in [k for k in sys.modules if k == "comfy_api" or k.startswith("comfy_api.")]:
                del sys.modules[k]
            sys.modules.pop("nodes.nodes_interactive", None)


# ================================================================================================ shared fixtures
def test_shared_roundtrip_fixture_python_side():
    """The Python half of the JS/Python round trip: the engine writes the shared fixture back byte
    for byte (js/tests/track.test.mjs checks the browser's serializer on the same file)."""
    with open(os.path.join(FIX, "action_track_roundtrip.json"), encoding="utf-8") as f:
        text = f.read()
    assert ActionTrack.from_json(text).to_json() == text
    with open(os.path.join(FIX, "track_cases.json"), encoding="utf-8") as f:
        cases = json.load(f)
    for c in cases["cases"]:
        assert ActionTrack.from_json(c["input"]).to_json() == c["canonical"], c["name"]
        assert ActionTrack.from_json(c["canonical"]).to_json() == c["canonical"], c["name"]
    for value, text in cases["numbers"]:
        assert format_number(float(value)) == text, value
    for b in cases["bench"]:
        assert bench_actions(b["mode"], b["num_frames"], b["seed"]).to_json() == b["canonical"]


def test_parse_message_refuses_huge_ints_already_decoded():
    with pytest.raises(live.InputError, match=r"mouse\[1\] must be a finite number"):
        live.parse_message({"type": "input", "mouse": [0, 10 ** 400]}, "universal")
    with pytest.raises(live.InputError, match=r"t must be a finite number"):
        live.parse_message({"type": "ping", "t": -(10 ** 400)}, "universal")
