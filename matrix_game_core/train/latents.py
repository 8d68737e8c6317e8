"""Between the stages: encode recordings into latent clips once, for DiT training.

A latent clip is what the DiT sees in training and in a WorldSession: ``N`` latent frames
(a multiple of 3) of ``T = 1 + 4 (N - 1)`` video frames, encoded causally from the clip's own
first frame (so latent 0 is the start image alone, as in inference), plus the start-image
conditioning of :func:`~matrix_game_core.vae.encode_start_image` (the image followed by grey
frames) and the clip's action rows::

    RUN/latents/meta.json             # clip_latents, stride, latent size, VAE checksum
    RUN/latents/<split>/<shard>.pt    # latents [n,16,N,h,w] fp16, cond [n,16,N,h,w] fp16,
                                      # keyboard [n,T,4] uint8, mouse [n,T,2] f32, starts [n]

Re-running skips shards already encoded; a different VAE (checksum) or clip length starts over.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Dict, List, Optional

import numpy as np
import torch

from ..errors import MatrixGameError
from ..vae import WanVAE, encode_start_image, normalize_latents


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@torch.no_grad()
def encode_recording(vae: WanVAE, vae_path: str, data: str, out: str, clip_latents: int,
                     stride: Optional[int] = None, splits=("train", "val"), batch: int = 4,
                     echo: bool = True, dist=None) -> Dict:
    """Encode every shard of ``data`` into latent clips under ``out`` (see module docstring).

    Data parallel (``dist``, a :class:`~.distributed.Dist`): rank ``r`` of ``W`` encodes the shards
    ``r, r + W, ...`` of each split; rank 0 writes ``meta.json`` once all have finished.

    Returns:
        ``{"clips": {split: n}, "latent_hw": [h, w], ...}`` (also written to ``meta.json``).
    """
    from ..data.shards import entries, load_shard

    if clip_latents % 3:
        raise MatrixGameError(f"clip_latents must be a multiple of 3 (got {clip_latents}).")
    t = 1 + 4 * (clip_latents - 1)
    stride = stride or t
    meta_p = os.path.join(out, "meta.json")
    want = {"clip_latents": clip_latents, "clip_frames": t, "stride": stride,
            "vae_sha256": file_sha256(vae_path), "data": os.path.abspath(data)}
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    if rank == 0 and os.path.isfile(meta_p):
        with open(meta_p, "r", encoding="utf-8") as f:
            have = json.load(f)
        if any(have.get(k) != v for k, v in want.items() if k != "data"):
            shutil.rmtree(out)
    if dist is not None:
        dist.barrier()
    os.makedirs(out, exist_ok=True)
    counts: Dict[str, int] = {}
    hw: List[int] = []
    for split in splits:
        d = os.path.join(out, split)
        os.makedirs(d, exist_ok=True)
        counts[split] = 0
        for i, e in enumerate(entries(data, split)):
            p = os.path.join(d, e["name"] + ".pt")
            if i % world != rank:
                continue
            if os.path.isfile(p):
                rec = torch.load(p, map_location="cpu", weights_only=True)
                counts[split] += int(rec["starts"].numel())
                hw = hw or list(rec["latents"].shape[-2:])
                continue
            if e["frames"] < t:
                continue
            s = load_shard(data, e)
            starts = list(range(0, len(s) - t + 1, stride))
            lats, conds = [], []
            for i in range(0, len(starts), batch):
                v = np.stack([s.frames[st:st + t] for st in starts[i:i + batch]])
                video = torch.from_numpy(v).permute(0, 4, 1, 2, 3).to(vae.device, vae.dtype) / 127.5 - 1
                lats.append(normalize_latents(vae.encode(video)).half().cpu())
                conds.append(encode_start_image(vae, video[:, :, 0], clip_latents)[:, 4:].half().cpu())
            lat = torch.cat(lats)
            hw = list(lat.shape[-2:])
            rec = {"latents": lat, "cond": torch.cat(conds),
                   "keyboard": torch.from_numpy(np.stack([s.keyboard[st:st + t] for st in starts])),
                   "mouse": torch.from_numpy(np.stack([s.mouse[st:st + t] for st in starts]).astype(np.float32)),
                   "starts": torch.tensor(starts)}
            torch.save(rec, p + ".tmp")
            os.replace(p + ".tmp", p)
            counts[split] += len(starts)
            if echo:
                print(f"encoded {split}/{e['name']}: {len(starts)} clips", flush=True)
    if world > 1:
        counts, hw = _gather_counts(dist, counts, hw)
    meta = dict(want, clips=counts, latent_hw=hw)
    if rank == 0:
        with open(meta_p + ".tmp", "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        os.replace(meta_p + ".tmp", meta_p)
    if dist is not None:
        dist.barrier()
    return meta


def _gather_counts(dist, counts: Dict[str, int], hw: List[int]):
    """Sum the ranks' clip counts; the latent size of any rank that encoded something."""
    import torch.distributed as tdist
    got = [None] * dist.world
    tdist.all_gather_object(got, (counts, hw))
    total = {k: sum(c[k] for c, _ in got) for k in counts}
    return total, next((h for _, h in got if h), [])


class LatentClips:
    """All latent clips of one split in memory, sampled in random batches.

    ``batch(n, generator)`` -> dict with ``latents [n,16,N,h,w]`` f32, ``cond [n,20,N,h,w]`` f32
    (mask channels prepended: 1 at latent 0), ``keyboard [n,T,4]`` f32, ``mouse [n,T,2]`` f32.
    """

    def __init__(self, folder: str, split: str = "train"):
        d = os.path.join(folder, split)
        files = sorted(f for f in os.listdir(d) if f.endswith(".pt")) if os.path.isdir(d) else []
        recs = [torch.load(os.path.join(d, f), map_location="cpu", weights_only=True) for f in files]
        if not recs:
            raise MatrixGameError(f"no encoded {split} clips in {folder}; record longer episodes or shorten "
                                  f"clip_latents.")
        self.latents = torch.cat([r["latents"] for r in recs])
        self.cond = torch.cat([r["cond"] for r in recs])
        self.keyboard = torch.cat([r["keyboard"] for r in recs])
        self.mouse = torch.cat([r["mouse"] for r in recs])

    def __len__(self) -> int:
        return int(self.latents.shape[0])

    def get(self, idx: torch.Tensor) -> Dict[str, torch.Tensor]:
        lat = self.latents[idx].float()
        c = self.cond[idx].float()
        mask = torch.zeros(c.shape[0], 4, *c.shape[2:])
        mask[:, :, 0] = 1
        return {"latents": lat, "cond": torch.cat([mask, c], 1), "keyboard": self.keyboard[idx].float(),
                "mouse": self.mouse[idx].float()}

    def batch(self, n: int, generator: torch.Generator) -> Dict[str, torch.Tensor]:
        return self.get(torch.randint(0, len(self), (n,), generator=generator))
