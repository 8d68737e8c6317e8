"""Command line: the same pipeline as the ComfyUI nodes, without ComfyUI.

    python -m matrix_game_core generate --mode universal --image IMG \\
        (--actions TRACK.json | --bench-actions) --frames N --seed S \\
        (--checkpoint-dir DIR | --random-weights tiny) --out out.mp4 [--overlay]
    python -m matrix_game_core download --mode MODE --dir DIR

``--frames`` counts latent frames (a multiple of 3; video frames = 1 + 4(N-1)). ``--overlay``
also writes ``<out>_overlay.mp4`` with the key/mouse overlay of the official demo videos.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from .config import MODES, video_frames_for_latents
from .errors import MatrixGameError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m matrix_game_core",
                                description="Matrix-Game 2.0 interactive world model (engine CLI).")
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="start image + action track -> mp4")
    g.add_argument("--mode", choices=MODES, default="universal")
    g.add_argument("--image", required=True, help="start image (PNG/JPEG); centre-cropped to 352x640")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--actions", help="action track JSON (schema: README 'Action tracks')")
    src.add_argument("--bench-actions", action="store_true", help="the official random benchmark track (seeded)")
    g.add_argument("--frames", type=int, default=15, help="latent frames, a multiple of 3 (default 15 = 57 video frames)")
    g.add_argument("--seed", type=int, default=0)
    w = g.add_mutually_exclusive_group(required=True)
    w.add_argument("--checkpoint-dir", help="folder with the official files (see `download`)")
    w.add_argument("--random-weights", choices=["tiny"], help="UNTRAINED tiny models: output is noise")
    g.add_argument("--out", required=True, help="output .mp4")
    g.add_argument("--overlay", action="store_true", help="also write <out>_overlay.mp4 with keys and mouse")
    g.add_argument("--fps", type=int, default=25)
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    g.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None,
                   help="default bf16 on GPU, fp32 on CPU")
    g.add_argument("--attention", choices=["auto", "sdpa", "flash_attn"], default="auto")
    g.add_argument("--crop", choices=["center", "stretch", "pad"], default="center")
    d = sub.add_parser("download", help="download a mode's files from Skywork/Matrix-Game-2.0")
    d.add_argument("--mode", choices=MODES, required=True)
    d.add_argument("--dir", required=True)
    d.add_argument("--dit-only", action="store_true", help="skip the VAE and image-encoder files")
    return p


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def generate(args) -> int:
    from .actions import ActionTrack, bench_actions
    from .pipeline import encode_conditioning, frames_to_images, load_components, load_image, prepare_image, random_tiny
    from .sampling import WorldSession
    from .vae import StreamingDecoder
    from .video import draw_overlay, write_mp4

    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[
        args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    n_latent = args.frames
    if n_latent <= 0 or n_latent % 3:
        raise MatrixGameError(f"--frames counts latent frames and must be a positive multiple of 3 (got {n_latent}).")
    n_video = video_frames_for_latents(n_latent)
    if args.bench_actions:
        track = bench_actions(args.mode, n_video, args.seed)
    else:
        try:
            with open(args.actions, "r", encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise MatrixGameError(f"cannot read action track {args.actions!r}: {e}") from e
        track = ActionTrack.from_json(text)
        if track.mode != args.mode:
            raise MatrixGameError(f"the action track is for mode {track.mode!r} but --mode is {args.mode!r}.")
    track = track.for_latent_frames(n_latent)
    image = prepare_image(load_image(args.image), crop=args.crop)  # check inputs before loading models
    if args.random_weights:
        _say("!" * 78 + "\n!! --random-weights tiny: UNTRAINED random models. The video is NOISE, not a world.\n"
             "!! Use --checkpoint-dir with the official files for real output.\n" + "!" * 78)
        comp = random_tiny(args.mode, seed=0, device=device)
        comp.dit.to(dtype)
    else:
        comp = load_components(args.checkpoint_dir, args.mode, device=device, dtype=dtype,
                               attention_backend=args.attention)
    t0 = time.perf_counter()
    image = image.to(device)
    cond = encode_conditioning(comp.vae, comp.image_encoder, image, n_latent)
    _say(f"[matrix-game] {comp.label}: conditioning {time.perf_counter() - t0:.1f}s")
    session = WorldSession(comp.dit, cond, decoder=StreamingDecoder(comp.vae), seed=args.seed)
    kb, ms = track.tensors(device=device)

    def progress(r):
        fps = r.frames.shape[2] / max(1e-9, sum(r.timings.values()))
        _say(f"[matrix-game] block {r.block + 1}/{n_latent // 3}: {r.frames.shape[2]} frames, {fps:.1f} frames/s")

    _, video = session.generate(kb, ms, n_latent, callback=progress)
    frames = frames_to_images(video)
    out = write_mp4(frames, args.out, fps=args.fps)
    _say(f"[matrix-game] wrote {out} ({frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]}, {args.fps} fps)")
    if args.overlay:
        root, ext = os.path.splitext(args.out)
        out2 = write_mp4(draw_overlay(frames, track), root + "_overlay" + (ext or ".mp4"), fps=args.fps)
        _say(f"[matrix-game] wrote {out2}")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "generate":
            return generate(args)
        from .checkpoints import download
        paths = download(args.mode, args.dir, with_encoders=not args.dit_only)
        for rp, lp in paths.items():
            print(f"{rp} -> {lp}")
        return 0
    except MatrixGameError as e:
        _say(f"error: {e}")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
