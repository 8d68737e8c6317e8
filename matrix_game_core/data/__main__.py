"""``python -m matrix_game_core.data``: record ViZDoom play, inspect recordings.

Commands::

    record --out DIR (--frames N | --hours H) [--seed 0] [--size 176x320] [--render 320x180]
           [--format mp4|npz] [--crf 18] [--preset superfast] [--workers N] [--monsters] [--maps MAP01,MAP02] [--episode-len 300:1200]
           [--val-every 20] [--deg-per-step 5.0] [--tics-per-frame 2] [--still-prob 0] [--no-progress]
    info DIR                       # frames, hours, splits, maps, action statistics
    track DIR --shard ep000003 [--start 0] [--frames 57] --out track.json
                                   # an ActionTrack JSON of recorded actions (for replay/eval)
    merge --out ALL PART0 PART1 ...  # one manifest over recordings made on several machines

Re-running ``record`` on the same folder resumes (same options; ``--frames`` may grow).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from ..errors import MatrixGameError


def _size(s: str):
    try:
        h, w = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {s!r} must look like 176x320 (height x width)")
    return h, w


def _wh(s: str):
    h, w = _size(s)
    return h, w  # as typed: WIDTHxHEIGHT for --render


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m matrix_game_core.data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="record ViZDoom play into shards (resumable)")
    r.add_argument("--out", required=True)
    g = r.add_mutually_exclusive_group(required=True)
    g.add_argument("--frames", type=int)
    g.add_argument("--hours", type=float, help="hours of play at the recording frame rate")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--size", type=_size, default=(176, 320), help="stored HEIGHTxWIDTH (default 176x320)")
    r.add_argument("--render", type=_wh, default=None, help="ViZDoom WIDTHxHEIGHT (default: smallest 16:9 that covers --size)")
    r.add_argument("--format", choices=("mp4", "npz"), default="mp4")
    r.add_argument("--crf", type=int, default=18)
    r.add_argument("--preset", default="superfast", help="x264 preset of mp4 shards")
    r.add_argument("--workers", type=int, default=1)
    r.add_argument("--monsters", action="store_true", help="keep monsters (default: -nomonsters)")
    r.add_argument("--maps", default=None, help="comma-separated map list (default MAP01..MAP32)")
    r.add_argument("--episode-len", default="300:1200", help="MIN:MAX frames per episode")
    r.add_argument("--val-every", type=int, default=20, help="every N-th episode is held out (0 = none)")
    r.add_argument("--deg-per-step", type=float, default=5.0,
                   help="degrees per video frame that equal 0.1 official mouse units")
    r.add_argument("--tics-per-frame", type=int, default=2)
    r.add_argument("--still-prob", type=float, default=0.0,
                   help="chance per frame that the player stops, holds still for 6-30 frames and then "
                        "(usually) turns or looks from rest (default 0: never)")
    r.add_argument("--no-progress", action="store_true")
    i = sub.add_parser("info", help="summarise a recording")
    i.add_argument("folder")
    t = sub.add_parser("track", help="write recorded actions as an ActionTrack JSON")
    t.add_argument("folder")
    t.add_argument("--shard", required=True)
    t.add_argument("--start", type=int, default=0)
    t.add_argument("--frames", type=int, default=None)
    t.add_argument("--out", required=True)
    mg = sub.add_parser("merge", help="one manifest over recordings made on several machines (no copying)")
    mg.add_argument("--out", required=True)
    mg.add_argument("parts", nargs="+")
    return p


def cmd_merge(a) -> int:
    from .merge import merge_recordings

    m = merge_recordings(a.out, a.parts)
    print(json.dumps({"folder": a.out, "parts": len(m["parts"]), "shards": len(m["shards"]),
                      "total_frames": m["total_frames"]}))
    return 0


def cmd_record(a) -> int:
    from .doom import GameConfig
    from .policy import PolicyConfig
    from .record import RecordConfig, record

    lo, hi = (int(v) for v in a.episode_len.split(":"))
    fps = 35.0 / a.tics_per_frame
    frames = a.frames if a.frames is not None else int(round(a.hours * 3600 * fps))
    game = GameConfig(height=a.size[0], width=a.size[1],
                      render=(a.render[0], a.render[1]) if a.render else None,
                      tics_per_frame=a.tics_per_frame, monsters=a.monsters)
    if a.maps:
        game.maps = [m.strip().upper() for m in a.maps.split(",") if m.strip()]
    cfg = RecordConfig(frames=frames, seed=a.seed, episode_min=lo, episode_max=hi, fmt=a.format, crf=a.crf, preset=a.preset,
                       val_every=a.val_every, game=game, policy=PolicyConfig(deg_per_step=a.deg_per_step, still_prob=a.still_prob))
    m = record(a.out, cfg, workers=a.workers, progress=not a.no_progress)
    st = m.get("stats", {})
    print(json.dumps({"folder": a.out, "shards": len(m["shards"]), "total_frames": m["total_frames"],
                      "hours": round(m["total_frames"] / fps / 3600, 3), **st}))
    return 0


def cmd_info(a) -> int:
    from .shards import iter_shards, read_manifest

    m = read_manifest(a.folder)
    fps = m["fps"]
    out = {"total_frames": m["total_frames"], "hours": round(m["total_frames"] / fps / 3600, 3),
           "fps": fps, "mouse_units": m["mouse_units"], "shards": len(m["shards"]), "splits": {}, "maps": {}}
    for e in m["shards"]:
        out["splits"][e["split"]] = out["splits"].get(e["split"], 0) + e["frames"]
        out["maps"][e["map"]] = out["maps"].get(e["map"], 0) + e["frames"]
    kb, ms = [], []
    for _e, s in iter_shards(a.folder, frames=False):
        kb.append(s.keyboard)
        ms.append(s.mouse)
    if kb:
        kb, ms = np.concatenate(kb).astype(np.float64), np.concatenate(ms).astype(np.float64)
        out["key_press_rate"] = dict(zip(m["keyboard"], np.round(kb.mean(0), 3).tolist()))
        out["mouse_mean_abs"] = dict(zip(m["mouse"], np.round(np.abs(ms).mean(0), 4).tolist()))
        out["mouse_at_full_step"] = dict(zip(m["mouse"], np.round((np.abs(ms) >= 0.0999).mean(0), 3).tolist()))
    print(json.dumps(out, indent=1))
    return 0


def cmd_track(a) -> int:
    from .shards import entries, load_shard, read_manifest

    es = [e for e in entries(a.folder) if e["name"] == a.shard]
    if not es:
        raise MatrixGameError(f"no shard {a.shard!r} in {a.folder}.")
    m = read_manifest(a.folder)
    s = load_shard(a.folder, es[0], frames=False)
    meta = {"source": "matrix_game_core.data", "recording": os.path.abspath(a.folder), "shard": a.shard,
            "start": a.start, "mouse_units": m.get("mouse_units")}
    track = s.action_track(a.start, a.frames, fps=m.get("fps", 17.5), meta=meta)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(track.to_json())
    print(f"{a.out}: {track.num_frames} frames" + ("" if (track.num_frames - 1) % 4 == 0 else
                                                     " (not 1 + 4n: crop it before generating)"))
    return 0


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    try:
        return {"record": cmd_record, "info": cmd_info, "track": cmd_track, "merge": cmd_merge}[a.cmd](a)
    except MatrixGameError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
