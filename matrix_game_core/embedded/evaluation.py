"""Measure an installed embedded model on held-out recordings: the model card's metrics.

1. next-block PSNR/SSIM with teacher forcing, beside the copy-last-frame baseline and the VAE's
   ceiling (:func:`~matrix_game_core.evaluate.evaluate_next_block`);
2. action following per class (turn left/right at 0.1, look up/down at ``pitch_magnitude``) from
   held-out start frames under :func:`~matrix_game_core.evaluate.command_script`, with the model's
   guidance and without, with each command held several blocks, and beside its ceiling: the clips'
   recorded play as recorded and through the VAE;
3. a free-running rollout from a recorded start frame under the recorded actions: per-second PSNR
   against the recorded frames and contrast (std of the luminance) of generated and recorded frames;
4. speed (:func:`measure_speed`).

Used by :mod:`.build` (the card), ``tools/pick_guidance.py`` (:func:`score_clips`) and
``benchmarks/bench_embedded.py`` (:func:`measure_speed`).
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch

from ..errors import MatrixGameError
from ..guidance import passes

def _contrast(frames01: torch.Tensor) -> np.ndarray:
    """Per-frame std of the luminance of ``[T,3,H,W]`` frames in [0, 1]."""
    y = 0.299 * frames01[:, 0] + 0.587 * frames01[:, 1] + 0.114 * frames01[:, 2]
    return y.flatten(1).std(1).numpy()


@torch.no_grad()
def free_rollout(comp, frames: np.ndarray, keyboard: np.ndarray, mouse: np.ndarray, seed: int = 0,
                 steps: Optional[Sequence[int]] = None) -> Dict:
    """Free-running generation from ``frames[0]`` under the recorded actions.

    Args:
        frames: ``[T, H, W, 3]`` uint8 recorded frames at the model's size, ``T = 1 + 4n``, n a
            multiple of 3; keyboard ``[T, 4]``, mouse ``[T, 2]`` official units.
    Returns:
        ``{"psnr": [T], "contrast_generated": [T], "contrast_recorded": [T]}`` (per frame).
    """
    from ..evaluate import psnr
    from ..sampling import Conditioning, WorldSession
    from ..vae import StreamingDecoder, encode_start_image

    dit, vae = comp.dit, comp.vae
    t = frames.shape[0]
    n_lat = 1 + (t - 1) // 4
    gt = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0            # [T,3,H,W]
    img = gt[:1] * 2 - 1
    cc = encode_start_image(vae, img.to(vae.device, vae.dtype), dit.cfg.conditioning_frames(n_lat))
    sess = WorldSession(dit, Conditioning(cc, torch.zeros(1, 1, dit.cfg.img_dim)), decoder=StreamingDecoder(vae),
                        seed=seed, denoising_step_list=steps)
    _, out = sess.generate(torch.from_numpy(keyboard[:t]).float()[None], torch.from_numpy(mouse[:t]).float()[None],
                           n_lat)
    gen = ((out[0].permute(1, 0, 2, 3).cpu() + 1) / 2).clamp(0, 1)
    return {"psnr": [psnr(gen[i], gt[i]) for i in range(t)], "contrast_generated": _contrast(gen).tolist(),
            "contrast_recorded": _contrast(gt).tolist()}


def _add(acc: Dict, rep) -> None:
    for k, v in rep.per_class.items():
        acc[k]["n"] += v["n"]
        acc[k]["correct"] += v["correct"]
        acc[k]["toward_px"] += (v["toward_px"] or 0.0) * v["n"]


def held_blocks(hold_blocks: int) -> Callable[[int], bool]:
    """The ``scored`` filter of :func:`~matrix_game_core.evaluate.action_following` for a script
    holding each command ``hold_blocks`` blocks (:func:`~matrix_game_core.evaluate.command_script`):
    only the blocks after the first of each hold (the motion must go on); block 0 is idle."""
    return lambda b: b >= 1 and (b - 1) % hold_blocks != 0


@contextlib.contextmanager
def _unguided(cfg):
    """All guidance scales set to 1 (off) inside the block, restored after."""
    keys = ("action_guidance", "pitch_guidance", "keyboard_guidance")
    saved = {k: getattr(cfg, k, None) for k in keys}
    try:
        for k in keys:
            setattr(cfg, k, 1.0)
        yield cfg
    finally:
        for k, v in saved.items():
            setattr(cfg, k, v)


def score_clips(comp, heldout: str, start: int = 0, clips: int = 8, blocks: int = 4, follow_blocks: int = 9,
                seed: int = 0, steps: Optional[Sequence[int]] = None, pitch_magnitude: float = 0.04,
                unguided: bool = False, ceiling_frames: Optional[int] = 201, sustain_blocks: int = 0):
    """Next-block and action-following scores on ``clips`` held-out episodes from index ``start``
    (episodes shorter than a ``blocks``-block clip are passed over), with the sampler settings in
    ``comp.dit.cfg``; the clip of each episode is drawn from ``numpy`` ``default_rng(seed)`` in the
    same order whatever is scored.

    Returns:
        ``(next_block, following, following_unguided, recorded, round_trip, sustained)``: the list of
        :func:`~matrix_game_core.evaluate.evaluate_next_block` reports (with ``unguided``, each also
        has ``model_unguided``: the same clip sampled without guidance) and four per-class tallies
        ``{class: {"n", "correct", "toward_px" (summed px/frame)}}``: following under the benchmark
        script, the same without guidance (only with ``unguided``), and, with ``ceiling_frames``,
        the evaluator on that many frames of the episode's recorded play, as recorded and through
        the VAE; and, with ``sustain_blocks`` (k > 1), following under the benchmark script with each
        command held k blocks in a row, counting only the blocks after the first of each hold (a
        held key: the motion must go on, not fade).
    Raises:
        MatrixGameError: no episode from ``start`` on is long enough.
    """
    from ..data.shards import entries, load_shard
    from ..evaluate import ACTION_CLASSES, action_following, evaluate_next_block, generate_for_following
    from ..vae import StreamingDecoder

    def fresh():
        return {name: {"n": 0, "correct": 0, "toward_px": 0.0} for name, _, _ in ACTION_CLASSES}

    t = 9 + 12 * (blocks - 1)
    rng = np.random.default_rng(seed)
    nb, per, per_off, per_rec, per_rt, per_hold = [], fresh(), fresh(), fresh(), fresh(), fresh()
    for e in entries(heldout)[start:]:
        if len(nb) >= clips:
            break
        s = load_shard(heldout, e)
        if len(s) < t:
            continue
        st = int(rng.integers(0, len(s) - t + 1))
        clip = (s.frames[st:st + t], s.keyboard[st:st + t].astype(np.float32), s.mouse[st:st + t])
        nb.append(evaluate_next_block(comp.dit, comp.vae, *clip, seed=seed, denoising_step_list=steps, rollout=False))
        if unguided:
            with _unguided(comp.dit.cfg):
                nb[-1]["model_unguided"] = evaluate_next_block(comp.dit, comp.vae, *clip, seed=seed,
                                                               denoising_step_list=steps, rollout=False)["model"]
        img = torch.from_numpy(s.frames[st]).permute(2, 0, 1)[None].float() / 127.5 - 1
        fr, ms, _ = generate_for_following(comp.dit, comp.vae, img, follow_blocks, seed=seed, denoising_step_list=steps,
                                           pitch_magnitude=pitch_magnitude)
        _add(per, action_following(fr, ms, pitch_threshold=0.5 * pitch_magnitude))
        if sustain_blocks > 1:
            fr, ms, _ = generate_for_following(comp.dit, comp.vae, img, 1 + 4 * sustain_blocks, seed=seed,
                                               denoising_step_list=steps, pitch_magnitude=pitch_magnitude,
                                               hold_blocks=sustain_blocks)
            _add(per_hold, action_following(fr, ms, pitch_threshold=0.5 * pitch_magnitude,
                                            scored=held_blocks(sustain_blocks)))
        if unguided:
            fr, ms, _ = generate_for_following(comp.dit, comp.vae, img, follow_blocks, seed=seed,
                                               denoising_step_list=steps, pitch_magnitude=pitch_magnitude,
                                               action_guidance=1.0, pitch_guidance=1.0, keyboard_guidance=1.0)
            _add(per_off, action_following(fr, ms, pitch_threshold=0.5 * pitch_magnitude))
        # the ceiling: recorded play of the same episode (its own mouse track), as recorded and as the
        # VAE round trip (what any model decoded by this VAE can at best show)
        a = int(rng.integers(0, max(1, len(s) - (ceiling_frames or 201))))
        if ceiling_frames:
            rec = s.frames[a:a + ceiling_frames]
            rec = rec[:1 + 4 * ((len(rec) - 1) // 4)]                # an episode shorter than that: 1 + 4k frames
            vid = torch.from_numpy(np.ascontiguousarray(rec)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
            rt = StreamingDecoder(comp.vae).decode_raw(comp.vae.encode(vid.to(comp.vae.device, comp.vae.dtype)))
            ms_rec = s.mouse[a:a + len(rec)]
            _add(per_rec, action_following(vid, ms_rec, pitch_threshold=0.5 * pitch_magnitude))
            _add(per_rt, action_following(rt, ms_rec, pitch_threshold=0.5 * pitch_magnitude))
    if not nb:
        raise MatrixGameError(f"no held-out shard from index {start} on has {t} frames.")
    return nb, per, per_off, per_rec, per_rt, per_hold


def evaluate_embedded(comp, heldout: str, clips: int = 8, blocks: int = 4, follow_blocks: int = 9,
                      rollout_seconds: float = 10.0, seed: int = 0, steps: Optional[Sequence[int]] = None,
                      pitch_magnitude: float = 0.04, ceiling_frames: int = 201, sustain_blocks: int = 3) -> Dict:
    """The card's metrics on the held-out recording (see the module docstring). Action following
    is also measured without guidance (when the model has some), with each command held
    ``sustain_blocks`` blocks (the blocks after the first of each hold; 0 = not measured) and, as
    its ceiling, on ``ceiling_frames`` of each clip's recorded play under its recorded mouse track,
    as recorded and through the VAE (encode + decode)."""
    from ..data.shards import entries, load_shard, read_manifest

    es = entries(heldout)
    if not es:
        raise MatrixGameError(f"{heldout} has no shards.")
    fps = float(read_manifest(heldout)["fps"])
    pg, kg = getattr(comp.dit.cfg, "pitch_guidance", None), getattr(comp.dit.cfg, "keyboard_guidance", None)
    guided = passes(float(getattr(comp.dit.cfg, "action_guidance", 1.0)), pg, kg) > 1
    nb, per, per_off, per_rec, per_rt, per_hold = score_clips(
        comp, heldout, 0, clips, blocks, follow_blocks, seed, steps, pitch_magnitude, unguided=guided,
        ceiling_frames=ceiling_frames, sustain_blocks=sustain_blocks)
    t = 9 + 12 * (blocks - 1)
    for d in (per, per_off, per_rec, per_rt, per_hold):
        for v in d.values():
            v["accuracy"] = None if v["n"] == 0 else v["correct"] / v["n"]
            v["toward_px"] = None if v["n"] == 0 else v["toward_px"] / v["n"]
    # free-running rollout: the longest held-out shard, from its start
    n_blocks = max(2, int(np.ceil((rollout_seconds * fps - 9) / 12)) + 1)
    tr = 9 + 12 * (n_blocks - 1)
    long = max(es, key=lambda e: e["frames"])
    s = load_shard(heldout, long)
    tr = min(tr, 9 + 12 * ((len(s) - 9) // 12))
    ro = free_rollout(comp, s.frames[:tr], s.keyboard[:tr].astype(np.float32), s.mouse[:tr], seed=seed, steps=steps)
    sec = []
    for k in range(int(np.ceil(tr / fps))):
        a, b = int(round(k * fps)), min(tr, int(round((k + 1) * fps)))
        if a >= b:
            break
        sec.append({"second": k, "psnr": float(np.mean(ro["psnr"][a:b])),
                    "contrast_generated": float(np.mean(ro["contrast_generated"][a:b])),
                    "contrast_recorded": float(np.mean(ro["contrast_recorded"][a:b]))})
    mean = lambda key, m: float(np.mean([r[key][m] for r in nb]))  # noqa: E731
    return {"clips": len(nb), "frames_per_clip": t,
            "next_block": {k: {"psnr": mean(k, "psnr"), "ssim": mean(k, "ssim")}
                           for k in ("model", "model_unguided", "copy_last", "round_trip") if k in nb[0]},
            "action_following": per, "pitch_magnitude": pitch_magnitude,
            "action_guidance": float(getattr(comp.dit.cfg, "action_guidance", 1.0)),
            "pitch_guidance": None if pg is None else float(pg),
            "keyboard_guidance": None if kg is None else float(kg),
            "guidance_rescale": float(getattr(comp.dit.cfg, "guidance_rescale", 0.0) or 0.0),
            "guidance_hold": float(getattr(comp.dit.cfg, "guidance_hold", 0.0) or 0.0),
            "action_following_unguided": per_off if guided else None,
            "action_following_recorded": per_rec, "action_following_round_trip": per_rt,
            "action_following_held": per_hold if sustain_blocks > 1 else None, "held_blocks": sustain_blocks,
            "rollout": {"shard": long["name"], "map": long.get("map"), "frames": tr, "fps": fps, "per_second": sec}}


@torch.no_grad()
def measure_speed(comp, blocks: int = 8, warmup: int = 2, seed: int = 0) -> Dict:
    """Steady-state video frames per second of DiT + streaming VAE decode at the model's frame size
    on this machine, and key-to-frame latency (a key pressed just after a block starts conditions
    the *next* block: the wait is the rest of the current block plus the next block's DiT steps
    and the decode of its first latent frame; worst case reported)."""
    from ..sampling import Conditioning, WorldSession
    from ..vae import StreamingDecoder

    dit, vae = comp.dit, comp.vae
    h, w = dit.cfg.frame_size
    cc = torch.zeros(1, 20, 3, h // 8, w // 8)
    cc[:, :4, 0] = 1
    sess = WorldSession(dit, Conditioning(cc, torch.zeros(1, 1, dit.cfg.img_dim)), decoder=StreamingDecoder(vae),
                        seed=seed)
    times, frames = [], 0
    for b in range(blocks + warmup):
        r = sess.rows_for_block(b)
        t0 = time.perf_counter()
        res = sess.step(torch.zeros(r, dit.cfg.keyboard_dim), torch.zeros(r, 2))
        dt = time.perf_counter() - t0
        if b >= warmup:
            times.append((dt, res.frames.shape[2], dict(res.timings)))
            frames += res.frames.shape[2]
    total = sum(t for t, _, _ in times)
    block = total / len(times)
    dec = float(np.mean([tm.get("decode", 0.0) for _, _, tm in times]))
    return {"fps": frames / total, "seconds_per_block": block, "decode_seconds_per_block": dec,
            "key_to_frame_ms": 1000 * (2 * block - dec + dec / 3), "threads": torch.get_num_threads(),
            "denoising_steps": len(sess.timesteps),
            "passes_per_step": passes(sess.action_guidance, sess.pitch_guidance, sess.keyboard_guidance)}
