"""Stage 2: train a small causal DiT (the engine's ``CausalWanModel``) with diffusion forcing.

The network, the attention mask and the noise schedule are the inference ones:

* model: :class:`~matrix_game_core.model.CausalWanModel` built from
  :meth:`~matrix_game_core.train.config.DiTStage.model_config` (action module in the first
  layers, image-encoder free: zero image tokens);
* attention: the model's uncached path (``cache=None``): block-causal over blocks of 3 latent
  frames with the local window ``local_attn_size``, i.e. exactly the frames a KV-cached
  WorldSession attends to;
* noise: **diffusion forcing**: every block of 3 latent frames gets its own timestep, drawn
  uniformly from the 1000-entry shifted table of :class:`~matrix_game_core.sampling.FlowMatchScheduler`
  (shift 5): ``x_t = (1 - sigma) x0 + sigma eps``; the model predicts the flow ``eps - x0``
  (MSE). With probability ``clean_context_prob`` a sample's first ``k`` blocks are clean
  (``t = 0``, no loss), which is what the sampler's t=0 context pass shows the model at inference;
* sampling afterwards: the unchanged WorldSession sampler with the config's own
  ``denoising_step_list`` (8 steps by default: a non-distilled model needs more than 3).

Outputs (``RUN/dit``): ``ckpt.pt`` (resume), ``log.jsonl`` (train loss, fixed-noise eval loss),
and on completion the EMA weights as ``model.safetensors`` (official ``model.``-prefixed format)
+ ``config.json``.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Optional

import torch
import torch.nn as nn

from ..checkpoints import save_dit
from ..config import ModelConfig
from ..errors import MatrixGameError
from ..model import CausalWanModel, WeightlessRMSNorm
from ..sampling import FlowMatchScheduler
from .common import (EMA, JsonlLog, Timer, autocast, checkpoint_from_main, load_checkpoint, lr_at, rank_seed,
                     restore_model, seed_all, to_device)
from .distributed import Dist
from .config import TrainConfig
from .augment import camera_pan_batch
from .latents import LatentClips


def build_dit(cfg: ModelConfig, mouse_init_gain: float = 1.0) -> CausalWanModel:
    """A fresh trainable DiT with Wan's initialisation: xavier-uniform linear/patch weights, zero
    biases, N(0, 0.02) time embedding, zero output head (so training starts from ``v = 0``). The
    action module's q/k norm weights, which the forward ignores (as officially), are frozen: under
    DistributedDataParallel every trainable parameter must receive a gradient.

    ``mouse_init_gain``: the mouse columns of every action MLP's first layer are multiplied by it
    (:func:`scale_mouse_inputs`; :attr:`~matrix_game_core.train.config.DiTStage.mouse_init_gain`)."""
    m = CausalWanModel(cfg, attention_backend="sdpa")
    for mod in m.modules():
        if isinstance(mod, nn.Linear):
            nn.init.xavier_uniform_(mod.weight)
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
    nn.init.xavier_uniform_(m.patch_embedding.weight.flatten(1))
    for lin in (m.time_embedding[0], m.time_embedding[2]):
        nn.init.normal_(lin.weight, std=0.02)
    nn.init.zeros_(m.head.head.weight)
    for mod in m.modules():          # present in the official files, never used by the forward
        if isinstance(mod, WeightlessRMSNorm):
            mod.weight.requires_grad_(False)
    if mouse_init_gain != 1.0:
        with torch.no_grad():
            scale_mouse_inputs(m.state_dict(keep_vars=True), cfg, mouse_init_gain)
    return m.train()


def mouse_input_columns(cfg: ModelConfig) -> slice:
    """Columns of ``action_model.mouse_mlp.0.weight`` (``[hidden, img_hidden + 2 * 12]``) that read
    the mouse window: the hidden state comes first (``wan/modules/action_module.py`` concatenates
    ``[x, mouse window]``)."""
    return slice(cfg.action_config.img_hidden_size, None)


def scale_mouse_inputs(state: Dict[str, torch.Tensor], cfg: ModelConfig, gain: float) -> int:
    """Multiply, in place, the mouse columns of every action MLP's first layer in a DiT state dict
    (model or EMA; keys with or without a ``model.`` prefix) by ``gain``. Returns how many tensors
    changed.

    Why: official mouse units are small (0.1 = a 5-degree turn per video frame; the camera rows of
    a turn are ``+-0.1``) while the hidden state they are concatenated with has a mean magnitude
    near 1.5, so with Xavier columns the 24 mouse inputs hardly move the MLP output, and AdamW,
    whose steps are of a fixed size per weight, needs tens of thousands of steps to grow them
    (measured on the embedded run: after 2,250 steps the flow loss was the same with the true,
    zeroed or negated mouse track, and rollouts did not turn). A gain of 10 puts a camera step at
    the hidden state's scale. The architecture and the inference path are unchanged."""
    cols = mouse_input_columns(cfg)
    n = 0
    for k, v in state.items():
        if k.endswith("action_model.mouse_mlp.0.weight"):
            v[:, cols] *= gain
            n += 1
    return n


def sample_timesteps(sched: FlowMatchScheduler, batch: int, n_frames: int, frames_per_block: int,
                     clean_context_prob: float, generator: torch.Generator):
    """Per-block timesteps (diffusion forcing).

    Returns:
        ``(timestep [B,N] float32, sigma [B,N] float32, loss_mask [B,N] float32)``.
    """
    nb = n_frames // frames_per_block
    idx = torch.randint(0, sched.num_train_timesteps, (batch, nb), generator=generator)
    sig = sched.sigmas[idx]
    ts = sched.timesteps[idx]
    mask = torch.ones(batch, nb)
    if clean_context_prob > 0 and nb > 1:
        clean = torch.rand(batch, generator=generator) < clean_context_prob
        k = torch.randint(1, nb, (batch,), generator=generator)
        ctx = (torch.arange(nb)[None, :] < k[:, None]) & clean[:, None]
        sig = torch.where(ctx, torch.zeros_like(sig), sig)
        ts = torch.where(ctx, torch.zeros_like(ts), ts)
        mask = torch.where(ctx, torch.zeros_like(mask), mask)
    rep = lambda v: v.repeat_interleave(frames_per_block, dim=1)  # noqa: E731
    return rep(ts), rep(sig), rep(mask)


def diffusion_forcing_batch(batch: Dict[str, torch.Tensor], sched: FlowMatchScheduler, frames_per_block: int,
                            clean_context_prob: float, generator: torch.Generator) -> Dict[str, torch.Tensor]:
    """Add the noise of one **global** batch (CPU ``generator``, the same on every rank): ``timestep``,
    ``sigma``, ``loss_mask`` ``[B,N]`` (:func:`sample_timesteps`) and ``noise`` ``[B,16,N,h,w]`` f32."""
    b, _, n = batch["latents"].shape[:3]
    ts, sig, mask = sample_timesteps(sched, b, n, frames_per_block, clean_context_prob, generator)
    noise = torch.randn(batch["latents"].shape, generator=generator)
    return dict(batch, timestep=ts, sigma=sig, loss_mask=mask, noise=noise)


def rows(batch: Dict[str, torch.Tensor], sl: slice) -> Dict[str, torch.Tensor]:
    """The rows ``sl`` of every tensor of a batch (a rank's share of the global batch)."""
    return {k: v[sl] for k, v in batch.items()}


def flow_loss(net, batch: Dict[str, torch.Tensor], img_dim: int, denom: Optional[float] = None) -> torch.Tensor:
    """Flow-matching MSE of a (rank's share of a) noised batch (see the module docstring).

    ``x_t = (1 - sigma) x0 + sigma eps``, target ``eps - x0``; the loss is
    ``sum(per-frame MSE * loss_mask) / denom`` with ``denom`` the global batch's mask sum divided by
    the world size (default: this batch's mask sum), so that the ranks' average is the global
    batch's loss. ``net`` is the model or its DistributedDataParallel wrapper."""
    x0, noise = batch["latents"], batch["noise"]
    b, _, n = x0.shape[:3]
    s = batch["sigma"].view(b, 1, n, 1, 1)
    xt = (1 - s) * x0 + s * noise
    target = noise - x0
    vc = torch.zeros(b, 1, img_dim, device=x0.device)
    pred = net(xt, batch["timestep"], batch["cond"], vc, batch["keyboard"], batch["mouse"], 0, None)
    mask = batch["loss_mask"]
    with torch.autocast(device_type=x0.device.type, enabled=False):
        per = ((pred.float() - target.float()) ** 2).mean(dim=(1, 3, 4))          # [B, N]
        d = mask.sum().clamp_min(1) if denom is None else max(float(denom), 1e-12)
        return (per * mask).sum() / d


def dit_loss(model: CausalWanModel, batch: Dict[str, torch.Tensor], sched: FlowMatchScheduler,
             clean_context_prob: float, generator: torch.Generator, device) -> torch.Tensor:
    """Flow-matching MSE of one batch. Noise and timesteps come from the CPU ``generator``
    (reproducible on any device)."""
    nb = diffusion_forcing_batch({k: v.cpu() for k, v in batch.items()}, sched, model.cfg.num_frame_per_block,
                                 clean_context_prob, generator)
    return flow_loss(model, to_device(nb, device), model.cfg.img_dim)


@torch.no_grad()
def eval_loss(model, clips: LatentClips, sched, n: int, device, seed: int = 1234, mouse_sign: float = 1.0,
              idx: Optional[torch.Tensor] = None) -> float:
    """Loss on fixed clips (the first ``n``, or ``idx``), noise and timesteps (no clean context):
    comparable across steps. ``mouse_sign=-1`` evaluates with the camera track negated (see
    :func:`eval_mouse_gap`)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.arange(min(n, len(clips))) if idx is None else idx
    batch = clips.get(idx)
    if mouse_sign != 1.0:
        batch = dict(batch, mouse=batch["mouse"] * mouse_sign)
    was = model.training
    model.eval()
    out = float(dit_loss(model, batch, sched, 0.0, g, device))
    model.train(was)
    return out


def turning_clips(clips: LatentClips, n: int) -> torch.Tensor:
    """Indices of the ``n`` clips with the largest mean absolute yaw (where the camera track
    matters most)."""
    yaw = clips.mouse[:, :, 1].float().abs().mean(1)
    return yaw.argsort(descending=True)[:min(n, len(clips))]


def eval_mouse_gap(model, clips: LatentClips, sched, n: int, device) -> float:
    """How much the model uses the camera track, on the ``n`` most turning clips
    (:func:`turning_clips`): fixed-noise eval loss with the mouse rows negated (turn left <-> right,
    look up <-> down) minus the loss with the true rows. About 0 for a model that ignores the mouse
    (it then cannot follow turns); it grows as action conditioning is learned.

    Returns:
        the difference of two flow-matching MSEs (latent units squared), a float; the embedded run
        logged 0.0006 at step 2,250 and 0.015 at step 11,750."""
    idx = turning_clips(clips, n)
    return (eval_loss(model, clips, sched, n, device, mouse_sign=-1.0, idx=idx)
            - eval_loss(model, clips, sched, n, device, idx=idx))


def _latents_vae_sha(run: str):
    p = os.path.join(run, "latents", "meta.json")
    if not os.path.isfile(p):
        return None
    with open(p, "r", encoding="utf-8") as f:
        return json.load(f).get("vae_sha256")


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, action_lr_mult: float = 1.0) -> torch.optim.AdamW:
    """AdamW, betas (0.9, 0.95); no weight decay on 1-D parameters and modulations. With
    ``action_lr_mult != 1`` the action modules' parameters get their own groups whose ``lr_mult``
    the training loop applies (``group["lr"] = lr * group.get("lr_mult", 1)``)."""
    keys = [(False, False), (False, True)] + ([(True, False), (True, True)] if action_lr_mult != 1.0 else [])
    groups = {k: [] for k in keys}                       # (action module?, no weight decay?) -> parameters
    for n_, p in model.named_parameters():
        groups[(action_lr_mult != 1.0 and ".action_model." in n_, p.dim() < 2 or "modulation" in n_)].append(p)
    return torch.optim.AdamW([{"params": ps, "weight_decay": 0.0 if nd else weight_decay,
                               "lr_mult": action_lr_mult if act else 1.0}
                              for (act, nd), ps in groups.items() if ps or not act], lr=lr, betas=(0.9, 0.95))


def load_optimizer_state(opt: torch.optim.Optimizer, model: nn.Module, state: Dict, weight_decay: float) -> None:
    """Load a saved optimizer state, also one saved with another parameter grouping (a run resumed
    with a new ``action_lr_mult``): the per-parameter moments are carried over by parameter."""
    try:
        opt.load_state_dict(state)
        return
    except ValueError:
        pass
    old = build_optimizer(model, opt.defaults["lr"], weight_decay)     # the layout without action groups
    old.load_state_dict(state)
    for p, st in old.state.items():
        opt.state[p] = st


def write_dit(model: CausalWanModel, folder: str) -> str:
    """``folder/model.safetensors`` (official format, atomic) + ``folder/config.json``. Returns the path."""
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, "model.safetensors")
    save_dit(model, final + ".tmp")
    os.replace(final + ".tmp", final)
    model.cfg.save(os.path.join(folder, "config.json"))
    return final


def train_dit(run: str, cfg: TrainConfig, device: torch.device, bf16: bool = False, echo: bool = True,
              dist: Optional[Dist] = None) -> str:
    """Train (or resume) stage 2 on ``RUN/latents`` and write ``RUN/dit/model.safetensors`` +
    ``config.json`` (EMA weights). Returns the safetensors path.

    Data parallel under torchrun (``dist``): every rank draws the same global batch of ``dit.batch``
    clips and its noise from the shared generator and runs its own slice; DDP averages the gradients.
    """
    dist = dist or Dist(device=device)
    sc = cfg.dit
    out = os.path.join(run, "dit")
    final = os.path.join(out, "model.safetensors")
    ckpt_p = os.path.join(out, "ckpt.pt")
    log = JsonlLog(os.path.join(out, "log.jsonl"), echo=echo) if dist.is_main else None
    seed_all(cfg.seed + 1)                # the same initial weights as one process (DDP broadcasts rank 0's)
    mine = dist.shard(sc.batch)
    clips = LatentClips(os.path.join(run, "latents"), "train")
    try:
        val = LatentClips(os.path.join(run, "latents"), "val")
    except Exception:
        val = clips
    onsets = clips.onset_clips(sc.onset_still_frames, sc.onset_axis) if sc.onset_share > 0 else None
    if onsets is not None and not len(onsets):
        raise MatrixGameError(f"dit.onset_share is {sc.onset_share} but the training clips have no camera "
                              f"onset (still for {sc.onset_still_frames} frames, then a turn or look): record "
                              f"still starts with `record --still-prob 0.05` (docs/data_and_training.md §3b) "
                              f"or set dit.onset_share=0.")
    mcfg = sc.model_config()
    model = build_dit(mcfg, sc.mouse_init_gain).to(device)
    ema = EMA(model, sc.ema)
    opt = build_optimizer(model, sc.lr, sc.weight_decay, sc.action_lr_mult)
    sched = FlowMatchScheduler(mcfg.timestep_shift)
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    step = 0
    vae_sha = _latents_vae_sha(run)
    st = load_checkpoint(ckpt_p, dist.rank, dist.world, cfg.seed + 1)
    if st is None and dist.enabled:     # per-rank global RNGs from here on
        seed_all(rank_seed(cfg.seed + 1, 0, dist.rank))
    if st is not None:
        if st.get("vae_sha256") not in (None, vae_sha):
            raise MatrixGameError(f"{ckpt_p} was trained on latents of a different VAE (the VAE stage was "
                                  f"retrained since); delete {out} to train the DiT again.")
        restore_model(model, st["model"], ckpt_p, "DiT")
        ema.load_state_dict(st["ema"])
        load_optimizer_state(opt, model, st["optimizer"], sc.weight_decay)
        gen.set_state(st["generator"])
        step = int(st["step"])
    if step >= sc.steps and os.path.isfile(final):
        return final
    net = dist.wrap(model)
    start = step
    if st is not None and log and step == 0 and st.get("warm_start"):
        log.write({"stage": "dit_warm_start", "from": st["warm_start"], "world": dist.world})
    elif st is not None and log:
        log.write({"stage": "dit_resume", "step": step, "world": dist.world,
                   **({"onset_clips": len(onsets)} if onsets is not None else {})})
    if step == 0 and log:
        log.write({"stage": "dit", "step": 0, "eval_loss": eval_loss(model, val, sched, 8, device),
                   "params": sum(p.numel() for p in model.parameters()), "world": dist.world,
                   **({"onset_clips": len(onsets)} if onsets is not None else {})})
    timer = Timer()
    acc, n_acc = 0.0, 0
    model.train()
    while step < sc.steps:
        lr = lr_at(step, sc.lr, sc.warmup, sc.steps)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)
        raw = clips.batch(sc.batch, gen, onsets, sc.onset_share)
        if sc.camera_pan_prob > 0:      # pure camera pans made from real latents (train/augment.py)
            raw = camera_pan_batch(raw, sc.camera_pan_prob, gen, sc.camera_pan_per_unit, sc.camera_pan_random_track)
            raw.pop("camera_pan")
        glob = diffusion_forcing_batch(raw, sched, mcfg.num_frame_per_block,
                                       sc.clean_context_prob, gen)
        denom = float(glob["loss_mask"].sum().clamp_min(1)) / dist.world
        with autocast(device, bf16):
            loss = flow_loss(net, to_device(rows(glob, mine), device), mcfg.img_dim, denom)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if dist.is_main:
            ema.update(model)
        step += 1
        acc += dist.mean(float(loss.detach()))
        n_acc += 1
        if (step % cfg.log_every == 0 or step == sc.steps or step == start + 1) and log:
            rec = {"stage": "dit", "step": step, "loss": acc / n_acc, "lr": lr, "grad_norm": float(gn),
                   "seconds": round(timer(), 2)}
            if step % (cfg.log_every * 10) == 0 or step == sc.steps:
                rec["eval_loss"] = eval_loss(model, val, sched, 8, device)
                rec["eval_mouse_gap"] = eval_mouse_gap(model, val, sched, 8, device)
            log.write(rec)
        if step % cfg.log_every == 0 or step == sc.steps or step == start + 1:
            acc, n_acc = 0.0, 0
        if step % cfg.ckpt_every == 0 or step == sc.steps:
            checkpoint_from_main(dist, model, log, "dit", step, ckpt_p, model=model.state_dict(),
                                 ema=ema.state_dict(), optimizer=opt.state_dict(), generator=gen.get_state(),
                                 step=step, vae_sha256=vae_sha, world=dist.world)
    if dist.is_main:
        final_model = ema_model(mcfg, ema.state_dict())
        log.write({"stage": "dit_ema", "step": step,
                   "eval_loss_ema": eval_loss(final_model.to(device), val, sched, 8, device)})
        write_dit(final_model.cpu(), out)
    dist.barrier()
    return final


def ema_model(mcfg: ModelConfig, ema_state: Dict[str, torch.Tensor]) -> CausalWanModel:
    """A DiT (eval mode, CPU) holding EMA weights."""
    m = build_dit(mcfg)
    e = EMA(m, 0.0)
    e.load_state_dict(ema_state)
    e.copy_to(m)
    return m.eval()
