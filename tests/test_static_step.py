"""The static block step equals the step it replaced (issue 12, item 1).

The session now feeds the DiT a fixed 20-row action window, device-resident RoPE / slot tensors
(:class:`~matrix_game_core.model.BlockPlan`), device sigmas and noise drawn one block ahead. The
reference below is the previous sampler loop, kept verbatim as the specification: whole action
history, the absolute start frame, each noise tensor drawn from the CPU generator when used.
"""
import pytest
import torch

from conftest import rel_err
from matrix_game_core.actions import latent_action_windows
from matrix_game_core.config import preset
from matrix_game_core.model import action_window, build_model
from matrix_game_core.sampling import Conditioning, FlowMatchScheduler, SeededNoise, WorldSession


def _tiny(mode, seed=0):
    torch.manual_seed(seed)
    m = build_model(preset(f"tiny_{mode}"), dtype=torch.float32)
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.copy_(torch.randn_like(p) / (p[0].numel() ** 0.5 if p.dim() >= 2 else 20))
    return m


def _track(cfg, n_blocks, seed=3):
    g = torch.Generator().manual_seed(seed)
    T = 1 + 4 * (3 * n_blocks - 1)
    kb = (torch.rand(1, T, cfg.keyboard_dim, generator=g) > 0.5).float()
    ms = (torch.randint(-1, 2, (1, T, 2), generator=g).float() * 0.1) if cfg.has_mouse else None
    return kb, ms


@torch.no_grad()
def _previous_sampler(model, cond, kb, ms, n_blocks, seed):
    """The sampler loop before the static step (sampling.py @ 32e4d08), as the reference."""
    cfg = model.cfg
    gen = torch.Generator().manual_seed(seed)
    b, _, _, h, w = cond.cond_concat.shape
    cache = model.new_cache(b, (h // 2) * (w // 2))
    sched = FlowMatchScheduler(cfg.timestep_shift)
    timesteps = sched.warp(cfg.denoising_step_list)
    sigmas = [sched.sigma(float(t)) for t in timesteps]
    nb = cfg.num_frame_per_block
    shape = (b, 16, nb, h, w)
    out = []
    for blk in range(n_blocks):
        start = blk * nb
        rows = 1 + 4 * (start + nb - 1)                       # the whole history up to this block
        k, m = kb[:, :rows], (None if ms is None else ms[:, :rows])
        cc = cond.cond_concat[:, :, start:start + nb]
        ones = torch.ones(b, nb)
        x = torch.randn(shape, generator=gen, dtype=torch.float32)
        for s in range(len(timesteps)):
            flow = model(x, ones * timesteps[s], cc, cond.visual_context, k, m, start, cache)
            x0 = (x.double() - sigmas[s].double() * flow.double()).to(flow.dtype)
            if s < len(timesteps) - 1:
                sig = sigmas[s + 1]
                x = ((1 - sig) * x0 + sig * torch.randn(shape, generator=gen, dtype=torch.float32)).to(x0.dtype)
        model(x0, ones * float(cfg.context_noise), cc, cond.visual_context, k, m, start, cache)
        out.append(x0)
    return torch.cat(out, dim=2)


@pytest.mark.parametrize("mode", ["universal", "gta_drive", "templerun"])
def test_static_step_equals_previous_step_over_cache_eviction(mode):
    """6 blocks = 18 latent frames: the ring buffers (window 6, gta 4) wrap several times."""
    m = _tiny(mode)
    n = 6
    cond = Conditioning(torch.randn(1, 20, 3 * n, 8, 12), torch.randn(1, 257, 1280))
    kb, ms = _track(m.cfg, n)
    ref = _previous_sampler(m, cond, kb, ms, n, seed=11)
    ours, _ = WorldSession(m, cond, seed=11).generate(kb, ms, 3 * n, decode=False)
    # same math, same order; the only difference is the keyboard embedding's matmul over 20 rows
    # instead of the whole history (BLAS blocking), so equality holds to float32 rounding
    assert rel_err(ours, ref) <= 1e-6, rel_err(ours, ref)


def test_action_window_gives_the_same_latent_windows():
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(2, 1 + 4 * 17, 5, generator=g)
    for start in (0, 3, 6, 15):
        win = action_window(rows[:, :1 + 4 * (start + 2)], start, 3)
        assert win.shape == (2, 20, 5)
        assert torch.equal(latent_action_windows(win, 3, 3), latent_action_windows(rows, start, 3))
    with pytest.raises(ValueError, match="needs 20 action rows"):
        action_window(rows[:, :9], 3, 3)


def test_noise_drawn_ahead_is_the_same_stream():
    """Same seed = same noise: the per-block bundles are the CPU generator's draws in the order
    the previous sampler made them (initial, then one per re-noise), bit for bit."""
    shape = (1, 16, 3, 4, 6)
    gen = torch.Generator().manual_seed(5)
    src = SeededNoise(5)
    for blk in range(3):
        bundle = src.block(blk, shape, 2, "cpu", torch.float32)
        for t in [bundle.initial, *bundle.renoise]:
            assert torch.equal(t, torch.randn(shape, generator=gen, dtype=torch.float32))
    bf = SeededNoise(5).block(0, shape, 0, "cpu", torch.bfloat16).initial
    assert torch.equal(bf, torch.randn(shape, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16))


def test_session_draws_the_next_block_ahead_and_reuses_it_after_an_interrupt():
    m = _tiny("universal")
    cond = Conditioning(torch.randn(1, 20, 6, 8, 12), torch.randn(1, 257, 1280))
    s = WorldSession(m, cond, seed=2)
    s.step(torch.zeros(9, 4), torch.zeros(9, 2), decode=False)
    assert set(s._block_noise) == {1}              # block 1's noise exists before block 1 starts
    drawn = s._block_noise[1].initial.clone()
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    s.interrupt = stop
    with pytest.raises(KeyboardInterrupt):
        s.step(torch.ones(12, 4), torch.zeros(12, 2), decode=False)
    assert torch.equal(s._block_noise[1].initial, drawn)
    s.noise = SeededNoise(2)                        # a new source drops what was drawn ahead
    assert not s._block_noise
