"""Stage 3: distil the diffusion-forcing DiT into a few-step causal student (Self-Forcing + DMD).

Matrix-Game 2.0 (arXiv 2508.13009, §3) turns its foundation model into the real-time students it
ships (3 denoising steps, templerun 4) by *Self-Forcing* with a *distribution-matching* (DMD)
loss, on the causal architecture with KV caches. This stage does the same for a run's own DiT:

* **teacher** (real score): the run's DiT (``RUN/dit/model.safetensors`` or ``--teacher``), frozen;
* **student** (generator) and **critic** (fake score): both start as copies of the teacher (the
  paper initialises the student by regression on teacher ODE trajectories first; that step is not
  done here — see docs/data_and_training.md);
* **Self-Forcing rollout** (Huang et al., arXiv 2506.08009, Algorithm 1 and §3.2): the student
  generates every block of a clip autoregressively with its own KV cache through
  :func:`~matrix_game_core.sampling.denoise_block`, the loop :class:`~matrix_game_core.sampling.WorldSession`
  runs at inference (same warped ``denoising_step_list``, x0 prediction then re-noising with fresh
  noise, the t=0 context pass that writes the block's clean K/V into the cache). One exit step
  ``s`` is drawn per iteration, the same for all blocks (Algorithm 1, "Sample s ~ Uniform{1..T}");
  each block runs its steps down to ``s`` without gradient and step ``s`` with gradient
  (``last_step_only``: always the last step, i.e. exactly the inference schedule); the context pass
  and the cache carry no gradient;
* **DMD loss** on the rollout ``x`` (Yin et al., arXiv 2311.18828, eq. 7 and the normalisation of
  eq. 8): noise ``x`` to a random timestep ``t`` (shifted table, clamped to
  ``[min_score_t, max_score_t]``), ``g = (x0_fake(x_t) - x0_real(x_t)) / mean|x - x0_real(x_t)|``,
  loss ``0.5 ||x - sg(x - g)||^2`` whose gradient is ``g``. The real score may be *guided*
  (``distill.guidance`` / ``pitch_guidance`` / ``keyboard_guidance`` / ``guidance_rescale``: the
  sampler's action guidance of :mod:`matrix_game_core.guidance`, up to three teacher passes), as
  Self-Forcing guides its real score with text classifier-free guidance (3.0): the student then
  learns the guided teacher's distribution on its own rollouts and samples it unguided, one DiT
  pass per denoising step. The fake score (critic) is never guided;
* **critic** (DMD2, Yin et al., arXiv 2405.14867, §4.1 "fake score" and its two time-scale update
  rule): trained alongside on the student's rollouts (no gradient to the student) with the
  teacher's own diffusion-forcing flow loss (:func:`~.dit.flow_loss`), ``critic_steps`` updates per
  student update. Conditions (start image latents, actions) come from the latent clips; their
  video latents are not used (DMD2 §4.5: the generator's inputs are simulated, not data);
* **data regression** (``distill.regression_weight`` > 0; :func:`regression_batch`,
  :func:`regression_loss`): beside the DMD loss the student regresses recorded blocks from
  recorded context: per clip one block, the blocks before it clean (what the KV cache holds in
  teacher-forced next-block prediction), the block noised at one of the student's own warped
  timesteps, loss the x0 MSE. DMD alone matches the guided teacher's distribution on the student's
  own rollouts and never sees recorded context; the regression pulls its prediction from recorded
  context towards the recorded future (DMD, Yin et al., arXiv 2311.18828 eq. 9, adds a regression
  loss onto the teacher's ODE outputs for the same reason: mode coverage and fidelity).

Outputs (``RUN/distill``): ``ckpt.pt`` (student, critic, EMA, both optimizers, generator state,
teacher checksum), ``log.jsonl`` (``dmd_loss``, ``critic_loss``, ``dmd_grad``), and on completion
the student's EMA weights as ``model.safetensors`` + ``config.json`` with the student's
``denoising_step_list``; ``regression_loss`` is logged when the data regression is on. The student
(and its EMA) may start from another DiT than the teacher (``student_init``: e.g. an earlier student,
to go on distilling it with a new objective); the critic always starts as the teacher. Data parallel
like the other stages (:mod:`.distributed`).
"""
from __future__ import annotations

import copy
import os
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import MatrixGameError
from ..guidance import guided_flow
from ..model import CausalWanModel
from ..sampling import FlowMatchScheduler, denoise_block
from .common import (EMA, JsonlLog, Timer, autocast, checkpoint_from_main, load_checkpoint, lr_at, rank_seed,
                     restore_model, seed_all, to_device)
from .config import TrainConfig
from .distributed import Dist
from .dit import build_optimizer, diffusion_forcing_batch, ema_model, flow_loss, rows, write_dit
from .latents import LatentClips, file_sha256

#: Architecture fields a teacher must share with the run's ``dit`` configuration.
ARCH_FIELDS = ("dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim", "img_dim", "local_attn_size",
               "patch_size")


def teacher_path(run: str, teacher: Optional[str] = None) -> str:
    """The teacher's safetensors: ``teacher`` (a file or a folder holding ``model.safetensors``) or
    the run's own ``RUN/dit/model.safetensors``."""
    p = teacher or os.path.join(run, "dit", "model.safetensors")
    if os.path.isdir(p):
        p = os.path.join(p, "model.safetensors")
    return p


def load_teacher(path: str, cfg: TrainConfig) -> CausalWanModel:
    """Load the frozen teacher (float32, eval, no gradients).

    Raises:
        MatrixGameError: the file is missing (finish the dit stage or pass ``--teacher``), or its
            architecture differs from the run's ``dit`` configuration.
    """
    from ..checkpoints import load_dit

    if not os.path.isfile(path):
        raise MatrixGameError(f"teacher {path} is missing: distillation needs the trained DiT. Finish the dit stage "
                              f"first (python -m matrix_game_core.train dit --data REC --out RUN) or pass "
                              f"--teacher PATH/model.safetensors.")
    m = load_dit(path, mode="universal", dtype=torch.float32)
    want = cfg.dit.model_config()
    diff = {f: (getattr(m.cfg, f), getattr(want, f)) for f in ARCH_FIELDS if getattr(m.cfg, f) != getattr(want, f)}
    ab = lambda c: sorted(c.action_config.blocks) if c.action_config is not None else None  # noqa: E731
    if ab(m.cfg) != ab(want):
        diff["action blocks"] = (ab(m.cfg), ab(want))
    if diff:
        txt = ", ".join(f"{k} {a} (run: {b})" for k, (a, b) in diff.items())
        raise MatrixGameError(f"teacher {path} has another architecture than this run's dit configuration: {txt}. "
                              f"Distil the run's own DiT (omit --teacher), or train into a run whose train_config.json "
                              f"matches the teacher.")
    for p in m.parameters():
        p.requires_grad_(False)
    return m.eval()


def student_config(teacher: CausalWanModel, steps) -> "CausalWanModel.cfg":
    """The teacher's configuration with the student's ``denoising_step_list`` and its sampler's action
    guidance off: the student is sampled as it was trained (one conditional pass per step; a guided
    teacher's guidance is in its weights when the real score was guided)."""
    cfg = copy.deepcopy(teacher.cfg)
    cfg.denoising_step_list = [int(s) for s in steps]
    cfg.action_guidance, cfg.pitch_guidance, cfg.keyboard_guidance = 1.0, None, None
    cfg.guidance_steps, cfg.guidance_rescale, cfg.guidance_hold = None, 0.0, 0.0
    return cfg


def trainable_copy(teacher: CausalWanModel, steps=None) -> CausalWanModel:
    """A trainable copy of the teacher (student or critic), unused norm weights frozen as in
    :func:`~.dit.build_dit`; ``steps`` sets the copy's ``denoising_step_list``."""
    from .dit import build_dit

    m = build_dit(student_config(teacher, steps) if steps is not None else teacher.cfg)
    m.load_state_dict(teacher.state_dict())
    return m.train()


def self_forcing_rollout(model: CausalWanModel, cond: torch.Tensor, keyboard: torch.Tensor,
                         mouse: Optional[torch.Tensor], timesteps: torch.Tensor, sigmas, exit_step: Optional[int],
                         noise: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Generate a clip block by block with the model's own KV cache, as a WorldSession does.

    Args:
        cond: ``[B, 20, N, h, w]`` start-image conditioning (mask + latents), N a multiple of 3.
        keyboard / mouse: ``[B, 1 + 4 (N - 1), K]`` / ``[B, T, 2]`` action rows of the clip.
        timesteps / sigmas: the warped schedule (:meth:`FlowMatchScheduler.warp`) and its sigmas.
        exit_step: stop each block at this step with gradient (None: all steps, caller's grad mode).
        noise: returns fresh noise ``[B, 16, 3, h, w]`` (initial and re-noise, in sampler order).
    Returns:
        ``[B, 16, N, h, w]`` the blocks' x0 (with gradient through each block's exit step only).
    """
    b, _, n, h, w = cond.shape
    nb = model.cfg.num_frame_per_block
    ph, pw = model.cfg.patch_size[1:]
    p = next(model.parameters())
    cache = model.new_cache(b, (h // ph) * (w // pw), p.device, p.dtype)
    vc = torch.zeros(b, 1, model.cfg.img_dim, device=p.device)
    model.set_context(cache, vc)              # image-token K/V: in the graph (used by every exit step)
    out = []
    for blk in range(n // nb):
        start = blk * nb
        r = 1 + 4 * (start + nb - 1)          # action rows a session holds after this block
        kb, ms = keyboard[:, :r], (None if mouse is None else mouse[:, :r])
        cc = cond[:, :, start:start + nb]
        x0 = denoise_block(model, noise(), timesteps, sigmas, noise, cc, vc, kb, ms, start, cache,
                           exit_step=exit_step)
        out.append(x0)
        if x0.requires_grad:
            cache.detach_()
        with torch.no_grad():                 # context pass: clean K/V of the block, no gradient
            ones = torch.ones(b, nb, device=p.device)
            model(x0.detach(), ones * float(model.cfg.context_noise), cc, vc, kb, ms, start, cache)
    return torch.cat(out, dim=2)


def real_guidance(sc) -> Dict[str, Optional[float]]:
    """The real score's guidance settings of a :class:`~.config.DistillStage` as keywords of
    :func:`dmd_loss` (all scales 1: the plain conditional teacher, one pass)."""
    return {"w": float(sc.guidance), "w_pitch": sc.pitch_guidance, "w_keys": sc.keyboard_guidance,
            "rescale": float(sc.guidance_rescale)}


def dmd_loss(x: torch.Tensor, teacher: CausalWanModel, critic: CausalWanModel, batch: Dict[str, torch.Tensor],
             t: torch.Tensor, eps: torch.Tensor, w: float = 1.0, w_pitch: Optional[float] = None,
             w_keys: Optional[float] = None, rescale: float = 0.0) -> Dict[str, torch.Tensor]:
    """Distribution-matching loss of generated latents (DMD eq. 7, normalised as eq. 8).

    Args:
        x: ``[B, 16, N, h, w]`` the student's rollout (with gradient).
        batch: ``cond``, ``keyboard``, ``mouse`` of the clips.
        t: ``[B]`` timesteps in (0, 1000) (sigma = t / 1000); eps: ``[B, 16, N, h, w]`` noise.
        w / w_pitch / w_keys / rescale: action guidance of the real score
            (:func:`~matrix_game_core.guidance.guided_flow` on the teacher's whole-clip passes; all
            scales 1: one plain pass).
    Returns:
        ``{"loss": 0.5 * mean((x - sg(x - g))^2) (float64), "grad": mean |g|}``.
    """
    b, _, n = x.shape[:3]
    with torch.no_grad():
        s = (t.float() / 1000).view(b, 1, 1, 1, 1).to(x.device)
        xt = ((1 - s) * x + s * eps).detach()
        ts = t.float().view(b, 1).expand(b, n).to(x.device)
        vc = torch.zeros(b, 1, teacher.cfg.img_dim, device=x.device)
        def flow(model, kb, ms):
            return model(xt, ts, batch["cond"], vc, kb, ms, 0, None)

        v_real = guided_flow(lambda k, m: flow(teacher, k, m), batch["keyboard"], batch["mouse"], w, w_pitch,
                             w_keys, rescale=rescale, x=xt, sigma=s)
        real = xt - s * v_real.float()                      # x0 predictions from the flow: x0 = x_t - sigma v
        fake = xt - s * flow(critic, batch["keyboard"], batch["mouse"]).float()
        norm = (x.detach().float() - real).abs().mean(dim=(1, 2, 3, 4), keepdim=True)
        g = torch.nan_to_num((fake - real) / norm.clamp_min(1e-8))
    loss = 0.5 * F.mse_loss(x.double(), (x.double() - g.double()).detach())
    return {"loss": loss, "grad": g.abs().mean()}


def regression_batch(batch: Dict[str, torch.Tensor], timesteps: torch.Tensor, sigmas, frames_per_block: int,
                     generator: torch.Generator, first_steps: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """Noise a **global** batch of recorded clips for the data regression (CPU ``generator``, the same
    on every rank).

    Per clip one target block ``k`` (uniform over the clip's blocks) and one of the student's warped
    timesteps (uniform over ``timesteps``, or over its first ``first_steps``: the high-noise steps
    that lay out the block, leaving the later ones to the DMD loss alone): blocks ``< k`` clean
    (timestep 0, the context of teacher-forced prediction), block ``k`` and later at that timestep;
    ``loss_mask`` is 1 on block ``k`` only (later blocks cannot reach it through block-causal
    attention).

    Args:
        batch: ``latents [B,16,N,h,w]`` (and the clips' ``cond`` / ``keyboard`` / ``mouse``, passed through).
        timesteps / sigmas: the student's warped schedule and its sigmas (:meth:`FlowMatchScheduler.warp`).
    Returns:
        ``batch`` plus ``timestep`` / ``sigma`` / ``loss_mask`` ``[B,N]`` float32 and ``noise`` like ``latents``.
    """
    b, _, n = batch["latents"].shape[:3]
    nb = n // frames_per_block
    k = torch.randint(0, nb, (b,), generator=generator)
    j = torch.randint(0, min(len(sigmas), first_steps or len(sigmas)), (b,), generator=generator)
    ts_v = torch.as_tensor([float(t) for t in timesteps])[j]
    sg_v = torch.as_tensor([float(s) for s in sigmas])[j]
    blk = torch.arange(nb)[None, :]
    ctx = blk < k[:, None]
    ts = torch.where(ctx, torch.zeros(b, nb), ts_v[:, None].expand(b, nb))
    sig = torch.where(ctx, torch.zeros(b, nb), sg_v[:, None].expand(b, nb))
    mask = (blk == k[:, None]).float()
    rep = lambda v: v.repeat_interleave(frames_per_block, dim=1)  # noqa: E731
    noise = torch.randn(batch["latents"].shape, generator=generator)
    return dict(batch, timestep=rep(ts), sigma=rep(sig), loss_mask=rep(mask), noise=noise)


def regression_loss(model, batch: Dict[str, torch.Tensor], img_dim: int, denom: Optional[float] = None) -> torch.Tensor:
    """x0 MSE of the target blocks of a :func:`regression_batch` (a rank's share), a scalar: with
    ``x_t = (1 - sigma) x0 + sigma eps`` and ``x0_hat = x_t - sigma v``, ``|x0_hat - x0|^2 =
    sigma^2 |v - (eps - x0)|^2``, i.e. :func:`~.dit.flow_loss` with each frame weighted by sigma^2;
    mean over the masked latent frames, divided by ``denom`` (the global batch's mask sum over the
    world size; default this batch's)."""
    d = float(batch["loss_mask"].sum()) if denom is None else float(denom)
    return flow_loss(model, dict(batch, loss_mask=batch["loss_mask"] * batch["sigma"] ** 2), img_dim, d)


class StudentObjective(nn.Module):
    """One student update as one module call (what DistributedDataParallel wraps): the
    Self-Forcing rollout of the student, then the DMD loss against the frozen teacher and the
    current critic. Only ``student`` is a submodule; teacher and critic are held outside the
    module tree (no gradients, not synchronised)."""

    def __init__(self, student: CausalWanModel, teacher: CausalWanModel, critic: CausalWanModel,
                 guidance: Optional[Dict] = None):
        super().__init__()
        self.student = student
        self._scorers = (teacher, critic)
        self._guidance = guidance or {}

    def forward(self, batch, timesteps, sigmas, exit_step, noise, t, eps_fn, reg_batch=None, reg_weight: float = 0.0,
                reg_denom: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """``{"loss", "dmd", "grad"}`` (:func:`dmd_loss`; ``loss`` = ``dmd`` + ``reg_weight`` x
        ``regression`` when a :func:`regression_batch` share ``reg_batch`` is given, then also
        ``"regression"``: :func:`regression_loss` with ``reg_denom``)."""
        x = self_forcing_rollout(self.student, batch["cond"], batch["keyboard"], batch["mouse"], timesteps, sigmas,
                                 exit_step, noise)
        res = dmd_loss(x, *self._scorers, batch, t, eps_fn(x.shape), **self._guidance)
        res["dmd"] = res["loss"]
        if reg_batch is not None and reg_weight > 0:
            res["regression"] = regression_loss(self.student, reg_batch, self.student.cfg.img_dim, reg_denom)
            res["loss"] = res["dmd"] + reg_weight * res["regression"].double()
        return res


def _dmd_timesteps(sched: FlowMatchScheduler, n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    """``[n]`` DMD timesteps: uniform over the shifted 1000-entry table (Self-Forcing's shifted
    uniform draw), clamped to ``[lo, hi] * 1000``."""
    idx = torch.randint(0, sched.num_train_timesteps, (n,), generator=gen)
    return sched.timesteps[idx].clamp(lo * 1000, hi * 1000)


@torch.no_grad()
def dmd_eval(student: CausalWanModel, teacher: CausalWanModel, critic: CausalWanModel, clips: LatentClips,
             timesteps, sigmas, n: int, device, seed: int = 4321, guidance: Optional[Dict] = None) -> float:
    """DMD loss of the student's full few-step rollout (inference schedule) on fixed clips, noise and
    score timesteps: comparable across steps (the training figure uses random draws)."""
    g = torch.Generator().manual_seed(seed)
    b = to_device(clips.get(torch.arange(min(n, len(clips)))), device)
    nb, shape = student.cfg.num_frame_per_block, b["latents"].shape
    blk = (shape[0], shape[1], nb) + tuple(shape[3:])
    x = self_forcing_rollout(student, b["cond"], b["keyboard"], b["mouse"], timesteps, sigmas, None,
                             lambda: torch.randn(blk, generator=g).to(device))
    t = _dmd_timesteps(FlowMatchScheduler(student.cfg.timestep_shift), shape[0], 0.02, 0.98, g)
    return float(dmd_loss(x, teacher, critic, b, t, torch.randn(shape, generator=g).to(device),
                          **(guidance or {}))["loss"])


def _earlier_distillation(path: str) -> Optional[Dict]:
    """How an installed student was distilled (``train.distill`` of the ``metrics.json`` of the model
    folder holding ``path`` = ``MODEL/dit/model.safetensors``), or None: kept in the log, so that a
    model card can tell the whole lineage even after that folder is overwritten."""
    import json

    p = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(path))), "metrics.json")
    try:
        with open(p, "r", encoding="utf-8") as f:
            return (json.load(f).get("train") or {}).get("distill")
    except (OSError, ValueError):
        return None


def train_distill(run: str, cfg: TrainConfig, device: torch.device, bf16: bool = False, echo: bool = True,
                  dist: Optional[Dist] = None, teacher: Optional[str] = None, student_init: Optional[str] = None) -> str:
    """Train (or resume) stage 3 and write ``RUN/distill/model.safetensors`` + ``config.json``
    (student EMA weights, the student's ``denoising_step_list``). Returns the safetensors path.

    ``student_init`` (a DiT file or folder of the teacher's architecture, e.g. an earlier student)
    starts the student and its EMA from those weights instead of the teacher's; only a new run reads
    it (a resumed one continues from its checkpoint).

    Raises:
        MatrixGameError: missing teacher or one of another architecture (or such a ``student_init``);
            a checkpoint made with another teacher.
    """
    dist = dist or Dist(device=device)
    sc = cfg.distill
    out = os.path.join(run, "distill")
    final = os.path.join(out, "model.safetensors")
    ckpt_p = os.path.join(out, "ckpt.pt")
    tp = teacher_path(run, teacher)
    teach = load_teacher(tp, cfg).to(device)
    t_sha = file_sha256(tp)
    log = JsonlLog(os.path.join(out, "log.jsonl"), echo=echo) if dist.is_main else None
    seed_all(cfg.seed + 3)                # the same initial weights as one process (DDP broadcasts rank 0's)
    mine = dist.shard(sc.batch, "distill.batch")
    clips = LatentClips(os.path.join(run, "latents"), "train")
    student = trainable_copy(teach, sc.denoising_step_list).to(device)
    critic = trainable_copy(teach).to(device)
    init_p, init_before = None, None
    if student_init is not None:
        init_p = teacher_path(run, student_init)
        student.load_state_dict(load_teacher(init_p, cfg).state_dict())
        init_before = _earlier_distillation(init_p)
    ema = EMA(student, sc.ema)
    opt = build_optimizer(student, sc.lr, sc.weight_decay)
    copt = build_optimizer(critic, sc.critic_lr, sc.weight_decay)
    sched = FlowMatchScheduler(student.cfg.timestep_shift)
    timesteps = sched.warp(sc.denoising_step_list)
    sigmas = [sched.sigma(float(t)) for t in timesteps]
    gen = torch.Generator().manual_seed(cfg.seed + 4)
    step = 0
    st = load_checkpoint(ckpt_p, dist.rank, dist.world, cfg.seed + 3)
    if st is None and dist.enabled:     # per-rank global RNGs from here on
        seed_all(rank_seed(cfg.seed + 3, 0, dist.rank))
    if st is not None:
        if st.get("teacher_sha256") != t_sha:
            raise MatrixGameError(f"{ckpt_p} was distilled from another teacher than {tp} (retrained or another "
                                  f"--teacher); pass the same teacher, or delete {out} to distil again.")
        restore_model(student, st["model"], ckpt_p, "student")
        restore_model(critic, st["critic"], ckpt_p, "critic")
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["optimizer"])
        copt.load_state_dict(st["critic_optimizer"])
        gen.set_state(st["generator"])
        step = int(st["step"])
    if step >= sc.steps and os.path.isfile(final):
        return final
    guid = real_guidance(sc)
    snet = dist.wrap(StudentObjective(student, teach, critic, guid))
    cnet = dist.wrap(critic)
    start = step
    if log:
        log.write({"stage": "distill_resume" if st is not None else "distill_start", "step": step,
                   "world": dist.world, "teacher": os.path.abspath(tp), "denoising_step_list": sc.denoising_step_list,
                   "real_guidance": guid, "regression_weight": sc.regression_weight,
                   "regression_steps": sc.regression_steps,
                   **({"student_init": os.path.abspath(init_p), "student_init_distill": init_before}
                      if init_p and st is None else {})})

    def draw(shape):          # global draw from the shared generator, this rank's rows
        return torch.randn((sc.batch,) + tuple(shape[1:]), generator=gen)[mine].to(device)

    def batch_draw():
        g = clips.batch(sc.batch, gen)
        return {k: g[k] for k in ("cond", "keyboard", "mouse")}

    def exit_draw() -> int:
        n = len(sc.denoising_step_list)
        return n - 1 if sc.last_step_only else int(torch.randint(0, n, (1,), generator=gen))

    def critic_update():
        local = to_device(rows(batch_draw(), mine), device)
        ex = exit_draw()
        with torch.no_grad(), autocast(device, bf16):
            x = self_forcing_rollout(student, local["cond"], local["keyboard"], local["mouse"], timesteps,
                                     sigmas, ex, lambda: draw(block_shape)).float()
        glob = diffusion_forcing_batch({"latents": torch.empty(lat_shape)}, sched,
                                       student.cfg.num_frame_per_block, 0.0, gen)
        cb = dict(to_device(rows(glob, mine), device), **local, latents=x)
        with autocast(device, bf16):
            closs = flow_loss(cnet, cb, student.cfg.img_dim, float(glob["loss_mask"].sum()) / dist.world)
        copt.zero_grad(set_to_none=True)
        closs.backward()
        torch.nn.utils.clip_grad_norm_(critic.parameters(), 1.0)
        copt.step()
        return dist.mean(float(closs.detach()))

    n_lat = clips.latents.shape[2]
    lat_shape = (sc.batch, 16, n_lat) + tuple(clips.latents.shape[-2:])
    block_shape = lat_shape[:2] + (student.cfg.num_frame_per_block,) + lat_shape[3:]
    if step == 0:
        # the critic starts as the teacher (zero DMD gradient); let it first see the student
        for _ in range(sc.critic_warmup):
            critic_update()
        if log:
            log.write({"stage": "distill", "step": 0, "critic_warmup": sc.critic_warmup,
                       "dmd_eval": dmd_eval(student, teach, critic, clips, timesteps, sigmas, 4, device, guidance=guid)})
    timer = Timer()
    acc: Dict[str, float] = {}
    n_acc = 0
    while step < sc.steps:
        lr, clr = (lr_at(step, v, sc.warmup, sc.steps) for v in (sc.lr, sc.critic_lr))
        for o, v in ((opt, lr), (copt, clr)):
            for g in o.param_groups:
                g["lr"] = v
        # critic (fake score): flow loss on the student's rollouts (two time-scale updates)
        for _ in range(sc.critic_steps):
            acc["critic_loss"] = acc.get("critic_loss", 0.0) + critic_update() / sc.critic_steps
        # student (generator): Self-Forcing rollout with gradient through the exit step, DMD loss
        local = to_device(rows(batch_draw(), mine), device)
        ex = exit_draw()
        t = _dmd_timesteps(sched, sc.batch, sc.min_score_t, sc.max_score_t, gen)[mine]
        reg, reg_denom = None, None
        if sc.regression_weight > 0:
            glob = regression_batch(clips.batch(sc.batch, gen), timesteps, sigmas, student.cfg.num_frame_per_block, gen,
                                    sc.regression_steps)
            reg_denom = float(glob["loss_mask"].sum()) / dist.world
            reg = to_device(rows(glob, mine), device)
        with autocast(device, bf16):
            res = snet(local, timesteps, sigmas, ex, lambda: draw(block_shape), t, draw, reg, sc.regression_weight,
                       reg_denom)
        opt.zero_grad(set_to_none=True)
        res["loss"].backward()
        gn = torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        if dist.is_main:
            ema.update(student)
        step += 1
        acc["dmd_loss"] = acc.get("dmd_loss", 0.0) + dist.mean(float(res["dmd"].detach()))
        acc["dmd_grad"] = acc.get("dmd_grad", 0.0) + dist.mean(float(res["grad"]))
        if "regression" in res:
            acc["regression_loss"] = acc.get("regression_loss", 0.0) + dist.mean(float(res["regression"].detach()))
        n_acc += 1
        if step % cfg.log_every == 0 or step == sc.steps or step == start + 1:
            if log:
                rec = {"stage": "distill", "step": step, **{k: v / n_acc for k, v in acc.items()}, "lr": lr,
                       "grad_norm": float(gn), "exit_step": ex, "seconds": round(timer(), 2)}
                if step % (cfg.log_every * 10) == 0 or step == sc.steps:
                    rec["dmd_eval"] = dmd_eval(student, teach, critic, clips, timesteps, sigmas, 4, device,
                                               guidance=guid)
                log.write(rec)
            acc, n_acc = {}, 0
        if step % cfg.ckpt_every == 0 or step == sc.steps:
            checkpoint_from_main(dist, student, log, "distill", step, ckpt_p, model=student.state_dict(),
                                 critic=critic.state_dict(), ema=ema.state_dict(), optimizer=opt.state_dict(),
                                 critic_optimizer=copt.state_dict(), generator=gen.get_state(), step=step,
                                 teacher_sha256=t_sha, world=dist.world)
    if dist.is_main:
        write_dit(ema_model(student.cfg, ema.state_dict()), out)
    dist.barrier()
    return final
