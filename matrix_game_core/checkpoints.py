"""Find, download, validate and load the official Matrix-Game 2.0 files.

Hugging Face repo ``Skywork/Matrix-Game-2.0`` (reference §1.2):

======================  ==============================================================  =========
what                    file (path inside the repo)                                     size
======================  ==============================================================  =========
DiT, universal          ``base_distilled_model/base_distill.safetensors``                6.48 GB
DiT, gta_drive          ``gta_distilled_model/gta_keyboard2dim.safetensors``             6.48 GB
DiT, templerun          ``templerun_distilled_model/templerun_7dim_onlykey.safetensors`` 6.03 GB
VAE (all modes)         ``Wan2.1_VAE.pth``                                               508 MB
image encoder           ``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth``      4.77 GB
======================  ==============================================================  =========

The DiT files hold ``WanDiffusionWrapper.state_dict()`` in float32: every key starts with
``model.`` (stripped here). The mode is detected from the keys (keyboard width 4 / 2 / 7, mouse
branch present or not, action blocks 0..29 for the foundation model) and a mismatch with the
requested mode is refused.
"""
from __future__ import annotations

import json
import os
import re
from typing import Dict, Iterable, List, Optional, Tuple

import torch

from .config import MODES, ModelConfig, preset
from .errors import MatrixGameError

HF_REPO = "Skywork/Matrix-Game-2.0"
DIT_FILES = {
    "universal": "base_distilled_model/base_distill.safetensors",
    "gta_drive": "gta_distilled_model/gta_keyboard2dim.safetensors",
    "templerun": "templerun_distilled_model/templerun_7dim_onlykey.safetensors",
}
VAE_FILE = "Wan2.1_VAE.pth"
CLIP_FILE = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
PREFIX = "model."


def files_for_mode(mode: str, with_encoders: bool = True) -> List[str]:
    """Repo paths a mode needs: its DiT, plus (``with_encoders``) the VAE and the CLIP file."""
    if mode not in DIT_FILES:
        raise MatrixGameError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}.")
    return [DIT_FILES[mode]] + ([VAE_FILE, CLIP_FILE] if with_encoders else [])


# ---------------------------------------------------------------------------------------------- reading
def read_state_dict(path: str, dtype: Optional[torch.dtype] = None, what: str = "checkpoint") -> Dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or torch pickle (``.pth``/``.pt``/``.ckpt``, ``weights_only=True``)
    state dict, casting floating tensors to ``dtype`` one at a time (peak memory = result + 1 tensor).

    Raises:
        MatrixGameError: missing path, a folder, a truncated/corrupt file, or an unknown format.
    """
    if not path:
        raise MatrixGameError(f"No {what} path given; pass the file (e.g. {DIT_FILES['universal']}).")
    if os.path.isdir(path):
        raise MatrixGameError(f"{path!r} is a folder; pass the {what} file inside it, not the folder "
                              f"(e.g. {os.path.join(path, os.path.basename(DIT_FILES['universal']))}).")
    if not os.path.isfile(path):
        raise MatrixGameError(f"{what} file {path!r} does not exist; check the path or download it "
                              f"(python -m matrix_game_core download --mode MODE --dir DIR).")

    def cast(t):
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    if path.endswith(".safetensors"):
        from safetensors import safe_open
        try:
            out = {}
            with safe_open(path, framework="pt", device="cpu") as f:
                for k in f.keys():
                    out[k] = cast(f.get_tensor(k))
            return out
        except Exception as e:
            raise MatrixGameError(f"{what} file {path!r} is truncated or corrupt ({type(e).__name__}: {e}); "
                                  f"delete it and download it again.") from e
    if path.endswith((".pth", ".pt", ".ckpt", ".bin")):
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:
                raise MatrixGameError(f"{what} file {path!r} is truncated or corrupt, or not a plain state dict "
                                      f"({type(e).__name__}: {e}); delete it and download it again.") from e
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        if not isinstance(sd, dict):
            raise MatrixGameError(f"{what} file {path!r} does not hold a state dict.")
        return {k: cast(v) for k, v in sd.items() if isinstance(v, torch.Tensor)}
    raise MatrixGameError(f"{what} file {path!r} has an unknown extension; use .safetensors or .pth.")


def strip_prefix(sd: Dict[str, torch.Tensor], prefix: str = PREFIX) -> Dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key that has it (official DiT files: ``model.``)."""
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return dict(sd)


# ---------------------------------------------------------------------------------------------- DiT
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def detect_mode(sd: Dict[str, torch.Tensor]) -> str:
    """Mode of a DiT state dict (prefix stripped): ``universal`` / ``gta_drive`` / ``templerun`` /
    ``foundation``, from the keyboard width (4/2/7), the mouse branch and the action blocks.

    Raises:
        MatrixGameError: no action module keys (not a Matrix-Game 2.0 DiT).
    """
    kb = [k for k in sd if k.endswith("action_model.keyboard_embed.0.weight")]
    if not kb:
        raise MatrixGameError("this checkpoint has no action module (no '...action_model.keyboard_embed' keys): "
                              "it is not a Matrix-Game 2.0 DiT. Pick base_distill / gta_keyboard2dim / "
                              "templerun_7dim_onlykey.")
    K = sd[kb[0]].shape[1]
    mouse = any("action_model.mouse_mlp" in k for k in sd)
    action_blocks = {int(_BLOCK.match(k).group(1)) for k in kb}
    layers = {int(m.group(1)) for k in sd for m in [_BLOCK.match(k)] if m}
    if K == 7 and not mouse:
        return "templerun"
    if K == 2 and mouse:
        return "gta_drive"
    if K == 4 and mouse:
        # distilled students keep action modules in the first half only; the teacher has them in all
        return "foundation" if len(layers) > 1 and action_blocks == layers else "universal"
    raise MatrixGameError(f"unrecognised action module (keyboard width {K}, mouse {'yes' if mouse else 'no'}); "
                          f"expected universal (4, mouse), gta_drive (2, mouse) or templerun (7, no mouse).")


def infer_config(sd: Dict[str, torch.Tensor], mode: str, num_heads: Optional[int] = None,
                 head_dim: int = 128) -> ModelConfig:
    """A :class:`ModelConfig` whose shapes match ``sd``: the full-size preset when it fits, else one
    inferred from tensor shapes (heads = dim // ``head_dim`` unless ``num_heads`` is given)."""
    base_mode = "universal" if mode == "foundation" else mode
    cfg = preset(mode)
    dim = sd["patch_embedding.weight"].shape[0]
    layers = 1 + max(int(m.group(1)) for k in sd for m in [_BLOCK.match(k)] if m)
    kb_keys = sorted(int(_BLOCK.match(k).group(1)) for k in sd if k.endswith("action_model.keyboard_embed.0.weight"))
    if "img_emb.proj.0.weight" in sd:
        cfg.img_dim = sd["img_emb.proj.0.weight"].shape[0]
    if dim == cfg.dim and layers == cfg.num_layers and num_heads in (None, cfg.num_heads):
        return cfg
    ac = cfg.action_config
    i = kb_keys[0]
    p = f"blocks.{i}.action_model."
    ac.blocks = kb_keys
    ac.hidden_size = sd[p + "keyboard_embed.0.weight"].shape[0]
    ac.keyboard_dim_in = sd[p + "keyboard_embed.0.weight"].shape[1]
    ac.keyboard_hidden_dim = sd[p + "mouse_attn_q.weight"].shape[0]
    ac.img_hidden_size = dim
    ac.heads_num = ac.keyboard_hidden_dim // ac.head_dim
    if ac.enable_mouse:
        ac.mouse_hidden_dim = sd[p + "mouse_mlp.0.weight"].shape[0]
    cfg.dim, cfg.num_layers = dim, layers
    cfg.ffn_dim = sd["blocks.0.ffn.0.weight"].shape[0]
    cfg.num_heads = num_heads or max(1, dim // head_dim)
    cfg.mode = base_mode
    return cfg


def check_keys(expected: Dict[str, Tuple[int, ...]], got: Dict[str, torch.Tensor], what: str, hint: str) -> None:
    """Strict key and shape check. Raises MatrixGameError listing missing / unexpected / mismatched keys."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    bad = [f"{k} {tuple(got[k].shape)} != {tuple(expected[k])}" for k in expected
           if k in got and tuple(got[k].shape) != tuple(expected[k])]
    if missing or unexpected or bad:
        def few(xs):
            return ", ".join(xs[:5]) + (f" ... (+{len(xs) - 5} more)" if len(xs) > 5 else "")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {few(unexpected)}")
        if bad:
            parts.append(f"{len(bad)} shape mismatches: {few(bad)}")
        raise MatrixGameError(f"{what} does not match the model: " + "; ".join(parts) + f". {hint}")


def load_dit(path_or_sd, mode: Optional[str] = None, config: Optional[ModelConfig] = None,
             device="cpu", dtype: torch.dtype = torch.bfloat16, operations=None, attention_backend="sdpa"):
    """Load a Matrix-Game 2.0 DiT checkpoint into a :class:`~matrix_game_core.model.CausalWanModel`.

    Args:
        path_or_sd: a ``.safetensors`` file (official, ``model.``-prefixed keys) or a state dict.
        mode: the mode you expect (``universal``/``gta_drive``/``templerun``); None = detect.
        config: explicit config; default: ``config.json`` next to the file if it has
            ``CausalWanModel``-style fields, else the preset of the detected mode, else inferred.
        dtype: parameter dtype (official inference: bf16; files are fp32).
    Returns:
        the model in eval mode on ``device``.
    Raises:
        MatrixGameError: unreadable file, mode mismatch (naming both), missing/unexpected keys.
    """
    from .model import CausalWanModel

    path = path_or_sd if isinstance(path_or_sd, str) else None
    sd = read_state_dict(path, dtype=dtype) if path else {k: (v.to(dtype) if v.is_floating_point() else v)
                                                          for k, v in path_or_sd.items()}
    sd = strip_prefix(sd)
    detected = detect_mode(sd)
    run_mode = "universal" if detected == "foundation" else detected
    if mode is not None and mode != run_mode and mode != detected:
        name = os.path.basename(path) if path else "the checkpoint"
        raise MatrixGameError(f"{name} is a {detected!r} checkpoint but mode {mode!r} was requested; pick "
                              f"mode {run_mode!r} or the {mode} file ({os.path.basename(DIT_FILES.get(mode, '?'))}).")
    if config is None and path:
        cj = os.path.join(os.path.dirname(path), "config.json")
        if os.path.isfile(cj):
            try:
                with open(cj, "r", encoding="utf-8") as f:
                    d = json.load(f)
                if "dim" in d and "num_layers" in d and "action_config" in d:
                    config = ModelConfig.from_dict(d, mode=run_mode)
            except (OSError, ValueError):
                config = None
    cfg = config or infer_config(sd, detected)
    if cfg.mode != run_mode:
        cfg.mode = run_mode
    with torch.device("meta"):
        model = CausalWanModel(cfg, operations=operations, attention_backend=attention_backend)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_keys(expected, sd, os.path.basename(path) if path else "state dict",
               "Use an official Matrix-Game 2.0 DiT file for this mode, unmodified.")
    model.load_state_dict(sd, strict=True, assign=True)
    return model.to(device).eval().requires_grad_(False)


def save_dit(model, path: str, prefix: str = PREFIX) -> None:
    """Write a model in the official file format (``model.``-prefixed keys, safetensors)."""
    from safetensors.torch import save_file
    save_file({prefix + k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, path)


# ---------------------------------------------------------------------------------------------- files
def find_file(directory: str, repo_path: str) -> Optional[str]:
    """``directory/repo_path`` if present, else the first file with the same basename below it."""
    if not directory:
        return None
    p = os.path.join(directory, repo_path)
    if os.path.isfile(p):
        return p
    base = os.path.basename(repo_path)
    for root, _dirs, files in os.walk(directory):
        if base in files:
            return os.path.join(root, base)
    return None


def download(mode: str, directory: str, with_encoders: bool = True, repo_id: str = HF_REPO) -> Dict[str, str]:
    """Download exactly the files ``mode`` needs from ``Skywork/Matrix-Game-2.0`` into ``directory``
    (``huggingface_hub.hf_hub_download``; files already there are kept).

    Returns:
        ``{repo_path: local_path}``.
    Raises:
        MatrixGameError: offline / hub unreachable / file missing on the hub, with the manual fix.
    """
    files = files_for_mode(mode, with_encoders)
    os.makedirs(directory, exist_ok=True)
    out = {}
    for rp in files:
        have = find_file(directory, rp)
        if have:
            out[rp] = have
            continue
        try:
            from huggingface_hub import hf_hub_download
            out[rp] = hf_hub_download(repo_id=repo_id, filename=rp, local_dir=directory)
        except Exception as e:  # offline, HTTP errors, missing hub entry
            raise MatrixGameError(
                f"could not download {rp} from huggingface.co/{repo_id} ({type(e).__name__}: {e}). "
                f"Check your connection (and HF_HUB_OFFLINE), or download these files by hand into "
                f"{directory}: {', '.join(files)}.") from e
    return out
