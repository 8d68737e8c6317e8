"""Evaluation primitives on videos: layouts and global motion (phase correlation).

Layouts accepted for videos: ``[T, H, W, 3]`` (ComfyUI IMAGE, uint8 or float in [0, 1]),
``[3, T, H, W]`` or ``[1, 3, T, H, W]`` (engine frames in [-1, 1]); numpy or torch.
Public names are re-exported by :mod:`matrix_game_core.evaluate`.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .errors import MatrixGameError


# ---------------------------------------------------------------------------------------------- layout
def to_gray(video) -> np.ndarray:
    """Any accepted video layout -> ``[T, H, W]`` float32 luminance in [0, 1]."""
    x = video.detach().cpu().float().numpy() if isinstance(video, torch.Tensor) else np.asarray(video)
    signed = False
    if x.ndim == 5:
        if x.shape[0] != 1:
            raise MatrixGameError(f"video batch of {x.shape[0]}; pass one video [1,3,T,H,W].")
        x = x[0]
    if x.ndim == 4 and x.shape[0] == 3 and x.shape[-1] != 3:
        x = np.moveaxis(x, 0, -1)          # [3,T,H,W] -> [T,H,W,3]
        signed = True
    if x.ndim != 4 or x.shape[-1] != 3:
        raise MatrixGameError(f"video has shape {tuple(x.shape)}; expected [T,H,W,3] (IMAGE) or [3,T,H,W].")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    else:
        x = x.astype(np.float32)
        if signed or x.min() < -1e-3:
            x = (x + 1.0) / 2.0
    return (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]).astype(np.float32)


def to_unit_rgb(video) -> torch.Tensor:
    """Any accepted video layout -> ``[T, 3, H, W]`` float32 torch in [0, 1]."""
    x = video.detach().cpu() if isinstance(video, torch.Tensor) else torch.from_numpy(np.asarray(video))
    signed = False
    if x.dim() == 5:
        x = x[0]
    if x.dim() == 4 and x.shape[0] == 3 and x.shape[-1] != 3:
        x = x.permute(1, 0, 2, 3)
        signed = True
    elif x.dim() == 4 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    else:
        raise MatrixGameError(f"video has shape {tuple(x.shape)}; expected [T,H,W,3] (IMAGE) or [3,T,H,W].")
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    x = x.float()
    if signed or float(x.min()) < -1e-3:
        x = (x + 1) / 2
    return x.clamp(0, 1)


# ---------------------------------------------------------------------------------------------- motion
def _window(h: int, w: int) -> np.ndarray:
    return np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)


def phase_correlation(a: np.ndarray, b: np.ndarray, window: Optional[np.ndarray] = None,
                      whiten: float = 1.0) -> Tuple[float, float, float]:
    """Global translation from image ``a`` to image ``b`` (``b(y, x) ~ a(y - dy, x - dx)``).

    Args:
        a, b: ``[H, W]`` float grayscale images of the same size.
        window: optional ``[H, W]`` apodisation window (default: Hann).
        whiten: exponent ``p`` of the spectral normalisation ``R / |R|^p`` of the cross-power
            spectrum ``R``: 1 = classical phase correlation (every frequency weighs the same: exact
            on clean shifts, but a faint *static* high-frequency pattern, such as a VAE decoder's
            8-pixel grid, pins the peak at 0); 0 = plain cross-correlation (low frequencies
            dominate); 0.5 = the usual compromise (generalised cross-correlation).
    Returns:
        ``(dx, dy, peak)``: shift in pixels (x right +, y down +), sub-pixel by a parabolic fit of
        the correlation peak, and the peak height (1 = perfect translation, ~0 = no match).
    """
    h, w = a.shape
    win = _window(h, w) if window is None else window
    if whiten == 1.0:
        fa = np.fft.rfft2((a - a.mean()) * win)
        fb = np.fft.rfft2((b - b.mean()) * win)
        r = fb * np.conj(fa)
        r /= np.abs(r) + 1e-9
        c = np.fft.irfft2(r, s=(h, w))
    else:                                 # full spectra: the peak normalisation needs every bin
        fa = np.fft.fft2((a - a.mean()) * win)
        fb = np.fft.fft2((b - b.mean()) * win)
        q = 1.0 - whiten
        r = fb * np.conj(fa)
        r = r / (np.abs(r) ** whiten + 1e-12)
        norm = np.sqrt((np.abs(fa) ** (2 * q)).sum() * (np.abs(fb) ** (2 * q)).sum()) / (h * w) + 1e-12
        c = np.fft.ifft2(r).real / norm   # Cauchy-Schwarz: <= 1, = 1 for an exact circular shift
    iy, ix = np.unravel_index(int(np.argmax(c)), c.shape)
    peak = float(c[iy, ix])

    def sub(cm, c0, cp):
        d = cm - 2 * c0 + cp
        return 0.0 if abs(d) < 1e-12 else float(np.clip(0.5 * (cm - cp) / d, -0.5, 0.5))

    ox = sub(c[iy, (ix - 1) % w], c[iy, ix], c[iy, (ix + 1) % w])
    oy = sub(c[(iy - 1) % h, ix], c[iy, ix], c[(iy + 1) % h, ix])
    dx = ((ix + w // 2) % w) - w // 2 + ox
    dy = ((iy + h // 2) % h) - h // 2 + oy
    return float(dx), float(dy), peak


def global_motion(video, max_width: int = 320, stride: int = 1, whiten: float = 1.0) -> np.ndarray:
    """Global translation of a video between frames ``stride`` apart, per frame.

    Args:
        video: any accepted layout (see module docstring), ``T > stride`` frames.
        max_width: frames wider than this are downscaled (area) first; shifts are reported in
            pixels of the **original** width.
        stride: frames between the compared pair ``(t, t + stride)``; the shift is divided by
            ``stride``. 4 (one latent frame of the Wan VAE) measures decoded video, whose motion
            comes in steps at latent-frame boundaries, more truly than frame-to-frame pairs.
        whiten: spectral normalisation of :func:`phase_correlation` (1 = phase correlation).
    Returns:
        ``[T-stride, 3]`` float32: ``(dx, dy, peak)`` for pairs ``(t, t+stride)``, dx/dy in pixels
        per frame.
    Raises:
        MatrixGameError: ``stride < 1`` or not more than ``stride`` frames.
    """
    if stride < 1:
        raise MatrixGameError(f"motion stride must be at least 1 frame, got {stride}.")
    g = to_gray(video)
    t, h, w = g.shape
    if t <= stride:
        raise MatrixGameError(f"motion with stride {stride} needs at least {stride + 1} frames, got {t}.")
    scale = 1.0
    if w > max_width:
        scale = w / max_width
        nh = max(8, int(round(h / scale)))
        g = F.interpolate(torch.from_numpy(g)[:, None], size=(nh, max_width), mode="area")[:, 0].numpy()
    win = _window(*g.shape[1:])
    out = np.zeros((t - stride, 3), np.float32)
    for i in range(t - stride):
        dx, dy, p = phase_correlation(g[i], g[i + stride], win, whiten)
        out[i] = (dx * scale / stride, dy * scale / stride, p)
    return out
