"""Video files and the action overlay.

* :func:`write_video` (mp4 / webm / gif by extension), :func:`write_mp4`, :func:`read_mp4`: through
  imageio-ffmpeg (its bundled ffmpeg).
* :func:`draw_overlay`: the key / mouse overlay of the official ``utils/visualize.py``
  (``*_icon.mp4``), drawn procedurally: rounded key boxes near the bottom left, green with alpha 0.8
  while the key is held, light grey with alpha 0.5 otherwise, black letters from a small built-in
  bitmap font; universal mode also shows a mouse cursor that starts at the frame centre and moves
  by ``(+1.5 * yaw, -6 * pitch)`` pixels per frame (official constants ``15 * 0.1`` and
  ``15 * 4 * 0.1`` at 640x352). The official layout is for 640x352 frames; other sizes scale it by
  ``s = min(W / 640, H / 352)`` around the bottom centre.

Frames follow ComfyUI's IMAGE convention: ``[T, H, W, 3]`` float in ``[0, 1]`` (uint8 is accepted too).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Tuple, Union

import numpy as np
import torch

from .errors import MatrixGameError

#: Size the official overlay layout is drawn for.
REF_WIDTH, REF_HEIGHT = 640, 352
PRESSED_COLOR = (0.0, 1.0, 0.0)
RELEASED_COLOR = (200 / 255, 200 / 255, 200 / 255)
PRESSED_ALPHA, RELEASED_ALPHA = 0.8, 0.5
#: Cursor motion per frame and per unit of mouse action at 640x352 (official parse_config).
CURSOR_SCALE_X, CURSOR_SCALE_Y = 1.5, 6.0

Frames = Union[torch.Tensor, np.ndarray]


# ================================================================================================ conversion
def to_uint8(frames: Frames) -> np.ndarray:
    """``[T, H, W, 3]`` (or one ``[H, W, 3]`` frame) float in [0, 1] or uint8 -> contiguous uint8
    ``[T, H, W, 3]`` numpy array (floats are clamped, NaN -> 0, rounded)."""
    if isinstance(frames, torch.Tensor):
        arr = frames.detach()
        if arr.dtype == torch.uint8:
            arr = arr.cpu().numpy()
        elif arr.is_floating_point():
            arr = (torch.nan_to_num(arr.float(), nan=0.0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        else:
            raise MatrixGameError(f"frames must be float in [0, 1] or uint8; got {arr.dtype}.")
    elif isinstance(frames, np.ndarray):
        if frames.dtype == np.uint8:
            arr = frames
        elif np.issubdtype(frames.dtype, np.floating):
            arr = (np.clip(np.nan_to_num(frames.astype(np.float32), nan=0.0), 0, 1) * 255).round().astype(np.uint8)
        else:
            raise MatrixGameError(f"frames must be float in [0, 1] or uint8; got {frames.dtype}.")
    else:
        raise MatrixGameError(f"frames must be a torch tensor or numpy array [T, H, W, 3]; got {type(frames).__name__}.")
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise MatrixGameError(f"frames must be [T, H, W, 3] (RGB, channels last, like ComfyUI IMAGE); got shape "
                              f"{list(arr.shape)}.")
    return np.ascontiguousarray(arr)


# ================================================================================================ writing
#: Containers :func:`write_video` writes, by file extension: (codec, pixel format, extra ffmpeg output options).
VIDEO_FORMATS = {
    ".mp4": ("libx264", "yuv420p", ["-movflags", "+faststart"]),
    ".webm": ("libvpx-vp9", "yuv420p", ["-b:v", "0", "-row-mt", "1"]),
    ".gif": ("gif", "pal8", ["-vf", "split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse", "-loop", "0"]),
}


def check_video_path(path: str, what: str = "--out") -> str:
    """Check, before any work, that a video can be written to ``path``: a known extension
    (:data:`VIDEO_FORMATS`), not a folder, and a parent folder that exists or can be created and is
    writable. Returns the extension (lower case).

    Raises:
        MatrixGameError: the reason and the fix.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in VIDEO_FORMATS:
        raise MatrixGameError(f"cannot write video {path!r} ({what}): unknown container {ext or '(no extension)'}; use "
                              f"{', '.join(VIDEO_FORMATS)} (H.264 mp4, VP9 webm, animated gif).")
    if os.path.isdir(path):
        raise MatrixGameError(f"cannot write video {path!r} ({what}): it is a folder; give a file name such as "
                              f"{os.path.join(path, 'out' + ext)}.")
    d = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(d):
        d = os.path.dirname(d)
    if not os.path.isdir(d):
        raise MatrixGameError(f"cannot write video {path!r} ({what}): {d!r} is a file, so the folder cannot be "
                              f"created; pick another path.")
    if not os.access(d, os.W_OK | os.X_OK):
        raise MatrixGameError(f"cannot write video {path!r} ({what}): no permission to write in {d!r}; pick a "
                              f"folder you can write to.")
    return ext


def write_video(frames: Frames, path: str, fps: float = 25, crf: int = 18) -> str:
    """Write frames in the container the extension of ``path`` names (:data:`VIDEO_FORMATS`: H.264
    ``.mp4``, VP9 ``.webm``, palette ``.gif``) through imageio-ffmpeg; returns ``path``.

    Odd widths/heights are padded to even by repeating the last column/row (yuv420p needs even
    sizes). The parent folder is created. The file appears atomically: it is written to a hidden
    temporary name first, which is removed whatever stops the write (an error, Ctrl-C).

    Args:
        frames: ``[T, H, W, 3]`` float in [0, 1] or uint8.
        fps: frames per second, in (0, 1000]. crf: quality for mp4 / webm (lower = better), 0..51.
    Raises:
        MatrixGameError: unknown extension, no frames, bad fps/crf, or ffmpeg failed (with its reason).
    """
    path = os.fspath(path)
    ext = check_video_path(path, "video path")
    codec, pix_fmt, extra = VIDEO_FORMATS[ext]
    arr = to_uint8(frames)
    t, h, w, _ = arr.shape
    if t == 0 or h == 0 or w == 0:
        raise MatrixGameError(f"nothing to write to {path!r}: frames have shape {list(arr.shape)}.")
    if not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and 0 < fps <= 1000):
        raise MatrixGameError(f"fps must be a number in (0, 1000]; got {fps!r}.")
    if not (isinstance(crf, int) and 0 <= crf <= 51):
        raise MatrixGameError(f"crf must be a whole number 0..51 (lower = better quality); got {crf!r}.")
    if h % 2 or w % 2:
        arr = np.pad(arr, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        h, w = arr.shape[1:3]
    try:
        import imageio_ffmpeg
    except ImportError as e:  # pragma: no cover - a requirement of the pack
        raise MatrixGameError("writing video needs imageio-ffmpeg; pip install imageio-ffmpeg") from e
    parent = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(parent, f".{os.path.basename(path)}.{os.getpid()}.tmp{ext}")
    quality = [] if ext == ".gif" else ["-crf", str(crf)]
    gen = None
    try:
        os.makedirs(parent, exist_ok=True)
        gen = imageio_ffmpeg.write_frames(tmp, (w, h), fps=float(fps), codec=codec, pix_fmt_in="rgb24",
                                          pix_fmt_out=pix_fmt, macro_block_size=1, quality=None,
                                          output_params=quality + extra, ffmpeg_log_level="error")
        gen.send(None)
        for fr in arr:
            gen.send(fr)
        gen.close()
        os.replace(tmp, path)
    except BaseException as e:
        if gen is not None:
            gen.close()
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(e, (OSError, RuntimeError, ValueError)):
            raise MatrixGameError(f"cannot write video {path!r}: {e}") from e
        raise
    return path


def write_mp4(frames: Frames, path: str, fps: float = 25, crf: int = 18) -> str:
    """:func:`write_video` for ``.mp4`` paths (H.264, yuv420p); returns ``path``.

    Raises:
        MatrixGameError: ``path`` does not end in ``.mp4``, or as :func:`write_video`.
    """
    if os.path.splitext(os.fspath(path))[1].lower() != ".mp4":
        raise MatrixGameError(f"write_mp4 writes .mp4 files; got {os.fspath(path)!r} (use write_video for .webm / .gif).")
    return write_video(frames, path, fps, crf)


def read_mp4(path: str) -> np.ndarray:
    """Decode a video file to ``[T, H, W, 3]`` uint8 RGB.

    Raises:
        MatrixGameError: missing, unreadable or empty file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MatrixGameError(f"video file {path!r} not found.")
    import imageio_ffmpeg
    try:
        reader = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24")
        meta = next(reader)
        w, h = meta["size"]
        frames = [np.frombuffer(b, dtype=np.uint8).reshape(h, w, 3) for b in reader]
    except (OSError, RuntimeError, ValueError, StopIteration) as e:
        raise MatrixGameError(f"cannot read video {path!r}: {e}") from e
    if not frames:
        raise MatrixGameError(f"video {path!r} has no frames (truncated file?).")
    return np.stack(frames)


# ================================================================================================ font
# 5x9 cells (rows 0..6 = cap height, 7..8 = descender); only the letters the overlay writes.
_GLYPHS = {
    "W": ["X...X", "X...X", "X...X", "X.X.X", "X.X.X", "XX.XX", "X...X"],
    "A": [".XXX.", "X...X", "X...X", "XXXXX", "X...X", "X...X", "X...X"],
    "S": [".XXXX", "X....", "X....", ".XXX.", "....X", "....X", "XXXX."],
    "D": ["XXXX.", "X...X", "X...X", "X...X", "X...X", "X...X", "XXXX."],
    "l": [".XX..", "..X..", "..X..", "..X..", "..X..", "..X..", ".XXX."],
    "e": [".....", ".....", ".XXX.", "X...X", "XXXXX", "X....", ".XXX."],
    "f": ["..XX.", ".X...", "XXXX.", ".X...", ".X...", ".X...", ".X..."],
    "t": [".X...", ".X...", "XXXX.", ".X...", ".X...", ".X..X", "..XX."],
    "r": [".....", ".....", "X.XX.", "XX..X", "X....", "X....", "X...."],
    "i": ["..X..", ".....", ".XX..", "..X..", "..X..", "..X..", ".XXX."],
    "g": [".....", ".....", ".XXXX", "X...X", "X...X", ".XXXX", "....X", "....X", ".XXX."],
    "h": ["X....", "X....", "X.XX.", "XX..X", "X...X", "X...X", "X...X"],
}
_CAP_ROWS, _CELL_ROWS, _CELL_COLS = 7, 9, 5


def text_mask(text: str, scale: int) -> torch.Tensor:
    """Bool mask ``[9 * scale, (6 * len - 1) * scale]`` of ``text`` in the built-in bitmap font."""
    cols = []
    for i, ch in enumerate(text):
        rows = _GLYPHS.get(ch)
        if rows is None:
            raise ValueError(f"no glyph for {ch!r}")
        g = torch.zeros(_CELL_ROWS, _CELL_COLS, dtype=torch.bool)
        for r, line in enumerate(rows):
            g[r] = torch.tensor([c == "X" for c in line])
        cols.append(g)
        if i + 1 < len(text):
            cols.append(torch.zeros(_CELL_ROWS, 1, dtype=torch.bool))
    m = torch.cat(cols, 1)
    return m.repeat_interleave(scale, 0).repeat_interleave(scale, 1)


# ================================================================================================ layout
def _scale(height: int, width: int) -> float:
    return min(width / REF_WIDTH, height / REF_HEIGHT)


def overlay_boxes(height: int, width: int, mode: str) -> Dict[str, Tuple[int, int, int, int]]:
    """Key boxes ``label -> (x1, y1, x2, y2)`` (inclusive pixel corners, may reach outside the frame).

    At 640x352 these are the official ``draw_keys_on_frame`` boxes (key size 50, spacing 10,
    bottom margin 20): W (155,192)-(205,242), A (85,262)-(135,312), S (155,262)-(205,312),
    D (225,262)-(275,312) and for templerun left (300,262)-(390,312), right (400,262)-(490,312).
    """
    ref = {"W": (155, 192, 50, 50), "A": (85, 262, 50, 50), "S": (155, 262, 50, 50), "D": (225, 262, 50, 50)}
    if mode == "templerun":
        ref.update({"left": (300, 262, 90, 50), "right": (400, 262, 90, 50)})
    s = _scale(height, width)
    out = {}
    for k, (x, y, bw, bh) in ref.items():
        x1 = int(round(width / 2 + (x - REF_WIDTH / 2) * s))
        y1 = int(round(height + (y - REF_HEIGHT) * s))
        out[k] = (x1, y1, x1 + max(1, int(round(bw * s))), y1 + max(1, int(round(bh * s))))
    return out


def overlay_key_states(track, num_frames: int) -> Dict[str, torch.Tensor]:
    """``label -> bool [num_frames]``: which overlay box is lit on each frame (official mapping).

    universal: W/S/A/D = forward/back/left/right; gta_drive: W/S = forward/back, A/D = mouse yaw
    < 0 / > 0 (steering); templerun: W = jump, S = slide, A = left_side, D = right_side,
    left = turn_left, right = turn_right (nomove is not shown).
    """
    kb = track.keyboard[:num_frames] > 0.5
    if track.mode == "universal":
        return {"W": kb[:, 0], "S": kb[:, 1], "A": kb[:, 2], "D": kb[:, 3]}
    if track.mode == "gta_drive":
        yaw = track.mouse[:num_frames, 1]
        return {"W": kb[:, 0], "S": kb[:, 1], "A": yaw < 0, "D": yaw > 0}
    if track.mode == "templerun":
        return {"W": kb[:, 1], "S": kb[:, 2], "A": kb[:, 5], "D": kb[:, 6], "left": kb[:, 3], "right": kb[:, 4]}
    raise MatrixGameError(f"Unknown mode {track.mode!r}.")


def cursor_path(track, num_frames: int, height: int, width: int) -> torch.Tensor:
    """Cursor centre ``[num_frames, 2]`` (x, y) in pixels: frame 0 at the centre, then
    ``x += 1.5 s yaw``, ``y -= 6 s pitch`` per frame (official ``parse_config``, ``s`` = layout scale)."""
    s = _scale(height, width)
    m = track.mouse[:num_frames].double()
    step = torch.stack([m[:, 1] * CURSOR_SCALE_X * s, -m[:, 0] * CURSOR_SCALE_Y * s], 1)
    step[0] = 0
    start = torch.tensor([width / 2, height / 2], dtype=torch.float64)
    return start + torch.cumsum(step, 0)


def _rounded_rect(w: int, h: int, r: float) -> torch.Tensor:
    """Bool mask ``[h, w]`` of a filled rounded rectangle (corner radius ``r`` px)."""
    ys = torch.arange(h, dtype=torch.float32)[:, None]
    xs = torch.arange(w, dtype=torch.float32)[None, :]
    r = float(min(r, (w - 1) / 2, (h - 1) / 2))
    cx = torch.clamp(xs, r, w - 1 - r)
    cy = torch.clamp(ys, r, h - 1 - r)
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r + 1e-6


# arrow cursor outline (tip at the origin; x right, y down), design units
_ARROW = [(0, 0), (0, 17), (4, 13), (7, 20), (10, 19), (7, 12), (12, 12)]


def cursor_sprite(scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(black, white)`` bool masks ``[h, w]`` of a white arrow cursor with a black outline,
    about ``30 * scale`` px tall."""
    unit = max(0.35, 30.0 * scale / 21.0)
    pad = 2
    w = int(np.ceil(12 * unit)) + 2 * pad
    h = int(np.ceil(20 * unit)) + 2 * pad
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64) + 0.5 - pad,
                            torch.arange(w, dtype=torch.float64) + 0.5 - pad, indexing="ij")
    px, py = xs / unit, ys / unit
    pts = _ARROW + [_ARROW[0]]
    inside = torch.zeros(h, w, dtype=torch.bool)
    dist = torch.full((h, w), float("inf"), dtype=torch.float64)
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        if y1 != y0:  # even-odd rule: does a ray to the left of the pixel cross this edge?
            crosses = (py < y0) != (py < y1)
            inside ^= crosses & (px < x0 + (py - y0) * (x1 - x0) / (y1 - y0))
        dx, dy = x1 - x0, y1 - y0
        tt = (((px - x0) * dx + (py - y0) * dy) / (dx * dx + dy * dy)).clamp(0, 1)
        dist = torch.minimum(dist, torch.hypot(px - (x0 + tt * dx), py - (y0 + tt * dy)))
    t = max(1.0, 1.6 * scale) / unit  # outline half-width in design units
    black = inside | (dist <= t)
    white = inside & (dist > t)
    return black & ~white, white


# ================================================================================================ overlay
def draw_overlay(frames: Frames, track) -> torch.Tensor:
    """The official key / mouse overlay (module docstring) on ``frames [T, H, W, 3]``.

    Frame ``t`` shows row ``t`` of ``track``; the track may be longer than the video (its first
    ``T`` rows are used). Returns a new tensor of the same shape, dtype and device.

    Raises:
        MatrixGameError: frames not ``[T, H, W, 3]``, or the track shorter than the video.
    """
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[-1] != 3:
        shape = list(frames.shape) if hasattr(frames, "shape") else type(frames).__name__
        raise MatrixGameError(f"overlay needs frames [T, H, W, 3] (ComfyUI IMAGE); got {shape}.")
    track.validate(any_length=True)
    T, H, W, _ = frames.shape
    if T > track.num_frames:
        raise MatrixGameError(f"the video has {T} frames but the action track only {track.num_frames}; use the "
                              f"track the video was generated with (or a longer one).")
    src_dtype = frames.dtype
    if src_dtype == torch.uint8:
        out = frames.float() / 255
    elif frames.is_floating_point():
        out = frames.float().clone()
    else:
        raise MatrixGameError(f"frames must be float in [0, 1] or uint8; got {src_dtype}.")
    if T == 0:
        return frames.clone()
    dev = out.device
    s = _scale(H, W)
    states = overlay_key_states(track, T)
    on_c = torch.tensor(PRESSED_COLOR, device=dev)
    off_c = torch.tensor(RELEASED_COLOR, device=dev)
    boxes = overlay_boxes(H, W, track.mode)
    for label, (x1, y1, x2, y2) in boxes.items():
        bw, bh = x2 - x1 + 1, y2 - y1 + 1
        box = _rounded_rect(bw, bh, 10 * s).float()
        # letters: the largest integer scale up to ~2.5 s that fits with a margin (same for boxes
        # of the same width, so "left" and "right" match)
        n = max(len(k) for k, b in boxes.items() if b[2] - b[0] == x2 - x1)
        g = max(1, int(2.5 * s + 0.5))
        while g > 1 and ((6 * n - 1) * g > bw - 8 * s or _CAP_ROWS * g > bh - 8 * s):
            g -= 1
        tm = text_mask(label, g)
        tw, th = tm.shape[1], _CAP_ROWS * g
        tx, ty = (bw - tw) // 2, (bh - th) // 2
        txt = torch.zeros(bh, bw)
        ys0, xs0 = max(0, ty), max(0, tx)
        ys1, xs1 = min(bh, ty + tm.shape[0]), min(bw, tx + tw)
        if ys1 > ys0 and xs1 > xs0:
            txt[ys0:ys1, xs0:xs1] = tm[ys0 - ty:ys1 - ty, xs0 - tx:xs1 - tx].float()
        txt = txt * box
        # clip to the frame
        cx0, cy0, cx1, cy1 = max(0, x1), max(0, y1), min(W, x2 + 1), min(H, y2 + 1)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        box = box[cy0 - y1:cy1 - y1, cx0 - x1:cx1 - x1].to(dev)
        txt = txt[cy0 - y1:cy1 - y1, cx0 - x1:cx1 - x1].to(dev)
        pressed = states[label].to(dev)
        alpha = torch.where(pressed, PRESSED_ALPHA, RELEASED_ALPHA).to(out.dtype)[:, None, None, None]
        color = torch.where(pressed[:, None], on_c, off_c)[:, None, None, :]
        a = alpha * box[None, :, :, None]
        region = out[:, cy0:cy1, cx0:cx1]
        region = region * (1 - a) + color * a
        region = region * (1 - txt[None, :, :, None])
        out[:, cy0:cy1, cx0:cx1] = region
    if track.mode == "universal":
        black, white = cursor_sprite(s)
        black, white = black.to(dev), white.to(dev)
        sh, sw = black.shape
        path = cursor_path(track, T, H, W)
        for t in range(T):
            x0 = int(np.floor(path[t, 0].item() - sw / 2 + 0.5))
            y0 = int(np.floor(path[t, 1].item() - sh / 2 + 0.5))
            cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x0 + sw), min(H, y0 + sh)
            if cx1 <= cx0 or cy1 <= cy0:
                continue
            b = black[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0, None]
            wm = white[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0, None]
            reg = out[t, cy0:cy1, cx0:cx1]
            out[t, cy0:cy1, cx0:cx1] = torch.where(b, 0.0, torch.where(wm, 1.0, reg))
    if src_dtype == torch.uint8:
        return (out.clamp(0, 1) * 255).round().to(torch.uint8)
    return out.to(src_dtype)
