"""Pick the embedded model's guidance scales on held-out episodes that its model card does not use.

    python tools/pick_guidance.py --heldout HELDOUT [--root DIR] [--start 12] [--clips 6] \\
        [--scales 1:1:1,2:2:2,1:2:6]

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
from matrix_game_core.embedded.build import score_clips  # noqa: E402
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
    comp = embedded.load(root=a.root) if a.root else embedded.load()
    print("| keys : yaw : pitch | DiT passes per step | " + " | ".join(k.replace("_", " ") for k in CLASSES)
          + " | next-block PSNR vs copy-last |")
    print("|---" * (3 + len(CLASSES)) + "|")
    n_steps = len(comp.dit.cfg.denoising_step_list)
    for wk, w, wp, gs, rs in triples:
        cfg = comp.dit.cfg
        cfg.keyboard_guidance, cfg.action_guidance, cfg.pitch_guidance, cfg.guidance_steps = wk, w, wp, gs
        cfg.guidance_rescale = rs
        try:
            nb, per, *_ = score_clips(comp, a.heldout, a.start, a.clips, pitch_magnitude=a.pitch_magnitude,
                                      ceiling_frames=None)
        except MatrixGameError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        gain = float(np.mean([r["model"]["psnr"] - r["copy_last"]["psnr"] for r in nb]))
        copy = float(np.mean([r["copy_last"]["psnr"] for r in nb]))
        g = n_steps if gs is None else min(gs, n_steps)
        p = (g * passes(w, wp, wk) + n_steps - g) / n_steps
        print(f"| {wk:g}:{w:g}:{wp:g}{'' if gs is None else f' (first {gs} steps)'}{f', rescale {rs:g}' if rs else ''} | {p:g} | "
              + " | ".join(f"{per[k]['correct']}/{per[k]['n']}" for k in CLASSES) + f" | {gain:+.2f} dB (copy-last {copy:.2f} dB) |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
