"""Record ViZDoom play into shards: episodes, determinism, resume, workers, progress.

An episode is a pure function of ``(seed, episode index)``: its map, its length, the engine seed
and the policy's RNG are all derived from ``numpy.random.SeedSequence([seed, episode])``. The
recorder plays episodes 0, 1, 2, ... until the target number of frames is reached (the last
episode is not truncated, so resuming with a larger target extends the same sequence). With
``workers > 1`` episodes run in parallel processes (one ViZDoom per process, each episode on a
fresh engine so the result does not depend on scheduling) and the manifest is kept in episode
order.

Frame accuracy: after every step the recorder checks that the pose moved as the action said (the
angle and pitch changed by exactly the requested rotation, the position by at most
``max_step_dist`` map units). Teleporters, level exits and deaths break that; the episode is then
cut before the offending transition, so every stored action row ``t < T-1`` is the cause of the
change from frame ``t`` to ``t+1``.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

from ..errors import MatrixGameError
from .doom import DoomGame, GameConfig, degrees_to_official, import_vizdoom, wrap_degrees
from .policy import ExplorationPolicy, PolicyConfig
from .shards import FORMAT, FPS_TICRATE, MANIFEST, Shard, read_manifest, save_shard, write_manifest

#: Tolerance (degrees) between requested and applied rotation (the engine stores angles as
#: 32-bit binary angles; deltas of a few degrees come back to ~0.003 deg).
ROT_TOL = 0.05


@dataclass
class RecordConfig:
    """Everything that determines a recording (stored in the manifest; ``frames`` may grow on resume)."""

    frames: int = 10_000
    seed: int = 0
    episode_min: int = 300
    episode_max: int = 1200
    fmt: str = "mp4"
    crf: int = 18
    preset: str = "superfast"          # x264 preset (mp4 shards)
    val_every: int = 20                 # every N-th episode is held out ("val"); 0 = none
    max_step_dist: float = 40.0         # map units per frame; more = teleport
    game: GameConfig = field(default_factory=GameConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    def to_dict(self) -> Dict:
        d = asdict(self)
        d["game"] = self.game.to_dict()
        return d

    @property
    def fps(self) -> float:
        return FPS_TICRATE / self.game.tics_per_frame


def episode_plan(cfg: RecordConfig, episode: int) -> Dict:
    """Map, engine seed, policy seed and length of ``episode`` (deterministic)."""
    ss = np.random.SeedSequence([int(cfg.seed), int(episode)])
    engine_seed, policy_seed, pick = (int(v) for v in ss.generate_state(3))
    rng = np.random.default_rng(pick)
    maps = cfg.game.maps
    return {
        "episode": episode,
        "map": maps[int(rng.integers(len(maps)))],
        "engine_seed": engine_seed % (2 ** 31),
        "policy_seed": policy_seed,
        "frames": int(rng.integers(cfg.episode_min, cfg.episode_max + 1)),
        "split": "val" if cfg.val_every and episode % cfg.val_every == cfg.val_every - 1 else "train",
    }


def play_episode(game: DoomGame, cfg: RecordConfig, plan: Dict,
                 on_frame: Optional[Callable[[], None]] = None) -> Shard:
    """Play one planned episode on ``game`` and return its :class:`Shard` (in memory)."""
    game.reset(plan["map"], plan["engine_seed"])
    policy = ExplorationPolicy(np.random.default_rng(plan["policy_seed"]), cfg.policy)
    n = plan["frames"]
    frames = np.empty((n, cfg.game.height, cfg.game.width, 3), np.uint8)
    keys, yaws, pitches, poses = [], [], [], []
    while len(poses) < n and not game.finished:
        rgb, depth, pose = game.observe()
        if poses:  # did the previous action explain this pose?
            prev = poses[-1]
            d_yaw = -float(wrap_degrees(pose[3] - prev[3]))
            d_pitch = -float(pose[4] - prev[4])
            if (abs(d_yaw - yaws[-1]) > ROT_TOL or abs(d_pitch - pitches[-1]) > ROT_TOL
                    or float(np.hypot(pose[0] - prev[0], pose[1] - prev[1])) > cfg.max_step_dist):
                break
        k, yaw, pitch = policy.act(depth, pose)
        game.step(k, yaw, pitch)
        frames[len(poses)] = rgb
        keys.append(k)
        yaws.append(yaw)
        pitches.append(pitch)
        poses.append(pose)
        if on_frame is not None:
            on_frame()
    if not poses:
        raise MatrixGameError(f"episode {plan['episode']} ({plan['map']}) produced no frames.")
    yaw_deg = np.asarray(yaws, np.float32)
    pitch_deg = np.asarray(pitches, np.float32)
    dps = cfg.policy.deg_per_step
    mouse = np.stack([degrees_to_official(pitch_deg, dps), degrees_to_official(yaw_deg, dps)], 1)
    return Shard(frames=frames[:len(poses)], keyboard=np.stack(keys).astype(np.uint8),
                 mouse=mouse.astype(np.float32), yaw_deg=yaw_deg, pitch_deg=pitch_deg,
                 pose=np.stack(poses))


# ---------------------------------------------------------------------------------------------- workers
_WORKER: Dict = {}


def _worker_episode(args):
    cfg, plan, folder = args
    game = DoomGame(cfg.game)   # fresh engine per episode: the result cannot depend on history
    try:
        t0 = time.perf_counter()
        shard = play_episode(game, cfg, plan)
        dt = time.perf_counter() - t0
    finally:
        game.close()
    name = f"ep{plan['episode']:06d}"
    files = save_shard(folder, name, shard, cfg.fmt, cfg.fps, cfg.crf, cfg.preset)
    return _entry(plan, name, files, len(shard), dt)


def _entry(plan, name, files, n, dt) -> Dict:
    return {"name": name, "episode": plan["episode"], "map": plan["map"], "split": plan["split"],
            "frames": n, "planned_frames": plan["frames"], "engine_seed": plan["engine_seed"],
            "policy_seed": plan["policy_seed"], "play_seconds": round(dt, 3), **files}


class Progress:
    """A minimal progress bar on stderr (no dependency): ``done/total``, rate and ETA."""

    def __init__(self, total: int, unit: str = "frames", enabled: bool = True, stream=None):
        self.total, self.unit, self.enabled = max(1, total), unit, enabled
        self.stream = stream or sys.stderr
        self.done, self.t0, self._last = 0, time.perf_counter(), 0.0

    def update(self, n: int = 1, extra: str = "") -> None:
        self.done += n
        now = time.perf_counter()
        if not self.enabled or n == 0 or (now - self._last < 0.2 and self.done < self.total):
            return
        self._last = now
        rate = self.done / max(now - self.t0, 1e-9)
        eta = max(0.0, (self.total - self.done) / max(rate, 1e-9))
        frac = min(1.0, self.done / self.total)
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} {self.unit} {rate:,.0f}/s "
                          f"ETA {eta:,.0f}s {extra}   ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _comparable(d: Dict) -> Dict:
    d = dict(d)
    d.pop("frames", None)
    return d


def record(folder: str, cfg: RecordConfig, workers: int = 1, progress: bool = True) -> Dict:
    """Record (or resume recording) into ``folder`` until ``cfg.frames`` frames exist.

    Returns:
        the manifest dict (``shards`` in episode order, ``total_frames``, ``stats``).
    Raises:
        MatrixGameError: ``folder`` holds a recording made with a different config (resume only
        with the same config; ``frames`` may change), or ViZDoom is missing.
    """
    import_vizdoom()
    os.makedirs(folder, exist_ok=True)
    if os.path.isfile(os.path.join(folder, MANIFEST)):
        manifest = read_manifest(folder)
        if _comparable(manifest["config"]) != _comparable(cfg.to_dict()):
            raise MatrixGameError(f"{folder} already holds a recording with a different config; resume with "
                                  f"the same options (only --frames may change) or use a new --out folder.")
    else:
        import vizdoom
        manifest = {"format": FORMAT, "config": cfg.to_dict(), "vizdoom_version": getattr(vizdoom, "__version__", "?"),
                    "fps": cfg.fps, "mouse_units": f"official: 0.1 = {cfg.policy.deg_per_step} deg per video frame",
                    "keyboard": ["forward", "back", "left", "right"], "mouse": ["pitch_up", "yaw_right"],
                    "pose": ["x", "y", "z", "angle", "pitch"], "shards": [], "total_frames": 0}
    manifest["config"]["frames"] = cfg.frames
    done = sum(e["frames"] for e in manifest["shards"])
    next_ep = 1 + max([e["episode"] for e in manifest["shards"]], default=-1)
    bar = Progress(cfg.frames, enabled=progress)
    bar.update(done)
    # plan episodes until the target is reached (planned lengths; cut episodes may fall short,
    # in which case more episodes are planned in a later round)
    t_start = time.perf_counter()
    new_frames = 0
    while done < cfg.frames:
        plans, acc = [], done
        ep = next_ep
        while acc < cfg.frames:
            p = episode_plan(cfg, ep)
            plans.append(p)
            acc += p["frames"]
            ep += 1
        jobs = [(cfg, p, folder) for p in plans]
        if workers > 1:
            import multiprocessing as mp
            with mp.get_context("spawn").Pool(workers) as pool:
                for entry in pool.imap(_worker_episode, jobs):
                    done, new_frames = _add(folder, manifest, entry, done, new_frames, bar)
        else:
            for job in jobs:
                entry = _worker_episode(job)
                done, new_frames = _add(folder, manifest, entry, done, new_frames, bar)
        next_ep = ep
    bar.close()
    dt = time.perf_counter() - t_start
    manifest["stats"] = {"last_run_frames": new_frames, "last_run_seconds": round(dt, 2),
                         "last_run_frames_per_s": round(new_frames / dt, 1) if dt > 0 else None,
                         "workers": workers}
    write_manifest(folder, manifest)
    return manifest


def _add(folder, manifest, entry, done, new_frames, bar):
    manifest["shards"].append(entry)
    manifest["total_frames"] = done + entry["frames"]
    write_manifest(folder, manifest)
    bar.update(entry["frames"], f"ep {entry['episode']} {entry['map']}")
    return done + entry["frames"], new_frames + entry["frames"]
