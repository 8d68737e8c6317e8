"""Command line: the same pipeline as the ComfyUI nodes, without ComfyUI.

    python -m matrix_game_core generate --mode universal --image IMG \\
        (--actions TRACK.json | --bench-actions) --frames N --seed S \\
        [--checkpoint-dir DIR | --random-weights tiny] --out out.mp4|.webm|.gif [--overlay]
    python -m matrix_game_core download --mode MODE --dir DIR

Without ``--checkpoint-dir`` the embedded ViZDoom model that ships in the package runs (universal
mode, 64x112, trained by the pack's own recipe; :mod:`matrix_game_core.embedded`); with it, the
official Matrix-Game 2.0 files. ``--frames`` counts latent frames (a multiple of 3; video frames = 1 + 4(N-1)). ``--overlay``
also writes ``<out>_overlay.<ext>`` with the key/mouse overlay of the official demo videos. Every
argument (output paths, device, seed, track, image, checkpoint files) is checked before any model
is loaded; errors are one line (``error: ...``, exit status 2); Ctrl-C exits with status 130 and
leaves no partial file.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Optional

import torch

from .config import MODES, VIDEO_HEIGHT, VIDEO_WIDTH, latents_for_video_frames, video_frames_for_latents
from .errors import MatrixGameError


#: Output containers ``--out`` may name.
OUT_EXTS = (".mp4", ".webm", ".gif")
#: Bytes held in memory per video frame by one CLI run (float32 video + float32 IMAGE + uint8 copy,
#: and the float32 grey video the conditioning encodes), at 352x640: 13 bytes per pixel and channel.
BYTES_PER_VIDEO_FRAME = 13 * 3 * VIDEO_HEIGHT * VIDEO_WIDTH
#: Most latent frames one ``generate`` accepts: an action track holds at most 1,000,000 video frames.
MAX_LATENT_FRAMES = (latents_for_video_frames(1 + 4 * ((1_000_000 - 1) // 4)) // 3) * 3


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` for options that have a default (not for required ones or flags)."""

    def _get_help_string(self, action):
        if action.required or action.default in (None, False, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    fmt = _HelpWithDefaults
    p = argparse.ArgumentParser(prog="python -m matrix_game_core", formatter_class=fmt,
                                description="Matrix-Game 2.0 interactive world model (engine CLI).")
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="start image + action track -> video", formatter_class=fmt,
                       description="Generate a video from a start image and an action track. Every argument is "
                                   "checked before any model is loaded.")
    g.add_argument("--mode", choices=MODES, default="universal",
                   help="the model's mode: universal (W S A D + mouse), gta_drive (W S + steering), templerun (7 keys)")
    g.add_argument("--image", required=True,
                   help="start image (PNG/JPEG, 8 or 16 bit), any size: fitted by --crop to the model's frame size "
                        "(64x112 for the embedded model, 352x640 for the official ones)")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--actions", help="action track JSON for --mode (format: matrix_game_core/action_json.py)")
    src.add_argument("--bench-actions", action="store_true",
                     help="the official random benchmark track, drawn with --seed")
    g.add_argument("--frames", type=int, default=15,
                   help=f"latent frames to generate, a multiple of 3 (15 = 57 video frames); at most "
                        f"{MAX_LATENT_FRAMES} and what fits in memory (about "
                        f"{BYTES_PER_VIDEO_FRAME * 4 / 2**20:.0f} MB per latent frame)")
    g.add_argument("--seed", type=int, default=0,
                   help="noise seed, 0..2^64-1 (also seeds --bench-actions); the same seed gives the same video "
                        "on any device")
    w = g.add_mutually_exclusive_group()
    w.add_argument("--checkpoint-dir", help="folder with the official files in their layout (see `download`); "
                                            "without it (and without --random-weights) the embedded ViZDoom model runs")
    w.add_argument("--random-weights", choices=["tiny"], help="UNTRAINED tiny models for tests: the video is noise")
    g.add_argument("--out", required=True, help=f"output video; the extension picks the container: {', '.join(OUT_EXTS)}")
    g.add_argument("--overlay", action="store_true", help="also write <out>_overlay.<ext> with the keys and mouse drawn")
    g.add_argument("--fps", type=float, default=None,
                   help="frame rate of the written video (default: the model's own, 25 official, 17.5 embedded ViZDoom)")
    g.add_argument("--scale", type=int, default=None,
                   help="upscale the written video by this whole factor, 1..8 (default: to at least 352 px high, "
                        "so 6 for the 64x112 embedded model, 1 for the official ones)")
    g.add_argument("--device", default="auto", help="torch device: auto (cuda when available, else cpu), cpu, cuda, cuda:N")
    g.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None,
                   help="model dtype (default: bf16 on GPU, fp32 on CPU)")
    g.add_argument("--attention", choices=["auto", "sdpa", "flash_attn"], default="auto",
                   help="attention kernel: auto (flash_attn when installed on CUDA, else sdpa), sdpa, flash_attn")
    g.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="torch.compile the block step and the streaming decoder (CUDA-graph replay on CUDA): auto = "
                        "on for CUDA, off on the CPU; the first blocks of a run compile (a minute or two)")
    g.add_argument("--action-guidance", type=float, default=None, metavar="W",
                   help="classifier-free guidance on the actions: 1 = off (official models' default), above 1 the "
                        "picture follows keys and mouse more strongly at twice the DiT cost per step "
                        "(default: the model's own; the embedded ViZDoom model ships with its value)")
    g.add_argument("--pitch-guidance", type=float, default=None, metavar="W",
                   help="a separate guidance scale for the mouse pitch (look up/down), for models that learned "
                        "the pitch more weakly than the yaw; one more DiT pass per step when it differs from "
                        "--action-guidance (default: the model's own, else the action guidance)")
    g.add_argument("--keyboard-guidance", type=float, default=None, metavar="W",
                   help="a separate guidance scale for the keys (W/A/S/D); one more DiT pass per step when it "
                        "differs (default: the model's own, else the action guidance)")
    g.add_argument("--guidance-rescale", type=float, default=None, metavar="PHI",
                   help="guidance rescale from 0 (off) to 1: scales the guided prediction back to the spread of "
                        "the unguided one, which keeps the picture's contrast and detail under strong guidance "
                        "(Lin et al., arXiv 2305.08891); no extra cost (default: the model's own)")
    g.add_argument("--guidance-hold", type=float, default=None, metavar="H",
                   help="guidance hold from 0 (classic guidance, against no actions) to 1: guide against H x the "
                        "actions of before each block, held, so a change of action gets the full guidance and a "
                        "command that goes on less of it; no extra cost (default: the model's own)")
    g.add_argument("--crop", choices=["center", "stretch", "pad"], default="center",
                   help="fit the image to the model's frame size: center (official centre crop), stretch, pad (letterbox)")
    d = sub.add_parser("download", help="download a mode's files from Skywork/Matrix-Game-2.0", formatter_class=fmt)
    d.add_argument("--mode", choices=MODES, required=True, help="which mode's DiT to fetch")
    d.add_argument("--dir", required=True, help="folder to download into (the official layout is kept)")
    d.add_argument("--dit-only", action="store_true", help="skip the VAE and image-encoder files")
    return p


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def resolve_device(name: str) -> torch.device:
    """``--device`` as a usable ``torch.device`` (``auto``: cuda when available, else cpu).

    Raises:
        MatrixGameError: an unknown device name, or a device this machine does not have.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise MatrixGameError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise MatrixGameError(f"--device {name}: CUDA is not available ({why}); use --device cpu.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise MatrixGameError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                                  f"(cuda:0..cuda:{torch.cuda.device_count() - 1}).")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise MatrixGameError(f"--device {name}: MPS is not available here; use --device cpu.")
    elif dev.type != "cpu":
        raise MatrixGameError(f"--device {name!r} is not supported; use auto, cpu, cuda or cuda:N.")
    return dev


def _physical_memory() -> Optional[int]:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_frames(n_latent: int) -> int:
    """``--frames``: a positive multiple of 3, at most :data:`MAX_LATENT_FRAMES`, and a video that fits
    in this machine's memory (:data:`BYTES_PER_VIDEO_FRAME` per video frame). Returns the video frames.

    Raises:
        MatrixGameError: naming the limit that applies and the largest accepted value.
    """
    if n_latent <= 0 or n_latent % 3:
        raise MatrixGameError(f"--frames counts latent frames and must be a positive multiple of 3 (got {n_latent}).")
    if n_latent > MAX_LATENT_FRAMES:
        raise MatrixGameError(f"--frames {n_latent} is beyond the limit of {MAX_LATENT_FRAMES} latent frames (an action "
                              f"track holds at most 1,000,000 video frames); use --frames {MAX_LATENT_FRAMES} or less.")
    n_video = video_frames_for_latents(n_latent)
    ram = _physical_memory()
    need = n_video * BYTES_PER_VIDEO_FRAME
    if ram is not None and need > ram:
        fit = max(3, (latents_for_video_frames(1 + 4 * ((ram // BYTES_PER_VIDEO_FRAME - 1) // 4)) // 3) * 3)
        raise MatrixGameError(f"--frames {n_latent} would hold about {need / 2**30:.0f} GiB of video in memory, more "
                              f"than this machine's {ram / 2**30:.0f} GiB; use --frames {fit} or less.")
    return n_video


def _read_track(args, n_latent: int, n_video: int):
    from .actions import ActionTrack, bench_actions

    if args.bench_actions:
        return bench_actions(args.mode, n_video, args.seed)
    track = ActionTrack.load(args.actions, any_length=True)
    if track.mode != args.mode:
        raise MatrixGameError(f"the action track is for mode {track.mode!r} but --mode is {args.mode!r}.")
    return track.for_latent_frames(n_latent)


def check_generate_args(args):
    """Check every ``generate`` argument before any model is loaded (cheap work only: the track is
    parsed, the image read, the output paths and the checkpoint files located).

    Returns:
        a namespace with ``device``, ``dtype``, ``n_latent``, ``track``, ``image`` ``[1,3,352,640]``,
        ``outs`` (video paths) and ``files`` (checkpoint files, or None for random weights).
    Raises:
        MatrixGameError: the first bad argument, with the fix.
    """
    from .pipeline import component_files, load_image, prepare_image
    from .video import check_video_path

    if not 0 <= args.seed < 2 ** 64:
        raise MatrixGameError(f"--seed must be a whole number 0..2^64-1 (= {2 ** 64 - 1}); got {args.seed}.")
    source = weights_source(args)
    if args.fps is None:
        args.fps = source.fps
    if not (math.isfinite(args.fps) and 0 < args.fps <= 1000):
        raise MatrixGameError(f"--fps must be a number in (0, 1000]; got {args.fps:g}.")
    if args.scale is None:
        args.scale = max(1, -(-VIDEO_HEIGHT // source.size[0]))
    if not 1 <= args.scale <= 8:
        raise MatrixGameError(f"--scale must be a whole number 1..8; got {args.scale}.")
    for flag in ("action_guidance", "pitch_guidance", "keyboard_guidance"):
        w = getattr(args, flag, None)
        if w is not None and not (math.isfinite(w) and 0 <= w <= 20):
            raise MatrixGameError(f"--{flag.replace('_', '-')} must be a number from 0 to 20 (1 = off); got {w:g}.")
    for flag in ("guidance_rescale", "guidance_hold"):
        v = getattr(args, flag, None)
        if v is not None and not (math.isfinite(v) and 0 <= v <= 1):
            raise MatrixGameError(f"--{flag.replace('_', '-')} must be a number from 0 to 1 (0 = off); got {v:g}.")
    n_video = check_frames(args.frames)
    outs = [args.out]
    if args.overlay:
        root, ext = os.path.splitext(args.out)
        outs.append(root + "_overlay" + ext)
    for o in outs:
        check_video_path(o, "--out")
    device = resolve_device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[
        args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    track = _read_track(args, args.frames, n_video)
    image = prepare_image(load_image(args.image), crop=args.crop, height=source.size[0], width=source.size[1])
    files = component_files(args.checkpoint_dir, args.mode) if source.kind == "official" else None
    return argparse.Namespace(device=device, dtype=dtype, n_latent=args.frames, track=track, image=image,
                              outs=outs, files=files, source=source)


def weights_source(args) -> argparse.Namespace:
    """Which models ``generate`` runs: ``official`` (``--checkpoint-dir``), ``tiny`` (``--random-weights``)
    or ``embedded`` (neither). Returns ``kind``, ``size`` (H, W) and ``fps``; reads no weights.

    Raises:
        MatrixGameError: the embedded model for a mode other than universal, or its files missing.
    """
    from . import embedded

    if args.checkpoint_dir:
        return argparse.Namespace(kind="official", size=(VIDEO_HEIGHT, VIDEO_WIDTH), fps=25.0)
    if args.random_weights:
        return argparse.Namespace(kind="tiny", size=(VIDEO_HEIGHT, VIDEO_WIDTH), fps=25.0)
    if args.mode != "universal":
        raise MatrixGameError(f"the embedded ViZDoom model plays universal mode (W S A D + mouse); for {args.mode} pass "
                              f"--checkpoint-dir with the official files (`python -m matrix_game_core download "
                              f"--mode {args.mode} --dir DIR`).")
    if not embedded.available():
        raise MatrixGameError(f"the embedded model's files are missing under {embedded.ROOT}; reinstall the pack, or "
                              f"pass --checkpoint-dir with the official files.")
    return argparse.Namespace(kind="embedded", size=embedded.video_size(), fps=embedded.fps())


def upscale(video: torch.Tensor, factor: int) -> torch.Tensor:
    """``[B,3,T,H,W]`` -> ``[B,3,T,H*factor,W*factor]`` (bilinear with antialias off: a plain
    enlargement for viewing small models' output; ``factor`` 1 returns the input)."""
    if factor == 1:
        return video
    b, c, t, h, w = video.shape
    x = video.transpose(1, 2).reshape(b * t, c, h, w).float()
    x = torch.nn.functional.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    return x.reshape(b, t, c, h * factor, w * factor).transpose(1, 2).clamp(-1, 1)


def speed_text(frames: int, seconds: float) -> str:
    """``"12.3 frames/s"``, or ``"4.2 s/frame"`` when slower than one frame per second."""
    fps = frames / max(1e-9, seconds)
    return f"{fps:.1f} frames/s" if fps >= 1 else f"{seconds / max(1, frames):.1f} s/frame"


def generate(args) -> int:
    from .pipeline import encode_conditioning, frames_to_images, load_components, random_tiny
    from .sampling import WorldSession
    from .vae import StreamingDecoder
    from .video import draw_overlay, write_video

    run = check_generate_args(args)
    device, n_latent, track = run.device, run.n_latent, run.track
    if run.source.kind == "embedded":
        from . import embedded
        comp = embedded.load(device=device, dtype=run.dtype, attention_backend=args.attention)
        h, w = run.source.size
        _say(f"[matrix-game] using the {embedded.NAME} model that ships with the pack ({w}x{h}, trained on Freedoom "
             f"play; not the official Matrix-Game 2.0: pass --checkpoint-dir for that)")
    elif run.files is None:
        _say("!" * 78 + "\n!! --random-weights tiny: UNTRAINED random models. The video is NOISE, not a world.\n"
             "!! Use --checkpoint-dir with the official files for real output.\n" + "!" * 78)
        comp = random_tiny(args.mode, seed=0, device=device)
        comp.dit.to(run.dtype)
    else:
        for what, path in run.files.items():
            _say(f"[matrix-game] {what}: {path}")
        comp = load_components(args.checkpoint_dir, args.mode, device=device, dtype=run.dtype,
                               attention_backend=args.attention, files=run.files)
    t0 = time.perf_counter()
    cond = encode_conditioning(comp.vae, comp.image_encoder, run.image.to(device),
                               comp.dit.cfg.conditioning_frames(n_latent))
    _say(f"[matrix-game] {comp.label}: conditioning {time.perf_counter() - t0:.1f}s")
    session = WorldSession(comp.dit, cond, decoder=StreamingDecoder(comp.vae), seed=args.seed,
                           compile={"auto": None, "on": True, "off": False}[args.compile],
                           action_guidance=args.action_guidance, pitch_guidance=args.pitch_guidance,
                           keyboard_guidance=args.keyboard_guidance, guidance_rescale=args.guidance_rescale,
                           guidance_hold=args.guidance_hold)
    kb, ms = track.tensors(device=device)

    def progress(r):
        n = r.frames.shape[2]
        _say(f"[matrix-game] block {r.block + 1}/{n_latent // 3}: {n} frames, "
             f"{speed_text(n, sum(r.timings.values()))}")

    _, video = session.generate(kb, ms, n_latent, callback=progress)
    frames = frames_to_images(upscale(video, args.scale))
    out = write_video(frames, run.outs[0], fps=args.fps)
    _say(f"[matrix-game] wrote {out} ({frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]}, {args.fps:g} fps)")
    if args.overlay:
        _say(f"[matrix-game] wrote {write_video(draw_overlay(frames, track), run.outs[1], fps=args.fps)}")
    return 0


def main(argv=None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 a clear error, 130 interrupted with Ctrl-C)."""
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
    except KeyboardInterrupt:
        _say("interrupted (Ctrl-C); no output was written." if args.cmd == "generate" else
             "interrupted (Ctrl-C); files already complete were kept, partial ones removed.")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
