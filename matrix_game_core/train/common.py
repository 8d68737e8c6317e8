"""Shared training machinery: devices, autocast, LR schedule, EMA, checkpoints, logs.

A stage keeps everything in its own folder::

    RUN/<stage>/ckpt.pt      # model, EMA, optimizer, step, RNG states (atomic write; resume point)
    RUN/<stage>/log.jsonl    # one JSON object per logged step: step, loss(es), lr, seconds
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from typing import Dict, Optional

import numpy as np
import torch

from ..errors import MatrixGameError


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda if available else cpu. Raises MatrixGameError for an unavailable device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MatrixGameError(f"device {name!r} requested but CUDA is not available; use --device cpu.")
    return dev


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA (or CPU) when ``bf16``; a no-op context otherwise."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def lr_at(step: int, base: float, warmup: int, total: int, floor: float = 0.1) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to ``floor * base`` at ``total``."""
    if step < warmup:
        return base * (step + 1) / max(1, warmup)
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


class EMA:
    """Exponential moving average of a model's floating parameters (kept in float32)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items()
                       if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v.detach().float(), 1 - self.decay)

    def state_dict(self):
        return self.shadow

    def load_state_dict(self, sd) -> None:
        self.shadow = {k: v.float().clone() for k, v in sd.items()}

    def copy_to(self, model: torch.nn.Module) -> None:
        sd = model.state_dict()
        for k, v in self.shadow.items():
            sd[k].copy_(v.to(sd[k].dtype))


class JsonlLog:
    """Append-only JSON-lines log (survives resume; a resumed run appends)."""

    def __init__(self, path: str, echo: bool = True):
        self.path, self.echo = path, echo
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)

    def write(self, rec: Dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if self.echo:
            print(" ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()), flush=True)

    def read(self):
        if not os.path.isfile(self.path):
            return []
        with open(self.path, "r", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


#: numpy globals a checkpoint of the first format (``rng.numpy`` as numpy's own state tuple) needs
#: under ``torch.load(weights_only=True)``: they rebuild an ndarray / dtype and run no other code.
def _numpy_safe_globals():
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _numpy_state_to_tensors(state) -> Dict:
    name, keys, pos, has_gauss, cached = state
    return {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64)),
            "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_state_from(v):
    if isinstance(v, dict):     # this format: tensors and plain values only
        return (v["name"], v["keys"].numpy().astype(np.uint32), v["pos"], v["has_gauss"], v["cached_gaussian"])
    return v                    # first format: numpy's own tuple


def save_checkpoint(path: str, **state) -> None:
    """Atomically write ``state`` (tensors, state dicts, plain values) with ``torch.save``.

    Adds ``rng``: the torch / numpy / python RNG states of this process, as tensors and plain values
    only, so that :func:`load_checkpoint` reads the file with ``weights_only=True``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    state["rng"] = {"torch": torch.get_rng_state(), "numpy": _numpy_state_to_tensors(np.random.get_state()),
                    "python": random.getstate()}
    if torch.cuda.is_available():
        state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str) -> Optional[Dict]:
    """Read a training checkpoint **without executing pickled code** (None if absent).

    ``torch.load(weights_only=True)`` accepts tensors, containers and plain values only; the numpy
    RNG state of checkpoints written before this format is allowed through the few numpy
    constructors of :func:`_numpy_safe_globals`. Anything else (a crafted pickle that would call
    ``os.system`` or any other function) is refused.

    Raises:
        MatrixGameError: unreadable, truncated or unsafe file (naming it and the fix).
    """
    if not os.path.isfile(path):
        return None
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        unsafe = "weights_only" in str(e) or "Unsupported global" in str(e)
        why = ("it holds objects other than tensors and plain values (a pickle that would run code), refused"
               if unsafe else f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        raise MatrixGameError(f"cannot read checkpoint {path} ({why}); delete it (or the stage folder) to restart "
                              f"the stage.") from e
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise MatrixGameError(f"{path} is not a training checkpoint of this recipe (no model/step); delete it to "
                              f"restart the stage.")
    return state


def load_checkpoint(path: str, rank: int = 0, world: int = 1, seed: int = 0) -> Optional[Dict]:
    """Read a checkpoint written by :func:`save_checkpoint` (None if absent, see :func:`read_checkpoint`)
    and restore the process RNGs.

    In one process the saved torch / numpy / python RNG states are restored (an exact resume). With
    ``world > 1`` every rank is reseeded instead with :func:`rank_seed` ``(seed, step, rank)``: the
    saved states are rank 0's alone, and the stages draw their batches and noise from generators
    stored in the checkpoint, not from these global RNGs."""
    state = read_checkpoint(path)
    if state is None:
        return None
    rng = state.get("rng")
    if world > 1 or not rng:
        seed_all(rank_seed(seed, int(state["step"]), rank))
        return state
    torch.set_rng_state(rng["torch"])
    np.random.set_state(_numpy_state_from(rng["numpy"]))
    random.setstate(_as_python_state(rng["python"]))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return state


def _as_python_state(v):
    version, internal, gauss = v
    return (version, tuple(internal), gauss)


def rank_seed(seed: int, step: int, rank: int) -> int:
    """Seed of one rank's global RNGs at a step: different per rank, reproducible per (seed, step, rank)."""
    return int(np.random.SeedSequence([int(seed), int(step), int(rank)]).generate_state(1)[0])


def restore_model(module: torch.nn.Module, sd: Dict, path: str, what: str) -> None:
    """``module.load_state_dict(sd)`` with a clear error when the checkpoint is of another recipe."""
    try:
        module.load_state_dict(sd)
    except RuntimeError as e:
        raise MatrixGameError(f"{path}: its {what} does not match this run's configuration (another recipe or "
                              f"model size: {str(e).splitlines()[0]}...); train into a new --out folder, or delete "
                              f"{os.path.dirname(path)} to restart the stage.") from e


def checkpoint_from_main(dist, module: torch.nn.Module, log, stage: str, at_step: int, path: str, **state) -> None:
    """Checkpoint of a data-parallel stage: every rank checks that its weights equal the others'
    (bit for bit, :meth:`~.distributed.Dist.check_in_sync`; logged as ``<stage>_sync``), then rank 0
    writes ``state`` (:func:`save_checkpoint`) while the others wait."""
    digests = dist.check_in_sync(module, f"{stage} step {at_step}") if dist.enabled else None
    if dist.is_main:
        save_checkpoint(path, **state)
        if digests and log is not None:
            log.write({"stage": f"{stage}_sync", "step": at_step, "weights_sha256": digests})
    dist.barrier()


class Timer:
    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0


def to_device(batch: Dict, device) -> Dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def optimizer_step(net: torch.nn.Module, opt: torch.optim.Optimizer, params, batch: torch.Tensor, lr: float,
                   device: torch.device, bf16: bool, clip: float = 1.0):
    """One AdamW step of a stage whose ``net(batch)`` returns a loss dict with ``"loss"``: set ``lr``,
    forward under :func:`autocast`, backward, clip the gradient norm of ``params`` to ``clip``, step.
    Returns ``(losses, grad_norm before clipping)``."""
    for g in opt.param_groups:
        g["lr"] = lr
    with autocast(device, bf16):
        losses = net(batch)
    opt.zero_grad(set_to_none=True)
    losses["loss"].backward()
    gn = torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    return losses, gn


class LossMeans:
    """Running means of a stage's logged losses between two log lines (averaged over the ranks with
    ``dist.mean``)."""

    def __init__(self, dist):
        self.dist, self.acc, self.n = dist, {}, 0

    def add(self, losses: Dict) -> None:
        for k, v in losses.items():
            self.acc[k] = self.acc.get(k, 0.0) + self.dist.mean(float(v.detach()))
        self.n += 1

    def pop(self) -> Dict[str, float]:
        out = {k: v / max(1, self.n) for k, v in self.acc.items()}
        self.acc, self.n = {}, 0
        return out


def resume_stage(path: str, module: torch.nn.Module, opt: torch.optim.Optimizer, dist, seed: int, what: str):
    """Resume a stage from its ``ckpt.pt`` (model weights + optimizer state), or start it.

    Starting fresh under data parallel, each rank's global RNGs are reseeded with
    :func:`rank_seed` ``(seed, 0, rank)`` (the initial weights were drawn before, the same on all
    ranks). Returns ``(state or None, step)``.

    Raises:
        MatrixGameError: a checkpoint whose weights do not fit ``module`` (:func:`restore_model`).
    """
    st = load_checkpoint(path, dist.rank, dist.world, seed)
    if st is None:
        if dist.enabled:
            seed_all(rank_seed(seed, 0, dist.rank))
        return None, 0
    restore_model(module, st["model"], path, what)
    opt.load_state_dict(st["optimizer"])
    return st, int(st["step"])
