"""Training clips from recordings.

:class:`ClipStream` is an endless ``torch.utils.data.IterableDataset`` of random clips: each
worker picks a random shard (its own seeded RNG), decodes it once, and yields ``clips_per_shard``
random clips from it (optionally a random spatial crop), so mp4 decoding is amortised and the
stream scales with ``DataLoader(num_workers=...)``.

A clip is a dict of tensors:

* ``video``: ``[3, T, H, W]`` float32 in [-1, 1] (engine layout; the DataLoader adds ``B``);
* ``keyboard``: ``[T, 4]`` float32 {0, 1}; ``mouse``: ``[T, 2]`` float32 official units;
* ``shard`` / ``start``: where it came from.

Row ``t`` of the actions is the action at frame ``t`` (its effect shows at ``t + 1``), which is
what the engine's action windows expect.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from ..errors import MatrixGameError
from .shards import entries, load_shard


def clip_from_shard(shard, start: int, frames: int, crop: Optional[Tuple[int, int]] = None,
                    rng: Optional[np.random.Generator] = None) -> Dict[str, torch.Tensor]:
    """Cut ``frames`` frames from ``start`` (and an optional random ``crop = (h, w)``)."""
    v = shard.frames[start:start + frames]
    if crop is not None:
        h, w = v.shape[1:3]
        ch, cw = crop
        if ch > h or cw > w:
            raise MatrixGameError(f"crop {ch}x{cw} is larger than the frames ({h}x{w}).")
        r = rng or np.random.default_rng()
        y0, x0 = int(r.integers(0, h - ch + 1)), int(r.integers(0, w - cw + 1))
        v = v[:, y0:y0 + ch, x0:x0 + cw]
    video = torch.from_numpy(np.ascontiguousarray(v)).permute(3, 0, 1, 2).float().div_(127.5).sub_(1.0)
    return {"video": video,
            "keyboard": torch.from_numpy(shard.keyboard[start:start + frames].astype(np.float32)),
            "mouse": torch.from_numpy(shard.mouse[start:start + frames].astype(np.float32))}


class ClipStream(torch.utils.data.IterableDataset):
    """Endless random clips of ``frames`` video frames from a recording's ``split``.

    Args:
        folder: recording folder (``manifest.json``).
        frames: clip length (``1 + 4k`` for the VAE).
        split: ``"train"`` / ``"val"`` / None (all shards).
        crop: optional ``(h, w)`` random crop.
        clips_per_shard: clips drawn per decoded shard before moving on.
        seed: base seed (worker ``i`` uses ``seed + 1000 i``).
    """

    def __init__(self, folder: str, frames: int, split: Optional[str] = "train",
                 crop: Optional[Tuple[int, int]] = None, clips_per_shard: int = 16, seed: int = 0):
        super().__init__()
        self.folder, self.frames, self.crop = folder, frames, crop
        self.clips_per_shard, self.seed = clips_per_shard, seed
        es = [e for e in entries(folder, split) if e["frames"] >= frames]
        if not es:
            raise MatrixGameError(f"{folder} has no {split or ''} shard with >= {frames} frames; record more "
                                  f"or shorten the clips.")
        self.entries: List[Dict] = es

    def __iter__(self) -> Iterator[Dict[str, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        rng = np.random.default_rng(self.seed + 1000 * wid)
        weights = np.array([e["frames"] for e in self.entries], dtype=np.float64)
        weights /= weights.sum()
        while True:
            e = self.entries[int(rng.choice(len(self.entries), p=weights))]
            shard = load_shard(self.folder, e)
            for _ in range(self.clips_per_shard):
                st = int(rng.integers(0, len(shard) - self.frames + 1))
                c = clip_from_shard(shard, st, self.frames, self.crop, rng)
                c["start"] = torch.tensor(st)
                yield c
