"""The Matrix-Game 2.0 causal diffusion transformer (``CausalWanModel``) with its action module.

Source: SkyworkAI/Matrix-Game ``Matrix-Game-2/wan/modules/causal_model.py``,
``wan/modules/model.py``, ``wan/modules/action_module.py`` (commit 3ceb3114); facts in
``shared/reference/matrix_game2.md`` §2-§3. What differs from the Wan-2.1 I2V DiT:

* no text branch: the only cross-attention context is the 257 CLIP image tokens through
  ``img_emb`` (MLPProj 1280 -> dim); cross-attention K/V are computed once per session;
* self-attention is causal by blocks of 3 latent frames over a local window of
  ``local_attn_size`` latent frames, with KV caches (:mod:`.caches`), non-causal inside a block;
* an :class:`ActionModule` after cross-attention in blocks ``action_config.blocks`` (0..14 in the
  distilled students): a mouse branch (per-token temporal attention over the window) and a
  keyboard branch (cross-attention to embedded keyboard windows), both with a 1-D action RoPE;
* modulation per latent frame (timestep ``[B, F]``), head modulation from ``time_embedding``.

State-dict keys equal the official ones without the ``model.`` prefix of the checkpoint files
(see :mod:`.checkpoints`). Layers are built from an injectable ``operations`` namespace
(``torch.nn`` by default; ComfyUI passes ``comfy.ops.disable_weight_init``).

The model output is a **flow prediction** ``v = noise - x0`` (``utils/wan_wrapper.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn as nn

from .actions import latent_action_windows
from .attention import attention, resolve_backend
from .caches import FrameRing, LayerCache, ModelCache
from .config import ModelConfig
from .errors import MatrixGameError
from .rope import action_rope_cos_sin, apply_action_rope, apply_main_rope, main_rope_cos_sin

#: Number of CLIP image tokens (class token + 16x16 patches of ViT-H/14 at 224^2).
IMAGE_TOKENS = 257


@dataclass
class BlockPlan:
    """Per-block inputs of the cached block step, on the model's device (no host sync to use them).

    Attributes:
        start_frame: absolute latent frame of the block (host bookkeeping only; the compiled step
            never reads it).
        num_frames: F, latent frames in the block (3).
        rope: main RoPE ``(cos, sin)``, each ``[F*N, head_dim/2]`` float64 (fp32 models) / float32.
        arope: action RoPE ``(cos, sin)``, each ``[F, 64]`` float32, or None without action module.
        slots: long ``[F]``, ring-buffer slots of the frames (:class:`~.caches.FrameRing`).
        valid: leading cache slots attended to (``min(end_frame, window)``; constant once the
            window is full).
    """

    start_frame: int
    num_frames: int
    rope: Tuple[torch.Tensor, torch.Tensor]
    arope: Optional[Tuple[torch.Tensor, torch.Tensor]]
    slots: torch.Tensor
    valid: int


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


class CausalWanModel(nn.Module):
    """The causal DiT. See the module docstring for what differs from Wan-2.1.

    Args:
        cfg: :class:`~matrix_game_core.config.ModelConfig` (official ``config.json`` fields).
        operations: layer namespace (``Linear``, ``Conv3d``, ``LayerNorm``); default ``torch.nn``.
        device, dtype: where/in what to allocate parameters (``"meta"`` for structure checks).
        attention_backend: ``"auto"`` | ``"sdpa"`` | ``"flash_attn"`` (:mod:`.attention`).
    """

    def __init__(self, cfg: ModelConfig, operations=None, device=None, dtype=None, attention_backend="sdpa"):
        super().__init__()
        if cfg.model_type != "i2v":
            raise MatrixGameError(f"model_type {cfg.model_type!r} is not supported; Matrix-Game 2.0 is 'i2v'.")
        if cfg.dim % cfg.num_heads or (cfg.dim // cfg.num_heads) % 2:
            raise MatrixGameError(f"dim {cfg.dim} must split into {cfg.num_heads} heads of even size.")
        ops = _ops(operations)
        kw = dict(device=device, dtype=dtype)
        self.cfg = cfg
        self.backend = resolve_backend(attention_backend)
        self.patch_embedding = ops.Conv3d(cfg.in_dim, cfg.dim, kernel_size=tuple(cfg.patch_size),
                                          stride=tuple(cfg.patch_size), **kw)
        self.time_embedding = nn.Sequential(ops.Linear(cfg.freq_dim, cfg.dim, **kw), nn.SiLU(),
                                            ops.Linear(cfg.dim, cfg.dim, **kw))
        self.time_projection = nn.Sequential(nn.SiLU(), ops.Linear(cfg.dim, 6 * cfg.dim, **kw))
        self.blocks = nn.ModuleList([AttentionBlock(cfg, i, ops, **kw) for i in range(cfg.num_layers)])
        self.head = Head(cfg.dim, cfg.out_dim, cfg.patch_size, cfg.eps, ops, **kw)
        self.img_emb = MLPProj(cfg.img_dim, cfg.dim, ops, **kw)
        if device is None or str(device) != "meta":
            with torch.no_grad():  # the official init (random modulation); checkpoints overwrite it
                for mod in [b.modulation for b in self.blocks] + [self.head.modulation]:
                    mod.copy_(torch.randn(mod.shape) / cfg.dim ** 0.5)

    # ------------------------------------------------------------------ caches
    @property
    def window_frames(self) -> int:
        """Local attention window in latent frames (``local_attn_size``; 15 for -1, as official)."""
        return 15 if self.cfg.local_attn_size == -1 else self.cfg.local_attn_size

    def new_cache(self, batch: int, tokens_per_frame: int, device=None, dtype=None,
                  local_attn_size: Optional[int] = None, sink_size: Optional[int] = None) -> ModelCache:
        """Allocate the KV caches of one session (zeros; bytes = :meth:`ModelCache.nbytes`).

        Args:
            batch: B; tokens_per_frame: ``(H/16)*(W/16)`` of the latent grid (880 at 352x640).
            local_attn_size / sink_size: override the config's window / sink (latent frames).
        """
        p = next(self.parameters())
        device = device or p.device
        dtype = dtype or p.dtype
        L = self.window_frames if local_attn_size is None else local_attn_size
        ring = FrameRing(L, self.cfg.sink_size if sink_size is None else sink_size)
        cfg = self.cfg
        n, d = cfg.num_heads, cfg.head_dim
        layers = []
        for blk in self.blocks:
            lc = LayerCache(k=torch.zeros(batch, n, L, tokens_per_frame, d, device=device, dtype=dtype),
                            v=torch.zeros(batch, n, L, tokens_per_frame, d, device=device, dtype=dtype))
            am = blk.action_model
            if am is not None:
                ah, ad = cfg.action_config.heads_num, cfg.action_config.head_dim
                if cfg.action_config.enable_mouse:
                    lc.mk = torch.zeros(batch * tokens_per_frame, ah, L, ad, device=device, dtype=dtype)
                    lc.mv = torch.zeros_like(lc.mk)
                if cfg.action_config.enable_keyboard:
                    lc.kk = torch.zeros(batch, ah, L, ad, device=device, dtype=dtype)
                    lc.kv = torch.zeros_like(lc.kk)
            layers.append(lc)
        return ModelCache(ring=ring, layers=layers, tokens_per_frame=tokens_per_frame)

    def set_context(self, cache: ModelCache, visual_context: torch.Tensor) -> None:
        """Compute the cross-attention K/V of the image tokens once per session.

        Args:
            visual_context: ``[B, 257, 1280]`` CLIP penultimate features (float, any dtype).
        """
        ctx = self.img_emb(visual_context.to(self.patch_embedding.weight.dtype))
        for blk, lc in zip(self.blocks, cache.layers):
            lc.ck, lc.cv = blk.cross_attn.context_kv(ctx)
        cache.context_ready = True

    # ------------------------------------------------------------------ forward
    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype activations run in (= the non-quantized parameters' dtype; fp8-stored Linear
        weights are cast to it on use, see :mod:`.ops`)."""
        return self.patch_embedding.weight.dtype

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, cond_concat: torch.Tensor,
                visual_context: Optional[torch.Tensor] = None, keyboard: Optional[torch.Tensor] = None,
                mouse: Optional[torch.Tensor] = None, start_frame: int = 0,
                cache: Optional[ModelCache] = None, plan: Optional["BlockPlan"] = None,
                step_fn: Optional[Callable] = None) -> torch.Tensor:
        """Flow prediction for latent frames ``start_frame .. start_frame+F-1``.

        Args:
            x: ``[B, 16, F, h, w]`` noisy normalized latents (h, w = 44, 80 at 352x640).
            timestep: ``[B, F]`` float timesteps in [0, 1000] (the warped values, e.g. 908.84).
            cond_concat: ``[B, 20, F, h, w]`` = [mask 4, image latents 16] for these frames.
            visual_context: ``[B, 257, 1280]`` image tokens; needed unless ``cache`` already holds them.
            keyboard: ``[B, T, K]`` raw per-video-frame keyboard rows (``T >= 4*(start_frame+F-1)``),
                or, with ``plan``, the block's fixed window ``[B, 4*(3+F-1), K]`` of
                :func:`~matrix_game_core.actions.action_window`.
            mouse: ``[B, T, 2]`` raw mouse rows (pitch, yaw) or None (templerun); windowed like
                ``keyboard`` when ``plan`` is given.
            start_frame: absolute latent index of ``x[:, :, 0]``.
            cache: a :class:`ModelCache` from :meth:`new_cache` for block-wise causal generation
                (then F is one block); None runs the whole sequence at once with the block-causal
                local-window mask (the uncached reference path).
            plan: the block's device-resident RoPE tables and cache slots from :meth:`plan_block`
                (cached path only); then the action rows are the fixed window (static shapes).
            step_fn: replaces :meth:`step_forward` (a compiled version of it, :mod:`.compile`).
        Returns:
            ``[B, 16, F, h, w]`` flow prediction (``noise - x0``), dtype of the parameters.
        Raises:
            MatrixGameError: missing image context or actions, or out-of-order cached calls.
        """
        cfg = self.cfg
        dtype = self.compute_dtype
        b, _, f, hh, ww = x.shape
        if cfg.action_config is not None and keyboard is None and mouse is None:
            raise MatrixGameError("this model needs keyboard (and, except templerun, mouse) actions.")
        if cache is None:
            if visual_context is None:
                raise MatrixGameError("visual_context (image tokens) is required.")
            tokens, grid, e, e0 = self._embed(x, timestep, cond_concat)
            npf = grid[1] * grid[2]
            rope, arope = self._ropes(start_frame, grid, x.device, dtype)
            ctx = self.img_emb(visual_context.to(dtype))
            ctx_kv = [blk.cross_attn.context_kv(ctx) for blk in self.blocks]
            frame_mask = self.block_causal_mask(start_frame, grid[0], x.device)
            masks = {"frame": frame_mask, "arope": arope,
                     "self": frame_mask.repeat_interleave(npf, 0).repeat_interleave(npf, 1)}
            tokens = self._trunk(tokens, e0, rope, grid, [None] * len(self.blocks), None, None, start_frame,
                                 mouse, keyboard, ctx_kv, masks)
            return self._head(tokens, e, timestep, grid)
        if not cache.context_ready:
            if visual_context is None:
                raise MatrixGameError("visual_context (image tokens) is required on the first call.")
            self.set_context(cache, visual_context)
        ph, pw = cfg.patch_size[1:]
        if cache.tokens_per_frame != (hh // ph) * (ww // pw):
            raise MatrixGameError(f"latent grid {hh}x{ww} does not match the session's cache "
                                  f"({cache.tokens_per_frame} tokens per frame).")
        cache.begin_call(start_frame, f)
        if plan is None:      # whole action history: windows gathered at the absolute frame
            plan = self.plan_block(cache, start_frame, f, (hh, ww), x.device)
            action_start = start_frame
        else:                 # the fixed window: the block's frames sit at windows_size in it
            action_start = cfg.action_config.windows_size if cfg.action_config is not None else 0
        out = (step_fn or self.step_forward)(x, timestep, cond_concat, keyboard, mouse, cache.layers, plan.rope,
                                             plan.arope, plan.slots, plan.valid, action_start)
        cache.end_call(start_frame, f)
        return out

    def step_forward(self, x, timestep, cond_concat, keyboard, mouse, layers: List[LayerCache], rope, arope,
                     slots: torch.Tensor, valid: int, action_start: int) -> torch.Tensor:
        """The cached block step as a pure tensor function (the :func:`torch.compile` target).

        No host bookkeeping, no Python state read or written besides the cache tensors it updates
        in place: with the fixed action window (``action_start = windows_size``) every shape is
        the same for every block once ``valid`` reached the window, so a compiled graph (and a
        CUDA graph) is reused for every later block.

        Args:
            x, timestep, cond_concat, keyboard, mouse: as :meth:`forward`.
            layers: ``cache.layers`` (K/V written at ``slots``, cross-attention K/V set).
            rope: main RoPE ``(cos, sin)`` ``[F*N, D/2]``; arope: action RoPE ``(cos, sin)`` ``[F, 64]``.
            slots: long ``[F]`` ring slots of the frames; valid: leading slots attended to (python int).
            action_start: see :meth:`ActionModule.forward`.
        Returns:
            ``[B, 16, F, h, w]`` flow prediction.
        """
        tokens, grid, e, e0 = self._embed(x, timestep, cond_concat)
        masks = {"self": None, "frame": None, "arope": arope}
        ctx_kv = [(lc.ck, lc.cv) for lc in layers]
        tokens = self._trunk(tokens, e0, rope, grid, layers, slots, valid, action_start, mouse, keyboard,
                             ctx_kv, masks)
        return self._head(tokens, e, timestep, grid)

    def _embed(self, x, timestep, cond_concat):
        """Patch + time embeddings: tokens ``[B, F*N, C]``, grid ``(F, h, w)``, ``e [B*F, C]``,
        ``e0 [B, F, 6, C]``."""
        cfg = self.cfg
        dtype = self.compute_dtype
        xin = torch.cat([x, cond_concat.to(x.dtype)], dim=1).to(dtype)
        xin = self.patch_embedding(xin)
        grid = tuple(xin.shape[2:])
        tokens = xin.flatten(2).transpose(1, 2)
        e = self.time_embedding(sinusoidal_embedding_1d(cfg.freq_dim, timestep.flatten()).to(dtype))
        e0 = self.time_projection(e).unflatten(1, (6, cfg.dim)).unflatten(0, timestep.shape)  # [B, F, 6, C]
        return tokens, grid, e, e0

    def _trunk(self, tokens, e0, rope, grid, layers, slots, valid, action_start, mouse, keyboard, ctx_kv, masks):
        for blk, lc, kv in zip(self.blocks, layers, ctx_kv):
            tokens = blk(tokens, e0, rope, grid, lc, slots, valid, action_start, mouse, keyboard, kv, masks,
                         self.backend)
        return tokens

    def _head(self, tokens, e, timestep, grid):
        out = self.head(tokens, e.unflatten(0, timestep.shape), grid[0], grid[1] * grid[2])   # [B, F, N, 64]
        return self.unpatchify(out, grid)

    def plan_block(self, cache: ModelCache, start_frame: int, num_frames: int, latent_hw, device=None) -> "BlockPlan":
        """Device-resident per-block inputs of the cached step, made once per block and shared by
        its denoising steps and context pass: RoPE tables (computed on ``device``), the ring
        slots (a memoised device tensor) and the number of valid slots.

        Args:
            latent_hw: ``(h, w)`` of the latent grid (44, 80 at 352x640).
        """
        device = torch.device(device) if device is not None else self.patch_embedding.weight.device
        ph, pw = self.cfg.patch_size[1:]
        grid = (num_frames, latent_hw[0] // ph, latent_hw[1] // pw)
        rope, arope = self._ropes(start_frame, grid, device, self.compute_dtype)
        return BlockPlan(start_frame=start_frame, num_frames=num_frames, rope=rope, arope=arope,
                         slots=cache.slot_index(start_frame, num_frames, device),
                         valid=cache.ring.valid(start_frame + num_frames))

    def _ropes(self, start_frame, grid, device, dtype):
        """Main and action RoPE tables for a call, memoised for the repeated calls of one block
        (3-4 denoising steps + the context pass share them). The main RoPE runs in float64 for fp32
        models (faithful to the official complex128 math) and in float32 otherwise."""
        key = (start_frame, tuple(grid), str(device), dtype)
        memo = getattr(self, "_rope_memo", None)
        if memo is not None and memo[0] == key:
            return memo[1]
        cfg = self.cfg
        rope_dtype = torch.float64 if dtype == torch.float32 else torch.float32
        rope = main_rope_cos_sin(start_frame, grid[0], grid[1], grid[2], cfg.head_dim, device, rope_dtype)
        arope = None
        if cfg.action_config is not None:
            ac = cfg.action_config
            arope = action_rope_cos_sin(start_frame, grid[0], ac.head_dim, ac.rope_dim_list, ac.rope_theta, device)
        self._rope_memo = (key, (rope, arope))
        return rope, arope

    def block_causal_mask(self, start_frame: int, num_frames: int, device=None) -> torch.Tensor:
        """Frame-level mask ``[F, F]`` (True = attend) of the uncached path: frame i sees frame j
        when j's block is not after i's and j is within i's block's local window (with sink)."""
        nb = self.cfg.num_frame_per_block
        ring = FrameRing(self.window_frames, self.cfg.sink_size)
        m = torch.zeros(num_frames, num_frames, dtype=torch.bool)
        for i in range(num_frames):
            a = start_frame + i
            end = (a // nb + 1) * nb
            for fr in ring.frames_in_window(end):
                j = fr - start_frame
                if 0 <= j < num_frames:
                    m[i, j] = True
        return m.to(device)

    def unpatchify(self, x: torch.Tensor, grid) -> torch.Tensor:
        """``[B, F, h*w, pt*ph*pw*C]`` (feature order pt, ph, pw, c) -> ``[B, C, F*pt, h*ph, w*pw]``."""
        b = x.shape[0]
        c = self.cfg.out_dim
        pt, ph, pw = self.cfg.patch_size
        f, h, w = grid
        x = x.reshape(b, f, h, w, pt, ph, pw, c)
        x = torch.einsum("bfhwpqrc->bcfphqwr", x)
        return x.reshape(b, c, f * pt, h * ph, w * pw)


def build_model(cfg: ModelConfig, device=None, dtype=None, operations=None, attention_backend="sdpa"):
    """Construct :class:`CausalWanModel` (in eval mode, no grad needed)."""
    m = CausalWanModel(cfg, operations=operations, device=device, dtype=dtype,
                       attention_backend=attention_backend)
    return m.eval().requires_grad_(False)
