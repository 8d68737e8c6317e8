"""Cast-on-use layers (a ComfyUI-style ``operations`` namespace) and fp8 weight storage.

The engine builds its layers from an injectable ``operations`` namespace (``torch.nn`` by
default; ComfyUI passes ``comfy.ops.*``). :data:`cast_ops` is the engine's own version of
ComfyUI's ``comfy.ops.manual_cast``: its ``Linear`` keeps the weight in whatever dtype it is
stored in and casts it to the input's dtype on every call, so weights may live in
``torch.float8_e4m3fn`` (1 byte per parameter) while activations run in bf16 (or fp32 on the CPU).

fp8 storage (:func:`quantize_linear_weights`): per-tensor scaled e4m3, ``w ~= w8 * scale`` with
``scale = amax(|w|) / 448`` (448 = the largest finite e4m3fn value), as ComfyUI's "scaled fp8"
checkpoints (``scale_weight``). Only the Linear layers of the transformer blocks are stored in fp8
(1.60 of the 1.62 B parameters of the universal DiT); embeddings, head, norms and modulations
stay in the compute dtype.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

#: Largest finite value of ``torch.float8_e4m3fn``.
E4M3_MAX = 448.0


class CastLinear(nn.Linear):
    """``nn.Linear`` that casts its weight (and bias) to the input's dtype on use.

    Attributes:
        scale_weight: None, or a float32 0-d buffer: the stored weight is ``weight * scale_weight``
            (scaled fp8).
    """

    scale_weight: Optional[torch.Tensor]

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.register_buffer("scale_weight", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype)
        if self.scale_weight is not None:
            w = w * self.scale_weight.to(x.dtype)
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, w, b)


#: The ``operations`` namespace of cast-on-use layers (pass as ``operations=`` to
#: :func:`~matrix_game_core.model.build_model`).
cast_ops = SimpleNamespace(Linear=CastLinear, Conv3d=nn.Conv3d, Conv2d=nn.Conv2d, LayerNorm=nn.LayerNorm)


@torch.no_grad()
def quantize_linear_weights(model: nn.Module, dtype: torch.dtype = torch.float8_e4m3fn,
                            under: str = "blocks.") -> int:
    """Store the weights of the :class:`CastLinear` layers under ``under`` in ``dtype`` (scaled).

    Args:
        model: built with ``operations=cast_ops``.
        dtype: ``torch.float8_e4m3fn`` (default) or ``torch.float8_e5m2``.
    Returns:
        Bytes saved (weights only).
    Raises:
        TypeError: a Linear under ``under`` is not a :class:`CastLinear` (build with ``cast_ops``).
    """
    fmax = torch.finfo(dtype).max
    saved = 0
    for name, mod in model.named_modules():
        if not name.startswith(under) or not isinstance(mod, nn.Linear):
            continue
        if not isinstance(mod, CastLinear):
            raise TypeError(f"{name} is a {type(mod).__name__}; build the model with operations=cast_ops "
                            f"to store its weights in {dtype}.")
        w = mod.weight.float()
        scale = (w.abs().amax() / fmax).clamp_min(1e-12)
        saved += mod.weight.numel() * (mod.weight.element_size() - torch.empty(0, dtype=dtype).element_size())
        mod.weight = nn.Parameter((w / scale).to(dtype), requires_grad=False)
        mod.scale_weight = scale.to(device=w.device)
    return saved
