"""The Wan-2.1 causal video VAE: encoder, one-shot decoder and a streaming decoder.

Re-implementation (pure PyTorch, no ComfyUI import) of

* Wan2.1 ``wan/modules/vae.py`` (``CausalConv3d``, ``RMS_norm``, ``Resample`` with ``time_conv`` and
  the ``'Rep'`` marker, ``ResidualBlock``, ``AttentionBlock``, ``Encoder3d``, ``Decoder3d``,
  ``WanVAE_`` with its per-conv feature cache of ``CACHE_T = 2`` frames), vendored by Matrix-Game-2
  as ``wan/vae/wanx_vae_src/vae.py`` and ``wan/modules/vae.py``;
* Matrix-Game-2 ``demo_utils/vae_block3.py`` ``VAEDecoderWrapper`` (un-normalise
  ``z / (1/std) + mean``, ``conv2``, decode one latent frame at a time through a 32-slot cache that
  persists across calls, ``float().clamp(-1, 1)``) -> :class:`StreamingDecoder`;
* Matrix-Game-2 ``inference.py`` start-image conditioning -> :func:`encode_start_image`.

State-dict keys are exactly those of ``Wan2.1_VAE.pth`` (``encoder.*``, ``conv1.*``, ``conv2.*``,
``decoder.*``; 194 tensors at full size), which are also the keys of ComfyUI's
``wan_2.1_vae.safetensors``.

Causality: every 3-wide temporal conv sees only the current and the two previous frames. The
encoder runs frame 0 alone, then chunks of 4 frames; the decoder runs one latent frame at a time.
Each cached conv stores the last ``CACHE_T = 2`` frames of its *input* after every chunk. The
temporal upsamplers of the decoder store the marker ``'Rep'`` on the very first latent and do not
double time then, so latent 0 decodes to 1 frame and every later latent to 4 frames.

Tensor layout everywhere: ``[B, C, T, H, W]``. The modules compute in the dtype of their
parameters (fp32 / bf16 / fp16); inputs are cast to it on entry.

The code is split by responsibility; every public name stays importable from here:
:mod:`.vae_layers` (causal convs, feature cache, blocks, ``Encoder3d``/``Decoder3d``),
:mod:`.vae_model` (``WanVAE``, latent normalisation, start-image conditioning),
:mod:`.vae_stream` (``StreamingDecoder``, optionally compiled) and :mod:`.vae_loading`.
"""
from __future__ import annotations

from .vae_layers import (CACHE_T, REP, AttentionBlock, Decoder3d, Encoder3d, Resample, ResidualBlock, RMSNorm,  # noqa: F401
                         _causal_conv3d, _FeatCache, _run_causal)
from .vae_loading import load_wan_vae
from .vae_model import (LATENT_MEAN, LATENT_STD, WanVAE, denormalize_latents, encode_start_image,
                        normalize_latents)
from .vae_stream import StreamingDecoder

__all__ = [
    "CACHE_T", "LATENT_MEAN", "LATENT_STD", "normalize_latents", "denormalize_latents",
    "WanVAE", "StreamingDecoder", "encode_start_image", "load_wan_vae",
]
