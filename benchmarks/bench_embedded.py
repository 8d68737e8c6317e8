"""Speed of the embedded ViZDoom model on this machine: the numbers a user of the CPU workflow and the
live session gets.

    python benchmarks/bench_embedded.py [--blocks 8] [--threads N] [--steps 1000,750,500,250] [--guidance 1,2,2:6,2:6:1]

Per 12-frame block: DiT denoising steps, the t=0 context pass, the streaming VAE decode; steady-state
video frames per second; and the time from a key press to the first frame it conditions in a live
loop (a key pressed just after a block started conditions the next block: the rest of the current
block, then the next block's DiT work and the decode of its first latent frame; worst case). Prints a
markdown table and a last line ``steady_fps=X latency_ms=Y``.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from matrix_game_core import embedded  # noqa: E402
from matrix_game_core.embedded.evaluation import measure_speed  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=8, help="timed blocks after 2 warm-up blocks")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--steps", default=None, help="denoising_step_list override, e.g. 1000,500")
    ap.add_argument("--guidance", default=None,
                    help="guidance settings to time, W[:WP[:WK]] (action guidance W, pitch guidance WP, keyboard "
                         "guidance WK), e.g. 1,2,2:6,2:6:1 (default: the model's own; one DiT pass per distinct "
                         "condition level, see matrix_game_core/guidance.py)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    comp = embedded.load()
    if a.steps:
        comp.dit.cfg.denoising_step_list = [int(s) for s in a.steps.split(",")]
    own = (comp.dit.cfg.action_guidance, comp.dit.cfg.pitch_guidance, comp.dit.cfg.keyboard_guidance)
    scales = ([(tuple(float(x) for x in g.split(":")) + (None, None))[:3] for g in a.guidance.split(",")]
              if a.guidance else [own])
    h, w = comp.dit.cfg.frame_size
    print("| model | size | threads | denoising steps | guidance (actions:pitch:keys) | DiT passes / step | ms / block "
          "| decode ms / block | frames/s | key->frame ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for g, gp, gk in scales:
        comp.dit.cfg.action_guidance, comp.dit.cfg.pitch_guidance, comp.dit.cfg.keyboard_guidance = g, gp, gk
        r = measure_speed(comp, blocks=a.blocks)
        print(f"| {embedded.NAME} | {w}x{h} | {r['threads']} | {r['denoising_steps']} "
              f"| {':'.join(f'{x:g}' for x in (g, gp, gk) if x is not None)} | {r['passes_per_step']} "
              f"| {1000 * r['seconds_per_block']:.0f} | {1000 * r['decode_seconds_per_block']:.0f} | {r['fps']:.1f} "
              f"| {r['key_to_frame_ms']:.0f} |")
    print(f"steady_fps={r['fps']:.2f} latency_ms={r['key_to_frame_ms']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
