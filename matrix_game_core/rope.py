"""Rotary position embeddings, computed on the fly from absolute positions.

Two RoPEs exist in Matrix-Game 2.0 (reference §2.2 and §3.3):

* the **main 3-D RoPE** of the DiT self-attention (``wan/modules/model.py::rope_params``,
  ``causal_model.py::causal_rope_apply``): head_dim/2 complex pairs split into time / height /
  width groups ``[c - 2(c//3), c//3, c//3]`` (22/21/21 for head_dim 128), theta 10000, interleaved
  pairs, float64 math. The official code reads a 1024-row table, which caps a session at latent
  frame 1023; here angles are ``position * inv_freq`` computed for the positions asked, in the
  same float64 arithmetic, so there is no limit.
* the **action RoPE** of the action module (``wan/modules/posemb_layers.py``,
  ``get_nd_rotary_pos_embed(rope_dim_list=[8,28,28], theta=256)`` on a (7500, 1, 1) grid): in effect
  a 1-D temporal RoPE on the first ``rope_dim_list[0]`` of 64 head channels (the other channels sit
  at position 0, i.e. identity), float32 math, ``rotate_half`` on interleaved pairs.
"""
from __future__ import annotations

import functools
from typing import Sequence, Tuple

import torch


def _split(head_dim: int) -> Tuple[int, int, int]:
    c = head_dim // 2
    return c - 2 * (c // 3), c // 3, c // 3


@functools.lru_cache(maxsize=32)
def _inv_freq64(dim: int, theta: float = 10000.0, device: str = "cpu") -> torch.Tensor:
    # rope_params: 1 / theta ** (arange(0, dim, 2) / dim), float64; made once per device
    return (1.0 / torch.pow(theta, torch.arange(0, dim, 2).to(torch.float64).div(dim))).to(device)


def main_rope_cos_sin(start_frame: int, num_frames: int, height: int, width: int, head_dim: int,
                      device=None, dtype=torch.float64) -> Tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of the 3-D RoPE for the token grid ``(num_frames, height, width)``.

    Frame positions are absolute: ``start_frame + f``. Everything is computed on ``device`` (no
    host-to-device copy per block; the inverse frequencies are made once per device).

    Returns:
        ``(cos, sin)``, each ``[num_frames*height*width, head_dim//2]`` (token order f, h, w), ``dtype``.
    """
    ct, ch, cw = _split(head_dim)
    dev = torch.device(device if device is not None else "cpu")
    key = str(dev)
    kw = dict(dtype=torch.float64, device=dev)
    ft = torch.arange(start_frame, start_frame + num_frames, **kw)[:, None] * _inv_freq64(2 * ct, 10000.0, key)
    fh = torch.arange(height, **kw)[:, None] * _inv_freq64(2 * ch, 10000.0, key)
    fw = torch.arange(width, **kw)[:, None] * _inv_freq64(2 * cw, 10000.0, key)
    ang = torch.cat([
        ft[:, None, None, :].expand(num_frames, height, width, ct),
        fh[None, :, None, :].expand(num_frames, height, width, ch),
        fw[None, None, :, :].expand(num_frames, height, width, cw),
    ], dim=-1).reshape(num_frames * height * width, ct + ch + cw)
    return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_main_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs ``(x[2i], x[2i+1])`` of ``x`` (``[B, S, H, D]``) by the angles.

    The rotation runs in ``cos.dtype`` (float64 for the faithful path, as the official complex128
    multiply) and the result is cast back to ``x.dtype``.
    """
    b, s, h, d = x.shape
    xr = x.to(cos.dtype).reshape(b, s, h, d // 2, 2)
    x0, x1 = xr[..., 0], xr[..., 1]
    c = cos[None, :, None, :]
    si = sin[None, :, None, :]
    out = torch.stack([x0 * c - x1 * si, x0 * si + x1 * c], dim=-1)
    return out.reshape(b, s, h, d).to(x.dtype)


def action_rope_cos_sin(start_frame: int, num_frames: int, head_dim: int, rope_dim_list: Sequence[int],
                        theta: float = 256.0, device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of the action-module RoPE for absolute latent frames.

    Returns:
        ``(cos, sin)``, each ``[num_frames, head_dim]`` float32: the first ``rope_dim_list[0]`` channels
        carry ``theta ** (-2i / rope_dim_list[0])`` frequencies repeated per pair
        (``repeat_interleave(2)``), the rest are cos = 1, sin = 0 (grid position 0). Computed on
        ``device``.
    """
    dt = int(rope_dim_list[0])
    kw = dict(dtype=torch.float32, device=device)
    inv = 1.0 / (theta ** (torch.arange(0, dt, 2, device=device)[: dt // 2].float() / dt))
    pos = torch.arange(start_frame, start_frame + num_frames, **kw)
    ang = torch.outer(pos, inv)
    cos = torch.ones(num_frames, head_dim, **kw)
    sin = torch.zeros(num_frames, head_dim, **kw)
    cos[:, :dt] = ang.cos().repeat_interleave(2, dim=1)
    sin[:, :dt] = ang.sin().repeat_interleave(2, dim=1)
    return cos, sin


def apply_action_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x*cos + rotate_half(x)*sin`` in float32 (posemb_layers.apply_rotary_emb), cast back.

    Args:
        x: ``[..., T, H, D]`` with the time axis third from the end; cos, sin: ``[T, D]``.
    """
    xf = x.float()
    x0, x1 = xf.reshape(*xf.shape[:-1], -1, 2).unbind(-1)
    rot = torch.stack([-x1, x0], dim=-1).flatten(-2)
    return (xf * cos[:, None, :] + rot * sin[:, None, :]).to(x.dtype)
