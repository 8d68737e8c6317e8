"""Camera-pan augmentation of latent clips: pure mouse motion made from real latents.

A small DiT trained on recorded play learns the camera (the mouse track) very slowly: in a real clip
the picture also changes with walking, doors, light and the scene itself, and the mouse explains only
part of it (docs/data_and_training.md §3b). This module turns a share of each batch into clips whose
*only* motion is the camera: latent frame ``k >= 2`` is latent frame 1 translated by the camera rows
accumulated since, with the content that comes into view taken from another clip of the batch, and
the keyboard rows zeroed (standing still). For a game whose camera turns and looks by (nearly)
translating the picture, as Doom's does (yaw: a rotation, close to a horizontal shift over a 90-degree
field of view; pitch: a vertical y-shear), this is the picture the mouse alone would give.

Units: the mouse rows are official units (a camera step is 0.1; pitch up +, yaw right +); row ``t``
moves frame ``t`` to ``t + 1``, latent frame ``k >= 1`` holds video frames ``4k-3 .. 4k`` (Wan VAE,
temporal compression 4), so latent ``k-1 -> k`` moves by rows ``4k-4 .. 4k-1``. The picture motion per
unit is a fraction of the frame's height (pitch) and width (yaw); measured on the ViZDoom recordings
of the embedded model (64x112, 5 degrees a camera step) with the evaluator's phase correlation:
+43.4 px per unit of pitch over 64 rows (+0.678 heights), -35.1 px per unit of yaw over 112 columns
(-0.313 widths). Offsets are rounded to whole latent pixels (no resampling blur).
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch

from .config import DOOM_PAN_PER_UNIT  # (pitch, yaw) picture motion per unit: see the module docstring


def shift_latent(x: torch.Tensor, dy: int, dx: int, fill: torch.Tensor) -> torch.Tensor:
    """``x`` ``[C, h, w]`` translated by ``(dy, dx)`` latent pixels (down +, right +); the uncovered
    border comes from ``fill`` (same shape). Offsets beyond the frame give ``fill``."""
    h, w = x.shape[-2:]
    out = fill.clone()
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def random_camera_track(rows: int, generator: torch.Generator, max_pitch: float = 0.06, max_yaw: float = 0.15,
                        still_prob: float = 0.4, first_rows: int = 9, rows_per_block: int = 12) -> torch.Tensor:
    """A camera track ``[rows, 2]`` (pitch, yaw; official units) that is constant over each block of
    the sampler (the first block ``first_rows`` rows, then ``rows_per_block``: how a player holds the
    mouse and what the action-following benchmark commands). Each block holds, independently per
    axis, nothing (probability ``still_prob``) or a value of random sign and a magnitude uniform in
    ``[0.2, 1] x max``; so still blocks are followed by turns, which recorded play rarely shows."""
    out = torch.zeros(rows, 2)
    lim = torch.tensor([max_pitch, max_yaw])
    s = 0
    while s < rows:
        e = min(rows, s + (first_rows if s == 0 else rows_per_block))
        mag = (0.2 + 0.8 * torch.rand(2, generator=generator)) * lim
        sign = torch.where(torch.rand(2, generator=generator) < 0.5, -1.0, 1.0)
        on = (torch.rand(2, generator=generator) >= still_prob).float()
        out[s:e] = mag * sign * on
        s = e
    return out


def camera_pan_batch(batch: Dict[str, torch.Tensor], prob: float, generator: torch.Generator,
                     pan_per_unit: Sequence[float] = DOOM_PAN_PER_UNIT,
                     random_track_prob: float = 0.0) -> Dict[str, torch.Tensor]:
    """Replace each clip of a batch, with probability ``prob``, by a pure camera pan of its own latent
    frame 1 under its own mouse rows (module docstring), or under a random block-wise track
    (``random_track_prob``). Latent frames 0 and 1 and the conditioning are kept; the keyboard rows
    of a replaced clip become 0.

    Args:
        batch: a :class:`~matrix_game_core.train.latents.LatentClips` batch: ``latents [B,16,N,h,w]``,
            ``keyboard [B,T,K]``, ``mouse [B,T,2]`` with ``T = 1 + 4 (N - 1)``; other keys pass through.
        prob: share of clips replaced, in [0, 1].
        generator: CPU generator (which clips are replaced; reproducible).
        pan_per_unit: ``(pitch, yaw)`` picture motion per official unit as a fraction of the frame
            height / width (default :data:`DOOM_PAN_PER_UNIT`).
    Returns:
        a new dict (the input is not modified); ``camera_pan [B]`` bool marks the replaced clips.
    """
    lat = batch["latents"]
    b, _, n, h, w = lat.shape
    pick = torch.rand(b, generator=generator) < prob
    out = dict(batch, camera_pan=pick)
    if prob <= 0 or not bool(pick.any()) or n < 3 or "mouse" not in batch:
        return out
    lat = lat.clone()
    kb = batch["keyboard"].clone()
    ms = batch["mouse"].float().clone()
    for i in pick.nonzero().flatten().tolist():
        if random_track_prob > 0 and float(torch.rand(1, generator=generator)) < random_track_prob:
            ms[i, 4:] = random_camera_track(ms.shape[1], generator)[4:]
        base = batch["latents"][i, :, 1]
        fill = batch["latents"][(i + 1) % b, :, 1] if b > 1 else base.flip(-1)
        cy = cx = 0.0
        for k in range(2, n):
            r = ms[i, 4 * k - 4:4 * k]
            cy += pan_per_unit[0] * h * float(r[:, 0].sum())
            cx += pan_per_unit[1] * w * float(r[:, 1].sum())
            lat[i, :, k] = shift_latent(base, int(round(cy)), int(round(cx)), fill)
        kb[i] = 0
    out["latents"] = lat
    out["keyboard"] = kb
    out["mouse"] = ms
    return out
