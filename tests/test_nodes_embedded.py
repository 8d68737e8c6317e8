"""The embedded ViZDoom model in the ComfyUI nodes, without ComfyUI (issue 10, item 5).

Plumbing only (sizes, frame counts, which model ran, the errors for mixed graphs); what the model
draws is tested by ``tests/test_embedded.py``. Runs with whatever files are shipped under
``matrix_game_core/embedded/vizdoom/`` (their frame size and conditioning frames are read from its
``dit/config.json``, not assumed).
"""
import glob
import json
import os
import sys
import types

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import comfy_stubs  # noqa: E402

_STUBBED = comfy_stubs.install()

from matrix_game_core import embedded  # noqa: E402
from matrix_game_core.config import ModelConfig, video_frames_for_latents  # noqa: E402
from matrix_game_core.errors import MatrixGameError  # noqa: E402
from matrix_game_core.pipeline import load_image  # noqa: E402
from matrix_game_core.sampling import Conditioning  # noqa: E402

from nodes import host, interactive, loaders, logic, nodes_v3  # noqa: E402

if _STUBBED:
    for _k in [k for k in sys.modules if k == "comfy_api" or k.startswith("comfy_api.")]:
        del sys.modules[_k]

EMB = logic.EMBEDDED
DOOM = os.path.join(ROOT, "assets", "demo_images", "doom_map15.png")
WF = os.path.join(ROOT, "workflows")
CPU_UI = os.path.join(WF, "Matrix-Game embedded ViZDoom (CPU) - tour a Doom map.json")
LIVE_UI = os.path.join(WF, "Matrix-Game embedded ViZDoom (CPU) - play live with keys and mouse.json")
CPU_API = os.path.join(WF, "api", "matrix_game_cpu_embedded_vizdoom.json")
LIVE_API = os.path.join(WF, "api", "matrix_game_live_cpu_embedded_vizdoom.json")


@pytest.fixture(autouse=True)
def folders(node_folders):
    """Empty model / input folders for every test; the progress log cleared (conftest)."""
    return node_folders


def run(node_cls, **inputs):
    return node_cls.execute(**inputs).args


@pytest.fixture(scope="module")
def emb():
    """The embedded model's three parts, loaded through the loader nodes."""
    return types.SimpleNamespace(
        model=run(nodes_v3.MatrixGameModelLoader, mode="universal", checkpoint=EMB)[0],
        vae=run(nodes_v3.MatrixGameVAELoader, vae_name=EMB)[0],
        clip=run(nodes_v3.MatrixGameImageEncoderLoader, clip_name=EMB)[0])


@pytest.fixture(scope="module")
def tiny():
    return types.SimpleNamespace(model=logic.load_model("universal", logic.TINY_MODEL),
                                 vae=logic.load_vae(logic.TINY_PART), clip=logic.load_clip_vision(logic.TINY_PART))


@pytest.fixture(scope="module")
def cond(emb):
    return run(nodes_v3.MatrixGameEncodeStartImage, image=load_image(DOOM), vae=emb.vae, clip_vision=emb.clip,
               crop="center", length=15)[0]


def _options(node_cls, name):
    return {i.id: i for i in node_cls.define_schema().inputs}[name].kw["options"]


# ================================================================================================ loaders
def test_the_three_loaders_offer_the_embedded_model_and_the_model_loader_defaults_to_it():
    ckpts = _options(nodes_v3.MatrixGameModelLoader, "checkpoint")
    assert ckpts[0] == EMB == "embedded ViZDoom (CPU)"
    default = {i.id: i for i in nodes_v3.MatrixGameModelLoader.define_schema().inputs}["checkpoint"].kw["default"]
    assert default == EMB
    assert EMB in _options(nodes_v3.MatrixGameVAELoader, "vae_name")
    assert EMB in _options(nodes_v3.MatrixGameImageEncoderLoader, "clip_name")
    for lister in (logic.list_checkpoints, logic.list_vae_files, logic.list_clip_files):   # tiny kept, last
        assert lister()[-1] in (logic.TINY_MODEL, logic.TINY_PART)


def test_without_the_files_the_entry_is_not_listed_and_loading_it_says_so(monkeypatch):
    monkeypatch.setattr(embedded, "available", lambda root=embedded.ROOT: False)
    for lister in (logic.list_checkpoints, logic.list_vae_files, logic.list_clip_files):
        assert EMB not in lister()
    for load in (lambda: logic.load_model("universal", EMB), lambda: logic.load_vae(EMB),
                 lambda: logic.load_clip_vision(EMB)):
        with pytest.raises(MatrixGameError, match="not installed.*reinstall the pack"):
            load()


def test_model_loader_builds_the_shipped_dit(emb):
    m = emb.model
    assert isinstance(m, logic.MatrixGameModel) and m.is_embedded and not m.is_tiny
    assert m.label == EMB and m.mode == "universal" and m.patcher is None      # no ModelPatcher outside ComfyUI
    cfg = json.load(open(embedded.CONFIG_FILE))
    assert m.module.cfg.frame_size == embedded.video_size() == tuple(cfg["video_size"])
    assert m.module.cfg.dim == cfg["dim"] and m.module.cfg.num_layers == cfg["num_layers"]
    assert m.fps == embedded.fps() == cfg.get("fps", 17.5)
    assert logic.load_model("universal", logic.TINY_MODEL).fps == 25


def test_embedded_model_is_universal_only():
    with pytest.raises(MatrixGameError, match="'universal' model.*set mode to 'universal'"):
        logic.load_model("gta_drive", EMB)


def test_vae_loader_gives_a_vae_that_names_its_model_and_the_encoder_loader_gives_none(emb, tiny):
    frame = logic.model_frame(emb.vae)
    cfg = embedded.config_json()
    assert frame == logic.embedded_frame()
    assert frame.name == EMB and frame.frame_size == embedded.video_size() and not frame.image_encoder
    assert frame.conditioning_frames(15) == min(15, cfg["cond_latent_frames"])
    assert logic.model_frame(tiny.vae) is logic.OFFICIAL_FRAME and logic.OFFICIAL_FRAME.frame_size == (352, 640)
    assert logic.engine_vae(emb.vae).module.z_dim == 16
    assert isinstance(emb.clip, logic.NoImageEncoder)
    with pytest.raises(MatrixGameError, match="connect it only to Matrix-Game Encode Start Image"):
        emb.clip.encode_image(torch.zeros(1, 224, 224, 3))       # what core CLIP Vision Encode would call


# ================================================================================================ encode
def test_encode_fits_the_image_to_the_model_frame_and_encodes_its_conditioning_frames(emb, cond):
    h, w = embedded.video_size()
    n = emb.model.module.cfg.conditioning_frames(15)
    assert n == logic.model_frame(emb.vae).conditioning_frames(15) < 15
    assert isinstance(cond, Conditioning)
    assert tuple(cond.cond_concat.shape) == (1, 20, n, h // 8, w // 8)
    assert tuple(cond.visual_context.shape) == (1, 257, 1280) and not cond.visual_context.any()   # zero image tokens
    # any start image size, with or without the 'none' encoder connected
    odd = torch.rand(1, 300, 170, 3, generator=torch.Generator().manual_seed(0))
    c2 = logic.encode(odd, emb.vae, None, None, "pad", 1)
    assert tuple(c2.cond_concat.shape) == (1, 20, 1, h // 8, w // 8)


def test_encode_refuses_the_embedded_vae_with_a_real_encoder_and_the_none_encoder_with_another_vae(emb, tiny):
    img = load_image(DOOM)
    with pytest.raises(MatrixGameError, match="takes no image encoder.*'embedded ViZDoom \\(CPU\\)' in all three"):
        logic.encode(img, emb.vae, tiny.clip)
    with pytest.raises(MatrixGameError, match="takes no image encoder"):
        logic.encode(img, emb.vae, None, types.SimpleNamespace(penultimate_hidden_states=torch.zeros(1, 257, 1280)))
    with pytest.raises(MatrixGameError, match="image encoder is 'embedded ViZDoom \\(CPU\\)' \\(none\\).*in all three"):
        logic.encode(img, tiny.vae, emb.clip)
    with pytest.raises(MatrixGameError, match="Connect an image encoder"):
        logic.encode(img, tiny.vae, None)


# ================================================================================================ sample / decode
def test_sample_and_decode_run_the_embedded_model_at_its_frame_size(emb, cond):
    h, w = embedded.video_size()
    track = logic.actions_bench("universal", video_frames_for_latents(3), 0)
    lat = run(nodes_v3.MatrixGameSampler, model=emb.model, conditioning=cond, actions=track, seed=0, latent_frames=3,
              vae=emb.vae)[0]
    assert tuple(lat["samples"].shape) == (1, 16, 3, h // 8, w // 8)
    assert [p[:3] for p in host.PROGRESS_LOG] == [("sample", 1, 1)]
    assert host.PROGRESS_LOG[0][3].size == (w, h)                       # the decoded preview frame
    images = run(nodes_v3.MatrixGameDecode, vae=emb.vae, latent=lat)[0]
    assert tuple(images.shape) == (9, h, w, 3) and images.isfinite().all()


def test_sampler_refuses_conditioning_of_another_model(emb, tiny, cond):
    track = logic.actions_bench("universal", video_frames_for_latents(3), 0)
    g = torch.Generator().manual_seed(0)
    official_sized = Conditioning(torch.randn(1, 20, 3, 44, 80, generator=g), torch.zeros(1, 257, 1280))
    with pytest.raises(MatrixGameError, match="encoded at 640x352 but embedded ViZDoom \\(CPU\\) works at 112x64: "
                                              "pick 'embedded ViZDoom \\(CPU\\)' in all three"):
        logic.sample(emb.model, official_sized, track, 0, 3)
    with pytest.raises(MatrixGameError, match="carries image-encoder features but 'embedded ViZDoom \\(CPU\\)' "
                                              "takes none"):
        logic.sample(emb.model, Conditioning(cond.cond_concat, torch.ones(1, 257, 1280)), track, 0, 3)
    # an official-size model (config only: nothing is run) given the embedded model's conditioning
    official = logic.MatrixGameModel(mode="universal", dtype=torch.float32, label="universal: base_distill.safetensors",
                                     recipe={"checkpoint": "base_distill.safetensors"},
                                     module=types.SimpleNamespace(cfg=ModelConfig()))
    with pytest.raises(MatrixGameError, match="encoded at 112x64 but universal: base_distill.safetensors works at "
                                              "640x352: use the Wan 2.1 VAE"):
        logic.check_conditioning(official, cond)
    with pytest.raises(MatrixGameError, match="random-tiny model needs the random-tiny VAE"):
        logic.sample(tiny.model, cond, track, 0, 3)


def test_vae_of_another_model_is_refused_for_previews_decode_and_the_live_session(emb, tiny, cond):
    track = logic.actions_bench("universal", video_frames_for_latents(3), 0)
    with pytest.raises(MatrixGameError, match="VAE.*but the model is embedded ViZDoom \\(CPU\\): pick"):
        logic.sample(emb.model, cond, track, 0, 3, vae=tiny.vae)
    with pytest.raises(MatrixGameError, match="latents are 640x352 video but the VAE is the embedded ViZDoom"):
        logic.decode(emb.vae, {"samples": torch.zeros(1, 16, 1, 44, 80)})
    manager = interactive.SessionManager()
    with pytest.raises(MatrixGameError, match="VAE.*but the model is embedded ViZDoom"):
        interactive.run_live_session(emb.model, cond, tiny.vae, manager=manager, notify=lambda d: None)
    assert manager.list() == []                                           # refused before a session opened


# ================================================================================================ files
def test_demo_inputs_include_the_doom_frames_and_the_tour(folders):
    copied = logic.install_demo_inputs()
    for name in ("matrixgame_doom_map02.png", "matrixgame_doom_map15.png", "matrixgame_doom_map27.png",
                 "matrixgame_doom_tour.json"):
        assert name in copied and (folders["input"] / name).is_file()
    assert "matrixgame_doom_tour.json" in logic.list_action_files()
    tour = logic.actions_from_file("matrixgame_doom_tour.json")
    assert tour.num_frames == 117 and tour.mode == "universal"


def _ui_nodes(path):
    with open(path) as f:
        return {n["id"]: n for n in json.load(f)["nodes"]}


def test_cpu_and_live_templates_use_the_embedded_model_and_no_shipped_workflow_uses_random_tiny():
    for ui, api in ((CPU_UI, CPU_API), (LIVE_UI, LIVE_API)):
        nodes = _ui_nodes(ui)
        with open(api) as f:
            prompt = json.load(f)
        by_type = {}
        for n in nodes.values():
            by_type.setdefault(n["type"], []).append(n)
        assert by_type["MatrixGameModelLoader"][0]["widgets_values"][:2] == ["universal", EMB]
        assert by_type["MatrixGameVAELoader"][0]["widgets_values"] == [EMB]
        assert by_type["MatrixGameImageEncoderLoader"][0]["widgets_values"] == [EMB]
        assert by_type["LoadImage"][0]["widgets_values"][0] == "matrixgame_doom_map15.png"
        assert all(n["widgets_values"][0] == embedded.fps() for n in by_type["CreateVideo"])
        # the API twin is the same graph with the same values
        assert {k: v["class_type"] for k, v in prompt.items()} == {
            str(i): n["type"] for i, n in nodes.items() if n["type"] != "MarkdownNote"}
        for t, key in (("MatrixGameModelLoader", "checkpoint"), ("MatrixGameVAELoader", "vae_name"),
                       ("MatrixGameImageEncoderLoader", "clip_name")):
            assert [v["inputs"][key] for v in prompt.values() if v["class_type"] == t] == [EMB]
        assert all(v["inputs"]["fps"] == embedded.fps() for v in prompt.values() if v["class_type"] == "CreateVideo")
    cpu = json.load(open(CPU_API))
    tour = [v for v in cpu.values() if v["class_type"] == "MatrixGameActionsFromFile"]
    assert [t["inputs"]["file"] for t in tour] == ["matrixgame_doom_tour.json"]
    sampler = next(v for v in cpu.values() if v["class_type"] == "MatrixGameSampler")
    assert video_frames_for_latents(sampler["inputs"]["latent_frames"]) == 117
    for f in glob.glob(os.path.join(WF, "*.json")) + glob.glob(os.path.join(WF, "api", "*.json")):
        text = open(f).read()
        assert logic.TINY_PART not in text and logic.TINY_MODEL not in text, f


def test_absent_official_files_are_not_listed_so_the_frontend_reports_them_missing(monkeypatch):
    """Issue 11 item 6: ComfyUI's missing-model dialog (with the URL of the workflow's
    properties.models) appears only when the selected name is not among the loader's choices."""
    from matrix_game_core.checkpoints import DIT_FILES
    from nodes import host
    monkeypatch.setattr(host, "list_files", lambda folder, exts: [])
    names = logic.list_checkpoints()
    for rp in DIT_FILES.values():
        assert rp not in names
    assert nodes_v3.MatrixGameModelLoader.validate_inputs(checkpoint=DIT_FILES["universal"]) is True
    monkeypatch.setattr(host, "list_files", lambda folder, exts: [DIT_FILES["universal"]])
    assert DIT_FILES["universal"] in logic.list_checkpoints()
