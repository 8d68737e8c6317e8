"""Everything the nodes need from ComfyUI, in one place, with a plain-PyTorch stand-in for each.

Inside ComfyUI these functions call ``comfy.model_management``, ``comfy.model_patcher``,
``comfy.ops``, ``comfy.utils``, ``comfy.sd``, ``comfy.clip_vision`` and ``folder_paths``. Outside
ComfyUI (the CI tests, which have no ComfyUI) the same functions run on the CPU with stand-ins:
no model patcher, folders from :func:`set_folders`, a progress bar that records its updates. The
node logic in :mod:`.logic` never imports ComfyUI itself, so the exact code that runs inside a
ComfyUI server also runs in the tests.
"""
from __future__ import annotations

import importlib
import logging
import os
from typing import Any, Callable, Dict, List, Optional

import torch

log = logging.getLogger("MatrixGame")

#: Name of our model folder under ComfyUI's ``models/`` (registered with ``folder_paths``).
MODEL_FOLDER = "matrix_game"


def _try_import(name: str):
    try:
        return importlib.import_module(name)
    except Exception:  # not inside ComfyUI (or a broken install): use the stand-ins
        return None


_mm = _try_import("comfy.model_management")
_fp = _try_import("folder_paths") if _mm is not None else None


def in_comfy() -> bool:
    """True when running inside a ComfyUI process (``comfy.model_management`` imports)."""
    return _mm is not None


# ---------------------------------------------------------------------------------------------- folders
_STANDALONE_FOLDERS: Dict[str, List[str]] = {MODEL_FOLDER: [], "vae": [], "clip_vision": [], "input": []}


def set_folders(**folders: Optional[str]) -> None:
    """Stand-in only: point a folder kind (``matrix_game``, ``vae``, ``clip_vision``, ``input``) at a
    directory (tests use temporary folders). Inside ComfyUI, ``folder_paths`` decides."""
    for kind, path in folders.items():
        _STANDALONE_FOLDERS[kind] = [os.fspath(path)] if path else []


def register_model_folder() -> None:
    """Register ``models/matrix_game`` with ComfyUI's ``folder_paths`` (idempotent), listing
    ``.safetensors`` files (the DiT checkpoints) and ``.pth`` (the official VAE / CLIP files that the
    engine's downloader puts next to them)."""
    if _fp is None:
        return
    path = os.path.join(_fp.models_dir, MODEL_FOLDER)
    if MODEL_FOLDER not in _fp.folder_names_and_paths:
        _fp.folder_names_and_paths[MODEL_FOLDER] = ([path], {".safetensors", ".pth", ".pt", ".sft"})
    elif path not in _fp.folder_names_and_paths[MODEL_FOLDER][0]:
        _fp.add_model_folder_path(MODEL_FOLDER, path)


def folder_dirs(kind: str) -> List[str]:
    """Directories of a folder kind (``matrix_game``, ``vae``, ``clip_vision``)."""
    if _fp is not None:
        register_model_folder()
        try:
            return list(_fp.get_folder_paths(kind))
        except Exception:
            return []
    return list(_STANDALONE_FOLDERS.get(kind, []))


def default_model_dir() -> str:
    """Where downloads go: the first ``matrix_game`` folder (created if needed)."""
    dirs = folder_dirs(MODEL_FOLDER)
    if not dirs:
        raise RuntimeError("no models/matrix_game folder is configured")
    return dirs[0]


def list_files(kind: str, extensions=(".safetensors", ".pth", ".pt", ".sft")) -> List[str]:
    """Files (relative paths, ``/``-separated, sorted) of a folder kind with one of ``extensions``."""
    if _fp is not None:
        register_model_folder()
        try:
            names = _fp.get_filename_list(kind)
        except Exception:
            names = []
        return sorted(n for n in names if n.lower().endswith(tuple(extensions)))
    out = set()
    for d in folder_dirs(kind):
        for root, _dirs, files in os.walk(d, followlinks=True):
            for f in files:
                if f.lower().endswith(tuple(extensions)):
                    out.add(os.path.relpath(os.path.join(root, f), d).replace(os.sep, "/"))
    return sorted(out)


def full_path(kind: str, name: str) -> Optional[str]:
    """Absolute path of ``name`` inside a folder kind, or None (never outside those folders)."""
    if _fp is not None:
        register_model_folder()
        try:
            return _fp.get_full_path(kind, name)
        except Exception:
            return None
    for d in folder_dirs(kind):
        p = os.path.abspath(os.path.join(d, name))
        if os.path.commonpath([p, os.path.abspath(d)]) == os.path.abspath(d) and os.path.isfile(p):
            return p
    return None


def input_dir() -> str:
    """ComfyUI's input folder (stand-in: the ``input`` folder set with :func:`set_folders`)."""
    if _fp is not None:
        return _fp.get_input_directory()
    dirs = _STANDALONE_FOLDERS.get("input") or []
    if not dirs:
        raise RuntimeError("no input folder is configured (call nodes.host.set_folders(input=...))")
    return dirs[0]


# ---------------------------------------------------------------------------------------------- devices
def torch_device() -> torch.device:
    """Where models run (ComfyUI's main device; stand-in: CPU)."""
    return _mm.get_torch_device() if _mm is not None else torch.device("cpu")


def offload_device() -> torch.device:
    """Where a model waits while not in use (ComfyUI's unet offload device; stand-in: CPU)."""
    return _mm.unet_offload_device() if _mm is not None else torch.device("cpu")


def vae_device() -> torch.device:
    return _mm.vae_device() if _mm is not None else torch.device("cpu")


def vae_offload_device() -> torch.device:
    return _mm.vae_offload_device() if _mm is not None else torch.device("cpu")


def intermediate_device() -> torch.device:
    """Where node outputs (IMAGE, LATENT) live between nodes (ComfyUI: usually the CPU)."""
    return _mm.intermediate_device() if _mm is not None else torch.device("cpu")


def is_cpu(device) -> bool:
    return torch.device(device).type == "cpu"


def operations():
    """Layer namespace for the engine's modules: ``comfy.ops.disable_weight_init`` inside ComfyUI
    (no random init on construction, cast-on-the-fly aware), ``None`` (= ``torch.nn``) outside."""
    ops = _try_import("comfy.ops") if _mm is not None else None
    return ops.disable_weight_init if ops is not None else None


# ---------------------------------------------------------------------------------------------- memory
class Managed(torch.nn.Module):
    """The container a ``ModelPatcher`` manages: ComfyUI sets attributes on the model it patches
    (``device``, ``model_loaded_weight_memory``, ...), which must not land on (or clash with the
    read-only properties of) the engine's own modules."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner


def wrap_model(module: torch.nn.Module, load_device=None, offload=None):
    """A ComfyUI ``ModelPatcher`` around an engine module (None outside ComfyUI); moving the patcher's
    model moves ``module``'s weights."""
    if _mm is None:
        return None
    mp = importlib.import_module("comfy.model_patcher")
    return mp.CoreModelPatcher(Managed(module), load_device=load_device or torch_device(),
                               offload_device=offload or offload_device(),
                               size=_mm.module_size(module))


def load_models(patchers, memory_required: int = 0) -> None:
    """Bring models to their load device through ComfyUI's memory manager (which offloads other
    models as needed). ``force_full_load``: the engine's modules hold plain ``nn.Parameter`` s
    (modulation tables, embeddings) that ComfyUI's partial "lowvram" loading would leave behind."""
    ps = [p for p in patchers if p is not None]
    if _mm is None or not ps:
        return
    _mm.load_models_gpu(ps, memory_required=int(memory_required), force_full_load=True)


def unload(patcher) -> None:
    """Take a model (and its clones) off the GPU through ComfyUI's memory manager."""
    if _mm is None or patcher is None:
        return
    try:
        _mm.unload_model_and_clones(patcher)
    except Exception as e:  # never fail a load because an old model could not be unloaded
        log.warning("MatrixGame: could not unload a previous model: %s", e)


def free_memory(nbytes: int, device=None) -> None:
    """Ask ComfyUI to make ``nbytes`` free on ``device`` (default: the main device), offloading
    other models; collect garbage first."""
    if _mm is None:
        return
    _mm.cleanup_models_gc()
    dev = device or torch_device()
    if not is_cpu(dev):
        _mm.free_memory(int(nbytes), dev)
    _mm.soft_empty_cache()


def check_interrupt() -> None:
    """Raise ComfyUI's ``InterruptProcessingException`` if the user pressed Cancel (POST /interrupt)."""
    if _mm is not None:
        _mm.throw_exception_if_processing_interrupted()


def interrupt_hook() -> Optional[Callable[[], None]]:
    """The function the engine calls between denoising steps (None outside ComfyUI)."""
    return check_interrupt if _mm is not None else None


def dtype_for(name: str, device) -> torch.dtype:
    """``auto`` -> bf16 on a GPU (fp16 where bf16 is unsupported), fp32 on the CPU."""
    table = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if name in table:
        return table[name]
    if is_cpu(device):
        return torch.float32
    if _mm is not None and not _mm.should_use_bf16(device):
        return torch.float16
    return torch.bfloat16


def vae_dtype(native_vae) -> torch.dtype:
    """Compute dtype for a VAE: ComfyUI's choice for that VAE object (``--fp32-vae`` etc.)."""
    dt = getattr(native_vae, "vae_dtype", None)
    return dt if isinstance(dt, torch.dtype) else torch.float32


# ---------------------------------------------------------------------------------------------- progress
#: Stand-in progress log: ``(node, value, total, preview)`` tuples appended by :class:`Progress`.
PROGRESS_LOG: List[tuple] = []


class Progress:
    """ComfyUI's ``ProgressBar`` (every update is also an interrupt check there); outside ComfyUI
    updates are appended to :data:`PROGRESS_LOG` so that tests can see them."""

    def __init__(self, total: int, name: str = ""):
        self.total, self.name = int(total), name
        utils = _try_import("comfy.utils") if _mm is not None else None
        self._bar = utils.ProgressBar(self.total) if utils is not None else None

    def update(self, value: int, preview=None) -> None:
        """``preview``: a PIL image (sent as JPEG, at most 512 px) or None."""
        if self._bar is not None:
            self._bar.update_absolute(value, self.total, ("JPEG", preview, 512) if preview is not None else None)
        else:
            PROGRESS_LOG.append((self.name, value, self.total, preview))


# ---------------------------------------------------------------------------------------------- native objects
class StandaloneVAE:
    """Outside ComfyUI: what ``comfy.sd.VAE`` offers that we use (``first_stage_model``,
    ``vae_dtype``). Inside ComfyUI the loaders return the real ``comfy.sd.VAE``."""

    def __init__(self, module: torch.nn.Module, dtype=torch.float32):
        self.first_stage_model = module
        self.vae_dtype = dtype

    def __repr__(self):
        return f"StandaloneVAE(dim={getattr(self.first_stage_model, 'dim', '?')})"


class StandaloneClipVision:
    """Outside ComfyUI: what ``comfy.clip_vision.ClipVisionModel`` offers that we use (``model``
    with an HF-layout ``state_dict()``, ``config``). Inside ComfyUI the loader returns the real one."""

    class _Holder(torch.nn.Module):
        def __init__(self, sd):
            super().__init__()
            self._sd = dict(sd)

        def state_dict(self, *a, **k):  # noqa: D401 - mimic nn.Module
            return dict(self._sd)

    def __init__(self, hf_state_dict: Dict[str, torch.Tensor], config: Dict[str, Any]):
        self.model = self._Holder(hf_state_dict)
        self.config = dict(config)
        self.dtype = next(iter(hf_state_dict.values())).dtype


def native_vae(state_dict: Dict[str, torch.Tensor], standalone_module: Optional[torch.nn.Module] = None):
    """A native ``VAE`` from a Wan-2.1 VAE state dict: ``comfy.sd.VAE(sd=...)`` inside ComfyUI,
    else a :class:`StandaloneVAE` around ``standalone_module`` (an engine ``WanVAE``)."""
    if _mm is not None:
        sd_mod = importlib.import_module("comfy.sd")
        return sd_mod.VAE(sd=dict(state_dict))
    if standalone_module is None:
        raise ValueError("standalone_module is required outside ComfyUI")
    return StandaloneVAE(standalone_module)


def native_clip_vision(hf_state_dict: Dict[str, torch.Tensor], config: Dict[str, Any]):
    """A native ``CLIP_VISION`` from an HF-layout state dict: ComfyUI's ``ClipVisionModel`` built
    from ``config`` (``clip_vision_config_h.json`` fields) inside ComfyUI, else a stand-in."""
    if _mm is None:
        return StandaloneClipVision(hf_state_dict, config)
    cv = importlib.import_module("comfy.clip_vision")
    model = cv.ClipVisionModel(dict(config))
    missing, unexpected = model.load_sd(dict(hf_state_dict))
    if missing:
        raise RuntimeError(f"ComfyUI's CLIP vision model lacks {len(missing)} tensors after conversion "
                           f"(e.g. {sorted(missing)[:3]})")
    return model


def latent_rgb_factors():
    """``(factors [16,3], bias [3])`` of ComfyUI's Wan-2.1 latent previewer (for normalized latents),
    or None outside ComfyUI."""
    lf = _try_import("comfy.latent_formats") if _mm is not None else None
    if lf is None:
        return None
    fmt = lf.Wan21()
    return torch.tensor(fmt.latent_rgb_factors), torch.tensor(fmt.latent_rgb_factors_bias)
