"""Evaluate world models: next-block fidelity and action following (issue #5).

Two measurements, both usable on any model's output (our small Doom model, the official 1.6B
checkpoints, or a video from anywhere):

1. **Next-block PSNR / SSIM** (:func:`evaluate_next_block`): on held-out recordings the model sees
   the ground-truth past (teacher forcing: after each generated block the KV caches are rewritten
   with the ground-truth latents by the t=0 context pass) and predicts the next block from the
   recorded actions; its frames are compared with the recorded frames, beside the
   **copy-last-frame** baseline (the last ground-truth frame before the block, held).

2. **Action following, GameWorld-style** (:func:`action_following`): for blocks whose mouse command
   is turn left / right (look up / down), the sign of the global horizontal (vertical) image motion
   between consecutive frames of the block must match the command. Turning right moves the
   picture left (dx < 0); looking up moves it down (dy > 0, image y grows downwards). Motion is
   measured by phase correlation (:func:`phase_correlation`), which recovers a global translation
   to sub-pixel accuracy and ignores brightness changes. Accuracy is reported per action class.

Frame / action alignment (official convention, :mod:`matrix_game_core.actions`): action row ``t``
is the action taken at video frame ``t``; its effect first shows in frame ``t + 1``. A session's
block 0 holds rows/frames ``[0, 9)``, block ``b >= 1`` rows/frames ``[12b - 3, 12b + 9)``.

Layouts accepted for videos: ``[T, H, W, 3]`` (ComfyUI IMAGE, uint8 or float in [0, 1]),
``[3, T, H, W]`` or ``[1, 3, T, H, W]`` (engine frames in [-1, 1]); numpy or torch.

CLI: ``python -m matrix_game_core.evaluate {motion,synthetic,model,compare} ...`` (see ``--help``).

The pieces live in one file per idea and are importable from here: video layouts and motion
(:mod:`.eval_video`), action following (:mod:`.eval_following`), next-block fidelity
(:mod:`.eval_fidelity`), student vs teacher (:mod:`.eval_compare`); the synthetic panning video
(the evaluator's ground truth) is a data generator (:mod:`.data.synthetic`). This module keeps the
run-level evaluation and the CLI.
"""
from __future__ import annotations

import json
import sys
from typing import Dict, Optional

import numpy as np
import torch

from .actions import CAM_VALUE  # noqa: F401  (public name of this module)
from .data.synthetic import synthetic_panning_video  # noqa: F401
from .errors import MatrixGameError
from .eval_fidelity import evaluate_next_block, generate_for_following, psnr, ssim, teacher_forced_blocks  # noqa: F401
from .eval_following import (ACTION_CLASSES, FollowingReport, _acc, action_following, block_rows,  # noqa: F401
                             command_script, synthetic_check)
from .eval_video import global_motion, phase_correlation, to_gray, to_unit_rgb  # noqa: F401


# ---------------------------------------------------------------------------------------------- CLI
def _read_video(path: str) -> np.ndarray:
    if path.endswith(".npz"):
        with np.load(path) as z:
            return z["frames"]
    from .data.shards import read_mp4
    return read_mp4(path)


def _read_mouse(path: str) -> np.ndarray:
    with open(path, "r", encoding="utf-8") as f:
        text = f.read()
    m = None
    try:
        from .actions import ActionTrack
        m = ActionTrack.from_json(text, any_length=True).mouse
        if m is None:
            raise MatrixGameError(f"track {path} has no mouse rows (templerun?): nothing to evaluate.")
        return np.asarray(m.detach().cpu() if isinstance(m, torch.Tensor) else m, np.float32)
    except MatrixGameError:
        if m is None and '"mouse"' not in text:
            raise
    except (ImportError, AttributeError, KeyError, TypeError, ValueError):
        pass
    try:  # plain {"mouse": [[pitch, yaw], ...]} JSON
        return np.asarray(json.loads(text)["mouse"], np.float32)
    except (ValueError, KeyError, TypeError) as e:
        raise MatrixGameError(f"cannot read mouse rows from {path} ({e}); pass an ActionTrack JSON.") from e


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m matrix_game_core.evaluate",
                                description="World-model evaluation: action following and next-block fidelity.")
    sub = p.add_subparsers(dest="cmd", required=True)
    mo = sub.add_parser("motion", help="action following of any video (mp4/npz) under an ActionTrack JSON")
    mo.add_argument("video")
    mo.add_argument("--track", required=True, help="ActionTrack JSON (mouse rows = video frames)")
    mo.add_argument("--threshold", type=float, default=0.05)
    cp = sub.add_parser("compare", help="distilled student vs its teacher on held-out recordings (table)")
    cp.add_argument("--run", required=True, help="training run folder with export/dit and export/student")
    cp.add_argument("--data", required=True)
    cp.add_argument("--clips", type=int, default=4)
    cp.add_argument("--blocks", type=int, default=4)
    cp.add_argument("--follow-blocks", type=int, default=9)
    cp.add_argument("--device", default="cpu")
    cp.add_argument("--seed", type=int, default=0)
    sy = sub.add_parser("synthetic", help="sanity check on synthetic panning videos (expects 100%)")
    sy.add_argument("--blocks", type=int, default=9)
    sy.add_argument("--seeds", type=int, default=4)
    md = sub.add_parser("model", help="evaluate a trained run (or official checkpoints) on held-out recordings")
    md.add_argument("--run", help="training run folder (or its export/ folder)")
    md.add_argument("--data", required=True, help="recording folder (manifest.json)")
    md.add_argument("--split", default="val")
    md.add_argument("--clips", type=int, default=4)
    md.add_argument("--blocks", type=int, default=4, help="blocks per next-block clip (clip = 9 + 12(blocks-1) frames)")
    md.add_argument("--follow-blocks", type=int, default=9)
    md.add_argument("--steps", default=None, help="denoising_step_list override, e.g. 1000,750,500,250")
    md.add_argument("--device", default="cpu")
    md.add_argument("--seed", type=int, default=0)
    md.add_argument("--out", default=None, help="write the JSON report here")
    a = p.parse_args(argv)
    try:
        if a.cmd == "motion":
            rep = action_following(_read_video(a.video), _read_mouse(a.track), threshold=a.threshold)
            print(json.dumps(rep.to_dict(), indent=1))
        elif a.cmd == "compare":
            from .eval_compare import compare_student_teacher, format_table
            rows = compare_student_teacher(a.run, a.data, clips=a.clips, blocks=a.blocks,
                                           follow_blocks=a.follow_blocks, device=a.device, seed=a.seed)
            print(format_table(rows))
        elif a.cmd == "synthetic":
            print(json.dumps(synthetic_check(a.blocks, a.seeds), indent=1))
        else:
            steps = [int(s) for s in a.steps.split(",")] if a.steps else None
            rep = evaluate_run(a.run, a.data, split=a.split, clips=a.clips, blocks=a.blocks,
                               follow_blocks=a.follow_blocks, steps=steps, device=a.device, seed=a.seed)
            text = json.dumps(rep, indent=1)
            if a.out:
                with open(a.out, "w", encoding="utf-8") as f:
                    f.write(text)
            print(text)
    except MatrixGameError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def evaluate_run(run: Optional[str], data: str, split: str = "val", clips: int = 4, blocks: int = 4,
                 follow_blocks: int = 9, steps=None, device: str = "cpu", seed: int = 0,
                 pitch_magnitude: float = 0.04, model: str = "dit") -> Dict:
    """Evaluate a trained run on a recording's held-out split: next-block PSNR/SSIM (vs copy-last)
    on ``clips`` clips, and action following from ``clips`` held-out start frames (turns at 0.1;
    looks at ``pitch_magnitude``, 0.04 = 24 degrees per block with the default 5 deg/step, since
    Doom limits the pitch to about +-30 degrees). ``model``: ``"dit"`` or the distilled ``"student"``."""
    from .data.shards import entries, load_shard
    from .train.export import load_trained

    comps = load_trained(run, device=device, model=model)
    dit, vae = comps.dit, comps.vae
    es = entries(data, split) or entries(data)
    if not es:
        raise MatrixGameError(f"{data} has no shards.")
    t = 9 + 12 * (blocks - 1)
    nb_res, follow = [], []
    per = {name: {"n": 0, "correct": 0, "toward_px": 0.0} for name, _, _ in ACTION_CLASSES}
    rng = np.random.default_rng(seed)
    done = 0
    for e in es:
        if done >= clips:
            break
        s = load_shard(data, e)
        if len(s) < t:
            continue
        st = int(rng.integers(0, len(s) - t + 1))
        fr = s.frames[st:st + t]
        h, w = fr.shape[1:3]
        nb_res.append(evaluate_next_block(dit, vae, fr, s.keyboard[st:st + t].astype(np.float32),
                                          s.mouse[st:st + t], seed=seed, denoising_step_list=steps))
        img = torch.from_numpy(fr[0]).permute(2, 0, 1)[None].float() / 127.5 - 1
        frames, ms, _ = generate_for_following(dit, vae, img, follow_blocks, seed=seed, denoising_step_list=steps,
                                               pitch_magnitude=pitch_magnitude)
        rep = action_following(frames, ms, pitch_threshold=0.5 * pitch_magnitude)
        for k, v in rep.per_class.items():
            per[k]["n"] += v["n"]
            per[k]["correct"] += v["correct"]
            per[k]["toward_px"] += (v["toward_px"] or 0.0) * v["n"]
        follow.append(rep.to_dict())
        done += 1
    if not nb_res:
        raise MatrixGameError(f"no shard of {data} has {t} frames; lower --blocks.")
    for v in per.values():
        v["accuracy"] = _acc(v["correct"], v["n"])
        v["toward_px"] = None if v["n"] == 0 else v["toward_px"] / v["n"]
    out = {"label": comps.label, "clips": len(nb_res), "frames_per_clip": t}
    for k in ("model", "copy_last", "rollout"):
        vals = [r[k] for r in nb_res if k in r]
        if vals:
            out[f"next_block_{k}"] = {m: float(np.mean([v[m] for v in vals])) for m in ("psnr", "ssim")}
    yc = per["turn_left"]["correct"] + per["turn_right"]["correct"]
    yn = per["turn_left"]["n"] + per["turn_right"]["n"]
    pc = per["look_up"]["correct"] + per["look_down"]["correct"]
    pn = per["look_up"]["n"] + per["look_down"]["n"]
    out["action_following"] = {"per_class": per, "yaw_accuracy": _acc(yc, yn), "pitch_accuracy": _acc(pc, pn),
                               "accuracy": _acc(yc + pc, yn + pn)}
    return out


if __name__ == "__main__":
    sys.exit(main())
