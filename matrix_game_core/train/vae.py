"""Stage 1: train the engine's Wan-2.1 VAE (any width) on recordings.

The model is :class:`matrix_game_core.vae.WanVAE` itself (default structure, small ``dim``), so the
result loads with :func:`~matrix_game_core.vae.load_wan_vae` and decodes through the engine's
:class:`~matrix_game_core.vae.StreamingDecoder`. Training runs the same causal chunking as
inference (encoder: frame 0, then chunks of 4 frames through the feature cache; decoder: one latent
frame at a time), with gradients: :func:`vae_encode_train` / :func:`vae_decode_train` are the
differentiable twins of ``WanVAE.encode`` / ``WanVAE.decode`` (which run under ``no_grad``) and are
tested equal to them.

Losses need no downloaded network: L1 + ``ssim_weight`` (1 - SSIM) + ``grad_weight`` L1 of image
gradients + ``kl_weight`` KL(q(z|x) || N(0, 1)) with the reparameterised sample
``z = zn + exp(logvar / 2) eps`` (the encoder's second 16 channels are the log-variance), where
``zn`` is ``mu`` standardised per channel over the batch (:func:`normalize_batch`; without it the
decoder learns the average frame within a few dozen steps and the latent carries nothing).

Latent calibration (:func:`calibrate_latents`): the engine normalises latents with the fixed
Wan-2.1 constants ``(mu - LATENT_MEAN) / LATENT_STD``. After training we measure the per-channel
mean ``m`` and std ``s`` of ``mu`` on the data, fold the training-time standardisation
``(mu - m) / s`` into ``conv2`` (so the decoder takes raw latents), then fold the affine map ``mu' = a mu + b``
(``a = LATENT_STD / s``, ``b = LATENT_MEAN - a m``) into ``conv1`` (encoder output) and its inverse
into ``conv2`` (decoder input). Both are 1x1x1 convolutions, so the fold is exact: the
reconstructions do not change, and the engine's normalised latents have mean 0 and std 1 per
channel, which is what the DiT is trained on.
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from ..errors import MatrixGameError
from ..vae import LATENT_MEAN, LATENT_STD, WanVAE, _FeatCache, _run_causal
from .common import (JsonlLog, LossMeans, Timer, checkpoint_from_main, lr_at, optimizer_step, rank_seed,
                     resume_stage, seed_all, to_device)
from .distributed import Dist
from .config import TrainConfig


# ---------------------------------------------------------------------------------------------- model
def vae_encode_train(vae: WanVAE, video: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Differentiable ``WanVAE.encode``: ``video [B,3,1+4k,H,W]`` in [-1,1] -> raw
    ``(mu, logvar)``, each ``[B,16,1+k,H/8,W/8]``."""
    t = video.shape[2]
    if (t - 1) % 4:
        raise MatrixGameError(f"VAE clips need 1 + 4k frames; got {t}.")
    cache = _FeatCache(vae.encoder.num_cache_slots)
    outs = []
    for s, e in [(0, 1)] + [(i, i + 4) for i in range(1, t, 4)]:
        cache.idx = 0
        outs.append(vae.encoder(video[:, :, s:e], cache))
    h = _run_causal(vae.conv1, torch.cat(outs, dim=2))
    return h[:, :vae.z_dim], h[:, vae.z_dim:]


def vae_decode_train(vae: WanVAE, z_raw: torch.Tensor) -> torch.Tensor:
    """Differentiable ``WanVAE.decode`` without the clamp: raw latents ``[B,16,n,h,w]`` ->
    ``[B,3,1+4(n-1),8h,8w]``."""
    cache = _FeatCache(vae.decoder.num_cache_slots)
    x = _run_causal(vae.conv2, z_raw)
    return torch.cat([vae.decoder(x[:, :, i:i + 1], cache) for i in range(x.shape[2])], dim=2)


#: Initial log-variance of the posterior. At PyTorch's default init the encoder mean varies by only
#: ~0.03 between inputs; with unit posterior noise the decoder would learn to ignore the latent and
#: output the average frame (posterior collapse). exp(-10 / 2) = 0.007 keeps the latent informative.
INIT_LOGVAR = -10.0


def build_vae(dim: int) -> WanVAE:
    """A fresh engine VAE of width ``dim`` (default Wan-2.1 structure, z_dim 16), in train mode, with
    the posterior log-variance initialised to :data:`INIT_LOGVAR`."""
    vae = WanVAE(dim=dim).train()
    with torch.no_grad():
        vae.conv1.bias[vae.z_dim:].fill_(INIT_LOGVAR)
    return vae


# ---------------------------------------------------------------------------------------------- losses
def _gauss_kernel(c: int, device, dtype, size=11, sigma=1.5):
    x = torch.arange(size, dtype=torch.float32, device=device) - size // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(c, 1, size, size).to(dtype)


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``1 - SSIM`` of images ``[N,3,H,W]`` in [-1, 1] (mapped to [0, 1]), differentiable."""
    x, y = (x.float() + 1) / 2, (y.float() + 1) / 2
    c = x.shape[1]
    k = _gauss_kernel(c, x.device, x.dtype, size=min(11, 2 * (min(x.shape[-2:]) // 2) - 1 or 1))
    p = k.shape[-1] // 2

    def f(z):
        return F.conv2d(F.pad(z, (p,) * 4, mode="replicate"), k, groups=c)

    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return 1 - s.mean()


def vae_losses(vae: WanVAE, video: torch.Tensor, cfg, all_sum=None) -> Dict[str, torch.Tensor]:
    """Reconstruction losses of one batch ``[B,3,T,H,W]`` (see the module docstring).

    ``all_sum``: differentiable sum over data-parallel ranks, so that the latent standardisation
    uses the statistics of the global batch (as SyncBatchNorm does); None in one process."""
    mu, logvar = vae_encode_train(vae, video)
    mu, logvar = mu.float(), logvar.float().clamp(-30, 20)
    zn = normalize_batch(mu, all_sum=all_sum) * getattr(cfg, "latent_gain", 1.0)
    z = zn + torch.exp(0.5 * logvar) * torch.randn_like(zn)
    rec = vae_decode_train(vae, z.to(mu.dtype)).float()
    x = video.float()
    with torch.autocast(device_type=x.device.type, enabled=False):   # losses in float32
        out = _losses(rec, x, zn, logvar, cfg)
        w = getattr(cfg, "anchor_weight", 0.0)
        if w:
            gain = getattr(cfg, "latent_gain", 1.0)
            target = normalize_batch(latent_anchor(x), all_sum=all_sum).detach()
            out["anchor"] = (zn[:, :3] / gain - target).abs().mean()
            out["loss"] = out["loss"] + w * out["anchor"]
            out["anchor"] = out["anchor"].detach()
        return out


def latent_anchor(video: torch.Tensor) -> torch.Tensor:
    """The low-resolution picture each latent frame covers: ``[B,3,T,H,W]`` -> ``[B,3,1+k,H/8,W/8]``
    (frame 0 alone, then the mean of each group of 4 frames, average-pooled 8x8), matching the VAE's
    causal chunking. With ``anchor_weight`` the first three standardised latent channels are pulled
    towards it (standardised too): the latent then carries the picture from the first steps, so the
    decoder cannot settle on drawing the average frame (posterior collapse; measured at 64x112 with
    dim 16 and lr 3e-4: latent usage 2e-5 after 250 steps without it)."""
    import torch.nn.functional as F
    b, c, t, h, w = video.shape
    first = video[:, :, :1]
    rest = video[:, :, 1:].reshape(b, c, (t - 1) // 4, 4, h, w).mean(3) if t > 1 else video[:, :, :0]
    v = torch.cat([first, rest], dim=2)
    n = v.shape[2]
    return F.avg_pool2d(v.transpose(1, 2).reshape(b * n, c, h, w), 8).reshape(b, n, c, h // 8, w // 8).transpose(1, 2)


NORM_EPS = 1e-4


def normalize_batch(mu: torch.Tensor, eps: float = NORM_EPS, all_sum=None) -> torch.Tensor:
    """Per-channel standardisation of latents over batch, time and space (batch-norm style, with
    gradients through the statistics). The decoder is trained on latents of a fixed scale
    (``latent_gain``, default 4) whatever the encoder's output scale. This shortens the plateau in
    which the decoder draws the average frame and ignores the latent (at PyTorch's default init the
    latent path is weak; measured at 32x64: without it the decoder still ignored the latent after
    200 steps at lr 3e-4 in 3 of 3 seeds, with gain 4 it used it after 150-200 steps in 2 of 3;
    at lr >= 1e-3 it never did in 1000 steps). After training the statistics are folded into
    ``conv2`` (:func:`fold_decoder_input_norm`).

    ``all_sum`` (data parallel): the per-channel sums are summed over the ranks (differentiably), so
    each rank standardises with the global batch's mean and std."""
    if all_sum is None:
        m = mu.mean(dim=(0, 2, 3, 4), keepdim=True)
        s = mu.std(dim=(0, 2, 3, 4), keepdim=True, unbiased=False)
        return (mu - m) / (s + eps)
    dims = (0, 2, 3, 4)
    n = all_sum(torch.full((1,), float(mu.numel() // mu.shape[1]), device=mu.device, dtype=mu.dtype))
    stats = all_sum(torch.stack([mu.sum(dim=dims), (mu * mu).sum(dim=dims)]))       # [2, C]
    m = (stats[0] / n).view(1, -1, 1, 1, 1)
    s = (stats[1] / n).view(1, -1, 1, 1, 1) - m ** 2
    return (mu - m) / (s.clamp_min(0).sqrt() + eps)


class VAEObjective(torch.nn.Module):
    """``forward(video) -> vae_losses(...)``: the VAE's training step as one module call, which is
    what DistributedDataParallel wraps (the losses run the encoder/decoder pieces directly)."""

    def __init__(self, vae: WanVAE, cfg, all_sum=None):
        super().__init__()
        self.vae, self.cfg, self._all_sum = vae, cfg, all_sum

    def forward(self, video: torch.Tensor) -> Dict[str, torch.Tensor]:
        return vae_losses(self.vae, video, self.cfg, self._all_sum)


def _losses(rec, x, mu, logvar, cfg) -> Dict[str, torch.Tensor]:
    l1 = (rec - x).abs().mean()
    fr = lambda v: v.transpose(1, 2).flatten(0, 1)  # noqa: E731  [B*T,3,H,W]
    ss = ssim_loss(fr(rec), fr(x)) if cfg.ssim_weight else rec.new_zeros(())
    gx = lambda v: v[..., :, 1:] - v[..., :, :-1]  # noqa: E731
    gy = lambda v: v[..., 1:, :] - v[..., :-1, :]  # noqa: E731
    gr = ((gx(rec) - gx(x)).abs().mean() + (gy(rec) - gy(x)).abs().mean()) if cfg.grad_weight else rec.new_zeros(())
    kl = 0.5 * (mu.float() ** 2 + logvar.float().exp() - 1 - logvar.float()).mean()
    loss = l1 + cfg.ssim_weight * ss + cfg.grad_weight * gr + cfg.kl_weight * kl
    return {"loss": loss, "l1": l1.detach(), "ssim_loss": ss.detach(), "grad": gr.detach(), "kl": kl.detach(),
            "psnr": (10 * torch.log10(4.0 / ((rec.detach().clamp(-1, 1) - x) ** 2).mean().clamp_min(1e-10)))}


# ---------------------------------------------------------------------------------------------- calibration
@torch.no_grad()
def latent_stats(vae: WanVAE, clips) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std ``[16]`` of the raw encoder mean over an iterable of videos
    ``[B,3,T,H,W]``."""
    s = s2 = n = 0
    for v in clips:
        mu = vae.encode(v.to(vae.device, vae.dtype)).double()
        s = s + mu.sum(dim=(0, 2, 3, 4))
        s2 = s2 + (mu ** 2).sum(dim=(0, 2, 3, 4))
        n += mu.numel() // mu.shape[1]
    mean = s / n
    std = (s2 / n - mean ** 2).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()


@torch.no_grad()
def fold_latent_affine(vae: WanVAE, mean: torch.Tensor, std: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold ``mu' = a mu + b`` into ``conv1`` and its inverse into ``conv2`` so that raw latents with
    per-channel ``mean``/``std`` map to ``LATENT_MEAN``/``LATENT_STD`` (engine-normalised latents
    ~ mean 0, std 1). Returns ``(a, b)``."""
    z = vae.z_dim
    tm = torch.tensor(LATENT_MEAN, dtype=torch.float64)
    ts = torch.tensor(LATENT_STD, dtype=torch.float64)
    a = ts / std.double().clamp_min(1e-8)
    b = tm - a * mean.double()
    w1, b1 = vae.conv1.weight, vae.conv1.bias
    dt = w1.dtype
    w1d, b1d = w1.double(), b1.double()
    w1d[:z] *= a.view(z, 1, 1, 1, 1)
    b1d[:z] = a * b1d[:z] + b
    b1d[z:] += 2 * torch.log(a)
    w1.copy_(w1d.to(dt))
    b1.copy_(b1d.to(dt))
    w2, b2 = vae.conv2.weight, vae.conv2.bias
    w2d = w2.double()
    b2.copy_((b2.double() - (w2d[:, :, 0, 0, 0] * (b / a).view(1, z)).sum(1)).to(dt))
    w2.copy_((w2d / a.view(1, z, 1, 1, 1)).to(dt))
    return a.float(), b.float()


@torch.no_grad()
def fold_decoder_input_norm(vae: WanVAE, mean: torch.Tensor, scale: torch.Tensor) -> None:
    """Make ``conv2`` (the decoder's 1x1x1 input conv) take raw latents ``mu`` where training fed it
    ``(mu - mean) / scale``: ``W' = W / scale``, ``b' = b - W' mean`` (exact)."""
    w, b = vae.conv2.weight, vae.conv2.bias
    inv = 1.0 / scale.double()
    wd = w.double() * inv.view(1, -1, 1, 1, 1)
    b.copy_((b.double() - (wd[:, :, 0, 0, 0] * mean.double().view(1, -1)).sum(1)).to(b.dtype))
    w.copy_(wd.to(w.dtype))


def calibrate_latents(vae: WanVAE, clips, gain: float = 1.0) -> Dict:
    """Measure latent statistics on ``clips``; fold the training-time batch normalisation (times
    ``gain``) into the decoder input, then the map to the engine's latent constants (see the module
    docstring)."""
    mean, std = latent_stats(vae, clips)
    fold_decoder_input_norm(vae, mean, (std + NORM_EPS) / gain)
    a, b = fold_latent_affine(vae, mean, std)
    return {"raw_mean": mean.tolist(), "raw_std": std.tolist(), "scale": a.tolist(), "shift": b.tolist()}


@torch.no_grad()
def latent_usage(vae: WanVAE, clips, gain: Optional[float] = None) -> float:
    """How much reconstructions differ between clips, relative to the clips themselves (~1: the
    latent carries the picture; ~0: the decoder draws the same frame whatever the input).

    ``gain`` None: a calibrated VAE (``decode(encode(x))``); a number: a VAE in training (the
    decoder is fed the standardised latent times ``gain``)."""
    v = torch.cat([c.to(vae.device, vae.dtype) for c in clips[:8]])
    if v.shape[0] < 2:
        return float("nan")
    if gain is None:
        rec = vae.decode(vae.encode(v))
    else:
        mu, _ = vae_encode_train(vae, v)
        rec = vae_decode_train(vae, normalize_batch(mu.float()).to(mu.dtype) * gain).float()
    return float(rec.std(0).mean() / v.float().std(0).mean().clamp_min(1e-6))


def save_vae(vae: WanVAE, path: str) -> None:
    """Write the VAE state dict (Wan2.1_VAE keys) as safetensors, float32."""
    from safetensors.torch import save_file
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    save_file({k: v.detach().float().contiguous().cpu() for k, v in vae.state_dict().items()}, tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- training
def train_vae(data: str, run: str, cfg: TrainConfig, device: torch.device, bf16: bool = False,
              echo: bool = True, dist: Optional[Dist] = None) -> str:
    """Train (or resume) stage 1 and write ``RUN/vae/vae.safetensors`` (calibrated). Returns its path.

    Resumes from ``RUN/vae/ckpt.pt`` when present; a finished stage (``vae.safetensors`` newer
    than the checkpoint, at the configured step count) is not retrained. Data parallel under
    torchrun (``dist``): each rank streams its own random clips (seed per rank and step) for its
    ``vae.batch / world`` share of the global batch, the latent standardisation uses the global
    batch's statistics, DDP averages the gradients; rank 0 watches usage, calibrates and writes.
    """
    from ..data.dataset import ClipStream

    dist = dist or Dist(device=device)
    sc = cfg.vae
    out = os.path.join(run, "vae")
    final = os.path.join(out, "vae.safetensors")
    ckpt_p = os.path.join(out, "ckpt.pt")
    log = JsonlLog(os.path.join(out, "log.jsonl"), echo=echo) if dist.is_main else None
    seed_all(cfg.seed)                # the same initial weights as one process (DDP broadcasts rank 0's)
    local_batch = len(range(sc.batch)[dist.shard(sc.batch, "vae.batch")])
    vae = build_vae(sc.dim).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=sc.lr, betas=(0.9, 0.99), weight_decay=0.0)
    st, step = resume_stage(ckpt_p, vae, opt, dist, cfg.seed, "VAE")
    if step >= sc.steps and os.path.isfile(final):
        return final
    start = step
    if st is not None and log:
        log.write({"stage": "vae_resume", "step": step, "world": dist.world})
    crop = tuple(sc.crop) if sc.crop else None
    # one stream per rank (seed + step in one process, as before; a different stream per rank)
    stream = ClipStream(data, sc.clip_frames, "train", crop,
                        seed=cfg.seed + step + (rank_seed(cfg.seed, step, dist.rank) % 1_000_000 if dist.enabled
                                                else 0))
    loader = torch.utils.data.DataLoader(stream, batch_size=local_batch, num_workers=cfg.num_workers)
    it = iter(loader)
    probe = None
    if dist.is_main:   # 8 fixed clips to watch the latent usage during training
        probe_it = iter(torch.utils.data.DataLoader(ClipStream(data, sc.clip_frames, "train", crop,
                                                               clips_per_shard=1, seed=cfg.seed + 99), batch_size=1))
        probe = [next(probe_it)["video"] for _ in range(8)]
    net = dist.wrap(VAEObjective(vae, sc, dist.all_sum if dist.enabled else None))
    timer = Timer()
    vae.train()
    means = LossMeans(dist)
    while step < sc.steps:
        batch = to_device(next(it), device)
        lr = lr_at(step, sc.lr, sc.warmup, sc.steps)
        losses, gn = optimizer_step(net, opt, vae.parameters(), batch["video"], lr, device, bf16)
        step += 1
        means.add(losses)
        if step % cfg.log_every == 0 or step == sc.steps or step == start + 1:
            row = means.pop()
            if log:
                log.write({"stage": "vae", "step": step, **row, "lr": lr, "grad_norm": float(gn),
                           "seconds": round(timer(), 2)})
        if step % cfg.ckpt_every == 0 or step == sc.steps:
            checkpoint_from_main(dist, vae, log, "vae", step, ckpt_p, model=vae.state_dict(),
                                 optimizer=opt.state_dict(), step=step, world=dist.world)
            if dist.is_main:
                vae.eval()
                log.write({"stage": "vae_usage", "step": step, "usage": latent_usage(vae, probe, sc.latent_gain)})
                vae.train()
    if dist.is_main:
        _calibrate_and_save(vae, data, cfg, log, final)
    dist.barrier()
    return final


def _calibrate_and_save(vae: WanVAE, data: str, cfg: TrainConfig, log: JsonlLog, final: str) -> None:
    """Calibration on full-size (uncropped) clips, usage check, then ``vae.safetensors``."""
    from ..data.dataset import ClipStream

    sc = cfg.vae
    vae.eval()
    cal = ClipStream(data, sc.clip_frames, "train", None, clips_per_shard=4, seed=cfg.seed + 7)
    cal_loader = torch.utils.data.DataLoader(cal, batch_size=1)
    cit = iter(cal_loader)
    clips = [next(cit)["video"] for _ in range(sc.calib_clips)]
    info = calibrate_latents(vae, clips, sc.latent_gain)
    usage = latent_usage(vae, clips)
    log.write({"stage": "vae_calibration", "raw_std_mean": float(sum(info["raw_std"]) / 16),
               "raw_mean_abs": float(sum(abs(v) for v in info["raw_mean"]) / 16), "usage": usage})
    if usage < 0.1:
        log.write({"stage": "vae_warning", "message": f"the decoder ignores the latent (usage {usage:.3f}: it draws "
                   f"the average frame); train the VAE longer (--vae-steps) or with a lower lr before the DiT."})
    save_vae(vae, final)
