"""Pick the embedded model's guidance scales on held-out episodes that its model card does not use.

    python tools/pick_guidance.py --heldout HELDOUT [--root DIR] [--start 12] [--clips 6] \\
        [--scales 1:1:1,2:2:2,1:2:6]

``--scales`` lists ``keys:yaw:pitch`` triples, i.e. ``keyboard_guidance : action_guidance :
pitch_guidance`` (:mod:`matrix_game_core.guidance`). Each is scored with the project's evaluator
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
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from matrix_game_core import embedded  # noqa: E402
from matrix_game_core.data.shards import entries, load_shard  # noqa: E402
from matrix_game_core.evaluate import action_following, evaluate_next_block, generate_for_following  # noqa: E402
from matrix_game_core.guidance import passes  # noqa: E402

CLASSES = ("turn_left", "turn_right", "look_up", "look_down")


def score(comp, heldout: str, start: int, clips: int, pitch_magnitude: float, blocks: int = 4,
          follow_blocks: int = 9):
    """Next-block PSNR gain over copy-last (dB), copy-last PSNR (dB) and ``{class: (followed, blocks)}``
    for the sampler settings in ``comp.dit.cfg``."""
    t = 9 + 12 * (blocks - 1)
    rng = np.random.default_rng(0)
    gains, copy, per = [], [], {k: [0, 0] for k in CLASSES}
    for e in entries(heldout)[start:]:
        if len(gains) >= clips:
            break
        s = load_shard(heldout, e)
        if len(s) < t:
            continue
        a = int(rng.integers(0, len(s) - t + 1))
        r = evaluate_next_block(comp.dit, comp.vae, s.frames[a:a + t], s.keyboard[a:a + t].astype(np.float32),
                                s.mouse[a:a + t], seed=0, rollout=False)
        gains.append(r["model"]["psnr"] - r["copy_last"]["psnr"])
        copy.append(r["copy_last"]["psnr"])
        img = torch.from_numpy(s.frames[a]).permute(2, 0, 1)[None].float() / 127.5 - 1
        fr, ms, _ = generate_for_following(comp.dit, comp.vae, img, follow_blocks, seed=0,
                                           pitch_magnitude=pitch_magnitude)
        for k, v in action_following(fr, ms, pitch_threshold=0.5 * pitch_magnitude).per_class.items():
            if k in per:
                per[k][0] += v["correct"]
                per[k][1] += v["n"]
    if not gains:
        raise SystemExit(f"error: no held-out episode from index {start} has {t} frames.")
    return float(np.mean(gains)), float(np.mean(copy)), per


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
        triples = [tuple(float(x) for x in g.split(":")) for g in a.scales.split(",")]
    except ValueError:
        triples = []
    if not triples or any(len(t) != 3 for t in triples):
        print(f"error: --scales must be keys:yaw:pitch triples such as 1:2:6; got {a.scales!r}.", file=sys.stderr)
        return 2
    comp = embedded.load(root=a.root) if a.root else embedded.load()
    print("| keys : yaw : pitch | DiT passes | " + " | ".join(k.replace("_", " ") for k in CLASSES)
          + " | next-block PSNR vs copy-last |")
    print("|---" * (3 + len(CLASSES)) + "|")
    for wk, w, wp in triples:
        cfg = comp.dit.cfg
        cfg.keyboard_guidance, cfg.action_guidance, cfg.pitch_guidance = wk, w, wp
        gain, copy, per = score(comp, a.heldout, a.start, a.clips, a.pitch_magnitude)
        print(f"| {wk:g}:{w:g}:{wp:g} | {passes(w, wp, wk)} | "
              + " | ".join(f"{c}/{n}" for c, n in per.values()) + f" | {gain:+.2f} dB (copy-last {copy:.2f} dB) |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
