"""Action tracks: per-video-frame keyboard and mouse conditions (reference §3.3, §6, §7)."""
from __future__ import annotations

import torch


def latent_action_windows(rows: torch.Tensor, start_frame: int, num_frames: int,
                          ratio: int = 4, windows_size: int = 3) -> torch.Tensor:
    """Gather the raw action rows each latent frame is conditioned on.

    Latent frame ``f`` (absolute index) sees raw rows ``[ratio*f - ratio*windows_size, ratio*f)``;
    indices below 0 are copies of row 0 (official ``ActionModule``: the sequence is left-padded with
    ``ratio*windows_size`` copies of row 0, ``wan/modules/action_module.py``). The row ``ratio*f``
    itself is not in latent ``f``'s window and the last raw row of a track is never used.

    Args:
        rows: ``[B, T, C]`` raw per-video-frame actions (any float dtype); ``T`` must reach
            ``ratio*(start_frame+num_frames-1)`` rows (exclusive end of the last window).
        start_frame: absolute index of the first latent frame.
        num_frames: number of latent frames.
    Returns:
        ``[B, num_frames, ratio*windows_size, C]``, same dtype/device as ``rows``.
    Raises:
        ValueError: ``rows`` is too short for the requested latent frames.
    """
    w = ratio * windows_size
    need = ratio * (start_frame + num_frames - 1)
    if rows.shape[1] < max(need, 1):
        raise ValueError(f"action rows too short: {rows.shape[1]} rows, latent frames "
                         f"{start_frame}..{start_frame + num_frames - 1} need {need}")
    f = torch.arange(start_frame, start_frame + num_frames, device=rows.device)
    idx = (ratio * f)[:, None] - w + torch.arange(w, device=rows.device)[None, :]
    idx = idx.clamp_min(0)
    return rows[:, idx]
