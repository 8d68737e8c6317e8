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

This file holds the model and its cached block step; the layers (norms, attention, the action
module, the transformer block) are in :mod:`.model_layers` and importable from here as before.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn as nn

from .attention import resolve_backend
from .caches import FrameRing, LayerCache, ModelCache
from .config import ModelConfig
from .errors import MatrixGameError
from .rope import action_rope_cos_sin, main_rope_cos_sin
from .model_layers import (ActionModule, AttentionBlock, CrossAttention, Head, MLPProj, SelfAttention,  # noqa: F401
                           WanRMSNorm, WeightlessRMSNorm, _layer_norm, _ops, _Projections, action_window,
                           sinusoidal_embedding_1d)

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
