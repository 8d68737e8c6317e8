"""The sampler's Gaussian noise: where each block's starting noise and the re-noise of its
denoising steps come from (seeded, or replayed from the official implementation's golden data)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch

from .config import NUM_FRAME_PER_BLOCK
from .errors import MatrixGameError


class NoiseSource:
    """Where the sampler's Gaussian noise comes from.

    ``initial(block, shape)`` gives the starting noise of a block (``[B, 16, 3, h, w]``);
    ``renoise(shape)`` gives fresh noise for each non-final denoising step, in call order.
    ``draw_ahead``: the session may draw a block's noise one block early (an unbounded stream).
    """

    draw_ahead = False

    def initial(self, block: int, shape, device, dtype) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def renoise(self, shape, device, dtype) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def block(self, block: int, shape, n_renoise: int, device, dtype) -> "BlockNoise":
        """All noise of one block in the sampler's draw order: ``initial`` then ``n_renoise``
        re-noise tensors. The session calls this one block ahead (the draws then overlap the
        device's work on the current block); the stream of draws is the same as drawing each
        tensor when it is used."""
        first = self.initial(block, shape, device, dtype)
        return BlockNoise(first, [self.renoise(shape, device, dtype) for _ in range(n_renoise)])


@dataclass
class BlockNoise:
    """One block's noise: ``initial [B,16,3,h,w]`` and the re-noise tensors of the non-final
    denoising steps (same shape), on the session's device and dtype."""

    initial: torch.Tensor
    renoise: List[torch.Tensor]


class SeededNoise(NoiseSource):
    """Deterministic noise from one ``torch.Generator`` seeded with ``seed``, drawn in float32 on
    the CPU (so a seed gives the same video on every device) and moved to the device.

    Official runs draw from the global CUDA RNG instead; no seed reproduces their exact stream.
    The session draws each block's noise one block ahead, from the same generator in the same
    order, into page-locked memory copied without blocking the host.
    """

    draw_ahead = True

    def __init__(self, seed: int):
        self.gen = torch.Generator(device="cpu").manual_seed(int(seed))

    def _draw(self, shape, device, dtype):
        device = torch.device(device)
        pin = device.type == "cuda"  # page-locked: the copy to the GPU runs without blocking the host
        buf = torch.empty(shape, dtype=torch.float32, pin_memory=pin)
        torch.randn(shape, generator=self.gen, dtype=torch.float32, out=buf)
        return buf.to(device=device, non_blocking=pin).to(dtype)

    def initial(self, block, shape, device, dtype):
        return self._draw(shape, device, dtype)

    def renoise(self, shape, device, dtype):
        return self._draw(shape, device, dtype)


class ReplayNoise(NoiseSource):
    """Replay recorded noise (the golden data): ``noise [B,16,F,h,w]`` sliced per block, and
    ``renoise [K, B*3, 16, h, w]`` (official ``randn_like`` layout ``(b f) c h w``) popped in order."""

    def __init__(self, noise: torch.Tensor, renoise: torch.Tensor):
        self.noise, self.renoise_bank, self.k = noise, renoise, 0

    def initial(self, block, shape, device, dtype):
        n = NUM_FRAME_PER_BLOCK
        return self.noise[:, :, n * block:n * block + n].to(device=device, dtype=dtype)

    def renoise(self, shape, device, dtype):
        if self.k >= self.renoise_bank.shape[0]:
            raise MatrixGameError("replay noise exhausted: more denoising steps than recorded re-noise tensors.")
        r = self.renoise_bank[self.k]
        self.k += 1
        b, c, f, h, w = shape
        return r.view(b, f, c, h, w).transpose(1, 2).to(device=device, dtype=dtype)
