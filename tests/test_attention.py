"""Attention backends and low-precision runs stay within bf16 tolerance of the fp32 reference."""
import pytest
import torch

from conftest import rel_err
from matrix_game_core.attention import attention, flash_attn_available, resolve_backend
from matrix_game_core.errors import MatrixGameError
from matrix_game_core.pipeline import random_tiny
from matrix_game_core.sampling import Conditioning, WorldSession


def _ref_attention(q, k, v):
    w = torch.softmax((q.double() @ k.double().transpose(-1, -2)) / q.shape[-1] ** 0.5, dim=-1)
    return (w @ v.double()).to(q.dtype)


def test_sdpa_equals_exact_softmax_attention():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 50, 64, generator=g) for _ in range(3))
    assert rel_err(attention(q, k, v), _ref_attention(q, k, v)) < 1e-6
    # strided views (the cache window) are accepted
    big = torch.randn(2, 3, 6, 10, 64, generator=g)
    kv = big[:, :, :4].flatten(2, 3)
    assert rel_err(attention(q, kv, kv), _ref_attention(q, kv.contiguous(), kv.contiguous())) < 1e-6


def test_backend_resolution_and_errors():
    assert resolve_backend("sdpa") == "sdpa"
    assert resolve_backend("auto") in ("sdpa", "flash_attn")
    with pytest.raises(MatrixGameError, match="choose one of"):
        resolve_backend("xformers")
    if not flash_attn_available():
        with pytest.raises(MatrixGameError, match="needs the flash-attn package and a CUDA GPU"):
            resolve_backend("flash_attn")


def _run(dtype, backend="sdpa", device="cpu"):
    comp = random_tiny("universal", seed=0)
    comp.dit.to(device=device, dtype=dtype).backend = backend
    g = torch.Generator().manual_seed(1)
    cond = Conditioning(torch.randn(1, 20, 6, 16, 24, generator=g), torch.randn(1, 257, 64, generator=g))
    s = WorldSession(comp.dit, cond, seed=0)
    kb = torch.zeros(21, 4)
    kb[:, 0] = 1
    lat, _ = s.generate(kb, torch.full((21, 2), 0.1), 6, decode=False)
    return lat.float().cpu()


def test_bf16_session_within_tolerance_of_fp32():
    a, b = _run(torch.float32), _run(torch.bfloat16)
    assert rel_err(b, a) < 5e-2


@pytest.mark.skipif(not flash_attn_available(), reason="needs CUDA and the flash-attn package")
def test_flash_attn_matches_sdpa_on_gpu():
    a = _run(torch.bfloat16, "sdpa", "cuda")
    b = _run(torch.bfloat16, "flash_attn", "cuda")
    assert rel_err(b, a) < 2e-2
