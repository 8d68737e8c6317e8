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

import os
import re
from typing import Any, Dict, List, Optional, Tuple

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


#: Tensors every DiT has besides its action modules (checked before anything reads their shapes).
BACKBONE_KEYS = ("patch_embedding.weight", "blocks.0.ffn.0.weight", "head.head.weight")


def run_mode_of(detected: str) -> str:
    """The sampling mode of a detected checkpoint kind (the foundation teacher runs as universal)."""
    return "universal" if detected == "foundation" else detected


def check_finite(sd: Dict[str, torch.Tensor], name: str) -> None:
    """Refuse NaN / inf weights, naming the first tensors (and so the transformer block) that hold them.

    Raises:
        MatrixGameError: some floating tensor of ``sd`` is not finite.
    """
    bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        more = f" (+{len(bad) - 3} more tensors)" if len(bad) > 3 else ""
        raise MatrixGameError(f"{name} has NaN/inf weights in {', '.join(bad[:3])}{more}: the file is damaged; "
                              f"delete it and download it again.")


def is_inference_config(d: Any) -> bool:
    """True for an official *inference* model config (``configs/distilled_model/<mode>/config.json``:
    ``CausalWanModel`` fields, including ``local_attn_size``) or one the engine wrote; False for the
    Hugging Face ``config.json`` beside the DiT files (``"_class_name": "WanModel"``, no window)."""
    return (isinstance(d, dict) and d.get("_class_name", "CausalWanModel") == "CausalWanModel"
            and all(k in d for k in ("dim", "num_layers", "action_config", "local_attn_size")))


def inference_config_beside(path: str, mode: str) -> Optional[ModelConfig]:
    """The ``config.json`` next to a DiT file as a :class:`ModelConfig` for ``mode`` when it is an
    inference config (:func:`is_inference_config`); None otherwise (missing, unreadable, or the
    Hugging Face repo's ``WanModel`` config, which lacks the mode's local attention window: the
    mode's preset must win over it)."""
    from .json_input import read_file

    cj = os.path.join(os.path.dirname(path), "config.json")
    if not os.path.isfile(cj):
        return None
    try:
        d = read_file(cj, "model config", max_bytes=1024 * 1024)
        return ModelConfig.from_dict(d, mode=mode) if is_inference_config(d) else None
    except (MatrixGameError, TypeError, ValueError):
        return None


def infer_config(sd: Dict[str, torch.Tensor], mode: str, num_heads: Optional[int] = None,
                 head_dim: int = 128) -> ModelConfig:
    """A :class:`ModelConfig` whose shapes match ``sd``: the full-size preset when it fits, else one
    inferred from tensor shapes (heads = dim // ``head_dim`` unless ``num_heads`` is given)."""
    base_mode = run_mode_of(mode)
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
        config: explicit config; default: ``config.json`` next to the file when it is an official
            *inference* config (:func:`inference_config_beside`), else the preset of the detected
            mode (shapes inferred from the tensors when they differ from the full-size preset).
        dtype: parameter dtype (official inference: bf16; files are fp32).
    Returns:
        the model in eval mode on ``device``.
    Raises:
        MatrixGameError: unreadable file, mode mismatch (naming both), a file without the DiT backbone
            (e.g. only action-module keys), missing/unexpected keys, NaN/inf weights (naming the tensor).
    """
    from .model import CausalWanModel

    path = path_or_sd if isinstance(path_or_sd, str) else None
    sd = read_state_dict(path, dtype=dtype) if path else {k: (v.to(dtype) if v.is_floating_point() else v)
                                                          for k, v in path_or_sd.items()}
    sd = strip_prefix(sd)
    name = os.path.basename(path) if path else "the checkpoint"
    detected = detect_mode(sd)
    missing = [k for k in BACKBONE_KEYS if k not in sd]
    if missing:
        raise MatrixGameError(f"{name} lacks the DiT backbone ({', '.join(missing)}; it holds {len(sd)} tensors, "
                              f"e.g. only the action modules): it is not a complete Matrix-Game 2.0 DiT. Use the "
                              f"official file for the mode, unmodified ({DIT_FILES.get(mode or run_mode_of(detected))}).")
    check_finite(sd, name)
    run_mode = run_mode_of(detected)
    if mode is not None and mode != run_mode and mode != detected:
        raise MatrixGameError(f"{name} is a {detected!r} checkpoint but mode {mode!r} was requested; pick "
                              f"mode {run_mode!r} or the {mode} file ({os.path.basename(DIT_FILES.get(mode, '?'))}).")
    if config is None and path:
        config = inference_config_beside(path, run_mode)
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
def candidate_paths(directory: str, repo_path: str) -> List[str]:
    """Where a file may sit below ``directory``: its place in the official layout
    (``directory/repo_path``, what :func:`download` and ``huggingface-cli download`` make) and, for files
    in a sub-folder of the repo, the folder itself (``directory/<basename>``, a flat folder)."""
    out = [os.path.join(directory, repo_path)]
    flat = os.path.join(directory, os.path.basename(repo_path))
    return out + ([flat] if flat != out[0] else [])


def find_file(directory: str, repo_path: str) -> Optional[str]:
    """The first of :func:`candidate_paths` that is a file, or None. Nothing else is searched: a
    folder such as ``/`` is never walked, so files are never picked up from unrelated places."""
    if not directory:
        return None
    return next((p for p in candidate_paths(directory, repo_path) if os.path.isfile(p)), None)


def _proxy_configured() -> bool:
    return any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"))


def check_reachable(endpoint: Optional[str] = None, timeout: float = 5.0) -> None:
    """Fail fast when the hub's host cannot be reached (one DNS lookup + TCP connect, ``timeout`` s),
    instead of the hub client's minute of retries. Skipped behind a proxy (the proxy resolves names).

    Raises:
        MatrixGameError: the host does not resolve or refuses / times out on its HTTPS port.
    """
    import socket
    from urllib.parse import urlparse

    if endpoint is None:
        from huggingface_hub import constants
        endpoint = constants.ENDPOINT
    if _proxy_configured():
        return
    u = urlparse(endpoint)
    host, port = u.hostname or endpoint, u.port or (443 if u.scheme != "http" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise MatrixGameError(f"cannot reach {host} ({e.strerror or e}): no network? Connect, or download the files "
                              f"by hand (python -m matrix_game_core download on a machine with network, then copy "
                              f"the folder).") from None


def _prepare_dir(directory: str) -> List[str]:
    """Create ``directory`` (and parents); returns the folders that did not exist, deepest first.

    Raises:
        MatrixGameError: ``directory`` (or a parent) is a file, or cannot be created.
    """
    if not directory:
        raise MatrixGameError("no download folder given; pass --dir DIR.")
    created, d = [], os.path.abspath(directory)
    while not os.path.exists(d):
        created.append(d)
        d = os.path.dirname(d)
    if not os.path.isdir(d):
        raise MatrixGameError(f"cannot download into {directory!r}: {d!r} is a file, not a folder; pick a folder.")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise MatrixGameError(f"cannot create the download folder {directory!r} ({e.strerror or e}); pick a folder "
                              f"you can write to.") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise MatrixGameError(f"cannot write into the download folder {directory!r}; pick a folder you can write to.")
    return created


def _remove_empty_dirs(root: str, created: List[str], hub_cache_was_there: bool) -> None:
    """After a failed download: drop what it left that holds no file of the user (the hub client's
    ``.cache`` inside ``root`` if it made it, empty sub-folders, and the folders this call created)."""
    import shutil

    if not hub_cache_was_there:
        shutil.rmtree(os.path.join(root, ".cache"), ignore_errors=True)
    for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda t: -len(t[0])):
        if dirpath != root:
            try:
                os.rmdir(dirpath)       # only succeeds when empty
            except OSError:
                pass
    for d in created:
        try:
            os.rmdir(d)
        except OSError:
            break


def download(mode: str, directory: str, with_encoders: bool = True, repo_id: str = HF_REPO) -> Dict[str, str]:
    """Download exactly the files ``mode`` needs from ``Skywork/Matrix-Game-2.0`` into ``directory``
    in the official layout (``huggingface_hub.hf_hub_download``; files already there, see
    :func:`find_file`, are kept). Without network it fails within seconds
    (:func:`check_reachable`) and leaves no empty folders behind.

    Returns:
        ``{repo_path: local_path}``.
    Raises:
        MatrixGameError: ``directory`` is a file or not writable; offline / hub unreachable / file
            missing on the hub, with the manual fix.
    """
    files = files_for_mode(mode, with_encoders)
    created = _prepare_dir(directory)
    hub_cache_was_there = os.path.exists(os.path.join(directory, ".cache"))
    out = {rp: find_file(directory, rp) for rp in files}
    todo = [rp for rp, p in out.items() if p is None]
    try:
        if todo:
            from huggingface_hub import hf_hub_download
            if os.environ.get("HF_HUB_OFFLINE", "").upper() not in ("1", "ON", "YES", "TRUE"):
                check_reachable()
            for rp in todo:
                out[rp] = hf_hub_download(repo_id=repo_id, filename=rp, local_dir=directory)
    except BaseException as e:  # offline, HTTP errors, missing hub entry, Ctrl-C
        _remove_empty_dirs(directory, created, hub_cache_was_there)
        if not isinstance(e, Exception):
            raise
        why = str(e) if isinstance(e, MatrixGameError) else f"{type(e).__name__}: {e}"
        raise MatrixGameError(
            f"could not download {', '.join(todo)} from huggingface.co/{repo_id} ({why}). "
            f"Check your connection (and HF_HUB_OFFLINE), or download these files by hand into "
            f"{directory}: {', '.join(files)}.") from None
    return out
