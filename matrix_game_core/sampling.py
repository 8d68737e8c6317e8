"""Few-step flow-matching sampling with KV caches: the scheduler and the :class:`WorldSession`.

Source: ``Matrix-Game-2/pipeline/causal_inference.py`` (``CausalInferencePipeline.inference``),
``utils/scheduler.py`` (``FlowMatchScheduler``), ``utils/wan_wrapper.py`` (flow -> x0), reference
§4. Per block of 3 latent frames::

    x = noise
    for each warped timestep t_s (3 steps; templerun 4):
        v  = DiT(x, t_s)                                   # flow prediction
        x0 = x - sigma(t_s) * v                            # float64 math, nearest-table sigma
        if not last: x = (1 - sigma_next) x0 + sigma_next * fresh_noise   # re-noise (not an Euler step)
    DiT(x0, t = 0)                                         # context pass: caches now hold clean K/V
    frames = streaming VAE decode(x0)                      # 9 video frames for block 0, then 12

This is a DMD / Self-Forcing student sampler, not an ODE solver: every step predicts x0 and
re-noises it with fresh Gaussian noise to the next (lower) noise level.

Action guidance (this pack's, off for official models): with ``w != 1`` each step's flow is
``v(no actions) + w (v(actions) - v(no actions))`` (two DiT passes; the context pass stays one),
optionally with its own scale for the pitch (:mod:`.guidance`).
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence

import torch

from .config import TIMESTEP_SHIFT, ModelConfig
from .errors import MatrixGameError, MatrixGameInterrupted
from .guidance import check_hold, check_rescale, check_scale, guided_flow, hold_references
from .noise import BlockNoise, NoiseSource, ReplayNoise, SeededNoise  # noqa: F401 (re-exported)
from .model import action_window


class FlowMatchScheduler:
    """``FlowMatchScheduler(shift=5.0, sigma_min=0.0, extra_one_step=True)`` with
    ``set_timesteps(1000, training=True)``: the 1000-entry float32 tables (``utils/scheduler.py``).

    ``sigmas[k] = shift*s / (1 + (shift-1)*s)`` with ``s = linspace(1, 0, 1001)[:-1]``;
    ``timesteps = 1000 * sigmas``.
    """

    def __init__(self, shift: float = TIMESTEP_SHIFT, num_train_timesteps: int = 1000,
                 sigma_min: float = 0.0, sigma_max: float = 1.0):
        self.shift = shift
        self.num_train_timesteps = num_train_timesteps
        sigma_start = sigma_min + (sigma_max - sigma_min) * 1.0
        s = torch.linspace(sigma_start, sigma_min, num_train_timesteps + 1)[:-1]
        self.sigmas = shift * s / (1 + (shift - 1) * s)                      # float32 [1000]
        self.timesteps = self.sigmas * num_train_timesteps                     # float32 [1000]

    def warp(self, denoising_step_list: Sequence[int]) -> torch.Tensor:
        """Warped timesteps ``cat(timesteps, [0])[1000 - list]`` (``warp_denoising_step: true``).

        Returns:
            float32 ``[len(list)]``, e.g. ``[1000, 908.8427, 713.9794]`` for ``[1000, 666, 333]``.
        """
        table = torch.cat([self.timesteps, torch.tensor([0.0], dtype=torch.float32)])
        idx = torch.tensor([self.num_train_timesteps - int(s) for s in denoising_step_list], dtype=torch.long)
        return table[idx]

    def sigma(self, t: float) -> torch.Tensor:
        """Sigma of the table entry nearest to timestep ``t`` (argmin |timesteps - t|), float32 0-d."""
        i = torch.argmin((self.timesteps.double() - float(t)).abs())
        return self.sigmas[i]


def denoise_block(model, x: torch.Tensor, timesteps: torch.Tensor, sigmas: Sequence[torch.Tensor],
                  renoise: Callable[[], torch.Tensor], cond_concat: torch.Tensor, visual_context: torch.Tensor,
                  keyboard: torch.Tensor, mouse: Optional[torch.Tensor], start_frame: int, cache,
                  interrupt: Optional[Callable[[], None]] = None, exit_step: Optional[int] = None) -> torch.Tensor:
    """The few-step sampler of one block (module docstring): predict x0, re-noise, repeat.

    The inference loop of :class:`WorldSession` and the Self-Forcing rollout of the distillation
    stage (:mod:`matrix_game_core.train.distill`) are this one function.

    Args:
        x: ``[B, 16, F, h, w]`` the block's initial noise; timesteps ``[S]`` warped float32;
            sigmas: the ``S`` matching sigmas; renoise: fresh noise of x's shape, called once per
            non-final step; cond_concat ``[B, 20, F, h, w]``; keyboard/mouse: all action rows so far;
            cache: the session's :class:`~matrix_game_core.caches.ModelCache`.
        exit_step: stop after step ``exit_step`` (0-based) and return its x0; the steps before it
            run under ``torch.no_grad()`` and the exit step under the caller's grad mode (Self-Forcing,
            arXiv 2506.08009 Algorithm 1: gradient through the block's last denoising step only).
            None: all steps, under the caller's grad mode.
    Returns:
        ``[B, 16, F, h, w]`` x0 of the last step run (model dtype).
    """
    n_steps = len(timesteps) if exit_step is None else exit_step + 1
    ones = torch.ones(x.shape[0], x.shape[2], device=x.device, dtype=torch.float32)
    x0 = x
    for s in range(n_steps):
        if interrupt is not None:
            interrupt()
        grad = torch.is_grad_enabled() and (exit_step is None or s == n_steps - 1)
        with torch.set_grad_enabled(grad):
            flow = model(x, ones * timesteps[s], cond_concat, visual_context, keyboard, mouse, start_frame, cache)
            x0 = (x.double() - sigmas[s].double().to(x.device) * flow.double()).to(flow.dtype)
        if s < n_steps - 1:
            sig = sigmas[s + 1].to(x.device)
            x = ((1 - sig) * x0 + sig * renoise()).to(x.dtype)
    return x0


@dataclass
class Conditioning:
    """The start image's conditioning (``MATRIX_GAME_CONDITIONING``).

    Attributes:
        cond_concat: ``[B, 20, N, h, w]`` = mask (4 channels, 1 at latent 0) + normalized VAE latents
            of the image followed by mid-grey frames (reference §4.3), N latent frames encoded.
        visual_context: ``[B, 257, 1280]`` CLIP ViT-H/14 penultimate features of the image.
    """

    cond_concat: torch.Tensor
    visual_context: torch.Tensor

    @property
    def num_latent_frames(self) -> int:
        return int(self.cond_concat.shape[2])

    def frames(self, start: int, n: int) -> torch.Tensor:
        """``cond_concat[:, :, start:start+n]``; frames past the encoded length repeat the last
        encoded frame (the causal encoder's latent of a long run of grey frames is stationary), so
        an open-ended session needs no re-encoding."""
        N = self.num_latent_frames
        if start + n <= N:
            return self.cond_concat[:, :, start:start + n]
        idx = torch.arange(start, start + n).clamp_max(N - 1).to(self.cond_concat.device)
        return self.cond_concat.index_select(2, idx)

    def to(self, device=None, dtype=None) -> "Conditioning":
        return Conditioning(self.cond_concat.to(device=device, dtype=dtype),
                            self.visual_context.to(device=device, dtype=dtype))


@dataclass
class BlockResult:
    """One generated block.

    Attributes:
        block: block index; start_frame: its first absolute latent frame.
        latents: ``[B, 16, 3, h, w]`` normalized latents (the block's x0).
        frames: ``[B, 3, T, H, W]`` decoded video in [-1, 1] (T = 9 for block 0, 12 after) or None.
        timings: seconds for ``denoise``, ``context``, ``decode`` (a :class:`StageTimings`: on
            CUDA read from events recorded in the stream, so only reading it waits for the GPU).
    """

    block: int
    start_frame: int
    latents: torch.Tensor
    frames: Optional[torch.Tensor]
    timings: Mapping = field(default_factory=dict)


class StageTimings(Mapping):
    """Seconds per stage of one block, resolved on first read.

    On CUDA the marks are ``torch.cuda.Event`` s recorded in the stream: recording never waits for
    the GPU (the block loop has no host syncs); reading a value waits for the block's last event.
    On the CPU the marks are ``time.perf_counter()`` values.
    """

    def __init__(self, device: torch.device):
        self._cuda = device.type == "cuda"
        self._marks = [("start", self._now())]
        self._resolved: Optional[Dict[str, float]] = None

    def _now(self):
        if self._cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def mark(self, stage: str) -> None:
        """End of ``stage`` (and start of the next)."""
        self._marks.append((stage, self._now()))

    def _values(self) -> Dict[str, float]:
        if self._resolved is None:
            if self._cuda:
                self._marks[-1][1].synchronize()
            self._resolved = {name: (a.elapsed_time(b) / 1e3 if self._cuda else b - a)
                              for (_, a), (name, b) in zip(self._marks, self._marks[1:])}
        return self._resolved

    def __getitem__(self, k):
        return self._values()[k]

    def __iter__(self):
        return iter(self._values())

    def __len__(self):
        return len(self._values())


def check_step_actions(keyboard, mouse, has_mouse: bool, mode: str) -> None:
    """The track JSON loader's rules for the actions passed to :meth:`WorldSession.step` (any
    layout): keyboard values 0 or 1; mouse finite and within +-``MOUSE_LIMIT``; no mouse for a
    keyboard-only mode (templerun). Row counts are checked by the session.

    Raises:
        MatrixGameError: the first bad value and how to fix it.
    """
    from .action_track import MOUSE_LIMIT

    def as_float(x, name):
        try:
            return torch.as_tensor(x).detach().float()
        except (TypeError, ValueError, RuntimeError, OverflowError) as e:
            raise MatrixGameError(f"{name} actions must be numbers (rows of 0/1 keys, (pitch, yaw) mouse): {e}") from None

    kb = as_float(keyboard, "keyboard")
    bad = ~((kb == 0) | (kb == 1))
    if bad.any():
        raise MatrixGameError(f"keyboard values must be 0 (up) or 1 (held); got {kb[bad][0].item():g}.")
    if mouse is None:
        if has_mouse:
            raise MatrixGameError(f"mode {mode!r} needs mouse rows (pitch, yaw) for every block; pass mouse=[0, 0] "
                                  f"for no camera motion.")
        return
    if not has_mouse:
        raise MatrixGameError(f"mode {mode!r} has no mouse input; pass mouse=None.")
    ms = as_float(mouse, "mouse")
    bad = ~torch.isfinite(ms) | (ms.abs() > MOUSE_LIMIT)
    if bad.any():
        raise MatrixGameError(f"mouse values must be finite and within +-{MOUSE_LIMIT:g} per frame (0.1 = one camera "
                              f"step); got {ms[bad][0].item():g}.")


def check_finite_latents(x0: torch.Tensor, block: int) -> None:
    """Stop a run whose latents are NaN/inf (damaged weights or an overflowing dtype) instead of
    decoding garbage. Reads one flag from the device (a sync), once per block.

    Raises:
        MatrixGameError: naming the block.
    """
    if not bool(torch.isfinite(x0).all()):
        raise MatrixGameError(f"block {block}: the model produced non-finite latents (NaN/inf); its weights are "
                              f"damaged or the dtype overflows. Re-download the checkpoint, or try --dtype bf16 / fp32.")


class WorldSession:
    """A running world: owns the KV caches, the absolute frame counter, the noise source, the
    action history and the streaming VAE-decoder cache. Nothing else keeps generation state.

    Usage::

        s = WorldSession(model, conditioning, decoder=StreamingDecoder(vae), seed=0)
        for b in range(n_blocks):
            r = s.step(keyboard_rows, mouse_rows)    # 9 rows for block 0, 12 after
        track = s.recorded_keyboard, s.recorded_mouse

    Args:
        model: :class:`~matrix_game_core.model.CausalWanModel`.
        conditioning: :class:`Conditioning` (moved to the model's device/dtype).
        decoder: a :class:`~matrix_game_core.vae.StreamingDecoder` or None (latents only).
        seed: seed of the default :class:`SeededNoise`; ``noise`` overrides it.
        local_attn_size / sink_size: override the model's window / attention sink (latent frames).
        denoising_step_list: override the config's list (e.g. ``[1000, 750, 500, 250]``).
        interrupt: called between denoising steps; raise (e.g. :class:`MatrixGameInterrupted`) to stop.
            A stopped block can simply be stepped again: its cache slots are overwritten and it
            reuses the noise already drawn for it.
        action_guidance: classifier-free guidance scale on the actions (:attr:`.ModelConfig.action_guidance`);
            None = the model config's (1 = off, official). Above 1 a denoising step is two DiT passes.
        pitch_guidance: the guidance scale of the mouse pitch channel (:attr:`.ModelConfig.pitch_guidance`,
            :func:`.guidance.guided_flow`); None = the model config's, which None makes equal to
            ``action_guidance``. Different from it, a denoising step is one DiT pass more.
        keyboard_guidance: the same for the keys (:attr:`.ModelConfig.keyboard_guidance`).
        guidance_steps: guide only the first this many denoising steps of each block
            (:attr:`.ModelConfig.guidance_steps`); None = the model config's (None there: all).
        guidance_rescale: guidance rescale ``phi`` in [0, 1] (:attr:`.ModelConfig.guidance_rescale`,
            :func:`.guidance.rescale_flow`); None = the model config's.
        guidance_hold: guidance hold ``h`` in [0, 1], the share of the actions of before a block
            held in its guidance reference (:attr:`.ModelConfig.guidance_hold`, :mod:`.guidance`);
            None = the model config's.
        compile: run the block step (and the decoder's steady state) through :func:`torch.compile`
            (:mod:`.compile`; CUDA-graph replay on CUDA); None = on for CUDA, off on the CPU; a
            string names the dynamo backend (``"aot_eager"`` in tests), True = ``"inductor"``.

    The block loop is free of host syncs: the action rows enter as a fixed 20-row window, RoPE
    tables, timesteps and sigmas live on the device, the next block's noise is drawn (in the same
    order from the same CPU generator: same seed = same video on every device) while the device
    still works on the current one, and the stage timings are CUDA events read only on demand.
    """

    def __init__(self, model, conditioning: Conditioning, decoder=None, seed: int = 0,
                 noise: Optional[NoiseSource] = None, local_attn_size: Optional[int] = None,
                 sink_size: Optional[int] = None, denoising_step_list: Optional[Sequence[int]] = None,
                 interrupt: Optional[Callable[[], None]] = None, compile: Optional[bool] = None,
                 action_guidance: Optional[float] = None, pitch_guidance: Optional[float] = None,
                 keyboard_guidance: Optional[float] = None, guidance_steps: Optional[int] = None,
                 guidance_rescale: Optional[float] = None, guidance_hold: Optional[float] = None):
        self.model = model
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.cfg: ModelConfig = model.cfg
        cc = conditioning.cond_concat
        if cc.dim() != 5 or cc.shape[1] != self.cfg.in_dim - self.cfg.out_dim:
            raise MatrixGameError(f"conditioning has shape {tuple(cc.shape)}; expected [B, "
                                  f"{self.cfg.in_dim - self.cfg.out_dim}, N, h, w] (encode the start image first).")
        self.cond = conditioning.to(self.device, self.dtype)
        self.batch, _, _, self.h, self.w = cc.shape
        ph, pw = self.cfg.patch_size[1:]
        if self.h % ph or self.w % pw:
            raise MatrixGameError(f"latent grid {self.h}x{self.w} is not divisible by the patch size {ph}x{pw}.")
        self.cache = model.new_cache(self.batch, (self.h // ph) * (self.w // pw), self.device, self.dtype,
                                     local_attn_size, sink_size)
        self.scheduler = FlowMatchScheduler(self.cfg.timestep_shift)
        steps = list(denoising_step_list or self.cfg.denoising_step_list)
        if not steps or any(not 0 < int(s) <= 1000 for s in steps):
            raise MatrixGameError(f"denoising_step_list {steps} must hold timesteps in (0, 1000].")
        self.timesteps = self.scheduler.warp(steps)
        self.sigmas = [self.scheduler.sigma(float(t)) for t in self.timesteps]
        # made once on the device: [B, nb] float32 timesteps per step (+ the context pass), the
        # float64 sigma of the x0 conversion and the float32 sigma of the re-noise
        nb, dev = self.cfg.num_frame_per_block, self.device
        ones = torch.ones(self.batch, nb, device=dev, dtype=torch.float32)
        self._t = [ones * t.to(dev) for t in self.timesteps]
        self._t_context = ones * float(self.cfg.context_noise)
        self._sigma64 = [sg.double().to(dev) for sg in self.sigmas]
        self._sigma32 = [sg.to(dev) for sg in self.sigmas]
        self._block_noise: Dict[int, BlockNoise] = {}
        self.action_guidance = action_guidance
        self._own: Dict[str, Optional[float]] = {}
        self.pitch_guidance = pitch_guidance
        self.keyboard_guidance = keyboard_guidance
        self.guidance_steps = guidance_steps
        self.guidance_rescale = guidance_rescale
        self.guidance_hold = guidance_hold
        self.noise = noise if noise is not None else SeededNoise(seed)
        self.decoder = decoder
        if decoder is not None:
            decoder.reset()
        self.interrupt = interrupt
        self.block = 0
        self.compiled = self.device.type == "cuda" if compile is None else bool(compile)
        self._step_fn = None
        if self.compiled:
            from .compile import compiled_block_step, mark_cache_static
            model.set_context(self.cache, self.cond.visual_context)
            mark_cache_static(self.cache)
            self._step_fn = compiled_block_step(model, backend=compile if isinstance(compile, str) else "inductor")
            if decoder is not None:
                decoder.compile = compile if isinstance(compile, str) else True
        K = self.cfg.keyboard_dim
        self.keyboard_rows = torch.zeros(self.batch, 0, K, device=self.device, dtype=self.dtype)
        self.mouse_rows = (torch.zeros(self.batch, 0, 2, device=self.device, dtype=self.dtype)
                           if self.cfg.has_mouse else None)

    # ------------------------------------------------------------------ properties
    @property
    def noise(self) -> NoiseSource:
        """The noise source; replacing it drops noise already drawn for coming blocks."""
        return self._noise

    @noise.setter
    def noise(self, source: NoiseSource) -> None:
        self._noise = source
        self._block_noise.clear()

    @property
    def action_guidance(self) -> float:
        """Classifier-free guidance scale on the actions (1 = off); may change between blocks."""
        return self._guidance

    @action_guidance.setter
    def action_guidance(self, w: Optional[float]) -> None:
        own = float(getattr(self.cfg, "action_guidance", 1.0))
        self._guidance = check_scale("action guidance", own if w is None else w, f"{own:g}")

    @property
    def guidance_steps(self) -> Optional[int]:
        """How many leading denoising steps of a block are guided (None: all); may change between blocks."""
        return self._guidance_steps

    @guidance_steps.setter
    def guidance_steps(self, n: Optional[int]) -> None:
        if n is None:
            n = getattr(self.cfg, "guidance_steps", None)
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, float)) or int(n) != n or n < 0):
            raise MatrixGameError(f"guidance steps must be a whole number >= 0 (0 = no guidance, None = every "
                                  f"step); got {n!r}.")
        self._guidance_steps = None if n is None else int(n)

    @property
    def guidance_rescale(self) -> float:
        """Guidance rescale ``phi`` (0 = off); may change between blocks."""
        return self._rescale

    @guidance_rescale.setter
    def guidance_rescale(self, phi: Optional[float]) -> None:
        self._rescale = self._checked_own("guidance_rescale", phi, check_rescale)

    def _checked_own(self, key: str, value: Optional[float], check) -> float:
        """``value`` (None: the model config's ``key``, 0 when unset) through ``check(value, own)``."""
        own = float(getattr(self.cfg, key, 0.0) or 0.0)
        return check(own if value is None else value, f"{own:g}")

    @property
    def guidance_hold(self) -> float:
        """Guidance hold ``h`` (0 = classic guidance, against no actions); may change between blocks."""
        return self._hold

    @guidance_hold.setter
    def guidance_hold(self, h: Optional[float]) -> None:
        self._hold = self._checked_own("guidance_hold", h, check_hold)

    @property
    def pitch_guidance(self) -> float:
        """Guidance scale of the mouse pitch (look up/down); equals :attr:`action_guidance` unless
        set apart (by the model config or here); may change between blocks."""
        return self._guidance if self._own["pitch"] is None else self._own["pitch"]

    @pitch_guidance.setter
    def pitch_guidance(self, w: Optional[float]) -> None:
        self._set_own("pitch", w)

    @property
    def keyboard_guidance(self) -> float:
        """Guidance scale of the keys; equals :attr:`action_guidance` unless set apart."""
        return self._guidance if self._own["keyboard"] is None else self._own["keyboard"]

    @keyboard_guidance.setter
    def keyboard_guidance(self, w: Optional[float]) -> None:
        self._set_own("keyboard", w)

    def _set_own(self, part: str, w: Optional[float]) -> None:
        own = getattr(self.cfg, f"{part}_guidance", None)
        w = own if w is None else w
        if w is not None:
            w = check_scale(f"{part} guidance", w, "the action guidance" if own is None else f"{float(own):g}")
            if part == "pitch" and not self.cfg.has_mouse:
                raise MatrixGameError("pitch guidance needs a model with mouse input; this model has none "
                                      "(leave it unset).")
        self._own[part] = w

    @property
    def start_frame(self) -> int:
        """Absolute latent frame the next block starts at."""
        return self.block * self.cfg.num_frame_per_block

    def rows_for_block(self, block: int) -> int:
        """Raw action rows a block adds: ``1 + 4*(nb-1)`` for block 0 (9), ``4*nb`` after (12)."""
        nb = self.cfg.num_frame_per_block
        return 1 + 4 * (nb - 1) if block == 0 else 4 * nb

    # ------------------------------------------------------------------ stepping
    def _append_actions(self, keyboard, mouse):
        need = self.rows_for_block(self.block)
        kb = self._rows(keyboard, need, self.cfg.keyboard_dim, "keyboard")
        self.keyboard_rows = torch.cat([self.keyboard_rows, kb], dim=1)
        if self.cfg.has_mouse:
            if mouse is None:
                raise MatrixGameError(f"mode {self.cfg.mode!r} needs mouse rows [B, {need}, 2] for every block.")
            self.mouse_rows = torch.cat([self.mouse_rows, self._rows(mouse, need, 2, "mouse")], dim=1)

    def _rows(self, rows, need, width, name):
        rows = torch.as_tensor(rows, dtype=self.dtype, device=self.device)
        if rows.dim() == 2:
            rows = rows.unsqueeze(0).expand(self.batch, -1, -1)
        if rows.dim() == 1:  # one action held for the whole block
            rows = rows.view(1, 1, -1).expand(self.batch, need, -1)
        if rows.shape[1:] != (need, width):
            raise MatrixGameError(f"{name} rows for block {self.block} have shape {tuple(rows.shape)}; "
                                  f"expected [B, {need}, {width}] (9 video frames for block 0, 12 after).")
        return rows

    def step(self, keyboard, mouse=None, decode: bool = True) -> BlockResult:
        """Generate the next block.

        Args:
            keyboard: ``[B, R, K]`` / ``[R, K]`` raw rows for the block's new video frames, or ``[K]``
                (one action held for the block); R = 9 for block 0, 12 after. Multi-hot {0, 1}.
            mouse: same for the mouse ``(pitch, yaw)`` in official units (0.1 = one camera step);
                None for templerun.
            decode: run the streaming VAE decoder (if one was given).
        Returns:
            :class:`BlockResult` (latents ``[B,16,3,h,w]``, frames ``[B,3,T,H,W]`` in [-1,1]).
        Raises:
            MatrixGameError: wrong action shapes, keyboard values other than 0/1, NaN/inf or too large
                mouse values, a mouse for templerun (:func:`check_step_actions`); non-finite latents
                (:func:`check_finite_latents`); whatever ``interrupt`` raises.
        """
        check_step_actions(keyboard, mouse, self.cfg.has_mouse, self.cfg.mode)
        n_rows_before = self.keyboard_rows.shape[1]
        self._append_actions(keyboard, mouse)
        try:
            res = self._run_block(decode)
        except BaseException:
            # keep the session consistent: the block can be stepped again
            self.keyboard_rows = self.keyboard_rows[:, :n_rows_before]
            if self.mouse_rows is not None:
                self.mouse_rows = self.mouse_rows[:, :n_rows_before]
            raise
        check_finite_latents(res.latents, res.block)
        return res

    def _noise_for(self, block: int) -> BlockNoise:
        """The block's noise bundle, drawn now unless it was drawn ahead."""
        nz = self._block_noise.get(block)
        if nz is None:
            shape = (self.batch, self.cfg.out_dim, self.cfg.num_frame_per_block, self.h, self.w)
            nz = self._noise.block(block, shape, len(self._t) - 1, self.device, self.dtype)
            self._block_noise[block] = nz
        return nz

    def _action_windows(self, start: int):
        """The block's fixed 20-row action windows (:func:`~.model.action_window`)."""
        ac = self.cfg.action_config
        args = (start, self.cfg.num_frame_per_block) + ((ac.vae_time_compression_ratio, ac.windows_size) if ac else ())
        ms = None if self.mouse_rows is None else action_window(self.mouse_rows, *args)
        return action_window(self.keyboard_rows, *args), ms

    @torch.no_grad()
    def _run_block(self, decode: bool) -> BlockResult:
        nb = self.cfg.num_frame_per_block
        start = self.start_frame
        b = self.block
        cc = self.cond.frames(start, nb)
        if self._step_fn is not None:   # canonical strides for the compiled graph's guards
            cc = cc.clone(memory_format=torch.contiguous_format)
        kb, ms = self._action_windows(start)
        refs = hold_references(kb, ms, self._hold, self.cfg.action_config, start == 0)
        vc = self.cond.visual_context
        timings = StageTimings(self.device)
        plan = self.model.plan_block(self.cache, start, nb, (self.h, self.w), self.device)
        noise = self._noise_for(b)
        step_kw = {"plan": plan} if self._step_fn is None else {"plan": plan, "step_fn": self._step_fn}
        x = noise.initial
        n_steps = len(self._t)
        x0 = x
        scales = (self._guidance, self.pitch_guidance, self.keyboard_guidance)
        gs = self.guidance_steps
        for s in range(n_steps):
            if self.interrupt is not None:
                self.interrupt()
            flow = guided_flow(lambda k, m: self.model(x, self._t[s], cc, vc, k, m, start, self.cache, **step_kw),
                               kb, ms, *(scales if gs is None or s < gs else (1.0, 1.0, 1.0)),
                               rescale=self._rescale, x=x, sigma=self._sigma64[s], **refs)
            x0 = (x.double() - self._sigma64[s] * flow.double()).to(flow.dtype)
            if s < n_steps - 1:
                sig = self._sigma32[s + 1]
                x = ((1 - sig) * x0 + sig * noise.renoise[s]).to(self.dtype)
        timings.mark("denoise")
        self.model(x0, self._t_context, cc, vc, kb, ms, start, self.cache, **step_kw)
        timings.mark("context")
        if self._noise.draw_ahead:
            self._noise_for(b + 1)  # drawn on the host while the device still runs this block
        frames = None
        if decode and self.decoder is not None:
            frames = self.decoder.decode(x0)
            timings.mark("decode")
        self._block_noise.pop(b, None)
        self.block += 1
        return BlockResult(block=b, start_frame=start, latents=x0, frames=frames, timings=timings)

    def generate(self, keyboard: torch.Tensor, mouse: Optional[torch.Tensor], num_latent_frames: int,
                 callback: Optional[Callable[[BlockResult], None]] = None, decode: bool = True):
        """Offline generation: loop :meth:`step` over a whole action track.

        Args:
            keyboard: ``[B, T, K]`` or ``[T, K]`` rows, ``T >= 1 + 4*(num_latent_frames-1)``.
            mouse: ``[B, T, 2]`` / ``[T, 2]`` or None.
            num_latent_frames: a multiple of 3 (``num_frame_per_block``).
            callback: called with each :class:`BlockResult` (progress, previews, interrupts).
        Returns:
            ``(latents [B,16,N,h,w], frames [B,3,1+4(N-1),H,W] or None)``.
        Raises:
            MatrixGameError: N not a multiple of 3, or the track too short.
        """
        nb = self.cfg.num_frame_per_block
        if num_latent_frames <= 0 or num_latent_frames % nb:
            raise MatrixGameError(f"latent frames must be a positive multiple of {nb} (got {num_latent_frames}); "
                                  f"e.g. {max(nb, num_latent_frames // nb * nb)}.")
        need = 1 + 4 * (num_latent_frames - 1)
        if keyboard.dim() == 2:
            keyboard = keyboard.unsqueeze(0)
        if mouse is not None and mouse.dim() == 2:
            mouse = mouse.unsqueeze(0)
        if keyboard.shape[1] < need:
            raise MatrixGameError(f"the action track has {keyboard.shape[1]} video frames but "
                                  f"{num_latent_frames} latent frames need {need}; lengthen the track or "
                                  f"generate fewer frames.")
        lat, vid = [], []
        for _ in range(num_latent_frames // nb):
            a = self.keyboard_rows.shape[1]
            r = self.rows_for_block(self.block)
            res = self.step(keyboard[:, a:a + r], None if mouse is None else mouse[:, a:a + r], decode=decode)
            lat.append(res.latents)
            if res.frames is not None:
                vid.append(res.frames)
            if callback is not None:
                callback(res)
        return torch.cat(lat, dim=2), (torch.cat(vid, dim=2) if vid else None)
