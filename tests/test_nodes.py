"""The ComfyUI nodes without ComfyUI: every node's execute() called directly on the untrained tiny
models (CPU), plus the schema rules (ids, category, tooltips).

``tests/comfy_stubs.py`` stands in for ``comfy_api.latest``; ``nodes.host`` runs its plain-PyTorch
stand-ins (no ModelPatcher, folders in a temporary directory, progress updates recorded in
``host.PROGRESS_LOG``). The same node code runs inside a real server in
``tests/test_comfyui_integration.py``.
"""
import asyncio
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

from matrix_game_core.checkpoints import DIT_FILES, save_dit  # noqa: E402
from matrix_game_core.config import video_frames_for_latents  # noqa: E402
from matrix_game_core.errors import MatrixGameError  # noqa: E402
from matrix_game_core.image_encoder import encode_image, load_image_encoder  # noqa: E402
from matrix_game_core.pipeline import load_image, prepare_image  # noqa: E402
from matrix_game_core.sampling import Conditioning, WorldSession  # noqa: E402
from matrix_game_core.vae import StreamingDecoder, encode_start_image, normalize_latents  # noqa: E402

from nodes import host, loaders, logic, nodes_v3  # noqa: E402

if _STUBBED:  # the node classes hold what they need; leave no fake comfy_api behind for other modules
    for _k in [k for k in sys.modules if k == "comfy_api" or k.startswith("comfy_api.")]:
        del sys.modules[_k]

DEMO = os.path.join(ROOT, "assets", "demo_images", "universal_0000.png")


@pytest.fixture(autouse=True)
def folders(node_folders):
    """Empty model / input folders for every test; the progress log cleared (conftest)."""
    return node_folders


def run(node_cls, **inputs):
    """Call a node the way ComfyUI does (classmethod execute with keyword inputs)."""
    out = node_cls.execute(**inputs)
    assert isinstance(out, comfy_stubs.NodeOutput) or hasattr(out, "args")
    return out


@pytest.fixture(scope="module")
def tiny():
    """The three tiny parts, loaded through the nodes."""
    return types.SimpleNamespace(
        model=run(nodes_v3.MatrixGameModelLoader, mode="universal", checkpoint=logic.TINY_MODEL).args[0],
        vae=run(nodes_v3.MatrixGameVAELoader, vae_name=logic.TINY_PART).args[0],
        clip=run(nodes_v3.MatrixGameImageEncoderLoader, clip_name=logic.TINY_PART).args[0],
    )


def small_conditioning(vae, clip, h=64, w=96, n=3, seed=0):
    """Conditioning of a small random image (engine calls), for fast sampler tests."""
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(1, 3, h, w, generator=g) * 2 - 1
    ev = logic.engine_vae(vae).module
    return Conditioning(encode_start_image(ev, img, n).float(), encode_image(logic.engine_clip(clip).module, img))


# ================================================================================================ schema
def test_every_node_has_ids_category_tooltips_and_is_listed():
    ext = asyncio.run(__import__("nodes").comfy_entrypoint())
    listed = asyncio.run(ext.get_node_list())
    assert listed == nodes_v3.NODES
    ids = set()
    for cls in listed:
        s = cls.define_schema()
        assert s.node_id.startswith("MatrixGame") and s.node_id not in ids, s.node_id
        ids.add(s.node_id)
        assert s.category == "MatrixGame", s.node_id
        assert s.display_name and s.display_name.startswith("Matrix-Game"), s.node_id
        assert s.description, s.node_id
        for i in s.inputs:
            assert i.tooltip and len(i.tooltip) > 15, (s.node_id, i.id)
        assert s.outputs, s.node_id
        for o in s.outputs:
            assert o.tooltip and o.display_name, (s.node_id, o.id)
    assert ids >= {"MatrixGameModelLoader", "MatrixGameVAELoader", "MatrixGameImageEncoderLoader",
            "MatrixGameEncodeStartImage", "MatrixGameActionsFromJSON", "MatrixGameBenchmarkActions",
            "MatrixGameActionsFromFile", "MatrixGameConcatActions", "MatrixGameSampler", "MatrixGameDecode",
            "MatrixGameOverlay"}


def test_model_loader_lists_tiny_and_local_checkpoints_not_absent_official_ones(folders):
    (folders["matrix_game"] / "mine.safetensors").write_bytes(b"x")
    opts = {i.id: i for i in nodes_v3.MatrixGameModelLoader.define_schema().inputs}["checkpoint"].kw["options"]
    assert opts[-1] == logic.TINY_MODEL                 # kept for tests, listed last (the embedded model leads)
    # absent official files are not listed, so ComfyUI's missing-models dialog offers their download
    assert "mine.safetensors" in opts and not any(p in opts for p in DIT_FILES.values())
    assert nodes_v3.MatrixGameModelLoader.validate_inputs(checkpoint=DIT_FILES["universal"]) is True
    # names outside the list are accepted at validation time and judged in execute()
    assert nodes_v3.MatrixGameModelLoader.validate_inputs(checkpoint="../x.safetensors") is True


# ================================================================================================ loaders
def test_model_loader_tiny(tiny):
    m = tiny.model
    assert isinstance(m, logic.MatrixGameModel) and m.mode == "universal" and m.dtype == torch.float32
    assert "UNTRAINED" in m.label and m.is_tiny
    assert m.module.cfg.img_dim == 64 and m.patcher is None       # no ModelPatcher outside ComfyUI
    tw = logic.load_model("templerun", logic.TINY_MODEL)
    assert tw.module.cfg.keyboard_dim == 7 and not tw.module.cfg.has_mouse


@pytest.mark.parametrize("name", ["../evil.safetensors", "a/../../b.safetensors", "/etc/passwd", "..\\x.safetensors"])
def test_model_loader_refuses_path_traversal(name):
    with pytest.raises(MatrixGameError, match="outside ComfyUI's model folders"):
        run(nodes_v3.MatrixGameModelLoader, mode="universal", checkpoint=name)


def test_model_loader_missing_official_file_says_how_to_get_it(folders):
    with pytest.raises(MatrixGameError, match="download if missing") as e:
        logic.load_model("universal", DIT_FILES["universal"])
    assert str(folders["matrix_game"]) in str(e.value)
    with pytest.raises(MatrixGameError, match="official 'gta_drive' checkpoint but mode is 'universal'"):
        logic.load_model("universal", DIT_FILES["gta_drive"], download_if_missing=True)   # refused before downloading


def test_model_loader_download_goes_through_the_engine(folders, monkeypatch):
    calls = []

    def fake_download(mode, directory, with_encoders=True):
        calls.append((mode, directory, with_encoders))
        p = os.path.join(directory, DIT_FILES[mode])
        os.makedirs(os.path.dirname(p), exist_ok=True)
        save_tiny_dit(mode, p)
        return {DIT_FILES[mode]: p}

    monkeypatch.setattr(loaders, "download", fake_download)
    m = logic.load_model("gta_drive", DIT_FILES["gta_drive"], download_if_missing=True)
    assert calls == [("gta_drive", str(folders["matrix_game"]), False)]
    assert m.mode == "gta_drive" and m.module.cfg.keyboard_dim == 2


def test_model_loader_wrong_mode_checkpoint(folders):
    save_tiny_dit("gta_drive", folders["matrix_game"] / "tiny_gta.safetensors")
    with pytest.raises(MatrixGameError, match="is a 'gta_drive' checkpoint but mode 'universal' was requested"):
        run(nodes_v3.MatrixGameModelLoader, mode="universal", checkpoint="tiny_gta.safetensors")
    m = logic.load_model("gta_drive", "tiny_gta.safetensors", dtype="bf16")
    assert m.dtype == torch.bfloat16 and next(m.module.parameters()).dtype == torch.bfloat16


def test_model_loader_releases_the_previous_model_of_the_same_node(folders):
    save_tiny_dit("universal", folders["matrix_game"] / "u.safetensors")
    a = logic.load_model("universal", logic.TINY_MODEL, node_key="7")
    other = logic.load_model("universal", logic.TINY_MODEL, node_key="8")
    b = logic.load_model("universal", "u.safetensors", node_key="7")
    assert a.module is None and b.module is not None          # node 7's old model was released
    assert other.module is not None                           # another node's model is untouched
    a.ensure_loaded()                                         # a stale cached handle reloads itself
    assert a.module is not None and a.cfg.img_dim == 64
    assert logic.load_model("universal", "u.safetensors", node_key="7") is b     # same settings: same model


def save_tiny_dit(mode, path):
    """A tiny DiT in the official file format, with its config.json beside it (its shapes are not the
    full-size preset's, so the engine reads the config next to the file)."""
    dit = logic.tiny_components(mode).dit
    save_dit(dit, str(path))
    dit.cfg.save(os.path.join(os.path.dirname(str(path)), "config.json"))


def _official_vae_file(path):
    torch.save(logic.tiny_components("universal").vae.state_dict(), path)


def _official_clip_file(path):
    """A small CLIP visual tower (80-channel heads, as ViT-H, so the head count is inferred from the
    shapes) in the official file layout: ``visual.*`` plus text-tower tensors."""
    from matrix_game_core.image_encoder import CLIPVisionTower, VisionConfig
    torch.manual_seed(3)
    tower = CLIPVisionTower(VisionConfig(dim=160, num_heads=2, num_layers=3, out_dim=32))
    sd = {"visual." + k: v.clone() for k, v in tower.state_dict().items()}
    sd["textual.token_embedding.weight"] = torch.zeros(3, 4)     # the text tower is skipped
    sd["log_scale"] = torch.zeros(())
    torch.save(sd, path)


def test_vae_loader_reads_the_official_pth(folders):
    _official_vae_file(folders["vae"] / "Wan2.1_VAE.pth")
    assert "Wan2.1_VAE.pth" in logic.list_vae_files()
    vae = run(nodes_v3.MatrixGameVAELoader, vae_name="Wan2.1_VAE.pth").args[0]
    ref = logic.tiny_components("universal").vae.state_dict()
    got = logic.engine_vae(vae).module.state_dict()
    assert set(got) == set(ref) and all(torch.equal(got[k], ref[k]) for k in ref)
    assert logic.engine_vae(vae) is logic.engine_vae(vae)          # built once per VAE object
    _official_clip_file(folders["vae"] / "not_a_vae.pth")
    with pytest.raises(MatrixGameError, match="not a Wan video VAE"):
        logic.load_vae("not_a_vae.pth")
    with pytest.raises(MatrixGameError, match="outside"):
        logic.load_vae("../Wan2.1_VAE.pth")


def test_image_encoder_loader_and_both_encode_paths_agree(folders):
    """The official CLIP file -> our loader -> native CLIP_VISION (HF layout, as core's
    clip_vision_h) -> the encode node's tower gives the features of the official-format tower."""
    _official_clip_file(folders["matrix_game"] / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth")
    name = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
    assert name in logic.list_clip_files()
    cv = run(nodes_v3.MatrixGameImageEncoderLoader, clip_name=name).args[0]
    sd = cv.model.state_dict()
    assert "vision_model.encoder.layers.1.self_attn.q_proj.weight" in sd and not any(k.startswith("visual.") for k in sd)
    assert cv.config["num_attention_heads"] == 2 and cv.config["hidden_size"] == 160
    official = load_image_encoder(str(folders["matrix_game"] / name))
    img = prepare_image(load_image(DEMO))
    ref = encode_image(official, img)
    got = encode_image(logic.engine_clip(cv).module, img)
    assert got.shape == (1, 257, 160)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    # the key conversion is the exact inverse of the engine's ComfyUI -> official conversion
    from matrix_game_core.image_encoder import convert_comfy_clip_vision
    back = convert_comfy_clip_vision(sd)
    assert set(back) == set(official.state_dict())
    assert all(torch.equal(back[k], official.state_dict()[k]) for k in back)


def test_image_encoder_loader_rejects_a_vae(folders):
    _official_vae_file(folders["clip_vision"] / "oops.pth")
    with pytest.raises(MatrixGameError, match="not a CLIP vision"):
        logic.load_clip_vision("oops.pth")


# ================================================================================================ encode
def test_encode_start_image_shapes_and_official_equivalence(tiny):
    img = load_image(DEMO)                                              # [1,H,W,3] in 0..1
    cond = run(nodes_v3.MatrixGameEncodeStartImage, image=img, vae=tiny.vae, clip_vision=tiny.clip,
               crop="center", length=3).args[0]
    assert isinstance(cond, Conditioning)
    assert cond.cond_concat.shape == (1, 20, 3, 44, 80) and cond.visual_context.shape == (1, 257, 64)
    assert torch.equal(cond.cond_concat[:, :4, 0], torch.ones(1, 4, 44, 80))   # the start-frame mask
    prepared = prepare_image(img)
    ref = encode_start_image(logic.tiny_components("universal").vae, prepared, 3)
    torch.testing.assert_close(cond.cond_concat, ref, rtol=0, atol=0)
    torch.testing.assert_close(cond.visual_context, encode_image(logic.tiny_components("universal").image_encoder,
                                                                 prepared), rtol=0, atol=0)


def test_encode_accepts_a_clip_vision_output_as_is(tiny):
    feats = torch.randn(2, 257, 64)
    out = types.SimpleNamespace(penultimate_hidden_states=feats)
    cond = logic.encode(torch.rand(1, 100, 120, 3), tiny.vae, clip_vision_output=out, crop="stretch", length=1)
    assert torch.equal(cond.visual_context, feats[:1]) and cond.cond_concat.shape == (1, 20, 1, 44, 80)


def test_encode_errors(tiny):
    with pytest.raises(MatrixGameError, match="at least 64 px"):
        logic.encode(torch.rand(1, 9, 17, 3), tiny.vae, tiny.clip)              # a 17x9 image
    with pytest.raises(MatrixGameError, match="Connect an image encoder"):
        logic.encode(torch.rand(1, 100, 100, 3), tiny.vae)
    with pytest.raises(MatrixGameError, match="Unknown crop mode"):
        logic.encode(torch.rand(1, 100, 100, 3), tiny.vae, tiny.clip, crop="zoom")
    with pytest.raises(MatrixGameError, match="not a VAE"):
        logic.encode(torch.rand(1, 100, 100, 3), object(), tiny.clip)


# ================================================================================================ decode
def test_decode_streams_to_1_plus_4n_frames_equal_to_one_shot(tiny):
    z = torch.randn(1, 16, 6, 8, 10, generator=torch.Generator().manual_seed(1))
    images = run(nodes_v3.MatrixGameDecode, vae=tiny.vae, latent={"samples": z}).args[0]
    assert images.shape == (video_frames_for_latents(6), 64, 80, 3) == (21, 64, 80, 3)
    assert images.dtype == torch.float32 and 0 <= images.min() and images.max() <= 1
    ref = logic.tiny_components("universal").vae.decode(z)              # one shot [1,3,21,64,80] in [-1,1]
    torch.testing.assert_close(images, ((ref + 1) / 2).permute(0, 2, 3, 4, 1)[0], rtol=0, atol=1e-5)
    assert [u[1] for u in host.PROGRESS_LOG if u[0] == "decode"] == [3, 6]
    with pytest.raises(MatrixGameError, match=r"\[B,16,T,h,w\]"):
        logic.decode(tiny.vae, {"samples": torch.randn(1, 4, 8, 8)})


# ================================================================================================ sample
def track(mode="universal", frames=21, seed=0):
    """A plain action track (mode, keyboard [T,K], mouse [T,2] or None): what the sampler reads."""
    g = torch.Generator().manual_seed(seed)
    k = {"universal": 4, "gta_drive": 2, "templerun": 7}[mode]
    kb = (torch.rand(frames, k, generator=g) > 0.6).float()
    ms = None if mode == "templerun" else (torch.randint(-1, 2, (frames, 2), generator=g) * 0.1).float()
    return types.SimpleNamespace(mode=mode, keyboard=kb, mouse=ms)


def test_sampler_returns_raw_latents_of_the_engine_session(tiny):
    cond = small_conditioning(tiny.vae, tiny.clip, n=6)
    tr = track(frames=23)                                          # longer than needed: the rest is unused
    lat = run(nodes_v3.MatrixGameSampler, model=tiny.model, conditioning=cond, actions=tr, seed=5,
              latent_frames=6).args[0]
    z = lat["samples"]
    assert z.shape == (1, 16, 6, 8, 12) and z.dtype == torch.float32
    ref_session = WorldSession(logic.tiny_components("universal").dit, cond, seed=5)
    ref, _ = ref_session.generate(tr.keyboard[:21], tr.mouse[:21], 6, decode=False)
    torch.testing.assert_close(normalize_latents(z), ref, rtol=1e-5, atol=1e-5)     # LATENT holds RAW latents
    # the decode node on that LATENT gives the frames the engine's own streaming session decodes
    frames = logic.decode(tiny.vae, lat)
    s2 = WorldSession(logic.tiny_components("universal").dit, cond, seed=5,
                      decoder=StreamingDecoder(logic.tiny_components("universal").vae))
    _, video = s2.generate(tr.keyboard, tr.mouse, 6)
    torch.testing.assert_close(frames, ((video + 1) / 2).permute(0, 2, 3, 4, 1)[0], rtol=0, atol=1e-4)
    # a progress step with a latent->RGB preview after each of the 2 blocks
    steps = [u for u in host.PROGRESS_LOG if u[0] == "sample"]
    assert [(v, t) for _, v, t, _ in steps] == [(1, 2), (2, 2)]
    assert all(p.size == (96, 64) for *_, p in steps)


def test_sampler_seed_steps_and_window_options(tiny):
    cond = small_conditioning(tiny.vae, tiny.clip, n=3)
    tr = track(frames=9)
    go = lambda **kw: logic.sample(tiny.model, cond, tr, latent_frames=3, **{"seed": 1, **kw})["samples"]
    a = go()
    assert torch.equal(a, go())                                             # deterministic per seed
    assert not torch.allclose(a, go(seed=2))
    assert not torch.allclose(a, go(denoising_steps="1000, 500"))
    assert torch.isfinite(go(local_attn_size=9, sink_size=3)).all()
    assert torch.equal(a, go(action_guidance=0.0)) and torch.equal(a, go(action_guidance=1.0))  # 0 = model's (off)
    assert not torch.allclose(a, go(action_guidance=3.0))
    assert torch.equal(a, go(pitch_guidance=0.0))                           # 0 = model's (the action guidance)
    assert not torch.allclose(a, go(pitch_guidance=4.0))                    # a scale of its own for the looks
    assert torch.equal(a, go(keyboard_guidance=0.0)) and not torch.allclose(a, go(keyboard_guidance=4.0))
    g = go(action_guidance=3.0)                                             # rescale: -1 = model's (off)
    assert torch.equal(g, go(action_guidance=3.0, guidance_rescale=-1.0))
    assert torch.equal(g, go(action_guidance=3.0, guidance_rescale=0.0))
    assert not torch.allclose(g, go(action_guidance=3.0, guidance_rescale=1.0))
    tr21 = track(frames=21)                                                 # hold: -1 = model's (0, classic)
    go2 = lambda **kw: logic.sample(tiny.model, cond, tr21, latent_frames=6, **{"seed": 1, "action_guidance": 3.0, **kw})["samples"]  # noqa: E731
    g2 = go2()
    assert torch.equal(g2, go2(guidance_hold=-1.0)) and torch.equal(g2, go2(guidance_hold=0.0))
    held = go2(guidance_hold=1.0)                                           # block 0 the same, block 1 not
    assert torch.equal(held[:, :, :3], g2[:, :, :3]) and not torch.allclose(held[:, :, 3:], g2[:, :, 3:])
    host.PROGRESS_LOG.clear()
    go(vae=tiny.vae)                                                        # decoded previews
    (_, v, t, p), = [u for u in host.PROGRESS_LOG if u[0] == "sample"]
    assert (v, t) == (1, 1) and p.size == (96, 64)


@pytest.mark.parametrize("kwargs, match", [
    (dict(latent_frames=10), r"multiple of 3 .* got 10\. Use 9 or 12"),
    (dict(actions=track("gta_drive")), "track is for mode 'gta_drive' but the model is 'universal'"),
    (dict(actions=track(frames=9), latent_frames=6), "has 9 video frames but 6 latent frames need 21.*3 or less"),
    (dict(denoising_steps="1000, abc"), "whole timesteps"),
    (dict(denoising_steps="333, 666"), "decreasing"),
    (dict(local_attn_size=4, sink_size=4), "smaller than the local attention window"),
])
def test_sampler_rejects_bad_inputs_with_a_fix(tiny, kwargs, match):
    cond = small_conditioning(tiny.vae, tiny.clip, n=3)
    args = {**dict(model=tiny.model, conditioning=cond, actions=track(), seed=0, latent_frames=6), **kwargs}
    with pytest.raises(MatrixGameError, match=match):
        logic.sample(**args)


def test_sampler_rejects_features_of_the_wrong_encoder(tiny):
    cond = small_conditioning(tiny.vae, tiny.clip, n=3)
    cond = Conditioning(cond.cond_concat, torch.zeros(1, 257, 1280))         # clip_vision_h features, tiny model
    with pytest.raises(MatrixGameError, match="random-tiny model needs the random-tiny VAE and image encoder"):
        logic.sample(tiny.model, cond, track(), 0, 3)


def test_sampler_interrupt_stops_between_steps_and_the_next_run_works(tiny, monkeypatch):
    cond = small_conditioning(tiny.vae, tiny.clip, n=3)
    calls = []

    class Stop(BaseException):
        pass

    def hook():
        calls.append(1)
        if len(calls) == 2:
            raise Stop()

    monkeypatch.setattr(host, "interrupt_hook", lambda: hook)
    with pytest.raises(Stop):
        logic.sample(tiny.model, cond, track(), 0, 6)
    assert len(calls) == 2                                                  # stopped at the 2nd denoising step
    monkeypatch.undo()
    assert logic.sample(tiny.model, cond, track(), 0, 6)["samples"].shape[2] == 6


# ================================================================================================ actions
def test_actions_from_json_with_summary():
    out = run(nodes_v3.MatrixGameActionsFromJSON, track_json=logic.default_track_json())
    tr, summary = out.args
    assert tr.mode == "universal" and tr.keyboard.shape == (57, 4) and tr.mouse.shape == (57, 2)
    assert out.ui.as_dict() == {"text": (summary,)}
    assert summary.splitlines()[0] == "universal: 57 video frames = 2.28 s at 25 fps"
    assert "up to 15 latent frames" in summary and "W forward 33" in summary and "A left 24" in summary
    assert "yaw +0.000..+0.100" in summary
    default = {i.id: i for i in nodes_v3.MatrixGameActionsFromJSON.define_schema().inputs}["track_json"]
    assert default.kw["multiline"] and default.kw["default"] == logic.default_track_json()


@pytest.mark.parametrize("text, match", [
    ('{"version": 1, "mode": "universal", "num_frames": 57', "JSON"),
    ("", "track_json is empty"),
    ('{"version": 1, "mode": "flying", "num_frames": 9, "keyboard": {}}', "mode"),
])
def test_actions_from_json_rejects_malformed_tracks(text, match):
    with pytest.raises(MatrixGameError, match=match):
        run(nodes_v3.MatrixGameActionsFromJSON, track_json=text)


def test_benchmark_actions_length_and_seed():
    a = run(nodes_v3.MatrixGameBenchmarkActions, mode="gta_drive", latent_frames=6, seed=3).args[0]
    b = run(nodes_v3.MatrixGameBenchmarkActions, mode="gta_drive", latent_frames=6, seed=3).args[0]
    c = run(nodes_v3.MatrixGameBenchmarkActions, mode="gta_drive", latent_frames=6, seed=4).args[0]
    assert a.mode == "gta_drive" and a.keyboard.shape == (21, 2) and a == b and a != c
    t = run(nodes_v3.MatrixGameBenchmarkActions, mode="templerun", latent_frames=3, seed=0)
    assert t.args[0].mouse is None and "no mouse" in t.args[1]


def test_actions_from_file_and_join(folders):
    src = os.path.join(ROOT, "workflows", "tracks", "templerun_demo.json")
    (folders["input"] / "sub").mkdir()
    (folders["input"] / "sub" / "run.json").write_text(open(src).read())
    (folders["input"] / "notes.txt").write_text("x")
    assert logic.list_action_files() == ["sub/run.json"]
    opts = {i.id: i for i in nodes_v3.MatrixGameActionsFromFile.define_schema().inputs}["file"].kw["options"]
    assert opts == ["sub/run.json"]
    tr = run(nodes_v3.MatrixGameActionsFromFile, file="sub/run.json").args[0]
    assert tr.mode == "templerun" and tr.keyboard.shape == (57, 7)
    stamp = nodes_v3.MatrixGameActionsFromFile.fingerprint_inputs(file="sub/run.json")
    os.utime(folders["input"] / "sub" / "run.json", ns=(1, 1))
    assert nodes_v3.MatrixGameActionsFromFile.fingerprint_inputs(file="sub/run.json") != stamp   # re-read when edited
    joined, summary = run(nodes_v3.MatrixGameConcatActions, first=tr, second=tr).args
    assert joined.keyboard.shape == (113, 7) and "113 video frames" in summary
    with pytest.raises(MatrixGameError, match="outside ComfyUI's input folder"):
        logic.actions_from_file("../secret.json")
    with pytest.raises(MatrixGameError, match="Cannot read action file"):
        logic.actions_from_file("missing.json")
    for data, msg in [(b"\x89PNG\r\n\x1a\n\xff", "is not UTF-8 text"), (b"[" * 100000, "nested too deeply"),
                      (b'{"version": ' + b"1" * 500 + b"}", "integer with 500 digits")]:
        (folders["input"] / "bad.json").write_bytes(data)
        with pytest.raises(MatrixGameError, match=msg):
            run(nodes_v3.MatrixGameActionsFromFile, file="bad.json")
    other = logic.actions_bench("universal", 9, 0)
    with pytest.raises(MatrixGameError, match="same mode"):
        logic.actions_concat(tr, other)


def test_the_real_action_track_drives_the_sampler(tiny):
    cond = small_conditioning(tiny.vae, tiny.clip, n=3)
    tr = logic.actions_bench("universal", 9, 0)
    z = logic.sample(tiny.model, cond, tr, 0, 3)["samples"]
    kb, ms = tr.tensors()
    ref, _ = WorldSession(logic.tiny_components("universal").dit, cond, seed=0).generate(kb, ms, 3, decode=False)
    torch.testing.assert_close(normalize_latents(z), ref, rtol=1e-5, atol=1e-5)


def test_demo_inputs_are_copied_once(folders):
    names = logic.install_demo_inputs()
    assert "matrixgame_universal_0000.png" in names and "matrixgame_templerun_demo.json" in names
    (folders["input"] / "matrixgame_universal_0000.png").write_bytes(b"mine")
    assert logic.install_demo_inputs() == []                                   # never overwrites
    assert (folders["input"] / "matrixgame_universal_0000.png").read_bytes() == b"mine"
    # every input the example workflows name is shipped
    for f in glob.glob(os.path.join(ROOT, "workflows", "api", "*.json")):
        for n in json.load(open(f)).values():
            for key in ("image", "file"):
                if n["class_type"] in ("LoadImage", "MatrixGameActionsFromFile"):
                    v = n["inputs"].get(key)
                    if v:
                        assert (folders["input"] / v).exists(), (f, v)


# ================================================================================================ overlay
def test_overlay_draws_keys_and_checks_lengths():
    tr = logic.actions_from_json(logic.default_track_json())                 # 57 frames, W held first
    frames = torch.full((21, 176, 320, 3), 0.5)
    out = run(nodes_v3.MatrixGameOverlay, images=frames, actions=tr).args[0]
    assert out.shape == frames.shape and out.dtype == torch.float32
    assert not torch.equal(out, frames) and torch.equal(frames, torch.full_like(frames, 0.5))   # input untouched
    assert 0 <= out.min() and out.max() <= 1
    with pytest.raises(MatrixGameError, match="only 9"):
        logic.overlay(frames, logic.actions_bench("universal", 9, 0))
    with pytest.raises(MatrixGameError, match=r"\[T,H,W,3\]"):
        logic.overlay(torch.zeros(2, 3, 8, 8), tr)


# ---------------------------------------------------------------------------------------------- fail fast
def test_sampler_checks_the_track_before_asking_for_the_conditioning(tiny):
    """The sampler's conditioning input is lazy: check_lazy_status refuses a wrong-mode or too-short
    track (and bad settings) before ComfyUI evaluates the Encode Start Image node."""
    schema = nodes_v3.MatrixGameSampler.define_schema()
    cond_input = next(i for i in schema.inputs if i.id == "conditioning")
    assert cond_input.kw.get("lazy") is True
    model = tiny.model
    check = nodes_v3.MatrixGameSampler.check_lazy_status
    wrong_mode = logic.actions_bench("gta_drive", 57, 0)
    with pytest.raises(MatrixGameError, match="is for mode 'gta_drive' but the model is 'universal'"):
        check(model=model, actions=wrong_mode, latent_frames=15, seed=0)
    short = logic.actions_bench("universal", 9, 0)
    with pytest.raises(MatrixGameError, match="has 9 video frames but 15 latent frames need 57"):
        check(model=model, actions=short, latent_frames=15, seed=0)
    good = logic.actions_bench("universal", 57, 0)
    with pytest.raises(MatrixGameError, match="multiple of 3"):
        check(model=model, actions=good, latent_frames=14, seed=0)
    with pytest.raises(MatrixGameError, match="denoising steps"):
        check(model=model, actions=good, latent_frames=15, seed=0, denoising_steps="1000, 2000")
    assert check(model=model, actions=good, latent_frames=15, seed=0, conditioning=None, vae=None) == ["conditioning"]
    assert check(model=model, actions=good, latent_frames=15, seed=0, conditioning=object()) == []
