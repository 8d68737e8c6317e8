"""Attention backends for the DiT.

All attention in the engine goes through :func:`attention` with the ``[B, H, S, D]`` layout of
``torch.nn.functional.scaled_dot_product_attention``. Backends:

* ``"sdpa"`` (default): PyTorch SDPA (flash / memory-efficient / math kernels chosen by PyTorch).
* ``"flash_attn"``: the ``flash_attn`` package (FlashAttention-2, ``flash_attn_func``), used when it
  is importable, the tensors are on CUDA and no mask is needed. Like the official wrapper
  (``wan/modules/attention.py``) it runs in bf16/fp16; fp32 inputs are cast to bf16 and back.
* ``"auto"``: ``flash_attn`` when available on CUDA, else SDPA.

The official code uses exact softmax attention with scale ``1/sqrt(D)`` everywhere; so do we.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .errors import MatrixGameError

BACKENDS = ("auto", "sdpa", "flash_attn")

try:  # optional, GPU only
    from flash_attn import flash_attn_func as _flash_attn_func  # type: ignore
except Exception:  # pragma: no cover - not installed on CPU machines
    _flash_attn_func = None


def flash_attn_available() -> bool:
    """True when the ``flash_attn`` package imported and CUDA is present."""
    return _flash_attn_func is not None and torch.cuda.is_available()


def resolve_backend(name: str) -> str:
    """Map a user choice to the backend that will run.

    Raises:
        MatrixGameError: unknown name, or ``flash_attn`` asked for but not importable/no CUDA.
    """
    if name not in BACKENDS:
        raise MatrixGameError(f"Unknown attention backend {name!r}; choose one of {', '.join(BACKENDS)}.")
    if name == "auto":
        return "flash_attn" if flash_attn_available() else "sdpa"
    if name == "flash_attn" and not flash_attn_available():
        raise MatrixGameError("attention backend 'flash_attn' needs the flash-attn package and a CUDA GPU; "
                              "install flash-attn or choose 'sdpa'.")
    return name


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: Optional[torch.Tensor] = None, backend: str = "sdpa") -> torch.Tensor:
    """Softmax attention ``softmax(q k^T / sqrt(D)) v``.

    Args:
        q: ``[B, H, Sq, D]``; k, v: ``[B, H, Sk, D]`` (same dtype; strided views allowed).
        mask: optional bool ``[Sq, Sk]`` (True = attend), only for the uncached reference path.
        backend: ``"sdpa"`` or ``"flash_attn"`` (already resolved, see :func:`resolve_backend`).
    Returns:
        ``[B, H, Sq, D]`` in the dtype of ``q``.
    """
    if backend == "flash_attn" and mask is None and q.is_cuda:
        dt = q.dtype if q.dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
        out = _flash_attn_func(q.transpose(1, 2).to(dt), k.transpose(1, 2).to(dt),
                               v.transpose(1, 2).to(dt))
        return out.transpose(1, 2).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
