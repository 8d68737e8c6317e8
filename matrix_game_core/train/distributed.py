"""Data-parallel training with ``torch.distributed``: one process per device, launched by ``torchrun``.

Every stage runs unchanged in one process (``python -m matrix_game_core.train ...``) and under
``torchrun --nproc_per_node N -m matrix_game_core.train ...`` (NCCL on GPUs, gloo on CPU; many
machines the standard torchrun way, see docs/data_and_training.md). The pieces:

* :func:`setup` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), initialises
  the process group and picks the rank's device (``cuda:LOCAL_RANK``);
* models are wrapped in :class:`torch.nn.parallel.DistributedDataParallel` (:meth:`Dist.wrap`), which
  broadcasts rank 0's weights at construction and averages gradients in ``backward``, so the ranks
  keep bit-identical weights (checked by :meth:`Dist.weights_digests` at every checkpoint);
* data: each rank computes its own slice of the **global** batch (:meth:`Dist.shard`), drawn from a
  generator that every rank holds in the same state; with per-rank losses normalised by the global
  sample count, the averaged gradient equals the one-process gradient of the global batch, and a
  run can resume under another world size (the generator state is global, not per rank);
* rank 0 alone keeps the EMA, writes logs, checkpoints and exports; the others wait at barriers.

Single process: ``Dist(rank=0, world=1)``, no process group, :meth:`Dist.wrap` returns the model.
"""
from __future__ import annotations

import datetime
import hashlib
import os
from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.distributed as tdist

from ..errors import MatrixGameError


@dataclass
class Dist:
    """Where this process stands in the job.

    Attributes:
        rank: global rank (0 = main: logs, checkpoints, EMA); world: number of processes.
        local_rank: rank on this machine (picks ``cuda:local_rank``); device: this rank's device.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``DistributedDataParallel(module)`` when distributed (gradients averaged over ranks in
        ``backward``), else ``module`` itself. Every trainable parameter must receive a gradient in
        each step (the stages freeze what the forward never uses)."""
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(module, device_ids=ids)

    def shard(self, global_batch: int, key: str = "dit.batch") -> slice:
        """This rank's rows ``[r * B/W, (r + 1) * B/W)`` of a global batch of ``global_batch``
        (``key``: the setting named in the error).

        Raises:
            MatrixGameError: the global batch does not split evenly over the ranks.
        """
        if global_batch % self.world:
            raise MatrixGameError(f"the global batch {global_batch} does not split over {self.world} processes; "
                                  f"set a multiple of {self.world} (e.g. --set {key}="
                                  f"{max(self.world, global_batch // self.world * self.world)}).")
        n = global_batch // self.world
        return slice(self.rank * n, (self.rank + 1) * n)

    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier()

    def mean(self, value: float) -> float:
        """Average of a float over the ranks (for logging global losses)."""
        if not self.enabled:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64,
                         device=self.device if self.device.type == "cuda" else "cpu")
        tdist.all_reduce(t)
        return float(t.item()) / self.world

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Differentiable sum over ranks (``torch.distributed.nn.functional.all_reduce``); identity
        in one process. Used for statistics that must be those of the global batch."""
        if not self.enabled:
            return t
        from torch.distributed.nn.functional import all_reduce
        return all_reduce(t)

    def weights_digests(self, module: torch.nn.Module) -> List[str]:
        """SHA-256 of each rank's parameter bytes (gathered on every rank, in rank order)."""
        h = hashlib.sha256()
        for name, p in sorted(module.state_dict().items()):
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
                     if p.numel() else b"")
        mine = h.hexdigest()
        if not self.enabled:
            return [mine]
        out: List[Optional[str]] = [None] * self.world
        tdist.all_gather_object(out, mine)
        return [str(v) for v in out]

    def check_in_sync(self, module: torch.nn.Module, what: str) -> List[str]:
        """Raise if the ranks' weights differ (they must be bit-identical under DDP)."""
        d = self.weights_digests(module)
        if len(set(d)) != 1:
            raise MatrixGameError(f"{what}: the {self.world} processes hold different weights ({d}); this is a bug "
                                  f"or a non-deterministic device kernel. Resume from the last checkpoint.")
        return d


def env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device_name: str = "auto") -> Dist:
    """Initialise ``torch.distributed`` from torchrun's environment (a no-op without it).

    Args:
        device_name: ``auto`` / ``cpu`` / ``cuda``: under torchrun ``cuda`` means ``cuda:LOCAL_RANK``.
    Returns:
        :class:`Dist` with the rank's device.
    Raises:
        MatrixGameError: CUDA requested but missing, or fewer GPUs than local processes.
    """
    from .common import pick_device

    dev = pick_device(device_name)
    world = env_world()
    if world <= 1:
        return Dist(device=dev)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise MatrixGameError(f"local rank {local} but only {torch.cuda.device_count()} GPUs on this machine; "
                                  f"use --nproc_per_node {torch.cuda.device_count()}.")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                 timeout=datetime.timedelta(minutes=30))
    return Dist(rank=rank, world=world, local_rank=local, device=dev)


def teardown() -> None:
    if tdist.is_initialized():
        tdist.destroy_process_group()
