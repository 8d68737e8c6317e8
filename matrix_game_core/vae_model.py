"""The Wan-2.1 VAE model (``WanVAE``: encoder + ``conv1``/``conv2`` + decoder), latent
(de)normalisation and the start-image conditioning; see :mod:`.vae` for the sources.
"""
from __future__ import annotations

from typing import Dict, Iterable, Sequence

import torch
import torch.nn as nn

from .errors import MatrixGameError
from .vae_layers import Decoder3d, Encoder3d, _causal_conv3d, _FeatCache, _run_causal

#: Per-channel latent mean of the Wan-2.1 VAE (Wan2.1 ``wan/modules/vae.py`` class ``WanVAE``;
#: identical in Matrix-Game-2 ``demo_utils/vae_block3.py`` ``VAEDecoderWrapper``).
LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)
#: Per-channel latent std of the Wan-2.1 VAE (same sources as :data:`LATENT_MEAN`).
LATENT_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)


# ---------------------------------------------------------------------------------------------
# latent (de)normalisation
# ---------------------------------------------------------------------------------------------
_CONST_CACHE: Dict[tuple, tuple] = {}


def _stats(device: torch.device, dtype: torch.dtype):
    """``(mean, std, 1/std)`` as ``[1,16,1,1,1]`` tensors of ``dtype`` on ``device`` (memoised; 1/std
    computed in ``dtype``)."""
    key = (str(device), dtype)
    v = _CONST_CACHE.get(key)
    if v is None:
        mean = torch.tensor(LATENT_MEAN, dtype=dtype, device=device).view(1, -1, 1, 1, 1)
        std = torch.tensor(LATENT_STD, dtype=dtype, device=device).view(1, -1, 1, 1, 1)
        v = (mean, std, 1.0 / std)
        if device.type != "meta":
            _CONST_CACHE[key] = v
    return v


def normalize_latents(mu: torch.Tensor) -> torch.Tensor:
    """Raw encoder mean ``mu [B,16,T,h,w]`` -> normalised latents ``(mu - mean) * (1/std)``.

    As Wan2.1 ``WanVAE`` (``scale = [mean, 1.0 / std]`` built in float32) fed to
    ``WanVAE_.encode``: ``1/std`` is computed in float32 first, so the result is bit-exact with the
    golden ``enc_latent_normalized``. Ordinary type promotion applies: a bf16/fp16 ``mu`` gives a
    float32 result (as officially), float32 stays float32.
    """
    mean, _, inv_std = _stats(mu.device, torch.float32)
    return (mu - mean) * inv_std


def denormalize_latents(z: torch.Tensor) -> torch.Tensor:
    """Normalised latents ``z [B,16,T,h,w]`` -> raw VAE latents ``z / (1/std) + mean``.

    Exactly the official decoder wrapper (Matrix-Game-2 ``demo_utils/vae_block3.py``
    ``VAEDecoderWrapper.forward``): mean/std cast to ``z.dtype`` first, ``1/std`` computed in that
    dtype, result in ``z.dtype``.
    """
    mean, _, inv_std = _stats(z.device, z.dtype)
    return z / inv_std + mean


# ---------------------------------------------------------------------------------------------
# the VAE
# ---------------------------------------------------------------------------------------------
class WanVAE(nn.Module):
    """Official ``WanVAE_`` (Wan2.1 ``wan/modules/vae.py``; full size = ``_video_vae`` config:
    ``dim=96, z_dim=16, dim_mult=[1,2,4,4], num_res_blocks=2, attn_scales=[],
    temperal_downsample=[False,True,True]``, 126.9 M parameters).

    ``operations``: a namespace with ``Conv2d``/``Conv3d`` classes (default ``torch.nn``); ComfyUI
    passes ``comfy.ops.disable_weight_init``. State-dict keys: exactly those of ``Wan2.1_VAE.pth``.
    The model computes in the dtype of its parameters.
    """

    def __init__(self, dim: int = 96, z_dim: int = 16, dim_mult: Sequence[int] = (1, 2, 4, 4),
                 num_res_blocks: int = 2, attn_scales: Sequence[float] = (),
                 temperal_downsample: Sequence[bool] = (False, True, True), dropout: float = 0.0,
                 operations=None):
        super().__init__()
        ops = operations if operations is not None else nn
        self.dim, self.z_dim = dim, z_dim
        self.dim_mult = tuple(dim_mult)
        self.num_res_blocks = num_res_blocks
        self.attn_scales = tuple(attn_scales)
        self.temperal_downsample = tuple(temperal_downsample)
        self.temperal_upsample = self.temperal_downsample[::-1]
        self.encoder = Encoder3d(dim, z_dim * 2, self.dim_mult, num_res_blocks, self.attn_scales,
                                 self.temperal_downsample, dropout, ops)
        self.conv1 = _causal_conv3d(ops, z_dim * 2, z_dim * 2, 1)
        self.conv2 = _causal_conv3d(ops, z_dim, z_dim, 1)
        self.decoder = Decoder3d(dim, z_dim, self.dim_mult, num_res_blocks, self.attn_scales,
                                 self.temperal_upsample, dropout, ops)

    # ------------------------------------------------------------------ properties
    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype = dtype of ``conv2.weight`` (the decoder path is always present)."""
        return self.conv2.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.conv2.weight.device

    @property
    def has_encoder(self) -> bool:
        return self.encoder is not None and self.conv1 is not None

    # ------------------------------------------------------------------ encode
    def _require_encoder(self):
        if not self.has_encoder:
            raise MatrixGameError("This VAE was loaded decoder-only, so it cannot encode the start image; "
                                  "load it with decoder_only=False (the full Wan2.1_VAE.pth).")

    @torch.no_grad()
    def encode_chunks(self, chunks: Iterable[torch.Tensor]) -> torch.Tensor:
        """Causal encode of a video given as consecutive chunks ``[B,3,t,H,W]`` (the first chunk 1
        frame, every later chunk 4 frames, as officially) -> raw ``mu [B,z_dim,n_chunks,H/8,W/8]``.
        Lets callers stream a long video without materialising it."""
        self._require_encoder()
        dtype = self.dtype
        cache = _FeatCache(self.encoder.num_cache_slots)
        outs = []
        for x in chunks:
            cache.idx = 0
            outs.append(self.encoder(x.to(device=self.device, dtype=dtype), cache))
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
        return _run_causal(self.conv1, out)[:, :self.z_dim].contiguous()

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Official ``WanVAE_.encode(video)`` mean (no sampling, no normalisation).

        Args:
            video: ``[B, 3, T, H, W]`` in [-1, 1], ``T = 1 + 4k``, ``H, W`` multiples of 8.
        Returns:
            raw ``mu [B, z_dim, 1 + k, H/8, W/8]`` in the parameters' dtype.
        Raises:
            MatrixGameError: wrong shape or a decoder-only VAE.
        """
        if video.dim() != 5 or video.shape[1] != 3:
            raise MatrixGameError(f"VAE encode expects a video [B,3,T,H,W] in [-1,1]; got shape "
                                  f"{tuple(video.shape)}.")
        t, h, w = video.shape[2:]
        if (t - 1) % 4:
            raise MatrixGameError(f"VAE encode needs 1 + 4k frames; got {t}. Trim or pad the video "
                                  f"to {1 + 4 * ((t - 1) // 4)} or {1 + 4 * ((t + 2) // 4)} frames.")
        if h % 8 or w % 8:
            raise MatrixGameError(f"VAE encode needs height and width divisible by 8; got {h}x{w}.")
        chunks = [video[:, :, :1]] + [video[:, :, i:i + 4] for i in range(1, t, 4)]
        return self.encode_chunks(chunks)

    # ------------------------------------------------------------------ decode
    def decode(self, z_raw: torch.Tensor) -> torch.Tensor:
        """One-shot official ``WanVAE_.decode`` + clamp (a fresh :class:`StreamingDecoder`).

        Args:
            z_raw: raw (un-normalised) latents ``[B, z_dim, T', h, w]``.
        Returns:
            float32 video ``[B, 3, 1 + 4 (T' - 1), 8h, 8w]`` clamped to [-1, 1].
        """
        from .vae_stream import StreamingDecoder
        return StreamingDecoder(self).decode_raw(z_raw)


# ---------------------------------------------------------------------------------------------
# start-image conditioning
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def encode_start_image(vae: WanVAE, image: torch.Tensor, num_latent_frames: int) -> torch.Tensor:
    """Official ``inference.py`` conditioning: ``cond_concat [B, 20, N, H/8, W/8]``.

    VAE-encodes ``cat[image, zeros x 4 (N-1) frames]`` (mid-grey frames; streamed chunk by chunk,
    never materialised), normalises, and prepends the 4 mask channels (1 at latent 0, 0 elsewhere):
    channel order ``[mask 4, latent 16]``.

    Args:
        image: ``[B, 3, H, W]`` in [-1, 1], ``H, W`` multiples of 8.
        num_latent_frames: ``N >= 1``.
    Returns:
        float32 (type promotion of :func:`normalize_latents`) ``[B, 4 + z_dim, N, H/8, W/8]``.
    """
    if image.dim() != 4 or image.shape[1] != 3:
        raise MatrixGameError(f"Start image must be [B,3,H,W] in [-1,1]; got shape {tuple(image.shape)}.")
    if num_latent_frames < 1:
        raise MatrixGameError(f"num_latent_frames must be >= 1; got {num_latent_frames}.")
    b, _, h, w = image.shape
    if h % 8 or w % 8:
        raise MatrixGameError(f"Start image height and width must be divisible by 8; got {h}x{w}.")
    vae._require_encoder()
    first = image.to(device=vae.device, dtype=vae.dtype).unsqueeze(2)
    grey = first.new_zeros(b, 3, 4, h, w)
    mu = vae.encode_chunks([first] + [grey] * (num_latent_frames - 1))
    lat = normalize_latents(mu)
    mask = lat.new_zeros(b, 4, num_latent_frames, h // 8, w // 8)
    mask[:, :, 0] = 1
    return torch.cat([mask, lat], dim=1)
