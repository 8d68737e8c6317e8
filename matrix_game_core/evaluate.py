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

CLI: ``python -m matrix_game_core.evaluate {motion,synthetic,model} ...`` (see ``--help``).
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .errors import MatrixGameError

#: Action classes of :func:`action_following`: (name, mouse channel, sign of the command).
ACTION_CLASSES = (("turn_left", 1, -1), ("turn_right", 1, +1), ("look_up", 0, +1), ("look_down", 0, -1))
#: Official camera step (``CAM_VALUE``).
CAM_VALUE = 0.1


# ---------------------------------------------------------------------------------------------- layout
def to_gray(video) -> np.ndarray:
    """Any accepted video layout -> ``[T, H, W]`` float32 luminance in [0, 1]."""
    x = video.detach().cpu().float().numpy() if isinstance(video, torch.Tensor) else np.asarray(video)
    signed = False
    if x.ndim == 5:
        if x.shape[0] != 1:
            raise MatrixGameError(f"video batch of {x.shape[0]}; pass one video [1,3,T,H,W].")
        x = x[0]
    if x.ndim == 4 and x.shape[0] == 3 and x.shape[-1] != 3:
        x = np.moveaxis(x, 0, -1)          # [3,T,H,W] -> [T,H,W,3]
        signed = True
    if x.ndim != 4 or x.shape[-1] != 3:
        raise MatrixGameError(f"video has shape {tuple(x.shape)}; expected [T,H,W,3] (IMAGE) or [3,T,H,W].")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    else:
        x = x.astype(np.float32)
        if signed or x.min() < -1e-3:
            x = (x + 1.0) / 2.0
    return (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]).astype(np.float32)


def to_unit_rgb(video) -> torch.Tensor:
    """Any accepted video layout -> ``[T, 3, H, W]`` float32 torch in [0, 1]."""
    x = video.detach().cpu() if isinstance(video, torch.Tensor) else torch.from_numpy(np.asarray(video))
    signed = False
    if x.dim() == 5:
        x = x[0]
    if x.dim() == 4 and x.shape[0] == 3 and x.shape[-1] != 3:
        x = x.permute(1, 0, 2, 3)
        signed = True
    elif x.dim() == 4 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    else:
        raise MatrixGameError(f"video has shape {tuple(x.shape)}; expected [T,H,W,3] (IMAGE) or [3,T,H,W].")
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    x = x.float()
    if signed or float(x.min()) < -1e-3:
        x = (x + 1) / 2
    return x.clamp(0, 1)


# ---------------------------------------------------------------------------------------------- motion
def _window(h: int, w: int) -> np.ndarray:
    return np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)


def phase_correlation(a: np.ndarray, b: np.ndarray, window: Optional[np.ndarray] = None
                      ) -> Tuple[float, float, float]:
    """Global translation from image ``a`` to image ``b`` (``b(y, x) ~ a(y - dy, x - dx)``).

    Args:
        a, b: ``[H, W]`` float grayscale images of the same size.
        window: optional ``[H, W]`` apodisation window (default: Hann).
    Returns:
        ``(dx, dy, peak)``: shift in pixels (x right +, y down +), sub-pixel by a parabolic fit of
        the correlation peak, and the peak height (1 = perfect translation, ~0 = no match).
    """
    h, w = a.shape
    win = _window(h, w) if window is None else window
    fa = np.fft.rfft2((a - a.mean()) * win)
    fb = np.fft.rfft2((b - b.mean()) * win)
    r = fb * np.conj(fa)
    r /= np.abs(r) + 1e-9
    c = np.fft.irfft2(r, s=(h, w))
    iy, ix = np.unravel_index(int(np.argmax(c)), c.shape)
    peak = float(c[iy, ix])

    def sub(cm, c0, cp):
        d = cm - 2 * c0 + cp
        return 0.0 if abs(d) < 1e-12 else float(np.clip(0.5 * (cm - cp) / d, -0.5, 0.5))

    ox = sub(c[iy, (ix - 1) % w], c[iy, ix], c[iy, (ix + 1) % w])
    oy = sub(c[(iy - 1) % h, ix], c[iy, ix], c[(iy + 1) % h, ix])
    dx = ((ix + w // 2) % w) - w // 2 + ox
    dy = ((iy + h // 2) % h) - h // 2 + oy
    return float(dx), float(dy), peak


def global_motion(video, max_width: int = 320) -> np.ndarray:
    """Frame-to-frame global translation of a video.

    Args:
        video: any accepted layout (see module docstring), ``T >= 2`` frames.
        max_width: frames wider than this are downscaled (area) first; shifts are reported in
            pixels of the **original** width.
    Returns:
        ``[T-1, 3]`` float32: ``(dx, dy, peak)`` between frames ``t`` and ``t+1``.
    """
    g = to_gray(video)
    t, h, w = g.shape
    if t < 2:
        raise MatrixGameError("motion needs at least 2 frames.")
    scale = 1.0
    if w > max_width:
        scale = w / max_width
        nh = max(8, int(round(h / scale)))
        g = F.interpolate(torch.from_numpy(g)[:, None], size=(nh, max_width), mode="area")[:, 0].numpy()
    win = _window(*g.shape[1:])
    out = np.zeros((t - 1, 3), np.float32)
    for i in range(t - 1):
        dx, dy, p = phase_correlation(g[i], g[i + 1], win)
        out[i] = (dx * scale, dy * scale, p)
    return out


def block_rows(block: int, frames_per_block: int = 12, first_block: int = 9) -> Tuple[int, int]:
    """Rows (= video frames) ``[start, end)`` of a session block (9 for block 0, 12 after)."""
    if block == 0:
        return 0, first_block
    s = first_block + frames_per_block * (block - 1)
    return s, s + frames_per_block


@dataclass
class FollowingReport:
    """Result of :func:`action_following`.

    Attributes:
        per_class: ``{class: {"n", "correct", "accuracy"}}`` for turn_left / turn_right /
            look_up / look_down (``accuracy`` None when ``n == 0``).
        yaw_accuracy / pitch_accuracy / accuracy: pooled over the yaw classes, the pitch
            classes, and all four (None when no block of that kind).
        blocks: one dict per block: rows, mean commanded (pitch, yaw), mean measured (dx, dy) in
            pixels per frame, classes and whether each was followed.
    """

    per_class: Dict[str, Dict]
    yaw_accuracy: Optional[float]
    pitch_accuracy: Optional[float]
    accuracy: Optional[float]
    blocks: List[Dict] = field(default_factory=list)

    def to_dict(self) -> Dict:
        return {"per_class": self.per_class, "yaw_accuracy": self.yaw_accuracy,
                "pitch_accuracy": self.pitch_accuracy, "accuracy": self.accuracy, "blocks": self.blocks}


def _acc(c, n):
    return None if n == 0 else c / n


def action_following(video, mouse, threshold: float = 0.5 * CAM_VALUE, min_motion: float = 1e-3,
                     motion: Optional[np.ndarray] = None, frames_per_block: int = 12,
                     first_block: int = 9, pitch_threshold: Optional[float] = None) -> FollowingReport:
    """Does the video move the way the mouse commands say? (GameWorld-style mouse accuracy.)

    A block belongs to a class when the mean commanded value over its rows passes ``threshold``
    (official units; default half a camera step): yaw <= -thr turn_left, >= thr turn_right,
    pitch >= thr look_up, <= -thr look_down (a block may be in a yaw and a pitch class). It is
    *followed* when the mean image motion over the block's frame pairs ``(t, t+1)`` has the
    expected sign and a magnitude of at least ``min_motion`` x the frame width (or height) per
    frame: turn right -> dx < 0, turn left -> dx > 0, look up -> dy > 0, look down -> dy < 0.
    ``pitch_threshold`` (default ``threshold``) applies to the pitch classes: games that limit the
    pitch (Doom: about +-30 degrees) rarely hold a full camera step for a whole block.

    Args:
        video: ``T`` frames in any accepted layout.
        mouse: ``[T', 2]`` (pitch up +, yaw right +) official units, ``T' >= T - 1``
            (numpy / torch / an ActionTrack's ``mouse``).
        motion: precomputed :func:`global_motion` of ``video`` (optional).
    Returns:
        :class:`FollowingReport`.
    """
    m = mouse.detach().cpu().float().numpy() if isinstance(mouse, torch.Tensor) else np.asarray(mouse, np.float32)
    if m.ndim == 3:
        m = m[0]
    if m.ndim != 2 or m.shape[1] != 2:
        raise MatrixGameError(f"mouse has shape {m.shape}; expected [T, 2] (pitch, yaw).")
    h, w = to_gray(video).shape[1:]
    mo = global_motion(video) if motion is None else np.asarray(motion)
    t = mo.shape[0] + 1
    if m.shape[0] < t - 1:
        raise MatrixGameError(f"mouse track has {m.shape[0]} rows but the video has {t} frames.")
    per = {name: {"n": 0, "correct": 0} for name, _, _ in ACTION_CLASSES}
    blocks = []
    b = 0
    while True:
        s, e = block_rows(b, frames_per_block, first_block)
        e = min(e, t - 1)
        if s >= e:
            break
        cmd = m[s:e].mean(0)
        d = mo[s:e, :2].mean(0)
        info = {"block": b, "rows": [s, e], "command": [float(cmd[0]), float(cmd[1])],
                "motion_px": [float(d[0]), float(d[1])], "classes": {}}
        for name, ch, sign in ACTION_CLASSES:
            thr = threshold if ch == 1 or pitch_threshold is None else pitch_threshold
            if cmd[ch] * sign >= thr:
                # yaw right (+) -> picture moves left (dx < 0); pitch up (+) -> picture moves down (dy > 0)
                v = -d[0] if ch == 1 else d[1]
                size = w if ch == 1 else h
                ok = bool(v * sign > 0 and abs(v) >= min_motion * size)
                per[name]["n"] += 1
                per[name]["correct"] += int(ok)
                info["classes"][name] = ok
        blocks.append(info)
        b += 1
    for v in per.values():
        v["accuracy"] = _acc(v["correct"], v["n"])
    yc = per["turn_left"]["correct"] + per["turn_right"]["correct"]
    yn = per["turn_left"]["n"] + per["turn_right"]["n"]
    pc = per["look_up"]["correct"] + per["look_down"]["correct"]
    pn = per["look_up"]["n"] + per["look_down"]["n"]
    return FollowingReport(per, _acc(yc, yn), _acc(pc, pn), _acc(yc + pc, yn + pn), blocks)


# ---------------------------------------------------------------------------------------------- synthetic
def command_script(blocks: int, magnitude: float = CAM_VALUE, order: Sequence[str] = (
        "turn_left", "turn_right", "look_up", "look_down"), keyboard_dim: int = 4,
        first_block: int = 9, frames_per_block: int = 12,
        pitch_magnitude: Optional[float] = None) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
    """An action script for action-following tests: block 0 idle, then blocks cycling ``order``,
    each holding one camera command of ``magnitude`` official units (``pitch_magnitude`` for the
    look classes, default the same), no keys.

    Returns:
        ``(keyboard [T, K] float32, mouse [T, 2] float32, labels per block)``, ``T = 9 + 12 (blocks-1)``.
    """
    t = first_block + frames_per_block * (blocks - 1)
    mouse = torch.zeros(t, 2)
    labels = ["idle"]
    cls = {n: (ch, s) for n, ch, s in ACTION_CLASSES}
    for b in range(1, blocks):
        name = order[(b - 1) % len(order)]
        ch, sgn = cls[name]
        s, e = block_rows(b, frames_per_block, first_block)
        mouse[s:e, ch] = sgn * (magnitude if ch == 1 or pitch_magnitude is None else pitch_magnitude)
        labels.append(name)
    return torch.zeros(t, keyboard_dim), mouse, labels


def synthetic_panning_video(mouse, height: int = 64, width: int = 112, px_per_step: float = 3.0,
                            seed: int = 0, detail: float = 0.3, blob: int = 4) -> np.ndarray:
    """A perfect 'world model' for camera commands: a window panning over a random smooth texture.

    Frame ``t + 1`` is frame ``t``'s view rotated by mouse row ``t``: yaw right ``+v`` moves the
    view right, so the picture moves **left** by ``v / 0.1 * px_per_step`` pixels; pitch up moves
    the picture **down**. Sub-pixel positions are rendered by bilinear sampling.

    Args:
        mouse: ``[T, 2]`` (pitch up +, yaw right +) official units.
        detail: weight of the fine (3-pixel) texture component over the smooth one.
        blob: size in pixels of the smooth component's features.
    Returns:
        ``[T, height, width, 3]`` uint8.
    """
    m = mouse.detach().cpu().numpy() if isinstance(mouse, torch.Tensor) else np.asarray(mouse)
    t = m.shape[0]
    steps = m / CAM_VALUE * px_per_step                       # view displacement per frame (px)
    # view centre: x grows with yaw right; y (down +) shrinks with pitch up
    pos = np.zeros((t, 2))
    pos[1:, 0] = np.cumsum(steps[:-1, 1])
    pos[1:, 1] = -np.cumsum(steps[:-1, 0])
    margin = int(np.ceil(np.abs(pos).max())) + 4
    rng = np.random.default_rng(seed)
    th, tw = height + 2 * margin, width + 2 * margin
    noise = torch.from_numpy(rng.standard_normal((1, 3, th // blob + 2, tw // blob + 2)).astype(np.float32))
    tex = F.interpolate(noise, size=(th, tw), mode="bicubic", align_corners=False)
    fine = torch.from_numpy(rng.standard_normal((1, 3, th, tw)).astype(np.float32))
    tex = tex + detail * F.avg_pool2d(fine, 3, 1, 1)
    tex = (tex - tex.mean()) / tex.std() * 0.22 + 0.5
    frames = []
    ys = torch.arange(height, dtype=torch.float32)
    xs = torch.arange(width, dtype=torch.float32)
    for i in range(t):
        x0, y0 = margin + pos[i, 0], margin + pos[i, 1]
        gx = (xs + x0) / (tw - 1) * 2 - 1
        gy = (ys + y0) / (th - 1) * 2 - 1
        grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1)[None]
        fr = F.grid_sample(tex, grid, mode="bilinear", align_corners=True)[0]
        frames.append((fr.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
    return np.stack(frames)


# ---------------------------------------------------------------------------------------------- fidelity
def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR (dB) of images in [0, 1] (any equal shapes)."""
    mse = float(((pred.float() - target.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _gauss(size=11, sigma=1.5):
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM (Wang et al. 2004: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03) of
    ``[N, 3, H, W]`` images in [0, 1], computed per channel and averaged."""
    x, y = pred.float(), target.float()
    n, c, h, w = x.shape
    k = _gauss().to(x.device).expand(c, 1, 11, 11)
    pad = 5

    def f(z):
        return F.conv2d(F.pad(z, (pad,) * 4, mode="reflect"), k, groups=c)

    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def _fork_decoder(dec):
    """A copy of a StreamingDecoder's state (cache slots are replaced, never mutated, by decoding)."""
    from .vae import StreamingDecoder

    f = StreamingDecoder(dec.vae)
    f._cache.slots = list(dec._cache.slots)
    f.latents_seen = dec.latents_seen
    return f


@torch.no_grad()
def evaluate_next_block(dit, vae, video, keyboard, mouse, visual_context=None, seed: int = 0,
                        denoising_step_list: Optional[Sequence[int]] = None,
                        rollout: bool = True) -> Dict:
    """Next-block PSNR/SSIM on one ground-truth clip, beside the copy-last-frame baseline.

    For each block ``b >= 1`` the model has seen the ground-truth blocks ``< b`` (KV caches written
    from the encoded recording) and generates block ``b`` from the recorded actions with the same
    sampler as :class:`~matrix_game_core.sampling.WorldSession`. The predicted latents are decoded
    with a decoder that has streamed the ground-truth latents before them. Block 0 (which only
    re-creates the start image) is skipped. With ``rollout`` the free-running generation (no
    teacher forcing) is scored too.

    Args:
        dit: :class:`~matrix_game_core.model.CausalWanModel`; vae: :class:`~matrix_game_core.vae.WanVAE`
            with encoder.
        video: ``T = 9 + 12k`` frames (any accepted layout) at the model's frame size.
        keyboard: ``[T, K]``; mouse: ``[T, 2]`` or None (official units).
        visual_context: ``[1, n, img_dim]`` image tokens (None: zeros ``[1, 1, img_dim]``, for
            image-encoder-free models; official models need CLIP features).
    Returns:
        ``{"blocks": n, "model": {"psnr", "ssim"}, "copy_last": {...}, "rollout": {...}}`` (means
        over blocks ``1..k``) plus ``per_block`` lists.
    """
    from .sampling import Conditioning, WorldSession
    from .vae import StreamingDecoder, encode_start_image, normalize_latents

    gt = to_unit_rgb(video)                                   # [T,3,H,W] in [0,1]
    t = gt.shape[0]
    if t < 21 or (t - 9) % 12:
        raise MatrixGameError(f"next-block evaluation needs 9 + 12k frames (k >= 1); got {t}.")
    p = next(dit.parameters())
    dev, dt = p.device, p.dtype
    kb = torch.as_tensor(keyboard, dtype=torch.float32)[None, :t]
    ms = None if mouse is None else torch.as_tensor(mouse, dtype=torch.float32)[None, :t]
    vid = (gt * 2 - 1).permute(1, 0, 2, 3)[None].to(vae.device, vae.dtype)   # [1,3,T,H,W]
    n_lat = 1 + (t - 1) // 4
    gt_lat = normalize_latents(vae.encode(vid)).to(dev, dt)                 # [1,16,N,h,w]
    cc = encode_start_image(vae, vid[:, :, 0], n_lat)
    if visual_context is None:
        visual_context = torch.zeros(1, 1, dit.cfg.img_dim)
    cond = Conditioning(cc, visual_context)
    nb = dit.cfg.num_frame_per_block
    n_blocks = n_lat // nb
    res = {"model": {"psnr": [], "ssim": []}, "copy_last": {"psnr": [], "ssim": []},
           "rollout": {"psnr": [], "ssim": []}}
    sess = WorldSession(dit, cond, seed=seed, denoising_step_list=denoising_step_list)
    dec_gt = StreamingDecoder(vae)
    for b in range(n_blocks):
        s, e = block_rows(b)
        r = sess.step(kb[0, s:e], None if ms is None else ms[0, s:e], decode=False)
        lat_gt = gt_lat[:, :, b * nb:(b + 1) * nb]
        if b > 0:
            pred = _fork_decoder(dec_gt).decode(r.latents)[0].permute(1, 0, 2, 3).cpu()
            pred = ((pred + 1) / 2).clamp(0, 1)
            tgt = gt[s:e]
            last = gt[s - 1:s].expand_as(tgt)
            for key, x in (("model", pred), ("copy_last", last)):
                res[key]["psnr"].append(psnr(x, tgt))
                res[key]["ssim"].append(ssim(x, tgt))
        # teacher forcing: overwrite this block's cache entries with the ground truth (t = 0 pass)
        ones = torch.ones(1, nb, device=dev) * float(dit.cfg.context_noise)
        dit(lat_gt, ones, sess.cond.frames(b * nb, nb), sess.cond.visual_context, sess.keyboard_rows,
            sess.mouse_rows, b * nb, sess.cache)
        dec_gt.decode(lat_gt)
    if rollout:
        sess = WorldSession(dit, cond, decoder=StreamingDecoder(vae), seed=seed,
                            denoising_step_list=denoising_step_list)
        _, frames = sess.generate(kb, ms, n_blocks * nb)
        frames = ((frames[0].permute(1, 0, 2, 3).cpu() + 1) / 2).clamp(0, 1)
        for b in range(1, n_blocks):
            s, e = block_rows(b)
            res["rollout"]["psnr"].append(psnr(frames[s:e], gt[s:e]))
            res["rollout"]["ssim"].append(ssim(frames[s:e], gt[s:e]))
    out = {"blocks": n_blocks - 1, "per_block": res}
    for k, v in res.items():
        if v["psnr"]:
            out[k] = {"psnr": float(np.mean(v["psnr"])), "ssim": float(np.mean(v["ssim"]))}
    return out


@torch.no_grad()
def generate_for_following(dit, vae, image, blocks: int = 9, seed: int = 0, visual_context=None,
                           magnitude: float = CAM_VALUE, denoising_step_list=None, keyboard_dim=None,
                           pitch_magnitude: Optional[float] = None):
    """Generate a video from a start image under :func:`command_script` (left, right, up, down, ...).

    Args:
        image: ``[1, 3, H, W]`` in [-1, 1] at the model's frame size.
    Returns:
        ``(frames [1, 3, T, H, W] in [-1, 1], mouse [T, 2], labels)``.
    """
    from .sampling import Conditioning, WorldSession
    from .vae import StreamingDecoder, encode_start_image

    kdim = keyboard_dim or dit.cfg.keyboard_dim
    kb, ms, labels = command_script(blocks, magnitude, keyboard_dim=kdim, pitch_magnitude=pitch_magnitude)
    n_lat = blocks * dit.cfg.num_frame_per_block
    cc = encode_start_image(vae, image.to(vae.device, vae.dtype), n_lat)
    vc = torch.zeros(1, 1, dit.cfg.img_dim) if visual_context is None else visual_context
    sess = WorldSession(dit, Conditioning(cc, vc), decoder=StreamingDecoder(vae), seed=seed,
                        denoising_step_list=denoising_step_list)
    _, frames = sess.generate(kb, ms if dit.cfg.has_mouse else None, n_lat)
    return frames, ms, labels


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


def synthetic_check(blocks: int = 9, seeds: int = 4, height: int = 64, width: int = 112) -> Dict:
    """Action following of :func:`synthetic_panning_video` under :func:`command_script` with
    several seeds and magnitudes (the evaluator's self-test; every class should be 100%)."""
    per = {name: {"n": 0, "correct": 0} for name, _, _ in ACTION_CLASSES}
    for s in range(seeds):
        for mag, px in ((0.1, 3.0), (0.06, 1.0), (0.1, 0.5)):
            _, ms, _ = command_script(blocks, mag)
            rep = action_following(synthetic_panning_video(ms, height, width, px, seed=s), ms)
            for k, v in rep.per_class.items():
                per[k]["n"] += v["n"]
                per[k]["correct"] += v["correct"]
    for v in per.values():
        v["accuracy"] = _acc(v["correct"], v["n"])
    tot_c = sum(v["correct"] for v in per.values())
    tot_n = sum(v["n"] for v in per.values())
    return {"per_class": per, "accuracy": _acc(tot_c, tot_n)}


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
    per = {name: {"n": 0, "correct": 0} for name, _, _ in ACTION_CLASSES}
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
        follow.append(rep.to_dict())
        done += 1
    if not nb_res:
        raise MatrixGameError(f"no shard of {data} has {t} frames; lower --blocks.")
    for v in per.values():
        v["accuracy"] = _acc(v["correct"], v["n"])
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
