"""Stage 1b: fine-tune the VAE **decoder** with the encoder frozen (the latent space does not move).

The VAE of stage 1 is trained on small random crops for a few thousand steps (the embedded preset:
32x48 crops, batch 1, 2,250 steps), and its reconstruction caps every model decoded by it: on the
embedded model's held-out clips the VAE round trip of the recorded next block scores 23.15 dB
PSNR, against 21.71 dB for the copy-last-frame baseline, so no DiT can beat copy-last by the issue's
1 dB with that decoder. Fine-tuning only ``conv2`` + ``decoder`` on full frames with a
reconstruction loss weighted towards the mean squared error (what PSNR measures) raises that
ceiling without touching the encoder, ``conv1`` or the latent calibration: latents encoded
before and after are bit-equal, so the DiT trained on them (stage 2) stays valid and the new
``vae.safetensors`` simply replaces the old one. This is the recipe of Stability AI's
``sd-vae-ft-mse`` (the SD 1.x decoder fine-tuned with the encoder frozen, 2022).

The loss: ``mse_weight`` MSE + L1 + ``ssim_weight`` (1 - SSIM) on ``[-1, 1]`` frames, decoding
the calibrated encoder mean ``mu`` (no posterior noise: at inference the decoder sees the DiT's
predicted means) plus, with ``latent_noise`` > 0, Gaussian noise of that std in the engine's
normalised latent units (robustness to the DiT's prediction error).

    python -m matrix_game_core.train decoder --data REC --out RUN [--set decoder.steps=N]

**On the DiT's own predictions** (``decoder.generated_share`` > 0, ``decoder.generator``; default the
run's ``export/student``): in that share of the clips every block after the first is replaced by the
DiT's teacher-forced next-block prediction (:func:`generated_latents`), decoded against the recorded
frames, so the decoder learns to render what that DiT makes; the stage then also logs
``generated_psnr`` on the val clips and the generator's sha256 (``decoder_generator`` rows), which
``embedded.build --reevaluate --decoder-run RUN`` checks before installing the decoder. On the
embedded model: next-block PSNR over copy-last +0.44 -> +1.01 dB on the card's held-out clips
(docs/data_and_training.md §3j).

reads ``RUN/vae/vae.safetensors``, checkpoints ``RUN/decoder/ckpt.pt``, logs the held-out round
trip (``decoder_val``: PSNR on fixed full-size clips of the recording's ``val`` split, before and
during training) and writes ``RUN/decoder/vae.safetensors``, which ``export`` then ships instead
of stage 1's file.
"""
from __future__ import annotations

import os
import random
from typing import Dict, List, Optional

import torch

from ..errors import MatrixGameError
from ..vae import LATENT_STD, WanVAE
from .common import JsonlLog, LossMeans, Timer, checkpoint_from_main, lr_at, optimizer_step, resume_stage, seed_all
from .config import TrainConfig
from .distributed import Dist
from .vae import _losses, save_vae, vae_decode_train

#: The parameters that stage 1b trains: the decoder's 1x1x1 input conv and the decoder.
TRAINED_PREFIXES = ("conv2.", "decoder.")


def decoder_parameters(vae: WanVAE) -> List[torch.nn.Parameter]:
    """Freeze everything but ``conv2`` + ``decoder``; returns the trainable parameters."""
    out = []
    for name, p in vae.named_parameters():
        p.requires_grad_(name.startswith(TRAINED_PREFIXES))
        if p.requires_grad:
            out.append(p)
    return out


class DecoderObjective(torch.nn.Module):
    """``forward(batch) -> losses``: encode without gradients (frozen), decode with them.

    ``batch``: ``{"video": [B,3,T,H,W] in [-1,1], "keyboard": [B,T,K], "mouse": [B,T,2]}`` (or the
    video alone when no ``generator`` is used). ``cfg``: the :class:`~.config.DecoderStage`. With a
    ``generator`` DiT and ``cfg.generated_share`` > 0, that share of the clips is decoded from
    :func:`generated_latents` (the DiT's teacher-forced next-block predictions after the first
    block) instead of the encoder's latents, against the same recorded frames."""

    def __init__(self, vae: WanVAE, cfg, generator=None, seed: int = 0):
        super().__init__()
        self.vae, self.cfg = vae, cfg
        self.generator = generator
        self._rng = random.Random(seed)

    def forward(self, batch) -> Dict[str, torch.Tensor]:
        video = batch["video"] if isinstance(batch, dict) else batch
        with torch.no_grad():
            mu = self.vae.encode(video)                              # raw calibrated means [B,16,n,h,w]
            if self.generator is not None and self.cfg.generated_share > 0:
                rows = [i for i in range(video.shape[0]) if self._rng.random() < self.cfg.generated_share]
                for i in rows:
                    mu[i:i + 1] = generated_latents(self.generator, self.vae, video[i:i + 1], mu[i:i + 1],
                                                    batch["keyboard"][i], batch["mouse"][i],
                                                    seed=self._rng.randrange(2 ** 31))
            if self.cfg.latent_noise:
                std = torch.tensor(LATENT_STD, device=mu.device, dtype=mu.dtype).view(1, -1, 1, 1, 1)
                mu = mu + self.cfg.latent_noise * std * torch.randn_like(mu)
        rec = vae_decode_train(self.vae, mu).float()
        x = video.float()
        with torch.autocast(device_type=x.device.type, enabled=False):
            out = _losses(rec, x, torch.zeros(()), torch.zeros(()), self.cfg)
            mse = ((rec - x) ** 2).mean()
            out["loss"] = out["loss"] + self.cfg.mse_weight * mse
            out["mse"] = mse.detach()
        out.pop("kl", None)
        return out


@torch.no_grad()
def generated_latents(dit, vae: WanVAE, video: torch.Tensor, mu: torch.Tensor, keyboard: torch.Tensor,
                      mouse: Optional[torch.Tensor], seed: int = 0) -> torch.Tensor:
    """The raw latents of one clip with every block after the first replaced by ``dit``'s
    teacher-forced next-block prediction (:func:`~matrix_game_core.evaluate.teacher_forced_blocks`:
    block ``b`` sampled from the recorded blocks ``< b`` and the recorded actions, conditioned on the
    clip's first frame): what the decoder is given in the next-block benchmark and, block after
    block, in a session.

    Args:
        video: ``[1,3,T,H,W]`` in [-1, 1], ``T = 9 + 12k`` (whole blocks); mu: ``[1,16,N,h,w]`` its raw
            encoder means; keyboard ``[T,K]``, mouse ``[T,2]`` (official units) or None.
    Returns:
        ``[1,16,N,h,w]`` raw latents in ``mu``'s dtype: block 0 ``mu``'s own, the others predicted.
    """
    from ..evaluate import teacher_forced_blocks
    from ..sampling import Conditioning
    from ..vae import denormalize_latents, encode_start_image, normalize_latents

    p = next(dit.parameters())
    z = normalize_latents(mu).to(p.device, p.dtype)
    n, nb = z.shape[2], dit.cfg.num_frame_per_block
    cc = encode_start_image(vae, video[:, :, 0].to(vae.device, vae.dtype), dit.cfg.conditioning_frames(n))
    cond = Conditioning(cc, torch.zeros(1, 1, dit.cfg.img_dim))
    kb = keyboard.to(p.device, torch.float32)
    ms = None if mouse is None or not dit.cfg.has_mouse else mouse.to(p.device, torch.float32)
    preds = teacher_forced_blocks(dit, cond, z, kb, ms, seed=seed)
    out = mu.clone()
    out[:, :, nb:] = denormalize_latents(torch.cat(preds[1:], dim=2).float()).to(mu.device, mu.dtype)
    return out


def generated_psnr(vae: WanVAE, dit, clips) -> float:
    """Mean PSNR (dB, frames in [0, 1]) over the frames of blocks ``>= 1`` of fixed clips (dicts of
    ``video``/``keyboard``/``mouse``, batch 1) decoded from :func:`generated_latents` (seed 0): the
    next-block benchmark's number on the decoder's validation clips."""
    from ..eval_following import block_rows

    first = block_rows(1)[0]                       # video frames of block 0 (9)
    vals = []
    with torch.no_grad():
        for c in clips:
            v = c["video"].to(vae.device, vae.dtype)
            z = generated_latents(dit, vae, v, vae.encode(v), c["keyboard"][0], c["mouse"][0], seed=0)
            vals.append(_psnr_pm1(vae.decode(z)[:, :, first:], v[:, :, first:]))
    return sum(vals) / max(1, len(vals))


def _psnr_pm1(rec: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR (dB) of video in [-1, 1] measured as frames in [0, 1] (``rec`` clamped first)."""
    mse = float(((rec.float().clamp(-1, 1) - target.float()) ** 2).mean()) / 4.0
    return 10.0 * torch.log10(torch.tensor(1.0 / max(mse, 1e-10))).item()


def generator_path(run: str, sc) -> str:
    """The safetensors of the decoder stage's generator: ``sc.generator`` (a file, or a folder holding
    ``model.safetensors``) or the run's distilled student ``RUN/export/student/model.safetensors``."""
    p = sc.generator or os.path.join(run, "export", "student")
    return p if p.endswith(".safetensors") else os.path.join(p, "model.safetensors")


def load_generator(run: str, cfg) -> Optional[torch.nn.Module]:
    """The DiT of ``cfg.decoder.generator`` (a model.safetensors or its folder; None: the run's
    ``export/student``) when ``cfg.decoder.generated_share`` > 0 (float32, eval, frozen), else None.

    Raises:
        MatrixGameError: the file is missing, or ``decoder.clip_frames`` is not whole blocks (9 + 12k).
    """
    from ..checkpoints import load_dit

    sc = cfg.decoder
    if not sc.generated_share:
        return None
    if (sc.clip_frames - 9) % 12 or sc.clip_frames < 21:
        raise MatrixGameError(f"decoder.generated_share needs clips of whole blocks: decoder.clip_frames = 9 + 12k "
                              f"(e.g. 33); got {sc.clip_frames}.")
    p = generator_path(run, sc)
    if not os.path.isfile(p):
        raise MatrixGameError(f"decoder generator {p} is missing: distil a student first (python -m "
                              f"matrix_game_core.train distill) or --set decoder.generator=PATH/model.safetensors.")
    m = load_dit(p, mode="universal", dtype=torch.float32)
    for q in m.parameters():
        q.requires_grad_(False)
    return m.eval()


@torch.no_grad()
def round_trip_psnr(vae: WanVAE, clips) -> float:
    """Mean PSNR (dB, frames in [0, 1]) of ``decode(encode(clip))`` over ``clips`` ``[1,3,T,H,W]``."""
    vals = []
    for v in clips:
        v = v.to(vae.device, vae.dtype)
        vals.append(_psnr_pm1(vae.decode(vae.encode(v)), v))
    return sum(vals) / max(1, len(vals))


def train_decoder(data: str, run: str, cfg: TrainConfig, device: torch.device, bf16: bool = False,
                  echo: bool = True, dist: Optional[Dist] = None) -> str:
    """Fine-tune (or resume) stage 1b and write ``RUN/decoder/vae.safetensors``. Returns its path.

    Raises:
        MatrixGameError: ``RUN/vae/vae.safetensors`` is missing (train stage 1 first), or the recording
        has no clip of ``decoder.clip_frames`` frames.
    """
    from ..data.dataset import ClipStream
    from ..vae import load_wan_vae

    dist = dist or Dist(device=device)
    sc = cfg.decoder
    src = os.path.join(run, "vae", "vae.safetensors")
    if not os.path.isfile(src):
        raise MatrixGameError(f"{src} is missing; train the VAE first (python -m matrix_game_core.train vae "
                              f"--data {data} --out {run}).")
    out = os.path.join(run, "decoder")
    final = os.path.join(out, "vae.safetensors")
    ckpt_p = os.path.join(out, "ckpt.pt")
    log = JsonlLog(os.path.join(out, "log.jsonl"), echo=echo) if dist.is_main else None
    seed_all(cfg.seed + 11)
    vae = load_wan_vae(src, device=device, dtype=torch.float32)
    gen = load_generator(run, cfg)
    if gen is not None:
        gen = gen.to(device)
    params = decoder_parameters(vae)
    opt = torch.optim.AdamW(params, lr=sc.lr, betas=(0.9, 0.99), weight_decay=0.0)
    st, step = resume_stage(ckpt_p, vae, opt, dist, cfg.seed, "VAE")
    if step >= sc.steps and os.path.isfile(final):
        return final
    start = step
    crop = tuple(sc.crop) if sc.crop else None
    local_batch = len(range(sc.batch)[dist.shard(sc.batch, "decoder.batch")])
    # one clip per shard: a batch-1 fine-tune on ClipStream's default 16 consecutive clips of one episode
    # chases the latest episode (measured on the embedded run: held-out round trip 20.26 -> 19.74 dB and
    # the training loss rising 0.21 -> 0.85 over 100 steps at lr 1.5e-4)
    stream = ClipStream(data, sc.clip_frames, "train", crop, clips_per_shard=1,
                        seed=cfg.seed + 17 + 7919 * step + 104729 * dist.rank)
    it = iter(torch.utils.data.DataLoader(stream, batch_size=local_batch, num_workers=cfg.num_workers))
    val = None
    if dist.is_main and sc.val_clips:
        try:
            vit = iter(torch.utils.data.DataLoader(ClipStream(data, sc.clip_frames, "val", None, clips_per_shard=2,
                                                              seed=cfg.seed + 23), batch_size=1))
        except MatrixGameError:
            vit = iter(torch.utils.data.DataLoader(ClipStream(data, sc.clip_frames, "train", None,
                                                              clips_per_shard=2, seed=cfg.seed + 23), batch_size=1))
        val = [next(vit) for _ in range(sc.val_clips)]
        if st is None:
            vae.eval()
            log.write(_val_row(vae, gen, val, 0))
    if st is not None and log:
        log.write({"stage": "decoder_resume", "step": step})
    if gen is not None and log:       # which DiT's predictions this phase decodes (embedded.build checks it)
        from .latents import file_sha256
        gp = generator_path(run, sc)
        log.write({"stage": "decoder_generator", "step": step, "generator": os.path.abspath(gp),
                   "generator_sha256": file_sha256(gp), "generated_share": sc.generated_share})
    net = dist.wrap(DecoderObjective(vae, sc, gen, seed=cfg.seed + 29 + 7919 * step + 104729 * dist.rank))
    timer = Timer()
    vae.train()
    means = LossMeans(dist)
    while step < sc.steps:
        batch = {k: v.to(device) for k, v in next(it).items() if k in ("video", "keyboard", "mouse")}
        lr = lr_at(step, sc.lr, sc.warmup, sc.steps)
        losses, gn = optimizer_step(net, opt, params, batch, lr, device, bf16)
        step += 1
        means.add(losses)
        if step % cfg.log_every == 0 or step == sc.steps or step == start + 1:
            row = means.pop()
            if log:
                log.write({"stage": "decoder", "step": step, **row, "lr": lr, "grad_norm": float(gn),
                           "seconds": round(timer(), 2)})
        if step % (sc.ckpt_every or cfg.ckpt_every) == 0 or step == sc.steps:
            checkpoint_from_main(dist, vae, log, "decoder", step, ckpt_p, model=vae.state_dict(),
                                 optimizer=opt.state_dict(), step=step, world=dist.world)
            if dist.is_main:
                vae.eval()
                if val:
                    log.write(_val_row(vae, gen, val, step))
                _save(vae, final, step)       # the newest decoder is usable (and exportable) at once
                vae.train()
    if dist.is_main:
        vae.eval()
        _save(vae, final, step)
    dist.barrier()
    return final


def _val_row(vae: WanVAE, gen, val, step: int) -> Dict:
    """The ``decoder_val`` log row: round-trip PSNR of the fixed val clips and, with a generator, the PSNR
    of their blocks after the first decoded from its teacher-forced predictions (``generated_psnr``)."""
    row = {"stage": "decoder_val", "step": step, "psnr": round_trip_psnr(vae, [c["video"] for c in val])}
    if gen is not None:
        row["generated_psnr"] = generated_psnr(vae, gen, val)
    return row


def _save(vae: WanVAE, final: str, step: int) -> None:
    """``vae.safetensors`` plus ``vae.json`` (``{"step": N}``: the fine-tune step it holds, which
    ``export`` records as ``vae_decoder_step``)."""
    import json
    save_vae(vae, final)
    with open(final[:-len(".safetensors")] + ".json", "w", encoding="utf-8") as f:
        json.dump({"step": int(step)}, f)
