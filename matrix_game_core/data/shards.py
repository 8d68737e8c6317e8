"""Recording shards and the manifest.

A recording folder holds one shard per episode and a ``manifest.json``::

    out/
      manifest.json          # config, vizdoom version, one entry per finished shard
      ep000000.mp4           # frames (H.264, yuv420p, crf configurable)  -- or ep000000.npz
      ep000000.npz           # per-frame arrays (below); with format "npz" also the frames
      ...

Per-frame arrays (``T`` video frames; row ``t`` is the action taken **at** frame ``t``, whose effect
first shows in frame ``t + 1``; this is the convention of the official action windows, where latent
``f`` sees rows ``[4f-12, 4f)``):

==============  ================  ===========================================================
key             shape / dtype     meaning
==============  ================  ===========================================================
``frames``      [T,H,W,3] uint8   RGB (npz format only; mp4 holds them otherwise)
``keyboard``    [T,4] uint8       W S A D held during frame t -> t+1 (multi-hot)
``mouse``       [T,2] float32     (pitch up +, yaw right +), official units (0.1 = one step)
``yaw_deg``     [T] float32       applied yaw, degrees per frame (right +)
``pitch_deg``   [T] float32       applied pitch, degrees per frame (up +)
``pose``        [T,5] float64     x, y, z (map units), angle (deg CCW), pitch (deg, + = down)
==============  ================  ===========================================================

Files are written to a temporary name and renamed, and the manifest is rewritten atomically after
every shard, so an interrupted recording resumes from the last finished shard.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional

import numpy as np

from ..errors import MatrixGameError

MANIFEST = "manifest.json"
FORMAT = "matrix-game-doom-v1"
FORMATS = ("mp4", "npz")
FPS_TICRATE = 35.0


def _atomic_write_bytes(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_manifest(folder: str, manifest: Dict) -> None:
    """Atomically (re)write ``folder/manifest.json``."""
    _atomic_write_bytes(os.path.join(folder, MANIFEST), json.dumps(manifest, indent=1).encode("utf-8"))


def read_manifest(folder: str) -> Dict:
    """Read ``folder/manifest.json``.

    Raises:
        MatrixGameError: no manifest (not a recording folder) or unreadable JSON.
    """
    p = os.path.join(folder, MANIFEST)
    if not os.path.isfile(p):
        raise MatrixGameError(f"{folder!r} has no {MANIFEST}; record data first with "
                              f"`python -m matrix_game_core.data record --out {folder}`.")
    try:
        with open(p, "r", encoding="utf-8") as f:
            m = json.load(f)
    except ValueError as e:
        raise MatrixGameError(f"{p} is not valid JSON ({e}); delete the folder and record again.") from e
    if m.get("format") != FORMAT:
        raise MatrixGameError(f"{p} has format {m.get('format')!r}, expected {FORMAT!r}.")
    return m


# ---------------------------------------------------------------------------------------------- video
def write_mp4(path: str, frames: np.ndarray, fps: float, crf: int = 18, preset: str = "superfast") -> None:
    """Write ``frames [T,H,W,3] uint8`` as H.264 (imageio-ffmpeg, yuv420p, single-threaded so the
    bytes are reproducible)."""
    import imageio_ffmpeg

    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise MatrixGameError(f"mp4 shards need even frame sizes; got {w}x{h}.")
    tmp = path + ".tmp.mp4"
    gen = imageio_ffmpeg.write_frames(tmp, (w, h), fps=fps, codec="libx264", pix_fmt_in="rgb24",
                                      pix_fmt_out="yuv420p", macro_block_size=1, quality=None,
                                      output_params=["-crf", str(crf), "-threads", "1", "-preset", preset],
                                      ffmpeg_log_level="error")
    gen.send(None)
    for fr in frames:
        gen.send(np.ascontiguousarray(fr))
    gen.close()
    os.replace(tmp, path)


def read_mp4(path: str) -> np.ndarray:
    """Decode an mp4 to ``[T,H,W,3] uint8``."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24")
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(b, dtype=np.uint8).reshape(h, w, 3) for b in reader]
    if not frames:
        raise MatrixGameError(f"{path} has no frames (truncated file?); delete it and record again.")
    return np.stack(frames)


# ---------------------------------------------------------------------------------------------- shards
@dataclass
class Shard:
    """One recorded episode (all arrays indexed by video frame; see the module docstring)."""

    frames: np.ndarray
    keyboard: np.ndarray
    mouse: np.ndarray
    yaw_deg: np.ndarray
    pitch_deg: np.ndarray
    pose: np.ndarray

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def validate(self) -> None:
        """Check shapes and dtypes. Raises MatrixGameError."""
        t = len(self)
        want = {"frames": (t, None, None, 3), "keyboard": (t, 4), "mouse": (t, 2), "yaw_deg": (t,),
                "pitch_deg": (t,), "pose": (t, 5)}
        for k, shp in want.items():
            a = getattr(self, k)
            if a.ndim != len(shp) or any(s is not None and s != d for s, d in zip(shp, a.shape)):
                raise MatrixGameError(f"shard array {k} has shape {a.shape}, expected {shp} (T={t}).")
        if self.frames.dtype != np.uint8:
            raise MatrixGameError(f"shard frames must be uint8, got {self.frames.dtype}.")

    def action_track(self, start: int = 0, frames: Optional[int] = None, fps: float = 17.5,
                     meta: Optional[Dict] = None):
        """Rows ``[start, start + frames)`` as a validated universal-mode
        :class:`~matrix_game_core.actions.ActionTrack` (any length; ``meta`` is stored in its JSON)."""
        from ..actions import ActionTrack

        end = len(self) if frames is None else start + frames
        if not 0 <= start < end <= len(self):
            raise MatrixGameError(f"rows [{start}, {end}) are outside the shard's {len(self)} frames.")
        return ActionTrack("universal", self.keyboard[start:end].astype(np.float32),
                           self.mouse[start:end].astype(np.float32), fps=fps,
                           meta=dict(meta or {})).validate(any_length=True)


def shard_paths(folder: str, name: str, fmt: str) -> Dict[str, str]:
    base = os.path.join(folder, name)
    return {"meta": base + ".npz", "video": base + (".mp4" if fmt == "mp4" else ".npz")}


def save_shard(folder: str, name: str, shard: Shard, fmt: str = "mp4", fps: float = 17.5,
               crf: int = 18, preset: str = "superfast") -> Dict[str, str]:
    """Write one shard (video first, then the npz; both via temporary names). Returns file names."""
    if fmt not in FORMATS:
        raise MatrixGameError(f"unknown shard format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    shard.validate()
    paths = shard_paths(folder, name, fmt)
    arrays = dict(keyboard=shard.keyboard.astype(np.uint8), mouse=shard.mouse.astype(np.float32),
                  yaw_deg=shard.yaw_deg.astype(np.float32), pitch_deg=shard.pitch_deg.astype(np.float32),
                  pose=shard.pose.astype(np.float64))
    if fmt == "mp4":
        write_mp4(paths["video"], shard.frames, fps, crf, preset)
    else:
        arrays["frames"] = shard.frames
    tmp = paths["meta"] + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, paths["meta"])
    return {k: os.path.basename(v) for k, v in paths.items()}


def load_shard(folder: str, entry: Dict, frames: bool = True) -> Shard:
    """Load a shard described by a manifest entry (``frames=False`` skips video decoding:
    ``frames`` is then an empty ``[T,0,0,3]`` array).

    Raises:
        MatrixGameError: missing/corrupt files, or frame count disagreeing with the actions.
    """
    meta_p = os.path.join(folder, entry["meta"])
    try:
        with np.load(meta_p) as z:
            d = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise MatrixGameError(f"cannot read shard {meta_p} ({e}); delete it from the manifest and re-record.") from e
    t = d["keyboard"].shape[0]
    if not frames:
        fr = np.zeros((t, 0, 0, 3), np.uint8)
    elif "frames" in d:
        fr = d["frames"]
    else:
        fr = read_mp4(os.path.join(folder, entry["video"]))
    if fr.shape[0] != t:
        raise MatrixGameError(f"shard {entry['name']}: {fr.shape[0]} frames but {t} action rows "
                              f"(truncated video?); delete it and re-record.")
    return Shard(fr, d["keyboard"], d["mouse"], d["yaw_deg"], d["pitch_deg"], d["pose"])


def iter_shards(folder: str, split: Optional[str] = None, frames: bool = True) -> Iterator[tuple]:
    """Yield ``(entry, Shard)`` for every shard of a recording (optionally one split)."""
    m = read_manifest(folder)
    for e in m["shards"]:
        if split is None or e.get("split") == split:
            yield e, load_shard(folder, e, frames=frames)


def entries(folder: str, split: Optional[str] = None) -> List[Dict]:
    """Manifest entries (optionally of one split: ``"train"`` / ``"val"``)."""
    m = read_manifest(folder)
    return [e for e in m["shards"] if split is None or e.get("split") == split]
