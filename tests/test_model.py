"""DiT structure, cached == uncached, long sessions, and checkpoint loading errors."""
import os

import pytest
import torch
from safetensors.torch import save_file

from conftest import golden_root, load_json, rel_err
from matrix_game_core.checkpoints import detect_mode, load_dit, save_dit
from matrix_game_core.config import ModelConfig, preset
from matrix_game_core.errors import MatrixGameError
from matrix_game_core.model import CausalWanModel, build_model
from matrix_game_core.sampling import Conditioning, WorldSession

MANIFESTS = {"universal": "universal.json", "gta_drive": "gta_drive.json", "templerun": "templerun.json",
             "foundation": "foundation.json"}


@pytest.mark.golden
@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_full_size_structure_matches_manifest(name):
    man = load_json(os.path.join(golden_root(), "manifests", MANIFESTS[name]))
    with torch.device("meta"):
        m = CausalWanModel(preset(name))
    ours = {"model." + k: list(v.shape) for k, v in m.state_dict().items()}
    assert ours == {k: list(v) for k, v in man["shapes"].items()}
    assert sum(v.numel() for v in m.state_dict().values()) == man["num_params"]
    # the official config parses to the same structure
    with torch.device("meta"):
        m2 = CausalWanModel(ModelConfig.from_dict(man["config"]))
    assert {k: tuple(v.shape) for k, v in m2.state_dict().items()} == {k: tuple(v.shape) for k, v in m.state_dict().items()}


def _tiny(mode="universal", seed=0, **over):
    torch.manual_seed(seed)
    cfg = preset(f"tiny_{mode}")
    for k, v in over.items():
        setattr(cfg, k, v)
    m = build_model(cfg, dtype=torch.float32)
    with torch.no_grad():  # make every branch matter (zero-ish init would hide bugs)
        for n, p in m.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn_like(p) / p[0].numel() ** 0.5)
            elif "norm" in n:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))
    return m


def _inputs(cfg, n_latent, h=8, w=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    T = 1 + 4 * (n_latent - 1)
    kb = (torch.rand(1, T, cfg.keyboard_dim, generator=g) > 0.5).float()
    ms = ((torch.randint(-1, 2, (1, T, 2), generator=g)).float() * 0.1) if cfg.has_mouse else None
    cc = torch.randn(1, 20, n_latent, h, w, generator=g)
    vc = torch.randn(1, 257, 1280, generator=g)
    return kb, ms, cc, vc


@pytest.mark.parametrize("mode,sink", [("universal", 0), ("gta_drive", 0), ("templerun", 0), ("universal", 1)])
def test_cached_equals_uncached(mode, sink):
    """Block-wise KV-cached generation == one full-sequence forward with the block-causal
    local-window mask, when earlier blocks are given as clean latents at t=0 (what the context
    pass writes) and the last block noisy."""
    m = _tiny(mode, sink_size=sink)
    cfg = m.cfg
    nb, n_blocks = 3, 4  # 12 latent frames: the window (6 or 4) rolls
    F = nb * n_blocks
    kb, ms, cc, vc = _inputs(cfg, F)
    g = torch.Generator().manual_seed(5)
    clean = torch.randn(1, 16, F, 8, 12, generator=g)
    noisy = torch.randn(1, 16, nb, 8, 12, generator=g)
    t_noisy = 908.8427124023438
    cache = m.new_cache(1, 4 * 6)
    outs_ctx = []
    for b in range(n_blocks):
        s = nb * b
        ones = torch.ones(1, nb)
        if b == n_blocks - 1:
            out_cached = m(noisy, ones * t_noisy, cc[:, :, s:s + nb], vc, kb, ms, s, cache)
        m(torch.randn(1, 16, nb, 8, 12), ones * 500.0, cc[:, :, s:s + nb], vc, kb, ms, s, cache)  # a denoising step
        outs_ctx.append(m(clean[:, :, s:s + nb], ones * 0.0, cc[:, :, s:s + nb], vc, kb, ms, s, cache))
    # uncached: clean history + noisy last block
    x = torch.cat([clean[:, :, :F - nb], noisy], dim=2)
    t = torch.cat([torch.zeros(1, F - nb), torch.full((1, nb), t_noisy)], dim=1)
    full = m(x, t, cc, vc, kb, ms, 0, None)
    assert rel_err(out_cached, full[:, :, F - nb:]) < 1e-5
    for b in range(n_blocks - 1):
        assert rel_err(outs_ctx[b], full[:, :, nb * b:nb * b + nb]) < 1e-5
    # the window matters: without a local mask the result differs
    m.cfg.local_attn_size = F
    wide = m(x, t, cc, vc, kb, ms, 0, None)
    assert rel_err(wide[:, :, F - nb:], full[:, :, F - nb:]) > 1e-3


def test_actions_change_the_output():
    m = _tiny("universal")
    kb, ms, cc, vc = _inputs(m.cfg, 3)
    x = torch.randn(1, 16, 3, 8, 12)
    t = torch.full((1, 3), 700.0)
    a = m(x, t, cc, vc, kb, ms, 0, None)
    kb2 = kb.clone()
    kb2[:, 4:8] = 1 - kb2[:, 4:8]
    ms2 = ms.clone()
    ms2[:, 4:8] = 0.1 - ms2[:, 4:8]
    assert rel_err(m(x, t, cc, vc, kb2, ms, 0, None), a) > 1e-4
    assert rel_err(m(x, t, cc, vc, kb, ms2, 0, None), a) > 1e-4
    # the last raw row is never used (reference §3.3)
    kb3 = kb.clone()
    kb3[:, -1] = 1 - kb3[:, -1]
    assert torch.equal(m(x, t, cc, vc, kb3, ms, 0, None), a)


def test_session_past_latent_frame_1023_constant_memory():
    """The official 1024-row RoPE table stops at latent frame 1023; ours computes positions on
    the fly and the ring-buffer caches do not grow."""
    m = _tiny("gta_drive")
    cond = Conditioning(torch.randn(1, 20, 3, 4, 4), torch.randn(1, 257, 1280))
    s = WorldSession(m, cond, seed=3)
    s.block = 1023 // 3 - 1          # jump near the limit (the caches only need a consistent history)
    s.cache.end_frame = s.start_frame
    s.keyboard_rows = torch.zeros(1, 1 + 4 * (s.start_frame - 1), 2)
    s.mouse_rows = torch.zeros(1, 1 + 4 * (s.start_frame - 1), 2)
    sizes = []
    for _ in range(4):
        r = s.step(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.1]), decode=False)
        assert torch.isfinite(r.latents).all()
        sizes.append(s.cache.nbytes())
    assert r.start_frame + 2 > 1023
    assert len(set(sizes)) == 1  # KV caches (incl. the cross-attention K/V set at the first call) do not grow


def test_sessions_are_deterministic_and_seeded():
    m = _tiny("templerun")
    cond = Conditioning(torch.randn(1, 20, 6, 4, 4), torch.randn(1, 257, 1280))
    kb = torch.zeros(21, 7)
    kb[:, 1] = 1
    a, _ = WorldSession(m, cond, seed=1).generate(kb, None, 6, decode=False)
    b, _ = WorldSession(m, cond, seed=1).generate(kb, None, 6, decode=False)
    c, _ = WorldSession(m, cond, seed=2).generate(kb, None, 6, decode=False)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_session_input_errors():
    m = _tiny("universal")
    cond = Conditioning(torch.randn(1, 20, 6, 4, 4), torch.randn(1, 257, 1280))
    s = WorldSession(m, cond, seed=0)
    with pytest.raises(MatrixGameError, match="9 video frames for block 0"):
        s.step(torch.zeros(12, 4), torch.zeros(12, 2))
    with pytest.raises(MatrixGameError, match="needs mouse"):
        s.step(torch.zeros(9, 4), None)
    with pytest.raises(MatrixGameError, match="multiple of 3"):
        WorldSession(m, cond).generate(torch.zeros(21, 4), torch.zeros(21, 2), 5)
    with pytest.raises(MatrixGameError, match="lengthen the track"):
        WorldSession(m, cond).generate(torch.zeros(13, 4), torch.zeros(13, 2), 6)
    with pytest.raises(MatrixGameError, match="encode the start image"):
        WorldSession(m, Conditioning(torch.randn(1, 16, 6, 4, 4), torch.randn(1, 257, 1280)))


def test_interrupted_block_can_be_stepped_again():
    m = _tiny("universal")
    cond = Conditioning(torch.randn(1, 20, 6, 4, 4), torch.randn(1, 257, 1280))
    ref = WorldSession(m, cond, seed=4)
    r0 = ref.step(torch.zeros(9, 4), torch.zeros(9, 2), decode=False)
    r1 = ref.step(torch.ones(12, 4), torch.zeros(12, 2), decode=False)
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt

    s = WorldSession(m, cond, seed=4, interrupt=stop)
    s.step(torch.zeros(9, 4), torch.zeros(9, 2), decode=False)
    with pytest.raises(KeyboardInterrupt):
        s.step(torch.ones(12, 4), torch.zeros(12, 2), decode=False)
    assert s.block == 1 and s.keyboard_rows.shape[1] == 9
    s.noise = type(s.noise)(4)  # replay the same noise stream for the comparison
    s.noise.initial(0, r0.latents.shape, "cpu", torch.float32)
    for _ in range(2):
        s.noise.renoise(r0.latents.shape, "cpu", torch.float32)
    r1b = s.step(torch.ones(12, 4), torch.zeros(12, 2), decode=False)
    assert torch.allclose(r1b.latents, r1.latents, atol=1e-5)


# ------------------------------------------------------------------------------------- loader
@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    m = _tiny("gta_drive")
    p = str(d / "gta_keyboard2dim.safetensors")
    save_dit(m, p)
    return m, p, d


def test_checkpoint_round_trip(tiny_ckpt):
    m, p, _ = tiny_ckpt
    m2 = load_dit(p, mode="gta_drive", config=m.cfg, dtype=torch.float32)
    for (k, a), (k2, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    # without a config the shapes are inferred
    m3 = load_dit(p, dtype=torch.bfloat16)
    assert m3.cfg.mode == "gta_drive" and m3.cfg.dim == 128 and m3.cfg.local_attn_size == 4
    assert next(m3.parameters()).dtype == torch.bfloat16


def test_loader_wrong_mode_names_both(tiny_ckpt):
    _, p, _ = tiny_ckpt
    with pytest.raises(MatrixGameError, match=r"'gta_drive' checkpoint but mode 'universal'"):
        load_dit(p, mode="universal")


def test_loader_missing_and_unexpected_keys(tiny_ckpt, tmp_path):
    m, p, _ = tiny_ckpt
    sd = {"model." + k: v for k, v in m.state_dict().items()}
    del sd["model.blocks.3.ffn.0.weight"]
    sd["model.blocks.3.extra.weight"] = torch.zeros(2)
    q = str(tmp_path / "bad.safetensors")
    save_file(sd, q)
    with pytest.raises(MatrixGameError) as e:
        load_dit(q, config=m.cfg)
    msg = str(e.value)
    assert "1 missing keys: blocks.3.ffn.0.weight" in msg and "1 unexpected keys: blocks.3.extra.weight" in msg


def test_loader_folder_and_truncated(tiny_ckpt, tmp_path):
    _, p, d = tiny_ckpt
    with pytest.raises(MatrixGameError, match="is a folder; pass the checkpoint file"):
        load_dit(str(d))
    data = open(p, "rb").read()
    q = tmp_path / "trunc.safetensors"
    q.write_bytes(data[: len(data) // 2])
    with pytest.raises(MatrixGameError, match="truncated or corrupt"):
        load_dit(str(q))
    with pytest.raises(MatrixGameError, match="does not exist"):
        load_dit(str(tmp_path / "nope.safetensors"))


def test_detect_mode_rejects_other_models():
    with pytest.raises(MatrixGameError, match="not a Matrix-Game 2.0 DiT"):
        detect_mode({"blocks.0.ffn.0.weight": torch.zeros(1)})


def test_loader_infers_image_token_width(tmp_path):
    from matrix_game_core.pipeline import random_tiny
    dit = random_tiny("universal").dit          # img_dim 64 (tiny image encoder)
    p = str(tmp_path / "base_distill.safetensors")
    save_dit(dit, p)
    m = load_dit(p, dtype=torch.float32)
    assert m.cfg.img_dim == 64
    assert all(torch.equal(a, b) for a, b in zip(dit.state_dict().values(), m.state_dict().values()))
