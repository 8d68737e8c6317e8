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

from .shards import FORMAT, Shard, save_shard, write_manifest


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
    from ..evaluate import synthetic_panning_video

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
