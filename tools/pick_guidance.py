"""Pick the embedded model's guidance scales on held-out episodes that its model card does not use.

    python tools/pick_guidance.py --heldout HELDOUT [--root DIR] [--start 12] [--clips 6] \\
        [--scales 1:1:1,2:2:2,1:2:6] [--steps 1000,500,150] [--hold 0.5]

``--scales`` lists ``keys:yaw:pitch`` triples, i.e. ``keyboard_guidance : action_guidance :
pitch_guidance`` (:mod:`matrix_game_core.guidance`), each optionally ``@G``: only the first G
denoising steps of a block guided (``guidance_steps``), and ``~R``: guidance rescale R
(``guidance_rescale``, 0 to 1), e.g. ``1:2:4@3~0.7``. Each is scored with the project's evaluator
on the held-out episodes ``start .. start+clips-1`` (the card, ``embedded.build --clips N``,
uses the first N; pick ``--start`` past them so the scales are not chosen on the card's clips):
teacher-forced next-block PSNR beside the copy-last-frame baseline, and action following from the
same start frames under the benchmark script (idle, then turn left, turn right, look up, look
down, ...). Prints a markdown table. ``--root`` evaluates a model installed elsewhere (e.g. a
build made with ``embedded.build --dest DIR``); the default is the shipped one.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from matrix_game_core import embedded  # noqa: E402
from matrix_game_core.embedded.evaluation import score_clips  # noqa: E402
from matrix_game_core.errors import MatrixGameError  # noqa: E402
from matrix_game_core.guidance import passes  # noqa: E402

CLASSES = ("turn_left", "turn_right", "look_up", "look_down")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heldout", required=True, help="recording of held-out maps")
    ap.add_argument("--root", default=None, help="installed model folder (default: the shipped embedded model)")
    ap.add_argument("--start", type=int, default=12, help="first held-out episode (0-based) to score on")
    ap.add_argument("--clips", type=int, default=6, help="episodes to score on")
    ap.add_argument("--scales", default="1:1:1,2:2:2,1:2:6", help="keys:yaw:pitch triples, comma-separated")
    ap.add_argument("--hold", type=float, default=None,
                    help="guidance hold, 0 (classic) to 1 (matrix_game_core/guidance.py); default: the model's own")
    ap.add_argument("--steps", default=None,
                    help="denoising timesteps to sample with instead of the model's own, e.g. 1000,500,150")
    ap.add_argument("--sustain", type=int, default=0,
                    help="also score following with each command held this many blocks (its blocks after the "
                         "first: the motion must go on); 0 = not")
    ap.add_argument("--pitch-magnitude", type=float, default=0.04, help="look command of the benchmark script")
    a = ap.parse_args()
    try:
        triples = []
        for g in a.scales.split(","):
            g, _, rs = g.partition("~")
            sc, _, gs = g.partition("@")
            triples.append((*(float(x) for x in sc.split(":")), int(gs) if gs else None, float(rs) if rs else 0.0))
    except ValueError:
        triples = []
    if not triples or any(len(t) != 5 or not 0 <= t[4] <= 1 for t in triples):
        print(f"error: --scales must be keys:yaw:pitch triples such as 1:2:6 (or 1:2:6@2: only the first 2 "
              f"denoising steps guided; 1:2:6~0.7: guidance rescale 0.7); got {a.scales!r}.", file=sys.stderr)
        return 2
    try:
        steps = [int(x) for x in a.steps.split(",")] if a.steps else None
    except ValueError:
        steps = None
    if a.steps and (not steps or any(not 0 < x <= 1000 for x in steps) or steps != sorted(steps, reverse=True)):
        print(f"error: --steps must be decreasing timesteps in 1..1000 such as 1000,500,150; got {a.steps!r}.",
              file=sys.stderr)
        return 2
    comp = embedded.load(root=a.root) if a.root else embedded.load()
    held_cols = a.sustain > 1
    print("| keys : yaw : pitch | DiT passes per step | " + " | ".join(k.replace("_", " ") for k in CLASSES)
          + (f" | held {a.sustain} blocks (L / R / up / down)" if held_cols else "") + " | next-block PSNR vs copy-last |")
    print("|---" * (3 + len(CLASSES) + held_cols) + "|")
    if steps:
        comp.dit.cfg.denoising_step_list = steps
    if a.hold is not None:
        comp.dit.cfg.guidance_hold = a.hold
    n_steps = len(comp.dit.cfg.denoising_step_list)
    print(f"denoising steps: {comp.dit.cfg.denoising_step_list}; guidance hold: "
          f"{getattr(comp.dit.cfg, 'guidance_hold', 0.0)}", file=sys.stderr)
    for wk, w, wp, gs, rs in triples:
        cfg = comp.dit.cfg
        cfg.keyboard_guidance, cfg.action_guidance, cfg.pitch_guidance, cfg.guidance_steps = wk, w, wp, gs
        cfg.guidance_rescale = rs
        try:
            nb, per, _, _, _, held = score_clips(comp, a.heldout, a.start, a.clips, steps=steps,
                                                 pitch_magnitude=a.pitch_magnitude, ceiling_frames=None,
                                                 sustain_blocks=a.sustain)
        except MatrixGameError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        gain = float(np.mean([r["model"]["psnr"] - r["copy_last"]["psnr"] for r in nb]))
        copy = float(np.mean([r["copy_last"]["psnr"] for r in nb]))
        g = n_steps if gs is None else min(gs, n_steps)
        p = (g * passes(w, wp, wk) + n_steps - g) / n_steps
        print(f"| {wk:g}:{w:g}:{wp:g}{'' if gs is None else f' (first {gs} steps)'}{f', rescale {rs:g}' if rs else ''} | {p:g} | "
              + " | ".join(f"{per[k]['correct']}/{per[k]['n']}" for k in CLASSES)
              + (" | " + " / ".join(f"{held[k]['correct']}/{held[k]['n']}" for k in CLASSES) if held_cols else "")
              + f" | {gain:+.2f} dB (copy-last {copy:.2f} dB) |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
