"""Layers of the Matrix-Game 2.0 causal DiT (:mod:`.model`): norms, the timestep embedding, self- and
cross-attention, the action module (mouse and keyboard branches) and the transformer block.

Source: SkyworkAI/Matrix-Game ``Matrix-Game-2/wan/modules/causal_model.py`` (attention, block),
``wan/modules/action_module.py`` (action module), ``wan/modules/model.py`` (norms, head, MLPProj),
commit 3ceb3114; facts in ``shared/reference/matrix_game2.md`` §2-§3. Every name is also importable
from :mod:`matrix_game_core.model`.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn

from .actions import latent_action_windows
from .attention import attention
from .caches import LayerCache
from .config import ModelConfig
from .rope import apply_action_rope, apply_main_rope

def action_window(rows: torch.Tensor, start_frame: int, num_frames: int,
                  ratio: int = 4, windows_size: int = 3) -> torch.Tensor:
    """The fixed-size slice of raw action rows one block needs: rows
    ``[ratio*(start_frame - windows_size), ratio*(start_frame + num_frames - 1))`` (20 rows for a
    block of 3 latent frames), indices below 0 copied from row 0 (the official left padding).

    In these rows the block's latent frames sit at ``windows_size .. windows_size+num_frames-1``:
    ``latent_action_windows(action_window(r, s, F), windows_size, F) == latent_action_windows(r, s, F)``.
    The shape does not depend on ``start_frame``, so the block step sees static shapes and the
    keyboard branch embeds 20 rows instead of the whole history.

    Args:
        rows: ``[B, T, C]`` raw per-video-frame actions (the history up to the block's last row).
    Returns:
        ``[B, ratio*(windows_size+num_frames-1), C]``, same dtype/device as ``rows`` (a gather made
        on the rows' device: a new contiguous tensor, no host copy).
    Raises:
        ValueError: ``rows`` is too short for the block (as :func:`latent_action_windows`).
    """
    end = ratio * (start_frame + num_frames - 1)
    if rows.shape[1] < max(end, 1):
        raise ValueError(f"block at latent frame {start_frame} needs {max(end, 1)} action rows; got {rows.shape[1]}")
    idx = torch.arange(ratio * (start_frame - windows_size), end, device=rows.device).clamp_min(0)
    return rows[:, idx]


def _ops(operations):
    return operations if operations is not None else nn


def sinusoidal_embedding_1d(dim: int, position: torch.Tensor) -> torch.Tensor:
    """Timestep embedding ``cat(cos, sin)`` in float64 (``wan/modules/model.py``).

    Args:
        position: ``[N]`` timesteps (any dtype; used as float64).
    Returns:
        ``[N, dim]`` float64.
    """
    half = dim // 2
    position = position.to(torch.float64)
    # arange made on the position's device: no host-to-device copy inside the block step
    sinusoid = torch.outer(position, torch.pow(10000, -torch.arange(half, device=position.device).to(position).div(half)))
    return torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1)


class WanRMSNorm(nn.Module):
    """RMS norm over the last dim, computed in float32, then ``* weight`` (``wan/modules/model.py``)."""

    def __init__(self, dim: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x):
        xf = x.float()
        y = (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)).type_as(x)
        return y * self.weight.to(x.dtype)


class WeightlessRMSNorm(nn.Module):
    """The action module's RMS norm: ``x * rsqrt(mean(x^2) + eps)`` in the input dtype, **ignoring**
    its (present, loaded, unused) weight, exactly as ``action_module.py::WanRMSNorm``."""

    def __init__(self, dim: int, eps: float = 1e-6, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)


def _layer_norm(x, eps):
    """``WanLayerNorm`` without affine: LayerNorm in the input dtype, cast back."""
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), eps=eps).type_as(x)


class _Projections(nn.Module):
    """q, k, v, o Linear(dim, dim) with bias and full-dim RMS q/k norms (``WanSelfAttention``'s
    layers, shared by the self- and cross-attention of a block)."""

    def __init__(self, dim, num_heads, eps, ops, device=None, dtype=None):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        kw = dict(device=device, dtype=dtype)
        self.q = ops.Linear(dim, dim, **kw)
        self.k = ops.Linear(dim, dim, **kw)
        self.v = ops.Linear(dim, dim, **kw)
        self.o = ops.Linear(dim, dim, **kw)
        self.norm_q = WanRMSNorm(dim, eps, **kw)
        self.norm_k = WanRMSNorm(dim, eps, **kw)


class SelfAttention(_Projections):
    """``CausalWanSelfAttention``: full-dim RMS q/k norms before the head split, 3-D RoPE at the
    absolute latent frame, K cached after RoPE."""

    def forward(self, x, rope, grid, lc: Optional[LayerCache], slots, nv, mask, backend):
        b, s, _ = x.shape
        n, d = self.num_heads, self.head_dim
        q = self.norm_q(self.q(x)).view(b, s, n, d)
        k = self.norm_k(self.k(x)).view(b, s, n, d)
        v = self.v(x).view(b, s, n, d)
        q = apply_main_rope(q, *rope).transpose(1, 2)
        k = apply_main_rope(k, *rope).transpose(1, 2)
        v = v.transpose(1, 2)
        if lc is None:
            out = attention(q, k, v, mask=mask, backend=backend)
        else:
            f, npf = grid[0], grid[1] * grid[2]
            lc.k.index_copy_(2, slots, k.reshape(b, n, f, npf, d))
            lc.v.index_copy_(2, slots, v.reshape(b, n, f, npf, d))
            out = attention(q, lc.k[:, :, :nv].flatten(2, 3), lc.v[:, :, :nv].flatten(2, 3), backend=backend)
        return self.o(out.transpose(1, 2).reshape(b, s, n * d))


class CrossAttention(_Projections):
    """``WanI2VCrossAttention`` restricted to the image tokens (no text path)."""

    def context_kv(self, context):
        """K/V of the projected image tokens ``[B, 257, dim]`` -> two ``[B, H, 257, D]``."""
        b = context.shape[0]
        k = self.norm_k(self.k(context)).view(b, -1, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v(context).view(b, -1, self.num_heads, self.head_dim).transpose(1, 2)
        return k, v

    def forward(self, x, k, v, backend):
        b, s, _ = x.shape
        q = self.norm_q(self.q(x)).view(b, s, self.num_heads, self.head_dim).transpose(1, 2)
        out = attention(q, k, v, backend=backend)
        return self.o(out.transpose(1, 2).reshape(b, s, -1))


class ActionModule(nn.Module):
    """Mouse + keyboard injection (``wan/modules/action_module.py``, reference §3.3).

    Returns ``x + mouse_out + keyboard_out``; the keyboard query is computed from ``x + mouse_out``.
    No modulation, no gate.
    """

    def __init__(self, cfg: ModelConfig, ops, device=None, dtype=None):
        super().__init__()
        ac = cfg.action_config
        self.ac = ac
        kw = dict(device=device, dtype=dtype)
        self.heads = ac.heads_num
        self.window_rows = ac.vae_time_compression_ratio * ac.windows_size
        if ac.enable_keyboard:
            self.keyboard_embed = nn.Sequential(ops.Linear(ac.keyboard_dim_in, ac.hidden_size, **kw), nn.SiLU(),
                                                ops.Linear(ac.hidden_size, ac.hidden_size, **kw))
        if ac.enable_mouse:
            c = ac.mouse_hidden_dim
            self.mouse_mlp = nn.Sequential(
                ops.Linear(ac.mouse_dim_in * self.window_rows + ac.img_hidden_size, c, **kw),
                nn.GELU(approximate="tanh"),
                ops.Linear(c, c, **kw),
                ops.LayerNorm(c, **kw),
            )
            self.t_qkv = ops.Linear(c, 3 * c, bias=ac.qkv_bias, **kw)
            self.img_attn_q_norm = WeightlessRMSNorm(c // ac.heads_num, 1e-6, **kw)
            self.img_attn_k_norm = WeightlessRMSNorm(c // ac.heads_num, 1e-6, **kw)
            self.proj_mouse = ops.Linear(c, ac.img_hidden_size, bias=ac.qkv_bias, **kw)
        if ac.enable_keyboard:
            kd = ac.keyboard_hidden_dim
            self.key_attn_q_norm = WeightlessRMSNorm(kd // ac.heads_num, 1e-6, **kw)
            self.key_attn_k_norm = WeightlessRMSNorm(kd // ac.heads_num, 1e-6, **kw)
            self.mouse_attn_q = ops.Linear(ac.img_hidden_size, kd, bias=ac.qkv_bias, **kw)
            self.keyboard_attn_kv = ops.Linear(ac.hidden_size * self.window_rows, 2 * kd, bias=ac.qkv_bias, **kw)
            self.proj_keyboard = ops.Linear(kd, ac.img_hidden_size, bias=ac.qkv_bias, **kw)

    def forward(self, x, grid, mouse, keyboard, action_start, lc, slots, nv, frame_mask, backend, arope):
        """
        Args:
            x: ``[B, F*N, C]`` hidden states (token order f, h, w).
            grid: ``(F, h, w)`` token grid; ``N = h*w``.
            mouse: ``[B, T, 2]`` raw mouse rows or None; keyboard: ``[B, T, K]`` raw keyboard rows.
            action_start: latent frame of ``x[:, 0]`` in the coordinates of the rows: the absolute
                start frame for a whole action history, ``windows_size`` for the fixed window of
                :func:`~matrix_game_core.actions.action_window` (rows ``[4s-12, 4(s+F-1))``).
            lc: layer cache (None for the uncached path); slots: long ``[F]`` cache slots of the
                frames; nv: number of valid leading slots to attend to.
            frame_mask: uncached path only, bool ``[F, F]`` (query frame, key frame).
            arope: ``(cos, sin)`` of the action RoPE for these frames (:func:`action_rope_cos_sin`).
        """
        f, npf = grid[0], grid[1] * grid[2]
        b = x.shape[0]
        ac = self.ac
        cos, sin = arope
        hidden = x
        if ac.enable_mouse and mouse is not None:
            h = x.view(b, f, npf, -1).transpose(1, 2).reshape(b * npf, f, -1)          # (b s) t c
            win = latent_action_windows(mouse.to(x.dtype), action_start, f, ac.vae_time_compression_ratio,
                                        ac.windows_size)                               # [B, F, 12, 2]
            win = win.reshape(b, 1, f, -1).expand(b, npf, f, win.shape[2] * win.shape[3]).reshape(b * npf, f, -1)
            z = self.mouse_mlp(torch.cat([h, win], dim=-1))
            q, k, v = self.t_qkv(z).view(b * npf, f, 3, self.heads, -1).unbind(2)    # [(b s), t, H, D]
            q = self.img_attn_q_norm(q).to(v.dtype)
            k = self.img_attn_k_norm(k).to(v.dtype)
            q = apply_action_rope(q, cos, sin).transpose(1, 2)                        # [(b s), H, t, D]
            k = apply_action_rope(k, cos, sin).transpose(1, 2)
            v = v.transpose(1, 2)
            if lc is None:
                out = attention(q, k, v, mask=frame_mask, backend=backend)
            else:
                lc.mk.index_copy_(2, slots, k)
                lc.mv.index_copy_(2, slots, v)
                out = attention(q, lc.mk[:, :, :nv], lc.mv[:, :, :nv], backend=backend)
            out = out.transpose(1, 2).reshape(b, npf, f, -1).transpose(1, 2).reshape(b, f * npf, -1)
            hidden = x + self.proj_mouse(out)
        if ac.enable_keyboard and keyboard is not None:
            emb = self.keyboard_embed(keyboard.to(x.dtype))                           # [B, T, hidden]
            g = latent_action_windows(emb, action_start, f, ac.vae_time_compression_ratio, ac.windows_size)
            g = g.reshape(b, f, -1)                                                   # [B, F, 12*hidden]
            q = self.mouse_attn_q(hidden).view(b, f * npf, self.heads, -1)
            k, v = self.keyboard_attn_kv(g).view(b, f, 2, self.heads, -1).unbind(2)   # [B, F, H, D]
            q = self.key_attn_q_norm(q).to(v.dtype)
            k = self.key_attn_k_norm(k).to(v.dtype)
            q = apply_action_rope(q.view(b, f, npf, self.heads, -1).transpose(1, 2), cos, sin)  # [B, N, F, H, D]
            q = q.transpose(1, 2).reshape(b, f * npf, self.heads, -1).transpose(1, 2)          # [B, H, F*N, D]
            k = apply_action_rope(k, cos, sin).transpose(1, 2)                        # [B, H, F, D]
            v = v.transpose(1, 2)
            if lc is None:
                out = attention(q, k, v, mask=frame_mask.repeat_interleave(npf, dim=0), backend=backend)
            else:
                lc.kk.index_copy_(2, slots, k)
                lc.kv.index_copy_(2, slots, v)
                out = attention(q, lc.kk[:, :, :nv], lc.kv[:, :, :nv], backend=backend)
            hidden = hidden + self.proj_keyboard(out.transpose(1, 2).reshape(b, f * npf, -1))
        return hidden


class AttentionBlock(nn.Module):
    """``CausalWanAttentionBlock``: modulated self-attn, cross-attn after affine ``norm3``,
    optional action module, modulated tanh-GELU FFN."""

    def __init__(self, cfg: ModelConfig, index: int, ops, device=None, dtype=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        dim, eps = cfg.dim, cfg.eps
        self.eps = eps
        self.self_attn = SelfAttention(dim, cfg.num_heads, eps, ops, **kw)
        self.norm3 = ops.LayerNorm(dim, eps=eps, elementwise_affine=True, **kw)
        self.cross_attn = CrossAttention(dim, cfg.num_heads, eps, ops, **kw)
        ac = cfg.action_config
        self.action_model = ActionModule(cfg, ops, **kw) if ac is not None and index in ac.blocks else None
        self.ffn = nn.Sequential(ops.Linear(dim, cfg.ffn_dim, **kw), nn.GELU(approximate="tanh"),
                                 ops.Linear(cfg.ffn_dim, dim, **kw))
        self.modulation = nn.Parameter(torch.empty(1, 6, dim, **kw))

    def forward(self, x, e0, rope, grid, lc, slots, nv, action_start, mouse, keyboard, ctx_kv, masks, backend):
        b = x.shape[0]
        f, npf = grid[0], grid[1] * grid[2]
        m = (self.modulation.to(e0.dtype).unsqueeze(1) + e0).chunk(6, dim=2)        # each [B, F, 1, C]

        def mod(t, shift, scale):
            return (_layer_norm(t, self.eps).unflatten(1, (f, npf)) * (1 + scale) + shift).flatten(1, 2)

        y = self.self_attn(mod(x, m[0], m[1]), rope, grid, lc, slots, nv, masks["self"], backend)
        x = x + (y.unflatten(1, (f, npf)) * m[2]).flatten(1, 2)
        x = x + self.cross_attn(self.norm3(x), ctx_kv[0], ctx_kv[1], backend)
        if self.action_model is not None:
            x = self.action_model(x, grid, mouse, keyboard, action_start, lc, slots, nv, masks["frame"], backend,
                                  masks["arope"])
        y = self.ffn(mod(x, m[3], m[4]))
        return x + (y.unflatten(1, (f, npf)) * m[5]).flatten(1, 2)


class Head(nn.Module):
    """``CausalHead``: LayerNorm (no affine) modulated by ``head.modulation + e`` (time_embedding
    output, not ``e0``), Linear dim -> prod(patch)*out_dim."""

    def __init__(self, dim, out_dim, patch_size, eps, ops, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.head = ops.Linear(dim, math.prod(patch_size) * out_dim, device=device, dtype=dtype)
        self.modulation = nn.Parameter(torch.empty(1, 2, dim, device=device, dtype=dtype))

    def forward(self, x, e, f, npf):
        m = (self.modulation.to(e.dtype).unsqueeze(1) + e.unsqueeze(2)).chunk(2, dim=2)  # [B, F, 1, C]
        return self.head(_layer_norm(x, self.eps).unflatten(1, (f, npf)) * (1 + m[1]) + m[0])


class MLPProj(nn.Module):
    """``img_emb``: LayerNorm(1280) -> Linear -> GELU (exact) -> Linear(1280, dim) -> LayerNorm(dim)."""

    def __init__(self, in_dim, out_dim, ops, device=None, dtype=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.proj = nn.Sequential(ops.LayerNorm(in_dim, **kw), ops.Linear(in_dim, in_dim, **kw), nn.GELU(),
                                  ops.Linear(in_dim, out_dim, **kw), ops.LayerNorm(out_dim, **kw))

    def forward(self, x):
        return self.proj(x)
