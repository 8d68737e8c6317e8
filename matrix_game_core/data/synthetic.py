"""A synthetic recording (no game engine needed): panning views of random textures.

Each episode is a window panning over a smooth random texture under a random camera track (OU
yaw and pitch with held full-step gestures), written in the same shard format and manifest as
the ViZDoom recorder. Useful to try the training pipeline without ``vizdoom`` and in tests; the
"world" only rotates, so the keyboard rows are all zero.
"""
from __future__ import annotations

import os
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..actions import CAM_VALUE
from .shards import FORMAT, Shard, save_shard, write_manifest


def synthetic_panning_video(mouse, height: int = 64, width: int = 112, px_per_step: float = 3.0,
                            seed: int = 0, detail: float = 0.3, blob: int = 4) -> np.ndarray:
    """A perfect 'world model' for camera commands: a window panning over a random smooth texture.

    Frame ``t + 1`` is frame ``t``'s view rotated by mouse row ``t``: yaw right ``+v`` moves the
    view right, so the picture moves **left** by ``v / 0.1 * px_per_step`` pixels; pitch up moves
    the picture **down**. Sub-pixel positions are rendered by bilinear sampling.

    Args:
        mouse: ``[T, 2]`` (pitch up +, yaw right +) official units.
        detail: weight of the fine (3-pixel) texture component over the smooth one.
        blob: size in pixels of the smooth component's features.
    Returns:
        ``[T, height, width, 3]`` uint8.
    """
    m = mouse.detach().cpu().numpy() if isinstance(mouse, torch.Tensor) else np.asarray(mouse)
    t = m.shape[0]
    steps = m / CAM_VALUE * px_per_step                       # view displacement per frame (px)
    # view centre: x grows with yaw right; y (down +) shrinks with pitch up
    pos = np.zeros((t, 2))
    pos[1:, 0] = np.cumsum(steps[:-1, 1])
    pos[1:, 1] = -np.cumsum(steps[:-1, 0])
    margin = int(np.ceil(np.abs(pos).max())) + 4
    rng = np.random.default_rng(seed)
    th, tw = height + 2 * margin, width + 2 * margin
    noise = torch.from_numpy(rng.standard_normal((1, 3, th // blob + 2, tw // blob + 2)).astype(np.float32))
    tex = F.interpolate(noise, size=(th, tw), mode="bicubic", align_corners=False)
    fine = torch.from_numpy(rng.standard_normal((1, 3, th, tw)).astype(np.float32))
    tex = tex + detail * F.avg_pool2d(fine, 3, 1, 1)
    tex = (tex - tex.mean()) / tex.std() * 0.22 + 0.5
    frames = []
    ys = torch.arange(height, dtype=torch.float32)
    xs = torch.arange(width, dtype=torch.float32)
    for i in range(t):
        x0, y0 = margin + pos[i, 0], margin + pos[i, 1]
        gx = (xs + x0) / (tw - 1) * 2 - 1
        gy = (ys + y0) / (th - 1) * 2 - 1
        grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1)[None]
        fr = F.grid_sample(tex, grid, mode="bilinear", align_corners=True)[0]
        frames.append((fr.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
    return np.stack(frames)


def synthetic_mouse(frames: int, rng: np.random.Generator) -> np.ndarray:
    """``[T, 2]`` (pitch, yaw) official units: OU drift plus held +-0.1 gestures."""
    m = np.zeros((frames, 2), np.float32)
    v = np.zeros(2)
    t = 0
    while t < frames:
        if rng.random() < 0.3:
            n = int(rng.integers(4, 16))
            ch = int(rng.integers(0, 2))
            m[t:t + n, ch] = rng.choice([-0.1, 0.1])
            t += n
            continue
        v = 0.8 * v + rng.normal(0, 0.02, 2)
        m[t] = v
        t += 1
    return m


def write_synthetic_recording(folder: str, episodes: int = 4, frames: int = 120,
                              size: Tuple[int, int] = (32, 64), px_per_step: float = 3.0,
                              seed: int = 0, val_every: int = 4) -> dict:
    """Write ``episodes`` synthetic shards (npz) and a manifest into ``folder``. Returns the manifest."""
    os.makedirs(folder, exist_ok=True)
    shards = []
    for ep in range(episodes):
        rng = np.random.default_rng([seed, ep])
        mouse = synthetic_mouse(frames, rng)
        video = synthetic_panning_video(mouse, size[0], size[1], px_per_step, seed=seed * 1000 + ep,
                                        detail=0.0, blob=12)
        deg = mouse / 0.1 * 5.0
        pose = np.zeros((frames, 5))
        pose[1:, 3] = -np.cumsum(deg[:-1, 1])
        pose[1:, 4] = -np.cumsum(deg[:-1, 0])
        s = Shard(frames=video, keyboard=np.zeros((frames, 4), np.uint8), mouse=mouse,
                  yaw_deg=deg[:, 1].astype(np.float32), pitch_deg=deg[:, 0].astype(np.float32), pose=pose)
        name = f"ep{ep:06d}"
        files = save_shard(folder, name, s, fmt="npz")
        split = "val" if val_every and ep % val_every == val_every - 1 else "train"
        shards.append({"name": name, "episode": ep, "map": "synthetic", "split": split, "frames": frames, **files})
    m = {"format": FORMAT, "config": {"synthetic": True, "seed": seed, "size": list(size)}, "fps": 17.5,
         "mouse_units": "official: 0.1 = 5.0 deg per video frame", "keyboard": ["forward", "back", "left", "right"],
         "mouse": ["pitch_up", "yaw_right"], "pose": ["x", "y", "z", "angle", "pitch"], "shards": shards,
         "total_frames": frames * episodes}
    write_manifest(folder, m)
    return m
