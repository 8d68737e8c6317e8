"""Action guidance: classifier-free guidance on the action track, with its own scale for the pitch.

This pack's (official configs have none: their distilled models sample without guidance). With
the block's actions ``a`` (keys + mouse), ``a_p0`` the same actions with the mouse pitch channel
(look up/down, channel 0 of the official ``[T, 2]`` mouse rows) set to 0, and ``0`` no actions
(keys up, mouse 0), each denoising step's flow is the nested guidance of InstructPix2Pix
(Brooks et al., arXiv 2211.09800, eq. 3; classifier-free guidance: Ho & Salimans, arXiv 2207.12598)::

    flow = f(0) + w * (f(a_p0) - f(0)) + w_p * (f(a) - f(a_p0))

``w`` is the action guidance, ``w_p`` the pitch guidance. With ``w_p = w`` it is plain guidance on
all the actions, ``f(0) + w (f(a) - f(0))`` (two DiT passes; one with ``w = 1``). A separate
``w_p`` exists because a small model can learn the pitch far more weakly than the yaw (the
embedded ViZDoom model: its data pitches the camera about half as far as it turns it, and its VAE
keeps about a third of the vertical motion), so one scale that makes it look up and down
overshoots its turns. Then a step costs three passes (two when ``w = 1``).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from .errors import MatrixGameError

#: Largest guidance scale a session accepts (beyond it any model's picture is noise).
MAX_GUIDANCE = 20.0


def check_scale(name: str, w: float, own: str) -> float:
    """``w`` as a float in ``[0, MAX_GUIDANCE]``.

    Raises:
        MatrixGameError: naming ``name``, the range and ``own`` (the model's own value, in words).
    """
    try:
        v = float(w)
    except (TypeError, ValueError):
        v = float("nan")
    if not (math.isfinite(v) and 0.0 <= v <= MAX_GUIDANCE):
        got = f"{v:g}" if isinstance(w, (int, float)) else repr(w)
        raise MatrixGameError(f"{name} must be a number from 0 to {MAX_GUIDANCE:g} (1 = off; this model's own is "
                              f"{own}); got {got}.")
    return v


def passes(w: float, w_pitch: float) -> int:
    """DiT passes one guided denoising step takes (1: unguided)."""
    return 1 + (w != 1.0) + (w_pitch != w)


def guided_flow(flow_of: Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor],
                keyboard: torch.Tensor, mouse: Optional[torch.Tensor], w: float, w_pitch: float) -> torch.Tensor:
    """One denoising step's guided flow.

    Args:
        flow_of: ``flow_of(keyboard, mouse)`` runs the DiT on the step's noisy block with these
            action windows and returns its flow prediction ``[B, 16, 3, h, w]``. The pass with the
            block's own actions runs last, so whatever the model leaves in its caches is theirs.
        keyboard: ``[B, R, K]`` action window; mouse: ``[B, R, 2]`` (pitch, yaw) or None.
        w: action guidance; w_pitch: pitch guidance (``w`` for plain guidance). With ``mouse``
            None the pitch guidance has nothing to act on and ``w`` is used.
    Returns:
        The flow ``[B, 16, 3, h, w]`` (the model's dtype).
    """
    if mouse is None:
        w_pitch = w
    if w == 1.0 and w_pitch == 1.0:
        return flow_of(keyboard, mouse)
    f0 = None
    if w != 1.0:
        f0 = flow_of(torch.zeros_like(keyboard), None if mouse is None else torch.zeros_like(mouse))
    if w_pitch == w:
        f = flow_of(keyboard, mouse)
        return f0 + w * (f - f0)
    no_pitch = mouse.clone()
    no_pitch[..., 0] = 0
    fp0 = flow_of(keyboard, no_pitch)
    f = flow_of(keyboard, mouse)
    out = fp0 + w_pitch * (f - fp0)
    return out if f0 is None else out + (w - 1.0) * (fp0 - f0)
