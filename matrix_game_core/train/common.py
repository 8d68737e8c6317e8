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


def save_checkpoint(path: str, **state) -> None:
    """Atomically write ``state`` (tensors, state dicts, plain values) with ``torch.save``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    state["rng"] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str) -> Optional[Dict]:
    """Load a checkpoint written by :func:`save_checkpoint` (None if absent) and restore RNGs."""
    if not os.path.isfile(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise MatrixGameError(f"cannot read checkpoint {path} ({type(e).__name__}: {e}); delete it to restart "
                              f"the stage.") from e
    rng = state.get("rng")
    if rng:
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
    return state


class Timer:
    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0


def to_device(batch: Dict, device) -> Dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
