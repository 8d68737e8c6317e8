"""World-model data and evaluation figures (issue #5), as a markdown table.

    python benchmarks/eval_world_model.py                         # recorder speed + evaluator checks
    python benchmarks/eval_world_model.py --data REC              # + ground-truth ceiling on a recording
    python benchmarks/eval_world_model.py --data REC --run RUN    # + a trained model (next block, following)
    python benchmarks/eval_world_model.py --data REC --run RUN --device cuda --clips 16

Rows:

* ViZDoom engine alone (frames/s, 2 tics per frame, one process) at 160x120 and at 320x180 with
  the depth buffer; the full recorder (policy + crop + shard writing) at the default 176x320 mp4;
* the action-following evaluator on synthetic panning videos of known direction (expected 100%);
* with ``--data``: action following of the recorded ground truth itself (the ceiling a model of
  that data can reach: walking and strafing also move the picture); pitch blocks count from a
  mean of 0.02 (Doom limits the pitch, so whole blocks at 0.05 are rare);
* with ``--run``: next-block PSNR/SSIM (teacher-forced) vs the copy-last-frame baseline, the
  free-running rollout, and action following per class.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from matrix_game_core.evaluate import ACTION_CLASSES, action_following, synthetic_check  # noqa: E402


def _pct(v):
    return "n/a" if v is None else f"{100 * v:.1f}%"


def engine_fps(res: str, depth: bool, seconds: float = 3.0) -> float:
    import vizdoom as vzd
    from matrix_game_core.data.doom import DoomGame, GameConfig
    w, h = (int(v) for v in res.split("x"))
    g = DoomGame(GameConfig(height=h, width=w, render=(w, h), maps=["MAP01"]))
    g.game.set_depth_buffer_enabled(depth)  # before the engine starts (reset() inits it)
    g.reset("MAP01", 1)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        g.game.make_action([1, 0, 0, 0, 1.0, 0.0], 2)
        g.game.get_state()
        n += 1
    g.close()
    return n / (time.perf_counter() - t0)


def recorder_fps(frames: int, size=(176, 320), fmt="mp4") -> float:
    from matrix_game_core.data.doom import GameConfig
    from matrix_game_core.data.record import RecordConfig, record
    with tempfile.TemporaryDirectory() as d:
        cfg = RecordConfig(frames=frames, seed=0, episode_min=min(frames, 500), episode_max=min(frames, 500),
                           fmt=fmt, game=GameConfig(height=size[0], width=size[1]))
        t0 = time.perf_counter()
        m = record(d, cfg, progress=False)
        return m["total_frames"] / (time.perf_counter() - t0)


def gt_ceiling(data: str, split=None):
    from matrix_game_core.data.shards import iter_shards
    per = {n: [0, 0] for n, _, _ in ACTION_CLASSES}
    for _e, s in iter_shards(data, split):
        rep = action_following(s.frames, s.mouse, pitch_threshold=0.02)
        for k, v in rep.per_class.items():
            per[k][0] += v["correct"]
            per[k][1] += v["n"]
    return per


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None)
    p.add_argument("--run", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--steps", default=None, help="denoising_step_list override, e.g. 1000,750,500,250")
    p.add_argument("--record-frames", type=int, default=2000)
    p.add_argument("--no-doom", action="store_true", help="skip the ViZDoom rows")
    a = p.parse_args(argv)
    rows = []
    try:
        import vizdoom  # noqa: F401
        have_doom = not a.no_doom
    except ImportError:
        have_doom = False
    if have_doom:
        rows.append(("ViZDoom engine, 160x120, 2 tics/frame", f"{engine_fps('160x120', False):,.0f} frames/s"))
        rows.append(("ViZDoom engine, 320x180 + depth, 2 tics/frame", f"{engine_fps('320x180', True):,.0f} frames/s"))
        rows.append(("recorder end to end, 176x320 mp4, 1 process",
                     f"{recorder_fps(a.record_frames):,.0f} frames/s"))
    syn = synthetic_check(9, 4)
    rows.append(("evaluator on synthetic panning (known direction)",
                 ", ".join(f"{k} {_pct(v['accuracy'])} (n={v['n']})" for k, v in syn["per_class"].items())))
    if a.data:
        per = gt_ceiling(a.data)
        rows.append(("recorded ground truth (ceiling)",
                     ", ".join(f"{k} {_pct(c / n if n else None)} (n={n})" for k, (c, n) in per.items())))
    if a.run:
        from matrix_game_core.evaluate import evaluate_run
        if not a.data:
            p.error("--run needs --data (held-out recordings)")
        steps = [int(s) for s in a.steps.split(",")] if a.steps else None
        t0 = time.perf_counter()
        rep = evaluate_run(a.run, a.data, clips=a.clips, blocks=a.blocks, steps=steps, device=a.device)
        for k in ("model", "copy_last", "rollout"):
            r = rep.get(f"next_block_{k}")
            if r:
                rows.append((f"next-block {k.replace('_', '-')} ({rep['clips']} clips)",
                             f"PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}"))
        af = rep["action_following"]
        rows.append(("model action following",
                     ", ".join(f"{k} {_pct(v['accuracy'])} (n={v['n']})" for k, v in af["per_class"].items())
                     + f"; all {_pct(af['accuracy'])}"))
        rows.append(("model evaluation time", f"{time.perf_counter() - t0:.1f} s on {a.device}"))
    w = max(len(r[0]) for r in rows)
    print(f"| {'measurement'.ljust(w)} | value |")
    print(f"|{'-' * (w + 2)}|-------|")
    for k, v in rows:
        print(f"| {k.ljust(w)} | {v} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
