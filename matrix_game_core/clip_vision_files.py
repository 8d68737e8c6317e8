"""Checkpoint formats of the CLIP ViT-H/14 visual tower, and its loader.

State-dict keys of :class:`CLIPVisionTower` are the official ``visual.*`` keys of
``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth`` **without** the ``visual.`` prefix
(392 tensors, 632,076,800 parameters at full size; see the golden manifest
``manifests/clip_xlmr_vit_h14.json``)::

    patch_embedding.weight [1280,3,14,14]   cls_embedding [1,1,1280]   pos_embedding [1,257,1280]
    pre_norm.{weight,bias}                  post_norm.{weight,bias}    head [1280,1024]
    transformer.{0..31}.{norm1,norm2}.{weight,bias}
    transformer.{0..31}.attn.to_qkv.{weight [3840,1280], bias}   (rows: q | k | v, each heads x 80)
    transformer.{0..31}.attn.proj.{weight,bias}
    transformer.{0..31}.mlp.0.{weight [5120,1280], bias}   transformer.{0..31}.mlp.2.{weight,bias}


Checkpoint formats accepted by :func:`load_image_encoder` (detected from the key names):

* **official** ``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth`` (``visual.*``,
  ``textual.*``, ``log_scale``): :func:`convert_official_clip`.
* **ComfyUI** ``clip_vision_h.safetensors`` (models/clip_vision), which uses the HF-transformers
  ``CLIPVisionModelWithProjection`` names (the layout ComfyUI's ``comfy/clip_model.py``
  ``CLIPVisionModelProjection`` loads; ComfyUI detects ViT-H by
  ``vision_model.encoder.layers.30.layer_norm1.weight``): :func:`convert_comfy_clip_vision`.
  Mapping (N = block index; ``D`` = 1280, ``P`` = 1024)::

    ComfyUI / HF key                                        ours                        transform
    ------------------------------------------------------  --------------------------  ----------------------
    vision_model.embeddings.patch_embedding.weight          patch_embedding.weight      -
    vision_model.embeddings.class_embedding [D]             cls_embedding [1,1,D]       reshape
    vision_model.embeddings.position_embedding.weight       pos_embedding [1,257,D]     unsqueeze(0)
      [257,D]
    vision_model.pre_layrnorm.{weight,bias}                 pre_norm.*                  - (HF spells "layrnorm")
    vision_model.encoder.layers.N.layer_norm1.*             transformer.N.norm1.*       -
    vision_model.encoder.layers.N.self_attn.q_proj.*  \\
    vision_model.encoder.layers.N.self_attn.k_proj.*   >    transformer.N.attn.to_qkv.* cat([q, k, v], dim 0)
    vision_model.encoder.layers.N.self_attn.v_proj.*  /
    vision_model.encoder.layers.N.self_attn.out_proj.*      transformer.N.attn.proj.*   -
    vision_model.encoder.layers.N.layer_norm2.*             transformer.N.norm2.*       -
    vision_model.encoder.layers.N.mlp.fc1.*                 transformer.N.mlp.0.*       -
    vision_model.encoder.layers.N.mlp.fc2.*                 transformer.N.mlp.2.*       -
    vision_model.post_layernorm.{weight,bias}               post_norm.*                 -
    visual_projection.weight [P,D] (Linear, no bias)        head [D,P]                  transpose
    vision_model.embeddings.position_ids, text_model.*,     (dropped)
      text_projection.*, logit_scale

  The fusion order q|k|v matches the official ``to_qkv(x).view(b, s, 3, heads, 80)``; HF's
  ``hidden_states[-2]`` (ComfyUI's ``penultimate_hidden_states``, which ComfyUI's Wan passes as
  ``clip_fea``) is the same quantity as the official ``use_31_block=True`` output.
* **native**: our own ``state_dict()`` (no prefix).

"""
from __future__ import annotations

import math
import os
import re
import struct
from typing import Dict, Mapping, Optional, Union

import torch

from .clip_vision import CLIPVisionTower, VisionConfig
from .errors import MatrixGameError

#: Channels per attention head of ViT-H/14 (1280 / 16); used to infer the head count from weights.
_VIT_H_HEAD_DIM = 80

#: Sizes of the known files, for error messages.
_FILE_HINT = ("ComfyUI's clip_vision_h.safetensors (models/clip_vision, ~1.26 GB fp16) or the official "
              "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth (~4.77 GB)")


# ----------------------------------------------------------------------------------------------
# checkpoint conversion
# ----------------------------------------------------------------------------------------------

_DROP_PREFIXES = ("textual.", "text_model.", "text_projection.", "log_scale", "logit_scale")


def convert_official_clip(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official Wan-2.1 CLIP checkpoint (``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth``)
    -> :class:`CLIPVisionTower` keys: keep ``visual.*`` with the prefix stripped; ``textual.*``,
    ``log_scale`` (and anything else outside ``visual.``) are dropped. Tensors are not copied.

    Raises:
        MatrixGameError: no ``visual.*`` key (e.g. a text-only file).
    """
    out = {k[len("visual."):]: v for k, v in state_dict.items() if k.startswith("visual.")}
    if not out:
        raise MatrixGameError(
            "This CLIP checkpoint has no 'visual.*' tensors (only the text tower?), so it cannot be "
            f"used as the image encoder. Use {_FILE_HINT}.")
    return out


_HF_LAYER = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.(.+)$")
_HF_LAYER_MAP = {
    "layer_norm1.": "norm1.", "layer_norm2.": "norm2.", "self_attn.out_proj.": "attn.proj.",
    "mlp.fc1.": "mlp.0.", "mlp.fc2.": "mlp.2.",
}
_HF_TOP_MAP = {
    "vision_model.embeddings.patch_embedding.weight": "patch_embedding.weight",
    "vision_model.embeddings.patch_embedding.bias": "patch_embedding.bias",
    "vision_model.pre_layrnorm.weight": "pre_norm.weight",
    "vision_model.pre_layrnorm.bias": "pre_norm.bias",
    "vision_model.post_layernorm.weight": "post_norm.weight",
    "vision_model.post_layernorm.bias": "post_norm.bias",
}


def convert_comfy_clip_vision(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """ComfyUI ``clip_vision_h.safetensors`` (HF ``CLIPVisionModelWithProjection`` names) ->
    :class:`CLIPVisionTower` keys, per the table in the module docstring (q/k/v fused into
    ``to_qkv``, class/position embeddings reshaped, ``visual_projection`` transposed into ``head``).
    Text-tower keys, ``logit_scale`` and the ``position_ids`` buffer are dropped; any other key is
    passed through unchanged so that the strict load reports it.

    Raises:
        MatrixGameError: a block lacks one of q/k/v, or there is no ``vision_model.*`` key.
    """
    if not any(k.startswith("vision_model.") for k in state_dict):
        raise MatrixGameError("Not a ComfyUI/HF CLIP vision checkpoint (no 'vision_model.*' keys). "
                              f"Use {_FILE_HINT}.")
    out: Dict[str, torch.Tensor] = {}
    qkv: Dict[int, Dict[str, torch.Tensor]] = {}
    for key, t in state_dict.items():
        if key.startswith(_DROP_PREFIXES) or key == "vision_model.embeddings.position_ids":
            continue
        if key in _HF_TOP_MAP:
            out[_HF_TOP_MAP[key]] = t
        elif key == "vision_model.embeddings.class_embedding":
            out["cls_embedding"] = t.reshape(1, 1, -1)
        elif key == "vision_model.embeddings.position_embedding.weight":
            out["pos_embedding"] = t.unsqueeze(0)
        elif key == "visual_projection.weight":
            out["head"] = t.t().contiguous()
        elif (m := _HF_LAYER.match(key)) is not None:
            n, rest = int(m.group(1)), m.group(2)
            qm = re.match(r"^self_attn\.([qkv])_proj\.(weight|bias)$", rest)
            if qm is not None:
                qkv.setdefault(n, {})[qm.group(1) + "." + qm.group(2)] = t
                continue
            for src, dst in _HF_LAYER_MAP.items():
                if rest.startswith(src):
                    out[f"transformer.{n}.{dst}{rest[len(src):]}"] = t
                    break
            else:
                out[key] = t          # unknown: surfaces as "unexpected" in the strict load
        else:
            out[key] = t
    for n, parts in qkv.items():
        for kind in ("weight", "bias"):
            got = [parts.get(f"{p}.{kind}") for p in "qkv"]
            if all(g is None for g in got):
                continue
            if any(g is None for g in got):
                missing = [f"self_attn.{p}_proj.{kind}" for p, g in zip("qkv", got) if g is None]
                raise MatrixGameError(
                    f"CLIP vision checkpoint is incomplete: block {n} lacks {', '.join(missing)}. "
                    f"The file is damaged or not a CLIP vision model; re-download {_FILE_HINT}.")
            out[f"transformer.{n}.attn.to_qkv.{kind}"] = torch.cat(got, dim=0)
    return out


def convert_to_comfy_clip_vision(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Engine/official (``visual.`` stripped) CLIP keys -> the HF ``CLIPVisionModelWithProjection``
    layout of ComfyUI's ``clip_vision_h.safetensors``: the exact inverse of
    ``image_encoder.convert_comfy_clip_vision`` (q|k|v split from ``to_qkv``, embeddings reshaped,
    ``head`` transposed into ``visual_projection``). Pure renaming and reshaping."""
    top = {"patch_embedding.weight": "vision_model.embeddings.patch_embedding.weight",
           "patch_embedding.bias": "vision_model.embeddings.patch_embedding.bias",
           "pre_norm.weight": "vision_model.pre_layrnorm.weight", "pre_norm.bias": "vision_model.pre_layrnorm.bias",
           "post_norm.weight": "vision_model.post_layernorm.weight",
           "post_norm.bias": "vision_model.post_layernorm.bias"}
    layer = {"norm1.": "layer_norm1.", "norm2.": "layer_norm2.", "attn.proj.": "self_attn.out_proj.",
             "mlp.0.": "mlp.fc1.", "mlp.2.": "mlp.fc2."}
    out: Dict[str, torch.Tensor] = {}
    for k, t in sd.items():
        if k in top:
            out[top[k]] = t
        elif k == "cls_embedding":
            out["vision_model.embeddings.class_embedding"] = t.reshape(-1)
        elif k == "pos_embedding":
            out["vision_model.embeddings.position_embedding.weight"] = t.reshape(t.shape[-2], t.shape[-1])
        elif k == "head":
            out["visual_projection.weight"] = t.t().contiguous()
        elif k.startswith("transformer."):
            _, n, rest = k.split(".", 2)
            base = f"vision_model.encoder.layers.{n}."
            if rest.startswith("attn.to_qkv."):
                kind = rest.rsplit(".", 1)[1]
                for p, part in zip("qkv", t.chunk(3, dim=0)):
                    out[f"{base}self_attn.{p}_proj.{kind}"] = part.contiguous()
                continue
            for src, dst in layer.items():
                if rest.startswith(src):
                    out[base + dst + rest[len(src):]] = t
                    break
            else:
                raise MatrixGameError(f"unexpected CLIP tensor {k!r}; use the official CLIP file, unmodified.")
        else:
            raise MatrixGameError(f"unexpected CLIP tensor {k!r}; use the official CLIP file, unmodified.")
    return out


def _detect_format(keys) -> str:
    keys = set(keys)
    if any(k.startswith("visual.transformer.resblocks.") for k in keys) or "visual.conv1.weight" in keys:
        return "open_clip"
    if "visual.patch_embedding.weight" in keys or any(k.startswith("visual.transformer.") for k in keys):
        return "official"
    if any(k.startswith("vision_model.") for k in keys):
        return "comfy"
    if "patch_embedding.weight" in keys and any(k.startswith("transformer.") for k in keys):
        return "native"
    if any(k.startswith("textual.") for k in keys):
        return "text_only"
    return "unknown"


def _unknown_format_error(keys, what: str) -> MatrixGameError:
    sample = sorted(keys)[:5]
    hint = ""
    joined = " ".join(sample)
    if any(s in joined for s in ("decoder.", "encoder.conv1", "encoder.downsamples")):
        hint = " It looks like a VAE checkpoint."
    elif any(s in joined for s in ("blocks.", "patch_embedding.weight", "text_embedding", "time_embedding")):
        hint = " It looks like a diffusion-model (DiT) checkpoint."
    return MatrixGameError(
        f"{what} is not a CLIP vision (image encoder) checkpoint: unrecognised key layout "
        f"(first keys: {sample}).{hint} Select {_FILE_HINT}.")


def infer_vision_config(state_dict: Mapping[str, torch.Tensor], config: Union[VisionConfig, Mapping, None] = None,
                        num_heads: Optional[int] = None) -> VisionConfig:
    """The :class:`VisionConfig` of a native (converted) state dict, from the tensor shapes.

    ``dim``, ``patch_size``, ``image_size``, ``num_layers``, ``mlp_ratio``, ``out_dim`` and
    ``pre_norm`` come from the shapes. The head count is not in the shapes: ``num_heads`` if given,
    else ``config.num_heads`` if a config is given, else ``dim // 80`` (ViT-H/14's 80-channel
    heads). The non-shape fields (activation, norm_eps, post_norm) come from ``config`` or the
    ViT-H defaults.

    Raises:
        MatrixGameError: a needed tensor is missing, the head count cannot be inferred, or
            ``config`` disagrees with the shapes.
    """
    need = ("patch_embedding.weight", "pos_embedding", "transformer.0.mlp.0.weight", "head")
    missing = [k for k in need if k not in state_dict]
    if missing:
        raise MatrixGameError(f"CLIP vision checkpoint is incomplete: missing {missing}. "
                              f"Re-download {_FILE_HINT}.")
    pe = state_dict["patch_embedding.weight"]
    dim, patch = int(pe.shape[0]), int(pe.shape[-1])
    n_pos = int(state_dict["pos_embedding"].shape[-2]) - 1
    grid = math.isqrt(max(n_pos, 0))
    if grid * grid != n_pos:
        raise MatrixGameError(f"CLIP vision checkpoint: pos_embedding has {n_pos + 1} positions, not "
                              "1 + a square number; not a supported ViT.")
    layers = 1 + max(int(k.split(".")[1]) for k in state_dict if re.match(r"^transformer\.\d+\.", k))
    mlp_ratio: float = int(state_dict["transformer.0.mlp.0.weight"].shape[0]) / dim
    if mlp_ratio.is_integer():
        mlp_ratio = int(mlp_ratio)
    shape_fields = dict(dim=dim, patch_size=patch, image_size=grid * patch, num_layers=layers,
                        mlp_ratio=mlp_ratio, out_dim=int(state_dict["head"].shape[-1]),
                        pre_norm="pre_norm.weight" in state_dict)
    base = None
    if config is not None:
        base = config if isinstance(config, VisionConfig) else VisionConfig.from_dict(config)
        bad = {k: (getattr(base, k), v) for k, v in shape_fields.items() if getattr(base, k) != v}
        if bad:
            desc = ", ".join(f"{k}: config {c!r} vs weights {w!r}" for k, (c, w) in bad.items())
            raise MatrixGameError(f"The CLIP vision config does not match the checkpoint ({desc}). "
                                  "Pass the config that belongs to these weights, or none to infer it.")
    if num_heads is None:
        if base is not None:
            num_heads = base.num_heads
        elif dim % _VIT_H_HEAD_DIM == 0:
            num_heads = dim // _VIT_H_HEAD_DIM
        else:
            raise MatrixGameError(
                f"Cannot infer the attention head count of a CLIP vision tower with dim {dim} "
                f"(ViT-H/14 uses {_VIT_H_HEAD_DIM}-channel heads); pass num_heads= or config=.")
    rest = {} if base is None else {k: getattr(base, k) for k in ("activation", "norm_eps", "post_norm", "pool_type")}
    try:
        return VisionConfig(**shape_fields, num_heads=int(num_heads), **rest)
    except MatrixGameError as e:
        raise MatrixGameError(f"{e} (num_heads={num_heads} given or inferred for dim {dim}; "
                              "pass the right num_heads=)") from None


# ----------------------------------------------------------------------------------------------
# file reading
# ----------------------------------------------------------------------------------------------

def _keep_key(key: str) -> bool:
    return not key.startswith(_DROP_PREFIXES)


def _is_safetensors(path: str) -> bool:
    if path.lower().endswith((".safetensors", ".sft")):
        return True
    if path.lower().endswith((".pth", ".pt", ".bin", ".ckpt")):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < (1 << 32)


def _read_state_dict(path: str, dtype: Optional[torch.dtype]) -> Dict[str, torch.Tensor]:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MatrixGameError(f"Image encoder file not found: {path!r}. Download {_FILE_HINT} and "
                              "select it (or fix the path).")
    if os.path.isdir(path):
        raise MatrixGameError(f"Image encoder path {path!r} is a folder; select the weights file "
                              f"itself ({_FILE_HINT}).")
    size = os.path.getsize(path)
    if size == 0:
        raise MatrixGameError(f"Image encoder file {path!r} is empty (0 bytes): an interrupted "
                              f"download? Download it again ({_FILE_HINT}).")

    def conv(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype) if (dtype is not None and t.is_floating_point()) else t

    try:
        if _is_safetensors(path):
            from safetensors import safe_open
            out = {}
            with safe_open(path, framework="pt", device="cpu") as f:
                for k in f.keys():
                    if _keep_key(k):
                        out[k] = conv(f.get_tensor(k))
            return out
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e).lower():       # legacy (non-zip) .pth cannot be mmapped
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except MatrixGameError:
        raise
    except Exception as e:  # SafetensorError, UnpicklingError, EOFError, RuntimeError (zip), OSError
        raise MatrixGameError(
            f"Could not read the image encoder file {path!r} ({size:,} bytes): "
            f"{type(e).__name__}: {e}. The file is probably truncated or corrupt (an interrupted "
            f"download) or not a weights file; download it again ({_FILE_HINT}).") from e
    if isinstance(obj, Mapping) and len(obj) == 1:
        (only,) = obj.values()
        if isinstance(only, Mapping):       # {"state_dict": {...}} / {"model": {...}}
            obj = only
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise MatrixGameError(f"Image encoder file {path!r} does not hold a plain state dict of "
                              f"tensors; select {_FILE_HINT}.")
    return {k: conv(v) for k, v in obj.items() if _keep_key(k)}


def load_image_encoder(path_or_state_dict: Union[str, os.PathLike, Mapping[str, torch.Tensor]],
                       device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32,
                       operations=None, config: Union[VisionConfig, Mapping, None] = None,
                       num_heads: Optional[int] = None) -> CLIPVisionTower:
    """Load the CLIP vision tower from a file or a state dict.

    Args:
        path_or_state_dict: a ``.safetensors`` file (read with safetensors) or ``.pth``/``.pt``/
            ``.bin`` (``torch.load(weights_only=True)``), or a state dict. The layout is detected
            from the keys: official (``visual.*``), ComfyUI/HF (``vision_model.*``) or native.
            Text-tower tensors are skipped while reading.
        device, dtype: where the weights end up (floating tensors are cast to ``dtype``).
        operations: layer namespace for :class:`CLIPVisionTower` (default ``torch.nn``).
        config: optional :class:`VisionConfig` or dict (e.g. the golden ``config.json``); must
            agree with the shapes; supplies the head count and activation for non-ViT-H sizes.
        num_heads: explicit head-count override (default: from ``config``, else ``dim // 80``).

    Returns:
        the tower in eval mode with ``requires_grad=False``.

    Raises:
        MatrixGameError: missing path, folder, truncated/corrupt file, unknown layout, missing or
            unexpected tensors, shape mismatch (each message says how to fix it).
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        what = repr(os.fspath(path_or_state_dict))
        sd = _read_state_dict(path_or_state_dict, dtype)
    elif isinstance(path_or_state_dict, Mapping):
        what = "The given state dict"
        sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in path_or_state_dict.items()}
    else:
        raise MatrixGameError(f"load_image_encoder expects a file path or a state dict, got "
                              f"{type(path_or_state_dict).__name__}.")
    if not sd:
        raise MatrixGameError(f"{what} holds no image-encoder tensors. Select {_FILE_HINT}.")

    fmt = _detect_format(sd.keys())
    if fmt == "official":
        sd = convert_official_clip(sd)
    elif fmt == "comfy":
        sd = convert_comfy_clip_vision(sd)
    elif fmt == "open_clip":
        raise MatrixGameError(
            f"{what} uses the OpenCLIP key layout (visual.transformer.resblocks.*), which is not "
            f"supported here. Use {_FILE_HINT}.")
    elif fmt == "text_only":
        raise MatrixGameError(f"{what} holds only the CLIP text tower (textual.*), not the image "
                              f"encoder. Use {_FILE_HINT}.")
    elif fmt == "unknown":
        raise _unknown_format_error(sd.keys(), what)

    cfg = infer_vision_config(sd, config=config, num_heads=num_heads)
    with torch.device("meta"):
        tower = CLIPVisionTower(cfg, operations=operations)
    expected = {k: tuple(v.shape) for k, v in tower.state_dict().items()}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:4]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:4]})")
        raise MatrixGameError(
            f"{what} does not match the CLIP vision tower ({fmt} layout): {'; '.join(parts)} tensors. "
            f"The file is incomplete or a different model; use {_FILE_HINT}.")
    wrong = [(k, tuple(sd[k].shape), s) for k, s in expected.items() if tuple(sd[k].shape) != s]
    if wrong:
        k, got, want = wrong[0]
        raise MatrixGameError(f"{what}: {len(wrong)} tensor(s) have the wrong shape (e.g. {k}: file "
                              f"{got}, model {want}). Pass the matching config/num_heads or use {_FILE_HINT}.")
    tower.load_state_dict(sd, strict=True, assign=True)
    tower = tower.to(device=device, dtype=dtype)
    return tower.eval().requires_grad_(False)
