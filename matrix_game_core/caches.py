"""KV caches of the causal DiT: ring buffers over latent frames.

The official pipeline (``pipeline/causal_inference.py``, ``wan/modules/causal_model.py``,
``action_module.py``) keeps, per layer, a self-attention cache of ``local_attn_size * 880`` tokens,
a mouse cache ``[B*880, L, heads, 64]`` and a keyboard cache ``[B, L, heads, 64]``. When a new
block does not fit, it shifts the buffer left by whole frames with a clone-copy, then writes the
block at the end; calls that repeat a block (the denoising steps and the t=0 context pass)
overwrite the same slots. Attention reads the last ``local_attn_size`` frames, current block
included.

Here the same semantics come from a ring buffer: latent frame ``f`` lives in slot ``f % L``
(after the optional sink), so writing a block overwrites exactly the frames the official code
would evict, repeated calls overwrite the same slots, and nothing is ever shifted or cloned.
Keys are stored after RoPE (absolute positions), so attention, being invariant to the order of
its keys, reads the valid slots in slot order with the same result.

With ``sink_size = s > 0`` (an extension; the official configs use 0) the first ``s`` frames keep
their slots forever and the other ``L - s`` slots roll; attention then sees the sink frames plus
the most recent ``L - s`` frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import torch

from .errors import MatrixGameError


class FrameRing:
    """Slot bookkeeping shared by every cache of one session (all use the same window)."""

    def __init__(self, size: int, sink: int = 0):
        if size < 1:
            raise MatrixGameError(f"local attention window must be >= 1 latent frame (got {size}).")
        if not 0 <= sink < size:
            raise MatrixGameError(f"sink size must be in [0, {size - 1}] for a window of {size} frames (got {sink}).")
        self.size = size
        self.sink = sink

    def slot(self, frame: int) -> int:
        if frame < self.sink:
            return frame
        return self.sink + (frame - self.sink) % (self.size - self.sink)

    def slots(self, start: int, n: int) -> List[int]:
        return [self.slot(f) for f in range(start, start + n)]

    def valid(self, end_frame: int) -> int:
        """Number of leading slots holding frames visible to a block ending at ``end_frame``."""
        return min(end_frame, self.size)

    def frames_in_window(self, end_frame: int) -> List[int]:
        """Absolute frames the block ending at ``end_frame`` attends to (for tests/masks)."""
        if end_frame <= self.size:
            return list(range(end_frame))
        return list(range(self.sink)) + list(range(end_frame - (self.size - self.sink), end_frame))


@dataclass
class LayerCache:
    """Per-layer K/V.

    Layouts (``L`` = window frames, ``N`` = tokens per latent frame, ``H``/``D`` heads/head dim):
      * ``k``, ``v``: self-attention ``[B, H, L, N, D]`` (keys after RoPE)
      * ``mk``, ``mv``: mouse ``[B*N, Ha, L, 64]`` or None
      * ``kk``, ``kv``: keyboard ``[B, Ha, L, 64]`` or None
      * ``ck``, ``cv``: cross-attention K/V of the image tokens ``[B, H, 257, D]`` (set once)
    """

    k: torch.Tensor
    v: torch.Tensor
    mk: Optional[torch.Tensor] = None
    mv: Optional[torch.Tensor] = None
    kk: Optional[torch.Tensor] = None
    kv: Optional[torch.Tensor] = None
    ck: Optional[torch.Tensor] = None
    cv: Optional[torch.Tensor] = None


@dataclass
class ModelCache:
    """All state the DiT keeps between calls of one generation (one world session).

    ``end_frame`` is the exclusive end of the latest block written; a call may repeat the latest
    block or start the next one, anything else raises (the caches would not hold the frames the
    official code would attend to).
    """

    ring: FrameRing
    layers: List[LayerCache]
    tokens_per_frame: int
    end_frame: int = 0
    context_ready: bool = False
    _slot_cache: dict = field(default_factory=dict)

    def slot_index(self, start: int, n: int, device) -> torch.Tensor:
        key = (tuple(self.ring.slots(start, n)), str(device))  # periodic: bounded dict
        t = self._slot_cache.get(key)
        if t is None:
            t = torch.tensor(key[0], dtype=torch.long, device=device)
            self._slot_cache[key] = t
        return t

    def begin_call(self, start_frame: int, num_frames: int) -> int:
        """Validate the call's position and return the number of valid slots to attend to."""
        end = start_frame + num_frames
        if num_frames > self.ring.size - self.ring.sink and start_frame >= self.ring.sink:
            raise MatrixGameError(f"a block of {num_frames} latent frames does not fit a local attention "
                                  f"window of {self.ring.size} frames (sink {self.ring.sink}); raise the window.")
        if start_frame > self.end_frame or end < self.end_frame:
            raise MatrixGameError(f"latent frames {start_frame}..{end - 1} do not follow the cached frames "
                                  f"(cache ends at {self.end_frame}); generate blocks in order or start a new session.")
        return self.ring.valid(end)

    def end_call(self, start_frame: int, num_frames: int) -> None:
        self.end_frame = max(self.end_frame, start_frame + num_frames)

    def detach_(self) -> "ModelCache":
        """Give every layer fresh copies of its rolling K/V buffers, cut from the autograd graph.

        Writing a block into the cache is in place; a training rollout that back-propagates through
        a block's attention (Self-Forcing) calls this after the block's graph is built, so that the
        next writes go to new tensors and leave the ones the graph saved untouched. The image-token
        K/V (``ck``, ``cv``, never rewritten) keep their graph."""
        for lc in self.layers:
            for name in ("k", "v", "mk", "mv", "kk", "kv"):
                t = getattr(lc, name)
                if t is not None:
                    setattr(lc, name, t.detach().clone())
        return self

    def nbytes(self) -> int:
        n = 0
        for lc in self.layers:
            for t in (lc.k, lc.v, lc.mk, lc.mv, lc.kk, lc.kv, lc.ck, lc.cv):
                if t is not None:
                    n += t.numel() * t.element_size()
        return n
