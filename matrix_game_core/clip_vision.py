"""CLIP ViT-H/14 visual tower (model, preprocessing, encoding) of Wan-2.1's XLM-RoBERTa CLIP.

Matrix-Game 2.0 conditions its DiT on the start frame through ``visual_context`` (reference §4.3
item 4): the official ``CLIPModel.encode_video`` (``Matrix-Game-2/wan/vae/wanx_vae_src/clip.py``,
the Wan-2.1 ``XLMRobertaCLIP`` file) resizes the whole frame to 224x224 (bicubic, no crop, aspect
squashed), maps [-1, 1] to [0, 1], applies the CLIP mean/std and runs ``visual(x, use_31_block=True)``:
the output after all but the last of the 32 transformer blocks, with **no** post-norm and no head
-> ``[B, 257, 1280]`` (1 class token + 16x16 patches). Only the visual tower is ever used; the text
tower (``textual.*``) and ``log_scale`` of the official checkpoint are dropped.

Architecture (official ``VisionTransformer``, ViT-H/14 config ``clip_xlm_roberta_vit_h_14``):
patch conv 14x14 stride 14 without bias (``bias = not pre_norm``) -> prepend the class token -> add
the position embedding -> ``pre_norm`` LayerNorm -> 32 pre-norm residual blocks
``x += attn(norm1(x)); x += mlp(norm2(x))`` with 16 heads of 80 channels, exact softmax attention
(scale 1/sqrt(80)), MLP ``Linear(1280, 5120) -> GELU (exact erf, torch.nn.GELU() default; the
ViT-H config sets activation='gelu', not quick_gelu) -> Linear(5120, 1280)``, LayerNorm eps 1e-5
computed in float32 and cast back (official ``LayerNorm`` subclass). The official ``post_norm``
LayerNorm and ``head`` [1280, 1024] exist in the checkpoint but are not applied by ``forward``
(officially neither is: ``VisionTransformer.forward`` returns the block output). The config flag
``post_norm`` only selects the residual-norm placement inside the blocks (False for ViT-H).

Precision: the official code runs this tower under bf16 autocast with bf16 flash-attention on GPU;
here the dtype is the caller's choice (float32 reproduces the golden data to ~1e-6).

The checkpoint formats and the loader are :mod:`matrix_game_core.clip_vision_files`;
:mod:`matrix_game_core.image_encoder` re-exports both.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import MatrixGameError

#: the OpenAI CLIP constants).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
#: CLIP RGB std for [0, 1] pixels (same source).
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class VisionConfig:
    """Constructor arguments of the official ``VisionTransformer`` (defaults: Wan-2.1 ViT-H/14,
    ``clip_xlm_roberta_vit_h_14``: ``vision_dim=1280, vision_heads=16, vision_layers=32,
    patch_size=14, image_size=224, activation='gelu', embed_dim=1024``).

    ``post_norm`` is the block-internal norm placement flag (False = pre-norm blocks); the
    ``post_norm`` LayerNorm module itself always exists. ``out_dim`` is the width of ``head``
    (unused by :meth:`CLIPVisionTower.forward`). Only ``pool_type='token'`` is supported.
    """

    image_size: int = 224
    patch_size: int = 14
    dim: int = 1280
    mlp_ratio: float = 4
    num_heads: int = 16
    num_layers: int = 32
    pre_norm: bool = True
    post_norm: bool = False
    activation: str = "gelu"
    norm_eps: float = 1e-5
    out_dim: int = 1024
    pool_type: str = "token"

    #: Official ``XLMRobertaCLIP`` and HF ``CLIPVisionConfig`` spellings accepted by :meth:`from_dict`.
    _ALIASES = {
        "vision_dim": "dim", "vision_heads": "num_heads", "vision_layers": "num_layers",
        "vision_mlp_ratio": "mlp_ratio", "vision_pool": "pool_type", "vision_pre_norm": "pre_norm",
        "vision_post_norm": "post_norm", "embed_dim": "out_dim",
        "hidden_size": "dim", "num_attention_heads": "num_heads", "num_hidden_layers": "num_layers",
        "hidden_act": "activation", "layer_norm_eps": "norm_eps", "projection_dim": "out_dim",
    }

    def __post_init__(self):
        if self.pool_type != "token":
            raise MatrixGameError(f"VisionConfig.pool_type {self.pool_type!r} is not supported; the "
                                  "Wan-2.1 CLIP uses 'token'.")
        if self.activation not in ("gelu", "quick_gelu"):
            raise MatrixGameError(f"VisionConfig.activation {self.activation!r} is not supported; "
                                  "use 'gelu' (ViT-H/14) or 'quick_gelu'.")
        if self.num_heads <= 0 or self.dim % self.num_heads:
            raise MatrixGameError(f"VisionConfig: dim {self.dim} is not divisible by num_heads "
                                  f"{self.num_heads}.")
        if self.image_size % self.patch_size:
            raise MatrixGameError(f"VisionConfig: image_size {self.image_size} is not a multiple of "
                                  f"patch_size {self.patch_size}.")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def mlp_dim(self) -> int:
        return int(self.dim * self.mlp_ratio)

    @property
    def num_tokens(self) -> int:
        """Sequence length of the output: class token + (image_size / patch_size)^2 (257 for ViT-H)."""
        return 1 + (self.image_size // self.patch_size) ** 2

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VisionConfig":
        """Parse the golden ``config.json`` (whole, or its ``"vision_transformer"`` part), official
        ``XLMRobertaCLIP`` kwargs (``vision_dim`` ...) or an HF/ComfyUI ``clip_vision_config_*.json``
        (``hidden_size`` ...). Unknown keys are ignored."""
        if "vision_transformer" in d and isinstance(d["vision_transformer"], Mapping):
            d = d["vision_transformer"]
        names = {f.name for f in dataclasses.fields(cls)}
        kw: Dict[str, Any] = {}
        for k, v in d.items():
            k = cls._ALIASES.get(k, k)
            if k in names:
                kw[k] = v
        if "intermediate_size" in d and "dim" in kw:
            kw["mlp_ratio"] = d["intermediate_size"] / kw["dim"]
        if "mlp_ratio" in kw and float(kw["mlp_ratio"]).is_integer():
            kw["mlp_ratio"] = int(kw["mlp_ratio"])
        return cls(**kw)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _layer_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The official ``LayerNorm``: computed in float32 (weights too), result cast back to ``x.dtype``.

    Uses the module's parameters directly so that any ``operations.LayerNorm`` class works and the
    weights may live on another device / dtype than ``x``.
    """
    w = norm.weight.to(device=x.device, dtype=torch.float32) if norm.weight is not None else None
    b = norm.bias.to(device=x.device, dtype=torch.float32) if norm.bias is not None else None
    return F.layer_norm(x.float(), norm.normalized_shape, w, b, norm.eps).to(x.dtype)


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _SelfAttention(nn.Module):
    """Fused-qkv multi-head self-attention (official ``SelfAttention``, non-causal)."""

    def __init__(self, dim: int, num_heads: int, ops, **factory):
        super().__init__()
        self.num_heads = num_heads
        self.to_qkv = ops.Linear(dim, dim * 3, bias=True, **factory)
        self.proj = ops.Linear(dim, dim, bias=True, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, c = x.shape
        # rows of to_qkv: [q | k | v], each [heads, head_dim] (official .view(b, s, 3, n, d))
        q, k, v = self.to_qkv(x).view(b, s, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)          # [b, heads, s, head_dim]
        return self.proj(out.transpose(1, 2).reshape(b, s, c))


class _Block(nn.Module):
    """Official ``AttentionBlock``: keys ``norm1, attn.{to_qkv,proj}, norm2, mlp.{0,2}``."""

    def __init__(self, cfg: VisionConfig, ops, **factory):
        super().__init__()
        self.post_norm = cfg.post_norm
        self.norm1 = ops.LayerNorm(cfg.dim, eps=cfg.norm_eps, **factory)
        self.attn = _SelfAttention(cfg.dim, cfg.num_heads, ops, **factory)
        self.norm2 = ops.LayerNorm(cfg.dim, eps=cfg.norm_eps, **factory)
        act = nn.GELU() if cfg.activation == "gelu" else _QuickGELU()   # nn.GELU(): exact erf form
        self.mlp = nn.Sequential(ops.Linear(cfg.dim, cfg.mlp_dim, bias=True, **factory), act,
                                 ops.Linear(cfg.mlp_dim, cfg.dim, bias=True, **factory))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.post_norm:
            x = x + _layer_norm(self.norm1, self.attn(x))
            x = x + _layer_norm(self.norm2, self.mlp(x))
        else:
            x = x + self.attn(_layer_norm(self.norm1, x))
            x = x + self.mlp(_layer_norm(self.norm2, x))
        return x


class CLIPVisionTower(nn.Module):
    """The official ``VisionTransformer`` (``visual`` of Wan-2.1's ``XLMRobertaCLIP``).

    State-dict keys = the official ``visual.*`` keys without the ``visual.`` prefix (see the module
    docstring). ``operations`` is a namespace with ``Linear``, ``LayerNorm`` and ``Conv2d`` classes
    (default ``torch.nn``; ComfyUI passes ``comfy.ops.disable_weight_init`` or ``manual_cast``);
    ``device``/``dtype`` are forwarded to those layers (use ``device="meta"`` for a weightless
    skeleton).
    """

    def __init__(self, cfg: VisionConfig = None, operations=None, device=None, dtype=None):
        super().__init__()
        cfg = VisionConfig() if cfg is None else cfg
        ops = nn if operations is None else operations
        factory = {"device": device, "dtype": dtype}
        self.cfg = cfg
        grid = cfg.image_size // cfg.patch_size
        self.patch_embedding = ops.Conv2d(3, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size,
                                          bias=not cfg.pre_norm, **factory)
        gain = 1.0 / math.sqrt(cfg.dim)        # official init scale (weights are always loaded)
        self.cls_embedding = nn.Parameter(gain * torch.randn(1, 1, cfg.dim, **factory))
        self.pos_embedding = nn.Parameter(gain * torch.randn(1, grid * grid + 1, cfg.dim, **factory))
        self.pre_norm = ops.LayerNorm(cfg.dim, eps=cfg.norm_eps, **factory) if cfg.pre_norm else None
        self.transformer = nn.ModuleList(_Block(cfg, ops, **factory) for _ in range(cfg.num_layers))
        self.post_norm = ops.LayerNorm(cfg.dim, eps=cfg.norm_eps, **factory)   # in the file, unused
        self.head = nn.Parameter(gain * torch.randn(cfg.dim, cfg.out_dim, **factory))   # unused

    def forward(self, pixel_values: torch.Tensor, use_31_block: bool = True) -> torch.Tensor:
        """Encode CLIP-normalised pixels.

        Args:
            pixel_values: ``[B, 3, image_size, image_size]`` (224 for ViT-H), the output of
                :func:`preprocess`; cast to the dtype of the embeddings.
            use_31_block: True (the official ``encode_video`` setting) stops after all but the
                last block (31 of 32); False runs every block. Neither applies ``post_norm``/``head``.

        Returns:
            ``[B, num_tokens, dim]`` (``[B, 257, 1280]`` for ViT-H) in the parameters' dtype;
            token 0 is the class token, then the patches in row-major order.
        """
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise MatrixGameError(f"CLIP vision tower expects pixels [B, 3, H, W], got "
                                  f"{tuple(pixel_values.shape)}; use preprocess() first.")
        size = self.cfg.image_size
        if tuple(pixel_values.shape[-2:]) != (size, size):
            raise MatrixGameError(f"CLIP vision tower expects {size}x{size} pixels, got "
                                  f"{tuple(pixel_values.shape[-2:])}; use preprocess() first.")
        dtype = self.pos_embedding.dtype
        x = self.patch_embedding(pixel_values.to(dtype))
        x = x.flatten(2).transpose(1, 2)                               # [B, grid*grid, dim]
        cls = self.cls_embedding.to(x.dtype).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embedding.to(x.dtype)
        if self.pre_norm is not None:
            x = _layer_norm(self.pre_norm, x)
        blocks = self.transformer[:-1] if use_31_block else self.transformer
        for block in blocks:
            x = block(x)
        return x


def preprocess(image: torch.Tensor, size: int = 224) -> torch.Tensor:
    """The official ``CLIPModel.encode_video`` preprocessing.

    Args:
        image: ``[B, 3, H, W]`` RGB in [-1, 1] (any float dtype/device); a video ``[B, 3, T, H, W]``
            is flattened to ``[B*T, 3, H, W]`` frame by frame as ``encode_video`` does.
        size: output side (``image_size`` of the tower, 224).

    Returns:
        ``[B, 3, size, size]`` float32 on the input's device: bicubic resize of the **whole** frame
        (``align_corners=False``, no antialias, no crop, aspect squashed: 352x640 -> 224x224), then
        ``x*0.5 + 0.5`` (no clamp, bicubic overshoot is kept as officially), then
        ``(x - CLIP_MEAN) / CLIP_STD``. Computed in float32 (officially bf16 on GPU).
    """
    if not isinstance(image, torch.Tensor):
        raise MatrixGameError(f"CLIP preprocess expects a torch.Tensor, got {type(image).__name__}.")
    if image.ndim == 5:
        b, c, t, h, w = image.shape
        image = image.transpose(1, 2).reshape(b * t, c, h, w)
    if image.ndim != 4 or image.shape[1] != 3:
        raise MatrixGameError(f"CLIP preprocess expects an RGB image [B, 3, H, W] (or video "
                              f"[B, 3, T, H, W]) in [-1, 1], got shape {tuple(image.shape)}.")
    x = F.interpolate(image.float(), size=(size, size), mode="bicubic", align_corners=False)
    x = x * 0.5 + 0.5
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def encode_image(tower: CLIPVisionTower, image: torch.Tensor) -> torch.Tensor:
    """``visual_context`` of the official pipeline: :func:`preprocess` + ``tower(x, use_31_block=True)``.

    Args:
        tower: a loaded :class:`CLIPVisionTower` (any device/dtype).
        image: ``[B, 3, H, W]`` (or ``[B, 3, T, H, W]``) RGB in [-1, 1]; the official start frame
            is 352x640.

    Returns:
        ``[B, 257, dim]`` float32 (``[B, 257, 1280]`` for ViT-H) on the tower's device.
    """
    pixels = preprocess(image, tower.cfg.image_size)
    ref = tower.pos_embedding
    with torch.no_grad():
        out = tower(pixels.to(device=ref.device, dtype=ref.dtype), use_31_block=True)
    return out.float()
