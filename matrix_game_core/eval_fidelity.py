"""Next-block fidelity: PSNR / SSIM of a model's predicted block against the recorded one.

On held-out recordings the model sees the ground-truth past (teacher forcing: after each generated
block the KV caches are rewritten with the ground-truth latents by the t=0 context pass) and
predicts the next block from the recorded actions; its frames are compared with the recorded
frames, beside the **copy-last-frame** baseline. Public names are re-exported by
:mod:`matrix_game_core.evaluate`.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .actions import CAM_VALUE
from .errors import MatrixGameError
from .eval_following import block_rows, command_script
from .eval_video import to_unit_rgb


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
def teacher_forced_blocks(dit, cond, latents: torch.Tensor, keyboard: torch.Tensor, mouse: Optional[torch.Tensor],
                          seed: int = 0, denoising_step_list: Optional[Sequence[int]] = None) -> list:
    """Next-block prediction with teacher forcing: block ``b`` generated (the
    :class:`~matrix_game_core.sampling.WorldSession` sampler, the model config's guidance) from the
    recorded blocks ``< b``, whose KV cache entries are rewritten by the context pass (``t =
    context_noise``) from the recorded latents after each block, as the official inference does
    with its own output.

    Args:
        cond: :class:`~matrix_game_core.sampling.Conditioning` of the clip (``cond_concat`` from its
            first frame).
        latents: ``[1, 16, N, h, w]`` normalised recorded latents, ``N`` a multiple of
            ``num_frame_per_block``.
        keyboard: ``[T, K]``; mouse: ``[T, 2]`` or None (official units), ``T = 1 + 4 (N - 1)`` rows.
    Returns:
        One ``[1, 16, num_frame_per_block, h, w]`` tensor of predicted normalised latents per block
        (block 0 re-creates the start image from its conditioning).
    """
    from .sampling import WorldSession

    p = next(dit.parameters())
    dev, dt = p.device, p.dtype
    latents = latents.to(dev, dt)
    nb = dit.cfg.num_frame_per_block
    sess = WorldSession(dit, cond, seed=seed, denoising_step_list=denoising_step_list)
    out = []
    for b in range(latents.shape[2] // nb):
        s, e = block_rows(b)
        out.append(sess.step(keyboard[s:e], None if mouse is None else mouse[s:e], decode=False).latents)
        # teacher forcing: overwrite this block's cache entries with the recorded latents (t = 0 pass)
        ones = torch.ones(1, nb, device=dev) * float(dit.cfg.context_noise)
        dit(latents[:, :, b * nb:(b + 1) * nb], ones, sess.cond.frames(b * nb, nb), sess.cond.visual_context,
            sess.keyboard_rows, sess.mouse_rows, b * nb, sess.cache)
    return out


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
        ``{"blocks": n, "model": {"psnr", "ssim"}, "copy_last": {...}, "round_trip": {...},
        "rollout": {...}}`` (means over blocks ``1..k``) plus ``per_block`` lists. ``round_trip``
        scores the recorded block encoded and decoded by ``vae`` (the same streaming decoder): the
        ceiling of any model decoded by this VAE.
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
    cc = encode_start_image(vae, vid[:, :, 0], dit.cfg.conditioning_frames(n_lat))
    if visual_context is None:
        visual_context = torch.zeros(1, 1, dit.cfg.img_dim)
    cond = Conditioning(cc, visual_context)
    nb = dit.cfg.num_frame_per_block
    n_blocks = n_lat // nb
    res = {"model": {"psnr": [], "ssim": []}, "copy_last": {"psnr": [], "ssim": []},
           "round_trip": {"psnr": [], "ssim": []}, "rollout": {"psnr": [], "ssim": []}}
    preds = teacher_forced_blocks(dit, cond, gt_lat, kb[0], None if ms is None else ms[0], seed=seed,
                                  denoising_step_list=denoising_step_list)
    dec_gt = StreamingDecoder(vae)
    for b in range(n_blocks):
        s, e = block_rows(b)
        lat_gt = gt_lat[:, :, b * nb:(b + 1) * nb]
        if b > 0:
            pred = _fork_decoder(dec_gt).decode(preds[b])[0].permute(1, 0, 2, 3).cpu()
            pred = ((pred + 1) / 2).clamp(0, 1)
            rt = _fork_decoder(dec_gt).decode(lat_gt.to(vae.device, vae.dtype))[0].permute(1, 0, 2, 3).cpu()
            rt = ((rt.float() + 1) / 2).clamp(0, 1)
            tgt = gt[s:e]
            last = gt[s - 1:s].expand_as(tgt)
            for key, x in (("model", pred), ("copy_last", last), ("round_trip", rt)):
                res[key]["psnr"].append(psnr(x, tgt))
                res[key]["ssim"].append(ssim(x, tgt))
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
                           pitch_magnitude: Optional[float] = None, action_guidance: Optional[float] = None,
                           pitch_guidance: Optional[float] = None, keyboard_guidance: Optional[float] = None,
                           hold_blocks: int = 1):
    """Generate a video from a start image under :func:`command_script` (left, right, up, down, ...;
    each command held ``hold_blocks`` blocks).

    Args:
        image: ``[1, 3, H, W]`` in [-1, 1] at the model's frame size.
        action_guidance / pitch_guidance / keyboard_guidance: the sampler's guidance scales (None: the model config's;
            :mod:`matrix_game_core.guidance`).
    Returns:
        ``(frames [1, 3, T, H, W] in [-1, 1], mouse [T, 2], labels)``.
    """
    from .sampling import Conditioning, WorldSession
    from .vae import StreamingDecoder, encode_start_image

    kdim = keyboard_dim or dit.cfg.keyboard_dim
    kb, ms, labels = command_script(blocks, magnitude, keyboard_dim=kdim, pitch_magnitude=pitch_magnitude,
                                    hold_blocks=hold_blocks)
    n_lat = blocks * dit.cfg.num_frame_per_block
    cc = encode_start_image(vae, image.to(vae.device, vae.dtype), dit.cfg.conditioning_frames(n_lat))
    vc = torch.zeros(1, 1, dit.cfg.img_dim) if visual_context is None else visual_context
    sess = WorldSession(dit, Conditioning(cc, vc), decoder=StreamingDecoder(vae), seed=seed,
                        denoising_step_list=denoising_step_list, action_guidance=action_guidance,
                        pitch_guidance=pitch_guidance, keyboard_guidance=keyboard_guidance)
    _, frames = sess.generate(kb, ms if dit.cfg.has_mouse else None, n_lat)
    return frames, ms, labels
