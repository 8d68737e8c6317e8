"""Loader nodes' logic: the DiT (``MATRIX_GAME_MODEL``), the VAE and the image encoder as native
ComfyUI objects, the engine modules built from them, the embedded ViZDoom model that ships in the
package (:mod:`matrix_game_core.embedded`) and the untrained tiny models.

The embedded model is chosen by the same name (:data:`EMBEDDED`) in all three loaders:

* model loader: its DiT (ModelPatcher-managed like any other);
* VAE loader: its VAE as a native ``VAE`` that also carries :class:`ModelFrame` (the frame size
  and conditioning frames of the model it belongs to; :func:`model_frame`), which is how Encode
  Start Image knows to prepare 64x112 images and encode 3 latent frames;
* image-encoder loader: :class:`NoImageEncoder`, "this model takes no image encoder" (Encode Start
  Image turns it into zero image tokens, as the model was trained).

Part of :mod:`.logic` (which re-exports every name); no ComfyUI import here (see :mod:`.host`).
"""
from __future__ import annotations

import copy
import functools
import os
import weakref
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch

from matrix_game_core import embedded
from matrix_game_core.checkpoints import DIT_FILES, download, load_dit
from matrix_game_core.config import VIDEO_HEIGHT, VIDEO_WIDTH, check_mode
from matrix_game_core.errors import MatrixGameError
from matrix_game_core.image_encoder import VisionConfig, convert_to_comfy_clip_vision, load_image_encoder
from matrix_game_core.pipeline import random_tiny
from matrix_game_core.vae import load_wan_vae

from . import host
from .tracks import FPS

#: Checkpoint-list entry of the model loader that builds the untrained tiny DiT (CPU smoke tests).
TINY_MODEL = "random-tiny (untrained, CPU test)"
#: VAE / image-encoder list entry that matches :data:`TINY_MODEL` (use the three together).
TINY_PART = "random-tiny (untrained)"
#: Seed of the tiny random weights: the same seed everywhere, so the three tiny parts always match.
TINY_SEED = 0
#: The list entry of the embedded ViZDoom model, the same in the model, VAE and image-encoder
#: loaders (listed only when its files are installed: ``embedded.available()``).
EMBEDDED = embedded.NAME
DTYPES = ("auto", "bf16", "fp16", "fp32")
ATTENTION = ("auto", "sdpa", "flash_attn")


# ================================================================================================ tiny
@functools.lru_cache(maxsize=4)
def tiny_components(mode: str):
    """The untrained tiny models (``pipeline.random_tiny(mode, seed=0)``, deterministic)."""
    return random_tiny(mode, seed=TINY_SEED)


def _tiny_encoders():
    """The tiny VAE and image encoder the tiny DiTs of every mode are paired with (one fixed
    draw, so a workflow gets identical weights whatever the mode; their shapes fit every tiny DiT)."""
    c = tiny_components("universal")
    return c.vae, c.image_encoder


# ================================================================================================ embedded
@dataclass(frozen=True)
class ModelFrame:
    """What Encode Start Image must know about the model a VAE belongs to: the video frame size
    ``(height, width)`` in pixels, the start-image conditioning latent frames it was trained with
    (None = encode the whole run, as officially) and whether it takes image-encoder features."""

    name: str
    frame_size: Tuple[int, int]
    cond_latent_frames: Optional[int]
    image_encoder: bool

    def conditioning_frames(self, num_latent_frames: int) -> int:
        """Latent frames to encode for a run of ``num_latent_frames`` (see ``ModelConfig.conditioning_frames``)."""
        n = int(num_latent_frames)
        return min(n, self.cond_latent_frames) if self.cond_latent_frames else n


#: The official models (and random-tiny): 352x640, the whole run encoded, CLIP ViT-H/14 features.
OFFICIAL_FRAME = ModelFrame("Matrix-Game 2.0", (VIDEO_HEIGHT, VIDEO_WIDTH), None, True)
#: Attribute of a native ``VAE`` object that holds its :class:`ModelFrame` (set by our VAE loader).
MODEL_FRAME_ATTR = "matrix_game_model_frame"


def embedded_frame() -> ModelFrame:
    """The embedded model's :class:`ModelFrame` (from its shipped ``dit/config.json``)."""
    cfg = embedded.config_json()
    cond = cfg.get("cond_latent_frames")
    return ModelFrame(EMBEDDED, embedded.video_size(), int(cond) if cond else None,
                      cfg.get("image_encoder", None) is not None)


def model_frame(vae) -> ModelFrame:
    """The :class:`ModelFrame` a native ``VAE`` carries (the embedded VAE), else the official one."""
    got = getattr(vae, MODEL_FRAME_ATTR, None)
    return got if isinstance(got, ModelFrame) else OFFICIAL_FRAME


def _embedded_entries() -> List[str]:
    return [EMBEDDED] if embedded.available() else []


class NoImageEncoder:
    """The image-encoder loader's output for a model that takes none (the embedded ViZDoom model):
    Matrix-Game Encode Start Image turns it into zero image tokens ``[1,257,1280]``, the input the
    model was trained with. Anything else that tries to use it as a CLIP model gets a clear error."""

    def __init__(self, model: str = EMBEDDED):
        self.model = model

    def _refuse(self, *_a, **_k):
        raise MatrixGameError(f"The {self.model!r} image encoder is 'none' (that model takes no image features); "
                              f"connect it only to Matrix-Game Encode Start Image.")

    encode_image = _refuse
    load_sd = _refuse

    def __repr__(self):
        return f"NoImageEncoder(for {self.model!r})"


def embedded_fix(tail: str) -> str:
    """The fix for a graph that mixes the embedded model with other parts (error messages)."""
    return f"pick {EMBEDDED!r} in all three: the model loader, the VAE loader and the image encoder loader{tail}"


# ================================================================================================ names
def check_file_name(name: str, what: str) -> str:
    """Refuse names that could leave the model folders (``..``, absolute paths, NUL)."""
    if not isinstance(name, str) or not name.strip():
        raise MatrixGameError(f"No {what} selected; pick a file from the list.")
    parts = name.replace("\\", "/").split("/")
    if "\x00" in name or ".." in parts or os.path.isabs(name) or name.startswith(("/", "\\")) or ":" in parts[0]:
        raise MatrixGameError(f"The {what} name {name!r} points outside ComfyUI's model folders (it contains "
                              f"'..' or an absolute path). Put the file in ComfyUI/models/{host.MODEL_FOLDER}/ "
                              f"and pick it by its plain name from the list.")
    return name


# ================================================================================================ model
@dataclass(eq=False)
class MatrixGameModel:
    """``MATRIX_GAME_MODEL``: the loaded causal DiT in a ComfyUI ``ModelPatcher`` (None outside
    ComfyUI), its mode, dtype and a label. It remembers how it was loaded so that a model released on
    replacement (the loader node switched checkpoints) can be re-read if an old cached graph output is
    used again."""

    mode: str
    dtype: torch.dtype
    label: str
    recipe: Dict[str, Any]
    module: Optional[torch.nn.Module] = None
    patcher: Any = None

    @property
    def cfg(self):
        self.ensure_loaded()
        return self.module.cfg

    @property
    def is_tiny(self) -> bool:
        return self.recipe.get("checkpoint") == TINY_MODEL

    @property
    def is_embedded(self) -> bool:
        return self.recipe.get("checkpoint") == EMBEDDED

    @property
    def fps(self) -> float:
        """Video frames per second the model was trained at (the embedded model: its recordings' rate)."""
        return embedded.fps() if self.is_embedded else float(FPS)

    def ensure_loaded(self) -> None:
        if self.module is None:
            self.module, self.patcher, self.label = _build_dit(**self.recipe)

    def release(self) -> None:
        """Give the weights back (off the GPU through ComfyUI, then dropped); reloaded on next use."""
        host.unload(self.patcher)
        self.patcher = None
        self.module = None

    def __repr__(self):
        return f"MatrixGameModel({self.label}, {self.mode}, {str(self.dtype).replace('torch.', '')})"


#: Last model each loader node produced (weak: ComfyUI's cache owns the object).
_LOADED_BY_NODE: Dict[str, "weakref.ReferenceType[MatrixGameModel]"] = {}


def list_checkpoints() -> List[str]:
    """Model-loader choices: the embedded ViZDoom model (when installed), the ``.safetensors`` files in
    ``models/matrix_game`` and, last, the untrained tiny entry (tests).

    Official files that are not there yet are **not** listed: a workflow that selects one then shows
    up in ComfyUI's missing-models dialog with the download link of its ``properties.models`` (the
    frontend lists a model as missing only when the selected name is not among the choices). The
    loader still accepts such a name (``validate_inputs``) and downloads it with "download if
    missing"."""
    have = host.list_files(host.MODEL_FOLDER, (".safetensors", ".sft"))
    return _embedded_entries() + have + [TINY_MODEL]


def _official_mode_of(name: str) -> Optional[str]:
    n = name.replace("\\", "/")
    for m, rp in DIT_FILES.items():
        if n == rp or os.path.basename(n) == os.path.basename(rp):
            return m
    return None


def resolve_checkpoint(name: str, mode: str, download_if_missing: bool = False) -> str:
    """Absolute path of a DiT checkpoint in ``models/matrix_game`` (downloading the mode's official
    file first when asked to)."""
    check_file_name(name, "checkpoint")
    path = host.full_path(host.MODEL_FOLDER, name)
    if path is not None:
        return path
    official = _official_mode_of(name)
    if official is not None and official != mode:
        raise MatrixGameError(f"{name} is the official {official!r} checkpoint but mode is {mode!r}. Set mode to "
                              f"{official!r}, or pick {DIT_FILES[mode]} for {mode!r}.")
    dirs = host.folder_dirs(host.MODEL_FOLDER)
    where = dirs[0] if dirs else f"ComfyUI/models/{host.MODEL_FOLDER}"
    if not download_if_missing:
        hint = (f"turn on 'download if missing' to fetch it from huggingface.co/Skywork/Matrix-Game-2.0, or "
                f"download {DIT_FILES[mode]} by hand into {where}" if official else
                f"put the file into {where} (and refresh the browser page)")
        raise MatrixGameError(f"Checkpoint {name!r} is not in {where}; {hint}.")
    if official is None:
        raise MatrixGameError(f"Checkpoint {name!r} is not in {where} and is not an official Matrix-Game 2.0 file, "
                              f"so it cannot be downloaded; pick {DIT_FILES[mode]} or put the file there.")
    got = download(mode, host.default_model_dir(), with_encoders=False)
    return got[DIT_FILES[mode]]


def _build_dit(mode: str, checkpoint: str, dtype: torch.dtype, attention: str, path: Optional[str] = None):
    """Read and build the DiT on the offload device; wrap it for ComfyUI's memory manager."""
    ops = host.operations()
    if checkpoint == TINY_MODEL:
        tiny = tiny_components(mode).dit
        module = load_dit(tiny.state_dict(), mode=mode, config=copy.deepcopy(tiny.cfg), device=host.offload_device(),
                          dtype=dtype, operations=ops, attention_backend=attention)
        label = f"random-tiny {mode} (UNTRAINED: output is noise)"
    elif checkpoint == EMBEDDED:
        module = load_dit(embedded.DIT_FILE, mode=mode, device=host.offload_device(), dtype=dtype, operations=ops,
                          attention_backend=attention)
        label = EMBEDDED
    else:
        module = load_dit(path, mode=mode, device=host.offload_device(), dtype=dtype, operations=ops,
                          attention_backend=attention)
        label = f"{mode}: {os.path.basename(path)}"
    return module, host.wrap_model(module), label


def load_model(mode: str, checkpoint: str, dtype: str = "auto", attention: str = "auto",
               download_if_missing: bool = False, node_key: Optional[str] = None) -> MatrixGameModel:
    """Model loader. ``node_key`` (the node's id) lets a re-run that switches checkpoints release
    the model this node loaded before, before reading the new one (so both never sit in memory)."""
    check_mode(mode)
    if dtype not in DTYPES:
        raise MatrixGameError(f"Unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}.")
    if attention not in ATTENTION:
        raise MatrixGameError(f"Unknown attention backend {attention!r}; choose one of {', '.join(ATTENTION)}.")
    check_file_name(checkpoint, "checkpoint")
    if checkpoint == EMBEDDED:
        _check_embedded_installed()
        if mode != "universal":
            raise MatrixGameError(f"{EMBEDDED!r} is a 'universal' model (W/A/S/D + mouse); set mode to 'universal', "
                                  f"or pick the official {mode} checkpoint ({DIT_FILES[mode]}).")
    dt = host.dtype_for(dtype, host.torch_device())
    path = None if checkpoint in (TINY_MODEL, EMBEDDED) else resolve_checkpoint(checkpoint, mode, download_if_missing)
    recipe = dict(mode=mode, checkpoint=checkpoint, dtype=dt, attention=attention, path=path)
    if node_key is not None:
        ref = _LOADED_BY_NODE.get(node_key)
        old = ref() if ref is not None else None
        if old is not None and old.recipe == recipe:      # re-run with the same settings: same model
            old.ensure_loaded()
            return old
        if old is not None:                               # switched: give the old weights back first
            old.release()
            host.free_memory(0)
    module, patcher, label = _build_dit(**recipe)
    handle = MatrixGameModel(mode=mode, dtype=dt, label=label, recipe=recipe, module=module, patcher=patcher)
    if node_key is not None:
        _LOADED_BY_NODE[node_key] = weakref.ref(handle)
    return handle


# ================================================================================================ VAE
def _list_parts(kind: str, keyword: str) -> List[str]:
    names = host.list_files(kind, (".safetensors", ".pth", ".pt", ".sft"))
    ours = [n for n in host.list_files(host.MODEL_FOLDER, (".pth", ".safetensors", ".pt"))
            if keyword in os.path.basename(n).lower() and n not in names]
    return names + ours


def _check_embedded_installed() -> None:
    if not embedded.available():
        raise MatrixGameError(f"{EMBEDDED!r} is not installed (its files are missing under {embedded.ROOT}); "
                              f"reinstall the pack, or pick an official Matrix-Game 2.0 file.")


def list_vae_files() -> List[str]:
    """VAE-loader choices: the embedded model's VAE (when installed), files in ``models/vae``, VAE
    files in ``models/matrix_game``, the tiny entry."""
    return _embedded_entries() + _list_parts("vae", "vae") + [TINY_PART]


def _find_part(kind: str, name: str, what: str) -> str:
    check_file_name(name, what)
    path = host.full_path(kind, name) or host.full_path(host.MODEL_FOLDER, name)
    if path is None:
        raise MatrixGameError(f"{what} file {name!r} was not found in ComfyUI/models/{kind}/ or "
                              f"models/{host.MODEL_FOLDER}/; put it there and refresh the page.")
    return path


def load_vae(name: str):
    """Our VAE loader: the official ``Wan2.1_VAE.pth`` (or any Wan-2.1 VAE file) -> a native ``VAE``
    (``comfy.sd.VAE``, the same object core's VAELoader makes from ``wan_2.1_vae.safetensors``)."""
    if name == TINY_PART:
        vae, _ = _tiny_encoders()
        return host.native_vae(vae.state_dict(), standalone_module=vae)
    if name == EMBEDDED:
        _check_embedded_installed()
        module = load_wan_vae(embedded.VAE_FILE, device="cpu", dtype=torch.float32)
        native = host.native_vae(module.state_dict(), standalone_module=module)
        setattr(native, MODEL_FRAME_ATTR, embedded_frame())
        return native
    path = _find_part("vae", name, "VAE")
    module = load_wan_vae(path, device="cpu", dtype=torch.float32)   # checks it is the Wan-2.1 VAE
    return host.native_vae(module.state_dict(), standalone_module=module)


class _EnginePart:
    """An engine module built from a native object's weights, with its own ModelPatcher."""

    def __init__(self, module, patcher):
        self.module, self.patcher = module, patcher


_ENGINE_VAES: "weakref.WeakKeyDictionary[Any, _EnginePart]" = weakref.WeakKeyDictionary()
_ENGINE_CLIPS: "weakref.WeakKeyDictionary[Any, _EnginePart]" = weakref.WeakKeyDictionary()


def _cached(cache, key) -> Optional[_EnginePart]:
    try:
        return cache.get(key)
    except TypeError:  # not weak-referenceable: not cacheable
        return None


def _remember(cache, key, part: _EnginePart) -> _EnginePart:
    try:
        cache[key] = part
    except TypeError:
        pass
    return part


def engine_vae(native) -> _EnginePart:
    """The engine ``WanVAE`` (encoder + streaming decoder) for a native ``VAE`` object, built once
    per object from ``first_stage_model.state_dict()`` (works for core VAELoader's VAE and ours)."""
    fsm = getattr(native, "first_stage_model", None)
    if fsm is None or not hasattr(fsm, "state_dict"):
        raise MatrixGameError(f"The VAE input is a {type(native).__name__}, not a VAE; connect a Load VAE node "
                              f"with wan_2.1_vae.safetensors or the Matrix-Game VAE loader.")
    part = _cached(_ENGINE_VAES, native)
    if part is not None:
        return part
    if isinstance(native, host.StandaloneVAE):
        part = _EnginePart(native.first_stage_model, None)
    else:
        module = load_wan_vae(fsm.state_dict(), device=host.vae_offload_device(), dtype=host.vae_dtype(native))
        if module.z_dim != 16:
            raise MatrixGameError(f"This VAE has {module.z_dim} latent channels; Matrix-Game 2.0 needs the Wan 2.1 "
                                  f"VAE (16 channels): wan_2.1_vae.safetensors or Wan2.1_VAE.pth.")
        part = _EnginePart(module, host.wrap_model(module, host.vae_device(), host.vae_offload_device()))
    return _remember(_ENGINE_VAES, native, part)


# ================================================================================================ CLIP
def list_clip_files() -> List[str]:
    """Image-encoder-loader choices: the embedded model's "none" (when installed), files in
    ``models/clip_vision``, CLIP files in ``models/matrix_game`` (the official
    ``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth``), the tiny entry."""
    return _embedded_entries() + _list_parts("clip_vision", "clip") + [TINY_PART]


def clip_config(cfg: VisionConfig) -> Dict[str, Any]:
    """ComfyUI ``clip_vision_config_*.json`` fields for an engine :class:`VisionConfig`."""
    return {"hidden_act": cfg.activation, "hidden_size": cfg.dim, "image_size": cfg.image_size,
            "intermediate_size": cfg.mlp_dim, "layer_norm_eps": cfg.norm_eps, "model_type": "clip_vision_model",
            "num_attention_heads": cfg.num_heads, "num_channels": 3, "num_hidden_layers": cfg.num_layers,
            "patch_size": cfg.patch_size, "projection_dim": cfg.out_dim}


#: kept under its old name for callers of the node layer
engine_clip_to_hf = convert_to_comfy_clip_vision


def load_clip_vision(name: str):
    """Our image-encoder loader: the official ``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth``
    (visual tower only; any layout the engine reads) -> a native ``CLIP_VISION`` (ComfyUI's
    ``ClipVisionModel``, exactly what core's CLIPVisionLoader makes from ``clip_vision_h.safetensors``);
    the embedded model's entry gives :class:`NoImageEncoder`."""
    if name == EMBEDDED:
        _check_embedded_installed()
        return NoImageEncoder()
    if name == TINY_PART:
        _, tower = _tiny_encoders()
    else:
        tower = load_image_encoder(_find_part("clip_vision", name, "image encoder"), device="cpu", dtype=torch.float32)
    return host.native_clip_vision(engine_clip_to_hf(tower.state_dict()), clip_config(tower.cfg))


def engine_clip(native) -> _EnginePart:
    """The engine ``CLIPVisionTower`` for a native ``CLIP_VISION``, built once per object from
    ``clip_vision.model.state_dict()`` (HF layout) with its head count and activation from the
    object's config."""
    model, config = getattr(native, "model", None), getattr(native, "config", None)
    if model is None or not hasattr(model, "state_dict") or not isinstance(config, dict):
        raise MatrixGameError(f"The clip_vision input is a {type(native).__name__}, not a CLIP vision model; connect "
                              f"Load CLIP Vision (clip_vision_h.safetensors) or the Matrix-Game image encoder loader.")
    if config.get("model_type", "clip_vision_model") != "clip_vision_model":
        raise MatrixGameError(f"This image encoder is a {config.get('model_type')!r}; Matrix-Game 2.0 needs the CLIP "
                              f"ViT-H/14 of Wan 2.1: clip_vision_h.safetensors or the official "
                              f"models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth.")
    part = _cached(_ENGINE_CLIPS, native)
    if part is not None:
        return part
    load_dev = host.torch_device()
    dt = torch.float32 if host.is_cpu(load_dev) else (getattr(native, "dtype", None) or torch.float16)
    try:
        vcfg = VisionConfig.from_dict(config)
    except (TypeError, MatrixGameError) as e:
        raise MatrixGameError(f"Unsupported CLIP vision config ({e}); use clip_vision_h.safetensors.") from e
    tower = load_image_encoder(model.state_dict(), device=host.offload_device(), dtype=dt, config=vcfg)
    return _remember(_ENGINE_CLIPS, native, _EnginePart(tower, host.wrap_model(tower)))
