"""Student against teacher: the distilled few-step model beside the diffusion-forcing DiT it was
distilled from, on the same held-out recordings, with the project's evaluator (issue 13).

Per model: next-block PSNR / SSIM (teacher-forced, and the free rollout) from
:func:`~matrix_game_core.evaluate.evaluate_run`, action-following accuracy (GameWorld-style mouse
classes), and generation speed: video frames per second of a :class:`~matrix_game_core.sampling.WorldSession`
(denoising + context pass + streaming VAE decode) over ``speed_blocks`` blocks after one warm-up
block, on the given device.

CLI: ``python -m matrix_game_core.evaluate compare --run RUN --data REC`` prints the table.
"""
from __future__ import annotations

import time
from typing import Dict, List

import torch


@torch.no_grad()
def frames_per_second(comps, size, blocks: int = 4, seed: int = 0, device: str = "cpu") -> float:
    """Video frames per second of a WorldSession from a grey start image of ``size = (H, W)``
    (12 frames per block; the first block is a warm-up and not timed)."""
    from .pipeline import encode_conditioning
    from .sampling import WorldSession
    from .vae import StreamingDecoder

    dit, vae = comps.dit, comps.vae
    img = torch.zeros(1, 3, int(size[0]), int(size[1]))
    cond = encode_conditioning(vae, None, img, dit.cfg.conditioning_frames(3 * (blocks + 1)))
    s = WorldSession(dit, cond, decoder=StreamingDecoder(vae), seed=seed)
    k = dit.cfg.keyboard_dim
    s.step(torch.zeros(9, k), torch.zeros(9, 2) if dit.cfg.has_mouse else None)      # warm-up block
    t0 = time.perf_counter()
    for _ in range(blocks):
        s.step(torch.zeros(12, k), torch.zeros(12, 2) if dit.cfg.has_mouse else None)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return 12 * blocks / (time.perf_counter() - t0)


def compare_student_teacher(run: str, data: str, clips: int = 4, blocks: int = 4, follow_blocks: int = 9,
                            device: str = "cpu", seed: int = 0, speed_blocks: int = 4) -> List[Dict]:
    """One row per model (``teacher``, ``student``): steps, next-block PSNR/SSIM, rollout PSNR,
    action following, frames per second."""
    import json
    import os

    from .evaluate import evaluate_run
    from .train.export import _resolve, load_trained

    rows = []
    for name, model in (("teacher", "dit"), ("student", "student")):
        rep = evaluate_run(run, data, clips=clips, blocks=blocks, follow_blocks=follow_blocks, device=device,
                           seed=seed, model=model)
        comps = load_trained(run, device=device, model=model)
        with open(os.path.join(_resolve(run, model), model, "config.json"), encoding="utf-8") as f:
            size = json.load(f).get("video_size") or [8 * v for v in _data_latent_hw(run)]
        rows.append({"model": name, "steps": len(comps.dit.cfg.denoising_step_list),
                     "next_block_psnr": rep["next_block_model"]["psnr"],
                     "next_block_ssim": rep["next_block_model"]["ssim"],
                     "rollout_psnr": rep.get("next_block_rollout", {}).get("psnr"),
                     "copy_last_psnr": rep["next_block_copy_last"]["psnr"],
                     "action_following": rep["action_following"]["accuracy"],
                     "fps": frames_per_second(comps, size, speed_blocks, seed, device), "clips": rep["clips"]})
    return rows


def _data_latent_hw(run):
    from .errors import MatrixGameError
    raise MatrixGameError(f"{run}: the exported config.json has no video_size; export the run again "
                          f"(python -m matrix_game_core.train export ...).")


def format_table(rows: List[Dict]) -> str:
    """A Markdown table of :func:`compare_student_teacher` rows."""
    f = lambda v, d=2: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
    out = ["| model | steps | next-block PSNR (dB) | SSIM | rollout PSNR (dB) | copy-last PSNR (dB) | "
           "action following | frames/s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['model']} | {r['steps']} | {f(r['next_block_psnr'])} | {f(r['next_block_ssim'], 3)} | "
                   f"{f(r['rollout_psnr'])} | {f(r['copy_last_psnr'])} | {f(r['action_following'])} | "
                   f"{f(r['fps'], 1)} |")
    return "\n".join(out)
