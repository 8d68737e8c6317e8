"""Wan-2.1 causal VAE building blocks: causal 3-D convs with the per-conv feature cache
(``CACHE_T = 2`` frames), RMS norm, residual / attention / resample blocks, ``Encoder3d`` and
``Decoder3d``. Re-implemented from Wan2.1 ``wan/modules/vae.py`` (vendored by Matrix-Game-2 as
``wan/vae/wanx_vae_src/vae.py``); see :mod:`.vae` for the whole picture. Layout ``[B, C, T, H, W]``.
"""
from __future__ import annotations

from typing import List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

#: Frames of context each causal conv keeps between chunks (Wan2.1 ``wan/modules/vae.py``).
CACHE_T = 2
#: Marker stored by a temporal upsampler after the first latent frame (official ``'Rep'``).
REP = "Rep"

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


def _cache_tail(x: torch.Tensor, prev, own: bool = True) -> torch.Tensor:
    """What the official code stores after a cached conv: the last ``CACHE_T`` frames of its input,
    topped up with the last cached frame when the chunk has fewer frames. ``own=False`` (inside a
    compiled graph, whose outputs are fresh buffers) skips the storage check."""
    t = x.shape[2]
    if t > CACHE_T:
        return x[:, :, t - CACHE_T:].clone()
    if t == CACHE_T or prev is None or isinstance(prev, str):
        return x if not own or _owns_storage(x) else x.clone()
    return torch.cat([prev[:, :, -1:], x], dim=2)


class _FeatCache:
    """The official ``feat_cache`` list plus the running ``feat_idx`` counter.

    ``functional=True``: the cache is used inside a compiled decoder step (:mod:`.vae_stream`);
    slots then take the new tensors without the storage-ownership check (a graph break).
    """

    def __init__(self, n: int, slots=None, functional: bool = False):
        self.slots: List[Union[None, str, torch.Tensor]] = [None] * n if slots is None else list(slots)
        self.idx = 0
        self.functional = functional

    def tail(self, x: torch.Tensor, prev) -> torch.Tensor:
        """:func:`_cache_tail` for this cache."""
        return _cache_tail(x, prev, own=not self.functional)

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
        self.slots[i] = self.tail(x, prev)
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
            new = cache.tail(x, None) if t >= CACHE_T else torch.cat([torch.zeros_like(x), x], 2)
            y = _run_causal(self.time_conv, x, None)
        else:
            new = cache.tail(x, prev)
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
