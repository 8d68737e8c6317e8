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

Two ways to cut clips (``DiTStage.clip_encoding``):

* ``"clip"`` (default): every clip is encoded on its own from its first frame (exactly what a
  WorldSession sees), costing ``1 + 4 (N - 1)`` encoded frames per clip plus as many again for the
  conditioning;
* ``"episode"``: each shard is encoded **once**, causally, from its frame 0; a clip starting at
  video frame ``4k`` takes latent 0 from its start frame encoded alone (the first latent of its
  conditioning, so free) and latents ``1..N-1`` from the episode encoding (``E[k+1..k+N-1]``,
  video frames ``4k+1 .. 4k+4(N-1)``). The only difference from ``"clip"`` is that those latents
  were encoded with the episode's earlier frames in the causal encoder's feature cache (a few
  frames of receptive field). With ``cond_latents = c`` the conditioning is encoded for ``c``
  latent frames and its last frame repeated (as :meth:`~matrix_game_core.sampling.Conditioning.frames`
  does past the encoded length). Overlapping clips (stride of 3 latent frames) then cost about one
  encoded frame per video frame plus ``1 + 4 (c - 1)`` per clip: 5-10x less on a CPU, where the
  encoder dominates the stage.
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
                     echo: bool = True, dist=None, clip_encoding: str = "clip",
                     cond_latents: Optional[int] = None, max_shards: Optional[Dict[str, int]] = None) -> Dict:
    """Encode every shard of ``data`` into latent clips under ``out`` (see module docstring).

    Data parallel (``dist``, a :class:`~.distributed.Dist`): rank ``r`` of ``W`` encodes the shards
    ``r, r + W, ...`` of each split; rank 0 writes ``meta.json`` once all have finished.

    ``clip_encoding`` / ``cond_latents``: see the module docstring; ``max_shards``: at most this many
    shards per split (``{"train": 40, "val": 4}``; the first ones in manifest order), to bound the
    stage's time on a CPU.

    Returns:
        ``{"clips": {split: n}, "latent_hw": [h, w], ...}`` (also written to ``meta.json``).
    """
    from ..data.shards import entries, load_shard

    if clip_encoding not in ("clip", "episode"):
        raise MatrixGameError(f"clip_encoding must be 'clip' or 'episode' (got {clip_encoding!r}).")
    if clip_encoding == "episode" and stride is not None and stride % 4:
        raise MatrixGameError(f"episode clip encoding needs a stride that is a multiple of 4 video frames "
                              f"(one latent frame); got {stride}.")

    if clip_latents % 3:
        raise MatrixGameError(f"clip_latents must be a multiple of 3 (got {clip_latents}).")
    t = 1 + 4 * (clip_latents - 1)
    stride = stride or (12 if clip_encoding == "episode" else t)
    meta_p = os.path.join(out, "meta.json")
    want = {"clip_latents": clip_latents, "clip_frames": t, "stride": stride,
            "vae_sha256": file_sha256(vae_path), "data": os.path.abspath(data)}
    if clip_encoding != "clip" or cond_latents:            # recorded only when not the default
        want.update(clip_encoding=clip_encoding, cond_latents=cond_latents)
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
        es = entries(data, split)
        if max_shards and max_shards.get(split) is not None:
            es = es[:int(max_shards[split])]
        for i, e in enumerate(es):
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
            if clip_encoding == "episode":
                rec = _encode_episode(vae, s, clip_latents, stride, cond_latents, batch)
            else:
                rec = _encode_clips(vae, s, clip_latents, stride, cond_latents, batch)
            if rec is None:
                continue
            starts = rec["starts"].tolist()
            hw = list(rec["latents"].shape[-2:])
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


def _video(frames: np.ndarray, vae: WanVAE) -> torch.Tensor:
    """uint8 ``[n,T,H,W,3]`` -> ``[n,3,T,H,W]`` in [-1, 1] on the VAE's device/dtype."""
    return torch.from_numpy(frames).permute(0, 4, 1, 2, 3).to(vae.device, vae.dtype) / 127.5 - 1


def _cond(vae: WanVAE, first: torch.Tensor, clip_latents: int, cond_latents: Optional[int]) -> torch.Tensor:
    """Normalised conditioning latents ``[n,16,clip_latents,h,w]`` of start frames ``[n,3,H,W]``
    (:func:`encode_start_image` without its mask; ``cond_latents`` frames encoded, the last repeated)."""
    c = min(clip_latents, cond_latents or clip_latents)
    cond = encode_start_image(vae, first, c)[:, 4:]
    if c < clip_latents:
        cond = torch.cat([cond, cond[:, :, -1:].expand(-1, -1, clip_latents - c, -1, -1)], dim=2)
    return cond


def _rows(s, starts, t: int):
    return (torch.from_numpy(np.stack([s.keyboard[st:st + t] for st in starts])),
            torch.from_numpy(np.stack([s.mouse[st:st + t] for st in starts]).astype(np.float32)))


def _encode_clips(vae: WanVAE, s, clip_latents: int, stride: int, cond_latents: Optional[int], batch: int):
    """``"clip"`` mode: each clip encoded on its own (see the module docstring)."""
    t = 1 + 4 * (clip_latents - 1)
    starts = list(range(0, len(s) - t + 1, stride))
    if not starts:
        return None
    lats, conds = [], []
    for i in range(0, len(starts), batch):
        video = _video(np.stack([s.frames[st:st + t] for st in starts[i:i + batch]]), vae)
        lats.append(normalize_latents(vae.encode(video)).half().cpu())
        conds.append(_cond(vae, video[:, :, 0], clip_latents, cond_latents).half().cpu())
    kb, ms = _rows(s, starts, t)
    return {"latents": torch.cat(lats), "cond": torch.cat(conds), "keyboard": kb, "mouse": ms,
            "starts": torch.tensor(starts)}


def _encode_episode(vae: WanVAE, s, clip_latents: int, stride: int, cond_latents: Optional[int], batch: int):
    """``"episode"`` mode: the shard encoded once, clips cut from it (see the module docstring)."""
    t = 1 + 4 * (clip_latents - 1)
    m = (len(s) - 1) // 4                          # latents 1..m cover frames 1..4m
    if m + 1 < clip_latents:
        return None
    ep = normalize_latents(vae.encode(_video(s.frames[None, :1 + 4 * m], vae)))[0]   # [16, 1+m, h, w]
    ks = list(range(0, m - clip_latents + 2, stride // 4))
    starts = [4 * k for k in ks]
    lats, conds = [], []
    for i in range(0, len(ks), batch):
        first = _video(np.stack([s.frames[4 * k:4 * k + 1] for k in ks[i:i + batch]]), vae)[:, :, 0]
        cond = _cond(vae, first, clip_latents, cond_latents)
        conds.append(cond.half().cpu())
        lat = torch.stack([ep[:, k + 1:k + clip_latents] for k in ks[i:i + batch]])
        lats.append(torch.cat([cond[:, :, :1], lat.to(cond.dtype)], dim=2).half().cpu())
    kb, ms = _rows(s, starts, t)
    return {"latents": torch.cat(lats), "cond": torch.cat(conds), "keyboard": kb, "mouse": ms,
            "starts": torch.tensor(starts)}


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

    def onset_clips(self, still_frames: int = 8, axis: str = "any") -> torch.Tensor:
        """Indices of the **camera-onset** clips: somewhere in the clip the camera track (yaw and
        pitch) is exactly 0 for at least ``still_frames`` video frames and then non-zero for the
        next 4 frames (one latent frame), i.e. a turn or look that starts from rest. Only there the
        camera track is the one cue of the motion to come (elsewhere the context's own motion tells
        much of it), which is the situation of the action-following benchmark (an idle block, then a
        turn). Recorded with ``record --still-prob`` (data/policy.py).

        ``axis``: ``"any"``, or only onsets that start with a ``"yaw"`` (turn) or a ``"pitch"``
        (look): the axis with the larger total over the first 4 moving frames.

        Returns:
            ``[k]`` int64, ascending; empty when the recording has no still starts.
        Raises:
            MatrixGameError: ``still_frames < 1`` or an unknown ``axis``.
        """
        if still_frames < 1:
            raise MatrixGameError(f"onset_still_frames must be at least 1, got {still_frames}.")
        if axis not in ("any", "yaw", "pitch"):
            raise MatrixGameError(f"onset axis must be any, yaw or pitch; got {axis!r}.")
        moving = self.mouse.abs().sum(2) > 0                                   # [n, T]
        t = moving.shape[1]
        hits = torch.zeros(moving.shape[0], dtype=torch.bool)
        for s in range(still_frames, t - 3):
            at = (~moving[:, s - still_frames:s]).all(1) & moving[:, s:s + 4].all(1) & ~hits
            if axis != "any":
                amount = self.mouse[:, s:s + 4].abs().sum(1)                    # [n, 2] (pitch, yaw)
                at &= (amount[:, 1] > amount[:, 0]) if axis == "yaw" else (amount[:, 0] >= amount[:, 1])
            hits |= at
        return hits.nonzero().flatten()

    def batch(self, n: int, generator: torch.Generator, focus: Optional[torch.Tensor] = None,
              focus_share: float = 0.0) -> Dict[str, torch.Tensor]:
        """``n`` random clips (uniform over the split). With ``focus`` (clip indices, e.g.
        :meth:`onset_clips`) and ``focus_share > 0``, each row is replaced with that chance by a
        uniform draw from ``focus``. All draws come from ``generator``; with ``focus_share == 0`` it
        draws exactly what the plain uniform batch draws (runs stay reproducible)."""
        idx = torch.randint(0, len(self), (n,), generator=generator)
        if focus_share > 0 and focus is not None and len(focus):
            pick = torch.rand(n, generator=generator) < focus_share
            alt = focus[torch.randint(0, len(focus), (n,), generator=generator)]
            idx = torch.where(pick, alt, idx)
        return self.get(idx)
