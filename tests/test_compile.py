"""``torch.compile`` of the block step and the streaming decoder (issue 12, item 2), on the CPU.

Dynamo's guards, graphs and graph breaks do not depend on the backend, so the structural checks
(zero graph breaks, no recompile once the local window is full) use ``aot_eager`` (seconds);
one check runs inductor (C++ code generation) on a one-layer model for compiled == eager.
CUDA-graph replay (``mode="reduce-overhead"``) is checked by ``benchmarks/device_run.sh``.
"""
import pytest
import torch
from torch._dynamo.utils import counters

from conftest import rel_err
from matrix_game_core.compile import compile_counters
from matrix_game_core.config import preset
from matrix_game_core.model import action_window, build_model
from matrix_game_core.sampling import Conditioning, WorldSession
from matrix_game_core.vae import StreamingDecoder, WanVAE


def _tiny(layers=2, window=None, seed=0):
    torch.manual_seed(seed)
    cfg = preset("tiny_universal")
    cfg.num_layers = layers
    cfg.action_config.blocks = [0]
    if window is not None:
        cfg.local_attn_size = window
    m = build_model(cfg, dtype=torch.float32)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) / (p[0].numel() ** 0.5 if p.dim() >= 2 else 20))
    return m


def _run(m, n_blocks, compile, seed=0):
    cond = Conditioning(torch.randn(1, 20, 3, 8, 12, generator=torch.Generator().manual_seed(1)),
                        torch.randn(1, 257, 1280, generator=torch.Generator().manual_seed(2)))
    s = WorldSession(m, cond, seed=seed, compile=compile)
    out, graphs = [], []
    for b in range(n_blocks):
        r = s.step(torch.tensor([1.0, 0, 0, b % 2]), torch.tensor([0.0, 0.1 * b]), decode=False)
        out.append(r.latents)
        graphs.append(compile_counters()["graphs"])
    return torch.cat(out, dim=2), graphs


def test_block_step_has_no_graph_breaks_and_no_recompiles_after_warmup():
    """Window 6 frames: the number of valid cache slots is 3 in block 0 and 6 from block 1 on,
    so two graphs are compiled in the two warm-up blocks and none after (cache eviction included:
    blocks 2+ overwrite ring slots)."""
    torch._dynamo.reset()
    counters.clear()
    m = _tiny(layers=2)
    eager, _ = _run(m, 5, compile=False)
    comp, graphs = _run(m, 5, compile="aot_eager")
    assert compile_counters()["graph_breaks"] == 0
    assert graphs[1] - graphs[0] == 1                  # warm-up: valid slots 3 -> 6
    assert graphs[4] == graphs[1], graphs              # no recompile after the warm-up blocks
    assert rel_err(comp, eager) <= 1e-6


def test_explain_reports_one_graph_without_breaks():
    m = _tiny(layers=1)
    cond = Conditioning(torch.randn(1, 20, 3, 8, 12), torch.randn(1, 257, 1280))
    s = WorldSession(m, cond, seed=0)
    plan = m.plan_block(s.cache, 0, 3, (8, 12))
    m.set_context(s.cache, s.cond.visual_context)
    kb, ms = action_window(torch.zeros(1, 9, 4), 0, 3), action_window(torch.zeros(1, 9, 2), 0, 3)
    ex = torch._dynamo.explain(m.step_forward)(torch.randn(1, 16, 3, 8, 12), s._t[0], s.cond.frames(0, 3), kb, ms,
                                               s.cache.layers, plan.rope, plan.arope, plan.slots, plan.valid, 3)
    assert ex.graph_break_count == 0 and ex.graph_count == 1, ex.break_reasons


def test_inductor_compiled_step_equals_eager_without_recompiles():
    """Inductor (C++ kernels) on a one-layer model with a 3-frame window: one graph for every
    block; latents equal eager within 1e-5 relative (float32; kernel fusion reorders sums)."""
    torch._dynamo.reset()
    counters.clear()
    m = _tiny(layers=1, window=3)
    eager, _ = _run(m, 3, compile=False)
    comp, graphs = _run(m, 3, compile=True)
    assert graphs == [1, 1, 1] and compile_counters()["graph_breaks"] == 0
    assert rel_err(comp, eager) <= 1e-5, rel_err(comp, eager)


def test_compiled_streaming_decoder_equals_eager():
    """From the third latent frame on the decoder step is one static graph (feature cache of
    2-frame tensors): no graph break, one graph for all later frames, equal output."""
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    vae = WanVAE(dim=8).eval().requires_grad_(False)
    z = torch.randn(1, 16, 7, 4, 6)
    ref = torch.cat([StreamingDecoder(vae).decode(z[:, :, :3]), StreamingDecoder(vae).decode(z)[:, :, 9:]], 2)
    eager = StreamingDecoder(vae)
    comp = StreamingDecoder(vae, compile="aot_eager")
    a = torch.cat([eager.decode(z[:, :, i:i + 3]) for i in (0, 3)] + [eager.decode(z[:, :, 6:])], 2)
    b = torch.cat([comp.decode(z[:, :, i:i + 3]) for i in (0, 3)] + [comp.decode(z[:, :, 6:])], 2)
    assert a.shape == (1, 3, 25, 32, 48)
    assert rel_err(b, a) <= 1e-6 and rel_err(a[:, :, :9], ref[:, :, :9]) <= 1e-6
    c = compile_counters()
    assert c["graph_breaks"] == 0 and c["graphs"] == 1
    assert all(isinstance(t, torch.Tensor) and t.shape[2] == 2 for t in comp.cache_slots)


@pytest.mark.parametrize("flag,expect", [(None, False), (False, False), ("aot_eager", True)])
def test_compile_switch_defaults_off_on_cpu(flag, expect):
    m = _tiny(layers=1)
    cond = Conditioning(torch.randn(1, 20, 3, 8, 12), torch.randn(1, 257, 1280))
    dec = StreamingDecoder(WanVAE(dim=8))
    s = WorldSession(m, cond, decoder=dec, compile=flag)
    assert s.compiled is expect and bool(dec.compile) is expect
