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
"""
from __future__ import annotations

import os
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import MatrixGameError

__all__ = [
    "CACHE_T", "LATENT_MEAN", "LATENT_STD", "normalize_latents", "denormalize_latents",
    "WanVAE", "StreamingDecoder", "encode_start_image", "load_wan_vae",
]

#: Frames of context each causal conv keeps between chunks (Wan2.1 ``wan/modules/vae.py``).
CACHE_T = 2
#: Marker stored by a temporal upsampler after the first latent frame (official ``'Rep'``).
REP = "Rep"

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

#: File names users are expected to pass to :func:`load_wan_vae` (for error messages).
_EXPECTED_FILES = ("Wan2.1_VAE.pth (Skywork/Matrix-Game-2.0 or Wan-AI/Wan2.1-*)",
                   "wan_2.1_vae.safetensors (Comfy-Org/Wan_2.1_ComfyUI_repackaged)")


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
# building blocks
# ---------------------------------------------------------------------------------------------
def _triple(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)


def _causal_conv3d(ops, cin: int, cout: int, kernel, stride=1, padding=0) -> nn.Module:
    """A plain ``ops.Conv3d`` that behaves as the official ``CausalConv3d``.

    Spatial padding is done by the conv itself (zeros); the temporal padding ``2 * padding[0]`` is
    applied in front only, by :func:`_run_causal` (with cached frames replacing zeros). Keeping the
    module a plain ``Conv3d`` keeps the official state-dict keys and lets ComfyUI's ``ops`` classes
    (weight casting / offloading) work unchanged.
    """
    kernel, stride, padding = _triple(kernel), _triple(stride), _triple(padding)
    conv = ops.Conv3d(cin, cout, kernel, stride=stride, padding=(0, padding[1], padding[2]))
    conv.causal_pad_t = 2 * padding[0]
    return conv


def _run_causal(conv: nn.Module, x: torch.Tensor, prev: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Official ``CausalConv3d.forward(x, cache_x=prev)``: front pad ``[zeros, prev, x]`` in time."""
    pt = conv.causal_pad_t
    if pt:
        n = 0 if prev is None else prev.shape[2]
        if n == 0:
            x = F.pad(x, (0, 0, 0, 0, pt, 0))
        elif n >= pt:
            x = torch.cat([prev[:, :, n - pt:], x], dim=2)
        else:
            b, c, _, h, w = x.shape
            x = torch.cat([x.new_zeros(b, c, pt - n, h, w), prev, x], dim=2)
    if x.device.type == "cpu" and conv.stride[0] == 1 and conv.weight.dtype == x.dtype \
            and conv.weight.device == x.device:
        return _conv3d_as_2d(conv, x)
    return conv(x)


def _conv3d_as_2d(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """CPU fast path: a time-stride-1 Conv3d as a sum over its temporal taps of Conv2d over all
    frames at once. PyTorch's CPU Conv3d falls back to ``slow_conv3d`` (no oneDNN), which is ~4x
    slower here; the result equals the 3-D conv up to float summation order (~1e-6)."""
    kt = conv.kernel_size[0]
    b, c, t, h, w = x.shape
    tout = t - kt + 1
    out = None
    for i in range(kt):
        xi = x[:, :, i:i + tout].transpose(1, 2).reshape(b * tout, c, h, w)
        yi = F.conv2d(xi, conv.weight[:, :, i], conv.bias if i == 0 else None,
                      stride=conv.stride[1:], padding=conv.padding[1:])
        out = yi if out is None else out.add_(yi)
    return out.view(b, tout, *out.shape[1:]).transpose(1, 2)


def _owns_storage(x: torch.Tensor) -> bool:
    """True when ``x`` spans its whole storage (keeping it alive retains nothing extra)."""
    return x.untyped_storage().nbytes() == x.numel() * x.element_size()


def _cache_tail(x: torch.Tensor, prev) -> torch.Tensor:
    """What the official code stores after a cached conv: the last ``CACHE_T`` frames of its input,
    topped up with the last cached frame when the chunk has fewer frames."""
    t = x.shape[2]
    if t > CACHE_T:
        return x[:, :, t - CACHE_T:].clone()
    if t == CACHE_T or prev is None or isinstance(prev, str):
        return x if _owns_storage(x) else x.clone()
    return torch.cat([prev[:, :, -1:], x], dim=2)


class _FeatCache:
    """The official ``feat_cache`` list plus the running ``feat_idx`` counter."""

    __slots__ = ("slots", "idx")

    def __init__(self, n: int):
        self.slots: List[Union[None, str, torch.Tensor]] = [None] * n
        self.idx = 0

    def take(self, x: torch.Tensor):
        """Next slot index and its content (a tensor is moved to ``x``'s device if the model moved)."""
        i = self.idx
        self.idx = i + 1
        prev = self.slots[i]
        if isinstance(prev, torch.Tensor) and prev.device != x.device:
            prev = prev.to(x.device)
        return i, prev

    def conv(self, conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Run a cached causal conv on ``x`` and update its slot."""
        i, prev = self.take(x)
        self.slots[i] = _cache_tail(x, prev)
        return _run_causal(conv, x, prev)


def _conv(cache: Optional[_FeatCache], conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return _run_causal(conv, x) if cache is None else cache.conv(conv, x)


class RMSNorm(nn.Module):
    """Official ``RMS_norm`` (channel-first): ``F.normalize(x, dim=1) * sqrt(C) * gamma``.

    ``gamma`` is ``[C,1,1,1]`` for video tensors (``images=False``) and ``[C,1,1]`` for images.
    """

    def __init__(self, dim: int, images: bool = True):
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones((dim, 1, 1) if images else (dim, 1, 1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gamma.to(device=x.device, dtype=x.dtype)
        if x.device.type == "cpu" and x.dtype == torch.float32:
            # same value as F.normalize (x / max(||x||, 1e-12)) to ~1e-7; CPU's vector_norm is ~7x slower
            inv = torch.rsqrt(x.square().sum(1, keepdim=True).clamp_min_(1e-24))
            return (x * inv).mul_(self.scale).mul_(g)
        return F.normalize(x, dim=1).mul_(self.scale).mul_(g)


class _NearestUp2x(nn.Module):
    """Official ``Upsample(scale_factor=(2,2), mode='nearest'|'nearest-exact')`` (identical for x2;
    nearest is a pure copy, so no float32 round trip is needed for bf16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")


class ResidualBlock(nn.Module):
    """Official ``ResidualBlock``: ``residual = [norm, SiLU, conv3, norm, SiLU, Dropout, conv3]``
    (keys ``residual.0.gamma``, ``residual.2.*``, ``residual.3.gamma``, ``residual.6.*``) plus a
    1x1x1 ``shortcut`` conv when the channel count changes. Uses 2 cache slots."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0, ops=nn):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.residual = nn.Sequential(
            RMSNorm(in_dim, images=False), nn.SiLU(),
            _causal_conv3d(ops, in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim, images=False), nn.SiLU(), nn.Dropout(dropout),
            _causal_conv3d(ops, out_dim, out_dim, 3, padding=1))
        self.shortcut = _causal_conv3d(ops, in_dim, out_dim, 1) if in_dim != out_dim else None

    def forward(self, x: torch.Tensor, cache: Optional[_FeatCache] = None) -> torch.Tensor:
        r = self.residual
        h = x if self.shortcut is None else _run_causal(self.shortcut, x)
        y = F.silu(r[0](x), inplace=True)
        y = _conv(cache, r[2], y)
        y = r[5](F.silu(r[3](y), inplace=True))
        y = _conv(cache, r[6], y)
        return y.add_(h)


class AttentionBlock(nn.Module):
    """Official ``AttentionBlock``: single-head self-attention over the ``h*w`` tokens of each frame
    (frames are independent), ``x + proj(attn(norm(x)))``. Keys ``norm.gamma [C,1,1]``,
    ``to_qkv`` (1x1 Conv2d C->3C), ``proj`` (1x1 Conv2d C->C). No cache."""

    def __init__(self, dim: int, ops=nn):
        super().__init__()
        self.dim = dim
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = ops.Conv2d(dim, dim * 3, 1)
        self.proj = ops.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = x.transpose(1, 2).reshape(b * t, c, h, w)
        y = self.to_qkv(self.norm(y))                                   # [bt, 3c, h, w]
        y = y.reshape(b * t, 1, 3 * c, h * w).transpose(2, 3)          # [bt, 1, hw, 3c]
        q, k, v = y.chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(q, k, v)                     # [bt, 1, hw, c]
        y = y.squeeze(1).transpose(1, 2).reshape(b * t, c, h, w)
        y = self.proj(y)
        return y.view(b, t, c, h, w).transpose(1, 2) + x


class Resample(nn.Module):
    """Official ``Resample``: spatial x2 up/down-sampling per frame (``resample.1`` = Conv2d), plus a
    temporal conv ``time_conv`` for the 3d modes (upsample3d: 3-tap causal conv C->2C whose two
    halves are interleaved in time, doubling T; downsample3d: 3-tap stride-2 conv on
    ``[last cached frame, x]``). The 3d modes use one cache slot."""

    def __init__(self, dim: int, mode: str, ops=nn):
        super().__init__()
        if mode not in ("upsample2d", "upsample3d", "downsample2d", "downsample3d"):
            raise ValueError(f"bad Resample mode {mode!r}")
        self.dim, self.mode = dim, mode
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(_NearestUp2x(), ops.Conv2d(dim, dim // 2, 3, padding=1))
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), ops.Conv2d(dim, dim, 3, stride=2))
        if mode == "upsample3d":
            self.time_conv = _causal_conv3d(ops, dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = _causal_conv3d(ops, dim, dim, (3, 1, 1), stride=(2, 1, 1))
        else:
            self.time_conv = None

    def _time_up(self, x: torch.Tensor, cache: _FeatCache) -> torch.Tensor:
        i, prev = cache.take(x)
        if prev is None:                     # first latent of a stream: no time doubling
            cache.slots[i] = REP
            return x
        b, c, t, h, w = x.shape
        if isinstance(prev, str):            # 'Rep': zero front padding, zeros top up the cache
            new = _cache_tail(x, None) if t >= CACHE_T else torch.cat([torch.zeros_like(x), x], 2)
            y = _run_causal(self.time_conv, x, None)
        else:
            new = _cache_tail(x, prev)
            y = _run_causal(self.time_conv, x, prev)
        cache.slots[i] = new
        # [b, (2 c), t] -> [b, c, (t 2)]: the two channel halves become consecutive frames
        return y.view(b, 2, c, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, 2 * t, h, w)

    def _time_down(self, x: torch.Tensor, cache: _FeatCache) -> torch.Tensor:
        i, prev = cache.take(x)
        if prev is None:                     # first chunk: keep it, no temporal conv
            cache.slots[i] = x if _owns_storage(x) else x.clone()
            return x
        t = x.shape[2]
        new = x[:, :, t - 1:]
        cache.slots[i] = new if _owns_storage(new) else new.clone()
        return self.time_conv(torch.cat([prev[:, :, -1:], x], dim=2))

    def forward(self, x: torch.Tensor, cache: Optional[_FeatCache] = None) -> torch.Tensor:
        if self.mode == "upsample3d" and cache is not None:
            x = self._time_up(x, cache)
        b, c, t, h, w = x.shape
        y = self.resample(x.transpose(1, 2).reshape(b * t, c, h, w))
        y = y.view(b, t, *y.shape[1:]).transpose(1, 2)
        if self.mode == "downsample3d" and cache is not None:
            y = self._time_down(y, cache)
        return y


def _count_slots(*modules: nn.Module) -> int:
    n = 0
    for mod in modules:
        for m in mod.modules():
            if isinstance(m, ResidualBlock):
                n += 2
            elif isinstance(m, Resample) and m.time_conv is not None:
                n += 1
    return n


class Encoder3d(nn.Module):
    """Official ``Encoder3d`` (``z_dim`` here = 2 x latent channels: mean and log-variance)."""

    def __init__(self, dim=96, z_dim=32, dim_mult=(1, 2, 4, 4), num_res_blocks=2, attn_scales=(),
                 temperal_downsample=(False, True, True), dropout=0.0, ops=nn):
        super().__init__()
        dims = [dim * u for u in (1, *dim_mult)]
        scale = 1.0
        self.conv1 = _causal_conv3d(ops, 3, dims[0], 3, padding=1)
        layers: List[nn.Module] = []
        out_dim = dims[0]
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(num_res_blocks):
                layers.append(ResidualBlock(in_dim, out_dim, dropout, ops))
                if scale in attn_scales:
                    layers.append(AttentionBlock(out_dim, ops))
                in_dim = out_dim
            if i != len(dim_mult) - 1:
                layers.append(Resample(out_dim, "downsample3d" if temperal_downsample[i] else "downsample2d", ops))
                scale /= 2.0
        self.downsamples = nn.Sequential(*layers)
        self.middle = nn.Sequential(ResidualBlock(out_dim, out_dim, dropout, ops), AttentionBlock(out_dim, ops),
                                    ResidualBlock(out_dim, out_dim, dropout, ops))
        self.head = nn.Sequential(RMSNorm(out_dim, images=False), nn.SiLU(),
                                  _causal_conv3d(ops, out_dim, z_dim, 3, padding=1))
        self.num_cache_slots = 2 + _count_slots(self.downsamples, self.middle)

    def forward(self, x: torch.Tensor, cache: Optional[_FeatCache] = None) -> torch.Tensor:
        x = _conv(cache, self.conv1, x)
        for layer in (*self.downsamples, *self.middle):
            x = layer(x) if isinstance(layer, AttentionBlock) else layer(x, cache)
        x = F.silu(self.head[0](x), inplace=True)
        return _conv(cache, self.head[2], x)


class Decoder3d(nn.Module):
    """Official ``Decoder3d`` / Matrix-Game-2 ``VAEDecoder3d`` (32 cache slots at the default
    config: conv1, middle res-convs, per-stage res-convs then time_conv, head conv)."""

    def __init__(self, dim=96, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=2, attn_scales=(),
                 temperal_upsample=(True, True, False), dropout=0.0, ops=nn):
        super().__init__()
        dims = [dim * u for u in (dim_mult[-1], *dim_mult[::-1])]
        scale = 1.0 / 2 ** (len(dim_mult) - 2)
        self.conv1 = _causal_conv3d(ops, z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0], dropout, ops), AttentionBlock(dims[0], ops),
                                    ResidualBlock(dims[0], dims[0], dropout, ops))
        layers: List[nn.Module] = []
        out_dim = dims[0]
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if i in (1, 2, 3):
                in_dim = in_dim // 2
            for _ in range(num_res_blocks + 1):
                layers.append(ResidualBlock(in_dim, out_dim, dropout, ops))
                if scale in attn_scales:
                    layers.append(AttentionBlock(out_dim, ops))
                in_dim = out_dim
            if i != len(dim_mult) - 1:
                layers.append(Resample(out_dim, "upsample3d" if temperal_upsample[i] else "upsample2d", ops))
                scale *= 2.0
        self.upsamples = nn.Sequential(*layers)
        self.head = nn.Sequential(RMSNorm(out_dim, images=False), nn.SiLU(),
                                  _causal_conv3d(ops, out_dim, 3, 3, padding=1))
        self.num_cache_slots = 2 + _count_slots(self.middle, self.upsamples)

    def forward(self, x: torch.Tensor, cache: _FeatCache) -> torch.Tensor:
        """One latent frame ``x [B, z_dim, 1, h, w]`` (after ``conv2``) -> 1 frame (first latent of
        the stream) or 4 frames ``[B, 3, ., 8h, 8w]``, unclamped, in the parameters' dtype."""
        cache.idx = 0
        x = cache.conv(self.conv1, x)
        for layer in (*self.middle, *self.upsamples):
            x = layer(x) if isinstance(layer, AttentionBlock) else layer(x, cache)
        x = F.silu(self.head[0](x), inplace=True)
        return cache.conv(self.head[2], x)


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
        return StreamingDecoder(self).decode_raw(z_raw)


class StreamingDecoder:
    """Matrix-Game-2 ``VAEDecoderWrapper`` with its 32-slot feature cache kept between calls.

    Only ``vae.conv2`` and ``vae.decoder`` are used. The very first latent of a stream decodes to
    1 frame, every later latent to 4 frames; decoding block by block equals decoding all at once.
    """

    def __init__(self, vae: WanVAE):
        self.vae = vae
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
        outs = [vae.decoder(x[:, :, i:i + 1], self._cache) for i in range(x.shape[2])]
        self.latents_seen += x.shape[2]
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
        return out.float().clamp_(-1.0, 1.0)

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


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------
def _is_decoder_key(k: str) -> bool:
    """Official decoder-wrapper filter (``'decoder.' in key or 'conv2' in key``)."""
    return "decoder." in k or "conv2" in k


def _read_state_dict(path: str, keep=None) -> Dict[str, torch.Tensor]:
    hint = "Expected one of: " + "; ".join(_EXPECTED_FILES) + "."
    if os.path.isdir(path):
        cands = sorted(f for f in os.listdir(path) if f.lower().endswith((".pth", ".safetensors", ".pt"))
                       and "vae" in f.lower())
        extra = f" Candidates in it: {', '.join(cands)}." if cands else ""
        raise MatrixGameError(f"VAE path {path!r} is a folder; pass the VAE file inside it.{extra} {hint}")
    if not os.path.isfile(path):
        raise MatrixGameError(f"VAE file {path!r} not found. Download it into ComfyUI/models/vae/. {hint}")
    if os.path.getsize(path) == 0:
        raise MatrixGameError(f"VAE file {path!r} is empty (interrupted download?); download it again. {hint}")
    try:
        if path.lower().endswith(".safetensors"):
            from safetensors import safe_open
            sd = {}
            with safe_open(path, framework="pt", device="cpu") as f:
                for k in f.keys():
                    if keep is None or keep(k):
                        sd[k] = f.get_tensor(k)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated / corrupt / not a checkpoint
        raise MatrixGameError(f"Cannot read VAE file {path!r} ({type(e).__name__}: {e}). The file is "
                              f"truncated or corrupt (interrupted download?) or not a PyTorch/safetensors "
                              f"checkpoint; download it again. {hint}") from e
    return sd


def _unwrap(sd) -> Dict[str, torch.Tensor]:
    if isinstance(sd, Mapping):
        for k in ("state_dict", "model", "model_state_dict"):
            if k in sd and isinstance(sd[k], Mapping) and not isinstance(sd.get(k), torch.Tensor):
                sd = sd[k]
                break
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise MatrixGameError("The VAE checkpoint is not a state dict of tensors. Expected one of: "
                              + "; ".join(_EXPECTED_FILES) + ".")
    sd = dict(sd)
    for prefix in ("first_stage_model.", "vae.", "model."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _fmt_keys(keys: Sequence[str], n: int = 5) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_wan_vae(path_or_state_dict, device="cpu", dtype: torch.dtype = torch.float32, operations=None,
                 decoder_only: bool = False) -> WanVAE:
    """Build a :class:`WanVAE` from ``Wan2.1_VAE.pth``, ``wan_2.1_vae.safetensors`` or a state dict.

    ``dim`` / ``z_dim`` are inferred from the tensors (so the tiny golden VAE with ``dim=8`` loads
    too). The key check is strict. ``decoder_only=True`` keeps only the ``decoder.*`` / ``conv2.*``
    tensors (official decoder-wrapper filter; a decoder-only state dict is accepted) and drops the
    encoder to save memory. Returns the model in ``eval()`` mode without gradients, on ``device``
    in ``dtype``.

    Raises:
        MatrixGameError: folder instead of a file, missing/empty/truncated/corrupt file, a checkpoint
        that is not the Wan 2.1 VAE, missing/unexpected keys or wrong shapes (first few listed).
    """
    hint = "Expected the Wan 2.1 VAE: " + " or ".join(_EXPECTED_FILES) + "."
    keep = _is_decoder_key if decoder_only else None
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        sd = _read_state_dict(os.fspath(path_or_state_dict), keep)
    else:
        sd = path_or_state_dict
    sd = _unwrap(sd)
    if decoder_only:
        sd = {k: v for k, v in sd.items() if _is_decoder_key(k)}

    if "decoder.upsamples.0.upsamples.0.residual.2.weight" in sd:
        raise MatrixGameError("This is the Wan 2.2 VAE (48 latent channels); Matrix-Game 2.0 needs the "
                              "Wan 2.1 VAE. " + hint)
    if "decoder.head.0.gamma" in sd:
        dim = sd["decoder.head.0.gamma"].shape[0]
    elif "encoder.conv1.weight" in sd:
        dim = sd["encoder.conv1.weight"].shape[0]
    else:
        raise MatrixGameError("This checkpoint is not a Wan video VAE (no 'decoder.head.0.gamma' / "
                              f"'encoder.conv1.weight'; first keys: {_fmt_keys(list(sd))}). {hint}")
    if "conv2.weight" in sd:
        z_dim = sd["conv2.weight"].shape[0]
    elif "decoder.conv1.weight" in sd:
        z_dim = sd["decoder.conv1.weight"].shape[1]
    else:
        z_dim = 16

    with torch.device("meta"):
        model = WanVAE(dim=dim, z_dim=z_dim, operations=operations)
    if decoder_only:
        model.encoder = None
        model.conv1 = None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        msg = []
        if missing:
            msg.append(f"{len(missing)} missing keys: {_fmt_keys(missing)}")
        if unexpected:
            msg.append(f"{len(unexpected)} unexpected keys: {_fmt_keys(unexpected)}")
        tip = ""
        if (not decoder_only and missing and not any(k.startswith("encoder.") for k in sd)
                and any(_is_decoder_key(k) for k in sd)):
            tip = (" It looks like a decoder-only checkpoint: pass decoder_only=True (no start-image "
                   "encoding) or use the full file.")
        raise MatrixGameError("VAE checkpoint does not match the Wan 2.1 VAE: " + "; ".join(msg) + "." + tip
                              + " " + hint)
    bad = [f"{k} {tuple(sd[k].shape)} (expected {s})" for k, s in expected.items() if tuple(sd[k].shape) != s]
    if bad:
        raise MatrixGameError(f"VAE checkpoint has {len(bad)} tensors of the wrong shape: "
                              f"{'; '.join(bad[:3])}. {hint}")
    sd = {k: v.to(device=device, dtype=dtype) for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval().requires_grad_(False)
