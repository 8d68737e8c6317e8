"""fp8 (e4m3) DiT weights through cast-on-use layers (issue 12, item 4), on the CPU.

The engine's :data:`~matrix_game_core.ops.cast_ops` is the injectable ``operations`` namespace
(as ComfyUI's ``comfy.ops.manual_cast``): weights are stored in ``torch.float8_e4m3fn`` with a
per-tensor scale and cast to the compute dtype (bf16) at every call.
"""
import copy

import pytest
import torch

from conftest import rel_err
from matrix_game_core.config import preset
from matrix_game_core.model import build_model
from matrix_game_core.ops import CastLinear, cast_ops, quantize_linear_weights
from matrix_game_core.sampling import Conditioning, WorldSession

#: Bound on ||latents_fp8 - latents_bf16|| / ||latents_bf16|| over two blocks of the tiny model
#: (measured 0.02-0.04: e4m3 keeps 3 mantissa bits, a per-weight error of up to 6 %).
FP8_TOL = 0.08


def _pair():
    torch.manual_seed(0)
    m = build_model(preset("tiny_universal"), dtype=torch.bfloat16, operations=cast_ops)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) / (p[0].numel() ** 0.5 if p.dim() >= 2 else 20))
    q = copy.deepcopy(m)
    saved = quantize_linear_weights(q)
    return m, q, saved


def test_fp8_storage_and_bytes():
    m, q, saved = _pair()
    lin = [(n, mod) for n, mod in q.named_modules() if isinstance(mod, CastLinear) and n.startswith("blocks.")]
    assert lin and all(mod.weight.dtype == torch.float8_e4m3fn for _, mod in lin)
    assert all(mod.scale_weight.dtype == torch.float32 for _, mod in lin)
    assert q.head.head.weight.dtype == torch.bfloat16 and q.compute_dtype == torch.bfloat16
    assert saved == sum(mod.weight.numel() for _, mod in lin)          # 2 bytes -> 1 byte each
    with pytest.raises(TypeError, match="operations=cast_ops"):
        quantize_linear_weights(build_model(preset("tiny_universal"), dtype=torch.bfloat16))


def test_fp8_session_close_to_bf16_with_bf16_caches():
    m, q, _ = _pair()
    cond = Conditioning(torch.randn(1, 20, 6, 8, 12), torch.randn(1, 257, 1280))
    kb, ms = torch.tensor([1.0, 0, 0, 0]), torch.tensor([0.0, 0.1])
    outs = []
    for model in (m, q):
        s = WorldSession(model, cond, seed=0)
        assert s.cache.layers[0].k.dtype == torch.bfloat16
        outs.append(torch.cat([s.step(kb, ms, decode=False).latents for _ in range(2)], dim=2))
    err = rel_err(outs[1], outs[0])
    print(f"fp8 vs bf16 latents rel err {err:.4f}")
    assert 0 < err <= FP8_TOL
