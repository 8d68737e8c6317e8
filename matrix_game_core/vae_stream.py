"""The streaming decoder: Matrix-Game-2 ``demo_utils/vae_block3.py`` ``VAEDecoderWrapper`` with
its 32-slot feature cache kept between calls (see :mod:`.vae`).

Compiled mode (``StreamingDecoder.compile = True``, set by a compiled
:class:`~.sampling.WorldSession`): from the third latent frame of a stream on, every slot of the
feature cache is a ``[B, C, 2, h, w]`` tensor, so the per-latent step is a pure function
``(x [B,16,1,h,w], 32 slot tensors) -> (4 frames, 32 new slot tensors)`` with static shapes: it
is compiled once (inductor, no CUDA graphs, as the official
``torch.compile(mode="max-autotune-no-cudagraphs")``) and reused for every later latent frame.
The first two latent frames (``None`` / ``'Rep'`` slots, 1-frame outputs) run eagerly.
"""
from __future__ import annotations

import weakref
from typing import List, Tuple, Union

import torch

from .errors import MatrixGameError
from .vae_layers import _FeatCache, _run_causal
from .vae_model import WanVAE, denormalize_latents


class StreamingDecoder:
    """Matrix-Game-2 ``VAEDecoderWrapper`` with its 32-slot feature cache kept between calls.

    Only ``vae.conv2`` and ``vae.decoder`` are used. The very first latent of a stream decodes to
    1 frame, every later latent to 4 frames; decoding block by block equals decoding all at once.
    """

    def __init__(self, vae: WanVAE, compile: Union[bool, str] = False):
        self.vae = vae
        #: False, True (inductor) or a dynamo backend name (``"aot_eager"`` in tests)
        self.compile = compile
        self.reset()

    def reset(self) -> None:
        """Forget the feature cache (start a new video)."""
        self._cache = _FeatCache(self.vae.decoder.num_cache_slots)
        self.latents_seen = 0

    @property
    def cache_slots(self) -> List[Union[None, str, torch.Tensor]]:
        """The cache slots (read-only view for inspection: ``None``, ``'Rep'`` or ``[B,C,<=2,h,w]``)."""
        return self._cache.slots

    @torch.no_grad()
    def decode_raw(self, z_raw: torch.Tensor) -> torch.Tensor:
        """As :meth:`decode` but for raw (already un-normalised) latents."""
        vae = self.vae
        if z_raw.dim() != 5 or z_raw.shape[1] != vae.z_dim:
            raise MatrixGameError(f"VAE decode expects latents [B,{vae.z_dim},T,h,w]; got shape "
                                  f"{tuple(z_raw.shape)}.")
        x = _run_causal(vae.conv2, z_raw.to(device=vae.device, dtype=vae.dtype))
        outs = [self._step(x[:, :, i:i + 1]) for i in range(x.shape[2])]
        self.latents_seen += x.shape[2]
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
        return out.float().clamp_(-1.0, 1.0)

    def _step(self, x: torch.Tensor) -> torch.Tensor:
        """Decode one latent frame ``[B, z_dim, 1, h, w]`` (after ``conv2``), updating the cache."""
        slots = self._cache.slots
        if self.compile and all(isinstance(t, torch.Tensor) and t.shape[2] == 2 for t in slots):
            # canonical strides: a slice of a longer latent chunk has others (a guard, a recompile)
            x = x.clone(memory_format=torch.contiguous_format)
            out, new = compiled_decoder_step(self.vae, self.compile)(self.vae.decoder, x, tuple(slots))
            self._cache.slots = list(new)
            return out
        return self.vae.decoder(x, self._cache)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decode the next normalised latent frames of the stream.

        Args:
            z: normalised latents ``[B, 16, n, h, w]`` (any float dtype; cast to the VAE's dtype first,
               then un-normalised in it as the official wrapper does with ``x0.half()``).
        Returns:
            float32 ``[B, 3, frames, 8h, 8w]`` clamped to [-1, 1]; ``frames = 1 + 4 (n - 1)`` on the
            first call after :meth:`reset`, ``4 n`` afterwards.
        """
        if z.dim() != 5 or z.shape[1] != self.vae.z_dim:
            raise MatrixGameError(f"VAE decode expects latents [B,{self.vae.z_dim},T,h,w]; got shape "
                                  f"{tuple(z.shape)}.")
        z = z.to(device=self.vae.device, dtype=self.vae.dtype)
        return self.decode_raw(denormalize_latents(z))


def decoder_step(decoder, x: torch.Tensor, slots: Tuple[torch.Tensor, ...]):
    """One steady-state latent frame through ``decoder`` as a pure function (the compile target):
    returns ``(frames [B, 3, 4, 8h, 8w], new slots)``."""
    cache = _FeatCache(len(slots), slots, functional=True)
    out = decoder(x, cache)
    return out, tuple(cache.slots)


_DECODER_STEPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def compiled_decoder_step(vae: WanVAE, backend: Union[bool, str] = True):
    """:func:`decoder_step` compiled (``fullgraph``, static shapes), one per VAE and backend."""
    backend = "inductor" if backend is True else backend
    per_vae = _DECODER_STEPS.setdefault(vae, {})
    fn = per_vae.get(backend)
    if fn is None:
        fn = torch.compile(decoder_step, backend=backend, fullgraph=True, dynamic=False)
        per_vae[backend] = fn
    return fn
