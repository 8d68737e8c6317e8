"""Action guidance: classifier-free guidance on the action track, with scales of their own for the
mouse pitch and the keys.

This pack's (official configs have none: their distilled models sample without guidance). With
the block's actions ``a`` (keys + mouse) and the condition levels ``0`` (no actions: keys up, mouse
0), ``keys`` (the keys, mouse 0) and ``keys, yaw`` (the mouse pitch, channel 0 of the official
``[T, 2]`` mouse rows, set to 0), each denoising step's flow is nested classifier-free guidance
(InstructPix2Pix, Brooks et al., arXiv 2211.09800, eq. 3; classifier-free guidance: Ho & Salimans,
arXiv 2207.12598)::

    flow = f(0) + w_k (f(keys) - f(0)) + w (f(keys, yaw) - f(keys)) + w_p (f(a) - f(keys, yaw))

``w`` is the action guidance, ``w_p`` the pitch guidance, ``w_k`` the keyboard guidance; unset,
the last two equal ``w`` and the sum is plain guidance on all the actions, ``f(0) + w (f(a) -
f(0))`` (two DiT passes; one with ``w = 1``). Scales of their own exist because a small model can
learn the axes unequally (the embedded ViZDoom model: its data pitches the camera about half as far
as it turns it, and its VAE keeps about a third of the vertical motion, so a scale that makes it
look up and down overshoots its turns; guiding its keys costs next-block fidelity for no gain in
following). Each distinct level is one DiT pass: at most four per step.

Guidance rescale (``rescale`` = ``phi``; Lin et al., "Common Diffusion Noise Schedules and Sample
Steps are Flawed", arXiv 2305.08891, section 3.4, eq. 15-16): guidance pushes the step's x0 prediction
away from the data (the embedded model's guided x0 has ~10 % more standard deviation than the
recorded latents; unguided it has about the same). The guided x0 is scaled to the standard deviation
of the x0 under all the actions, ``x0_r = x0_g * std(x0_a) / std(x0_g)`` (per sample, over channels,
frames and pixels), and ``phi x0_r + (1 - phi) x0_g`` is used. It costs no DiT pass: ``x0_a`` comes
from the last pass of the guided step. ``phi`` 0 is plain guidance.

Guidance hold (``hold`` = ``h``): the levels below "all the actions" put in place of the actions
they leave out a *reference*, ``h`` times the actions in effect just before the block, held through
it (:func:`held_reference`; the first block has no past: its reference is no actions). ``h`` 0 is
classic guidance (against no actions). ``h`` 1 guides only what the block's *change* of actions
does: a turn from rest as before, a switch from left to right against going on left, and a turn
that goes on not at all. That is right when the context shows the true motion (teacher-forced
next-block prediction: the DiT continues it unaided, and guiding it again makes the turn overshoot;
on held-out play with steady turns classic guidance lost up to 4 dB of next-block PSNR on a block)
but not in free play, where the context is the model's own, slightly too slow, motion: with ``h``
1 a held turn fades within two or three blocks. In between, a held command keeps roughly
``(1 - h) w + h`` of the scale ``w`` (for a model linear in its actions) and a change gets all of it.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from .errors import MatrixGameError

#: Largest guidance scale a session accepts (beyond it any model's picture is noise).
MAX_GUIDANCE = 20.0


def _check_range(name: str, value, hi: float, off: str, own: str) -> float:
    """``value`` as a float in ``[0, hi]``, else one MatrixGameError naming ``name``, the range, the
    value that turns it off (``off``) and the model's own value (``own``, in words)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not (math.isfinite(v) and 0.0 <= v <= hi):
        got = f"{v:g}" if isinstance(value, (int, float)) else repr(value)
        raise MatrixGameError(f"{name} must be a number from 0 to {hi:g} ({off} = off; this model's own is {own}); "
                              f"got {got}.")
    return v


def check_scale(name: str, w: float, own: str) -> float:
    """``w`` as a float in ``[0, MAX_GUIDANCE]``.

    Raises:
        MatrixGameError: naming ``name``, the range and ``own`` (the model's own value, in words).
    """
    return _check_range(name, w, MAX_GUIDANCE, "1", own)


def check_rescale(phi, own: str) -> float:
    """``phi`` (guidance rescale) as a float in ``[0, 1]``.

    Raises:
        MatrixGameError: naming the range and ``own`` (the model's own value, in words).
    """
    return _check_range("guidance rescale", phi, 1.0, "0", own)


def check_hold(h, own: str) -> float:
    """``h`` (guidance hold) as a float in ``[0, 1]``.

    Raises:
        MatrixGameError: naming the range and ``own`` (the model's own value, in words).
    """
    return _check_range("guidance hold", h, 1.0, "0", own)


def held_reference(window: torch.Tensor, new_from: int, first_block: bool) -> torch.Tensor:
    """The actions of before the block, held through it (the guidance hold's reference, times ``h``).

    Args:
        window: ``[B, R, C]`` the block's fixed action window
            (:func:`~matrix_game_core.model_layers.action_window`: 20 rows for a block of 3 latent
            frames, of which the last 12 are the block's own).
        new_from: index in the window of the block's first own row (``ratio * (windows_size - 1)``:
            8 for the official window).
        first_block: the session's first block (no actions before it).
    Returns:
        ``[B, R, C]``: rows ``< new_from`` as in ``window`` (the past is what it was), rows from
        ``new_from`` on equal to row ``new_from - 1`` (the last action before the block, held);
        zeros for the first block.
    """
    if first_block:
        return torch.zeros_like(window)
    ref = window.clone()
    ref[:, new_from:] = window[:, new_from - 1:new_from]
    return ref


def hold_references(keyboard: torch.Tensor, mouse: Optional[torch.Tensor], h: float, action_config,
                    first_block: bool) -> dict:
    """The guidance-hold reference actions of a block, as keywords of :func:`guided_flow`.

    Args:
        keyboard: ``[B, R, K]`` / mouse: ``[B, R, 2]`` (or None) the block's action windows;
        h: the hold in [0, 1]; action_config: the model's :class:`~.config.ActionConfig` (its
        ``vae_time_compression_ratio * (windows_size - 1)`` rows are the past: 8 officially);
        first_block: the session's first block (reference: no actions).
    Returns:
        ``{}`` for ``h`` 0 (classic guidance), else ``{"keyboard_ref": h * held, "mouse_ref": ...}``
        (:func:`held_reference`).
    """
    if not h:
        return {}
    ac = action_config
    new_from = (ac.vae_time_compression_ratio * (ac.windows_size - 1)) if ac else 8
    return {"keyboard_ref": h * held_reference(keyboard, new_from, first_block),
            "mouse_ref": None if mouse is None else h * held_reference(mouse, new_from, first_block)}


def rescale_flow(guided: torch.Tensor, cond: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor,
                 phi: float) -> torch.Tensor:
    """Guidance rescale of one denoising step's flow (module docstring; arXiv 2305.08891 eq. 15-16),
    done on the x0 predictions ``x - sigma * flow`` in float64.

    Args:
        guided: ``[B, C, F, h, w]`` guided flow; cond: the flow under all the actions (same shape);
        x: the step's noisy latents; sigma: its sigma (0-d); phi: the rescale in ``[0, 1]``.
    Returns:
        The flow whose x0 is ``phi x0_r + (1 - phi) x0_g`` (``guided``'s dtype).
    """
    xd, sg = x.double(), sigma.double()
    x0g = xd - sg * guided.double()
    x0c = xd - sg * cond.double()
    dims = tuple(range(1, x0g.ndim))
    ratio = x0c.std(dim=dims, keepdim=True) / x0g.std(dim=dims, keepdim=True).clamp_min(1e-12)
    x0 = phi * (x0g * ratio) + (1.0 - phi) * x0g
    return ((xd - x0) / sg).to(guided.dtype)


def _plan(w: float, w_pitch: float, w_keys: float, has_mouse: bool):
    """Which condition levels a step needs and the scale of each increment between them.

    Levels: 0 no actions, 1 keys only, 2 keys + yaw (pitch 0), 3 all actions (no mouse: 0, 1).
    Adjacent increments of equal scale merge (the level between them is not needed), and a first
    increment of scale 1 starts the sum at its upper level."""
    scales = [w_keys, w, w_pitch] if has_mouse else [w_keys]
    kept, inc = [0], []
    for i, sc in enumerate(scales, 1):
        if inc and inc[-1] == sc:
            kept[-1] = i
        else:
            kept.append(i)
            inc.append(sc)
    if inc[0] == 1.0:
        kept, inc = kept[1:], inc[1:]
    return kept, inc


def passes(w: float, w_pitch: Optional[float] = None, w_keys: Optional[float] = None, has_mouse: bool = True) -> int:
    """DiT passes one guided denoising step takes (1: unguided); None scales follow ``w``."""
    return len(_plan(w, w if w_pitch is None else w_pitch, w if w_keys is None else w_keys, has_mouse)[0])


def guided_flow(flow_of: Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor],
                keyboard: torch.Tensor, mouse: Optional[torch.Tensor], w: float, w_pitch: Optional[float] = None,
                w_keys: Optional[float] = None, rescale: float = 0.0, x: Optional[torch.Tensor] = None,
                sigma: Optional[torch.Tensor] = None, keyboard_ref: Optional[torch.Tensor] = None,
                mouse_ref: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One denoising step's guided flow,
    ``f(0) + w_keys (f(keys) - f(0)) + w (f(keys, yaw) - f(keys)) + w_pitch (f(a) - f(keys, yaw))``.

    Args:
        flow_of: ``flow_of(keyboard, mouse)`` runs the DiT on the step's noisy block with these
            action windows and returns its flow prediction ``[B, 16, 3, h, w]``. The passes run from
            the fewest actions to all of them, so whatever the model leaves in its caches is the
            block's own actions'.
        keyboard: ``[B, R, K]`` action window; mouse: ``[B, R, 2]`` (pitch, yaw) or None.
        w: action guidance (the mouse yaw, and everything not given its own scale);
        w_pitch / w_keys: pitch and keyboard guidance, None = ``w`` (all None: plain guidance on
            all the actions; all 1: one pass, the official sampler). With ``mouse`` None only the
            keys are guided (``w_keys``, else ``w``).
        rescale: guidance rescale ``phi`` (:func:`rescale_flow`; 0 = off, and no effect on an
            unguided step); x / sigma: the step's noisy latents and sigma, needed when it is not 0.
        keyboard_ref / mouse_ref: the guidance reference (shapes of ``keyboard`` / ``mouse``; the
            module docstring's guidance hold): what the levels below all the actions put in place of
            the actions they leave out. None = zeros (no actions, classic guidance).
    Returns:
        The flow ``[B, 16, 3, h, w]`` (the model's dtype).
    """
    w_pitch = w if w_pitch is None else w_pitch
    w_keys = w if w_keys is None else w_keys
    kept, inc = _plan(w, w_pitch, w_keys, mouse is not None)

    kb_ref = torch.zeros_like(keyboard) if keyboard_ref is None else keyboard_ref
    ms_ref = None if mouse is None else torch.zeros_like(mouse) if mouse_ref is None else mouse_ref

    def actions(level):
        if level == 0:
            return kb_ref, ms_ref
        if mouse is None or level == 3:
            return keyboard, mouse
        m = ms_ref.clone()
        if level == 2:
            m[..., 1] = mouse[..., 1]
        return keyboard, m

    prev = flow_of(*actions(kept[0]))
    out = prev
    for level, sc in zip(kept[1:], inc):
        f = flow_of(*actions(level))
        out = out + sc * (f - prev)
        prev = f
    if rescale and len(kept) > 1:
        if x is None or sigma is None:
            raise ValueError("guided_flow: rescale needs the step's x and sigma")
        out = rescale_flow(out, prev, x, sigma, rescale)
    return out
