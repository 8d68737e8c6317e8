"""Loading the Wan-2.1 VAE from ``Wan2.1_VAE.pth`` / ``wan_2.1_vae.safetensors`` / a state dict."""
from __future__ import annotations

import os
from typing import Dict, Mapping, Sequence

import torch

from .errors import MatrixGameError
from .vae_model import WanVAE

#: File names users are expected to pass to :func:`load_wan_vae` (for error messages).
_EXPECTED_FILES = ("Wan2.1_VAE.pth (Skywork/Matrix-Game-2.0 or Wan-AI/Wan2.1-*)",
                   "wan_2.1_vae.safetensors (Comfy-Org/Wan_2.1_ComfyUI_repackaged)")


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
