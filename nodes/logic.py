"""What each node does, as plain functions (no ComfyUI import here; see :mod:`.host`).

The ``io.ComfyNode`` classes in :mod:`.nodes_v3` are thin wrappers around these functions, and the
CI tests call these functions directly. No model math lives here: every tensor operation that
matters is an engine call (``matrix_game_core``); this module translates ComfyUI's types
(``IMAGE [B,H,W,3]`` in 0..1, ``LATENT {"samples": raw Wan-2.1 latents}``, native ``VAE`` and
``CLIP_VISION`` objects) to engine calls and back, and checks inputs early with messages that say
how to fix them (:class:`~matrix_game_core.errors.MatrixGameError`, shown by ComfyUI on the node).
"""
from __future__ import annotations

import copy
import functools
import os
import shutil
import weakref
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch

from matrix_game_core.checkpoints import DIT_FILES, download, load_dit
from matrix_game_core.config import MODES, NUM_FRAME_PER_BLOCK, check_mode, video_frames_for_latents
from matrix_game_core.errors import MatrixGameError
from matrix_game_core.image_encoder import (VisionConfig, convert_to_comfy_clip_vision, encode_image,
                                            load_image_encoder)
from matrix_game_core.pipeline import CROP_MODES, frames_to_images, prepare_image, random_tiny
from matrix_game_core.sampling import Conditioning, WorldSession
from matrix_game_core.vae import StreamingDecoder, denormalize_latents, encode_start_image, load_wan_vae

from . import host

#: Checkpoint-list entry of the model loader that builds the untrained tiny DiT (CPU smoke tests).
TINY_MODEL = "random-tiny (untrained, CPU test)"
#: VAE / image-encoder list entry that matches :data:`TINY_MODEL` (use the three together).
TINY_PART = "random-tiny (untrained)"
#: Seed of the tiny random weights: the same seed everywhere, so the three tiny parts always match.
TINY_SEED = 0
#: Video frame rate of Matrix-Game 2.0 (the README's real-time 25 fps).
FPS = 25
DTYPES = ("auto", "bf16", "fp16", "fp32")
ATTENTION = ("auto", "sdpa", "flash_attn")
#: Latent frames per block (3): the sampler's frame count must be a multiple of it.
BLOCK = NUM_FRAME_PER_BLOCK


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
    """Model-loader choices: the tiny entry, the ``.safetensors`` files in ``models/matrix_game``, and
    the official file names of each mode (downloadable with "download if missing")."""
    have = host.list_files(host.MODEL_FOLDER, (".safetensors", ".sft"))
    official = [DIT_FILES[m] for m in MODES]
    return [TINY_MODEL] + have + [p for p in official if p not in have]


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
    dt = host.dtype_for(dtype, host.torch_device())
    path = None if checkpoint == TINY_MODEL else resolve_checkpoint(checkpoint, mode, download_if_missing)
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


def list_vae_files() -> List[str]:
    """VAE-loader choices: files in ``models/vae``, VAE files in ``models/matrix_game``, the tiny entry."""
    return _list_parts("vae", "vae") + [TINY_PART]


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
    """Image-encoder-loader choices: files in ``models/clip_vision``, CLIP files in
    ``models/matrix_game`` (the official ``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth``),
    the tiny entry."""
    return _list_parts("clip_vision", "clip") + [TINY_PART]


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
    ``ClipVisionModel``, exactly what core's CLIPVisionLoader makes from ``clip_vision_h.safetensors``)."""
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


# ================================================================================================ encode
def encode(image: torch.Tensor, vae, clip_vision=None, clip_vision_output=None, crop: str = "center",
           length: int = 15) -> Conditioning:
    """Start image -> ``MATRIX_GAME_CONDITIONING``.

    ``image``: IMAGE ``[B,H,W,3]`` in 0..1 (the first image is used), fitted to 352x640 by ``crop``.
    ``cond_concat [1,20,length,44,80]`` comes from the engine's causal VAE encode of the image and
    grey frames; ``visual_context [1,257,1280]`` from ``clip_vision`` encoded the official way (224^2
    squash, no crop, 31 of 32 blocks) or taken as is from ``clip_vision_output.penultimate_hidden_states``.
    """
    if crop not in CROP_MODES:
        raise MatrixGameError(f"Unknown crop mode {crop!r}; choose one of {', '.join(CROP_MODES)}.")
    if length < 1:
        raise MatrixGameError(f"length must be at least 1 latent frame (got {length}).")
    if clip_vision is None and clip_vision_output is None:
        raise MatrixGameError("Connect an image encoder: 'clip_vision' (Load CLIP Vision with clip_vision_h.safetensors, "
                              "or the Matrix-Game image encoder loader) or a 'clip_vision_output'.")
    if not isinstance(image, torch.Tensor):
        raise MatrixGameError(f"image must be an IMAGE tensor, got {type(image).__name__}.")
    img = prepare_image(image[:1] if image.dim() == 4 else image, crop=crop)     # [1,3,352,640] in [-1,1]
    vae_part = engine_vae(vae)
    parts = [vae_part.patcher]
    clip_part = engine_clip(clip_vision) if clip_vision_output is None else None
    if clip_part is not None:
        parts.append(clip_part.patcher)
    host.load_models(parts)
    v = vae_part.module
    cond_concat = encode_start_image(v, img.to(v.device), int(length)).float()
    if clip_part is not None:
        visual = encode_image(clip_part.module, img)
    else:
        visual = getattr(clip_vision_output, "penultimate_hidden_states", None)
        if not isinstance(visual, torch.Tensor) or visual.dim() != 3:
            raise MatrixGameError("clip_vision_output has no penultimate_hidden_states [B,257,D]; connect the output of "
                                  "CLIP Vision Encode (crop 'none') or use the clip_vision input instead.")
        visual = visual[:1]
    out = host.intermediate_device()
    return Conditioning(cond_concat.to(out), visual.float().to(out))


# ================================================================================================ actions
def _actions_mod():
    from matrix_game_core import actions
    return actions


def actions_from_json(track_json: str):
    """Parse an action track JSON string (schema: the engine's ``ActionTrack.to_json``)."""
    if not isinstance(track_json, str) or not track_json.strip():
        raise MatrixGameError("track_json is empty; paste an action track (JSON) or use the benchmark actions node.")
    return _actions_mod().ActionTrack.from_json(track_json)


def actions_bench(mode: str, frames: int, seed: int):
    """The official random benchmark track (``Bench_actions_<mode>``) of ``frames`` video frames."""
    check_mode(mode)
    return _actions_mod().bench_actions(mode, int(frames), int(seed))


def list_action_files() -> List[str]:
    """``.json`` files in ComfyUI's input folder (and its sub-folders)."""
    try:
        root = host.input_dir()
    except RuntimeError:
        return []
    out = []
    for dirpath, _dirs, files in os.walk(root, followlinks=True):
        for f in files:
            if f.lower().endswith(".json"):
                out.append(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/"))
    return sorted(out)


def actions_from_file(name: str):
    """Read an action track JSON file from ComfyUI's input folder."""
    if not isinstance(name, str) or not name.strip():
        raise MatrixGameError("No action file selected; put a .json track into ComfyUI/input/ and refresh the page.")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts or os.path.isabs(name) or "\x00" in name:
        raise MatrixGameError(f"Action file name {name!r} points outside ComfyUI's input folder; pick a file "
                              f"from the list.")
    path = os.path.join(host.input_dir(), *parts)
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise MatrixGameError(f"Cannot read action file {name!r} in ComfyUI/input ({e.strerror or e}); put the file "
                              f"there and refresh the page.") from e
    return actions_from_json(text)


def action_file_stamp(name: str) -> str:
    """Changes when the file changes (so ComfyUI re-reads an edited track)."""
    try:
        parts = str(name).replace("\\", "/").split("/")
        st = os.stat(os.path.join(host.input_dir(), *parts))
        return f"{name}:{st.st_mtime_ns}:{st.st_size}"
    except (OSError, RuntimeError):
        return f"{name}:missing"


def default_track_json() -> str:
    """Default of the JSON node: universal, 57 video frames (15 latent frames): walk forward while
    turning right, then walk left while looking a little up."""
    try:
        a = _actions_mod()
        T = video_frames_for_latents(15)
        return a.ActionTrack.from_segments("universal", T, [
            {"start": 0, "end": 33, "keys": ["forward"], "mouse": [0, 0.1]},
            {"start": 33, "end": T, "keys": ["left"]},
            {"start": 33, "end": 45, "mouse": [0.05, 0]},
        ]).to_json()
    except Exception:  # the engine's action module is unavailable: an empty default
        return ""


def actions_concat(first, second):
    """``first`` followed by ``second`` (same mode)."""
    if first.mode != second.mode:
        raise MatrixGameError(f"Cannot join a {first.mode!r} track with a {second.mode!r} track; both must be for "
                              f"the same mode.")
    return first.concat(second)


def _key_labels(mode: str) -> List[str]:
    """``"W forward"``, ... (official terminal key + key name) for each keyboard column."""
    a = _actions_mod()
    names = list(getattr(a, "KEYS", {}).get(mode, ()))
    labels = list(getattr(a, "KEY_LABELS", {}).get(mode, ()))
    if names and len(labels) == len(names):
        return [f"{lab} {name}" for lab, name in zip(labels, names)]
    return names or [f"key{i}" for i in range({"universal": 4, "gta_drive": 2, "templerun": 7}[mode])]


def summarize(track) -> str:
    """A readable summary: frames, seconds at 25 fps, latent frames it can drive, frames each key is
    held, mouse ranges."""
    kb = torch.as_tensor(track.keyboard).float()
    T = int(kb.shape[0])
    n_lat = 1 + (T - 1) // 4 if T >= 1 else 0
    usable = (n_lat // BLOCK) * BLOCK
    lines = [f"{track.mode}: {T} video frames = {T / FPS:.2f} s at {FPS} fps",
             f"drives up to {usable} latent frames (sampler 'latent frames' <= {usable})" if usable else
             "too short for one block (needs at least 9 video frames)"]
    held = [f"{lab} {int((kb[:, i] > 0.5).sum())}" for i, lab in enumerate(_key_labels(track.mode)) if i < kb.shape[1]]
    lines.append("keys held (frames): " + ", ".join(held))
    if getattr(track, "mouse", None) is not None:
        m = torch.as_tensor(track.mouse).float()
        if m.numel():
            lines.append(f"mouse pitch {m[:, 0].min().item():+.3f}..{m[:, 0].max().item():+.3f}, "
                         f"yaw {m[:, 1].min().item():+.3f}..{m[:, 1].max().item():+.3f} "
                         f"({int((m.abs().sum(1) > 0).sum())} frames moving)")
    else:
        lines.append("no mouse (keyboard only)")
    return "\n".join(lines)


# ================================================================================================ sample
def parse_steps(text: str) -> Optional[List[int]]:
    """``"1000, 750, 500, 250"`` -> ``[1000, 750, 500, 250]``; empty -> None (model default)."""
    if text is None or not str(text).strip():
        return None
    try:
        steps = [int(s) for s in str(text).replace(";", ",").replace(" ", ",").split(",") if s.strip()]
    except ValueError as e:
        raise MatrixGameError(f"denoising steps {text!r} must be whole timesteps separated by commas, e.g. "
                              f"'1000, 666, 333' (or empty for the model's default).") from e
    if not steps or any(not 0 < s <= 1000 for s in steps) or any(a <= b for a, b in zip(steps, steps[1:])):
        raise MatrixGameError(f"denoising steps {text!r} must be decreasing timesteps in 1..1000, e.g. "
                              f"'1000, 666, 333' (or empty for the model's default).")
    return steps


def _cache_bytes(cfg, tokens: int, window: int, dtype: torch.dtype, batch: int = 1) -> int:
    """Rough size of the KV caches plus one block's activations (for ComfyUI's memory manager)."""
    size = torch.empty(0, dtype=dtype).element_size()
    kv = cfg.num_layers * 2 * batch * cfg.dim * window * tokens * size
    act = 0
    if cfg.action_config is not None:
        ac = cfg.action_config
        act = len(ac.blocks) * 2 * batch * (tokens + 1) * ac.heads_num * ac.head_dim * window * size
    block = 3 * tokens * cfg.ffn_dim * batch * 4 * 4
    return int(kv + act + block)


def _to_pil(rgb: torch.Tensor):
    """``[H, W, 3]`` float in 0..1 -> PIL image."""
    from PIL import Image
    arr = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return Image.fromarray(arr)


def latent_preview(z_norm: torch.Tensor):
    """Cheap preview of one normalized latent frame ``[B,16,1,h,w]`` (no VAE): ComfyUI's Wan-2.1
    latent->RGB factors, or a plain projection of 3 channels outside ComfyUI; 8x upscaled."""
    z = z_norm[0, :, 0].float().cpu()                                    # [16, h, w]
    fb = host.latent_rgb_factors()
    if fb is not None:
        rgb = torch.einsum("chw,cr->hwr", z, fb[0]) + fb[1]
    else:
        rgb = z[:3].permute(1, 2, 0) / 3
    img = _to_pil((rgb + 1) / 2)
    return img.resize((img.width * 8, img.height * 8))


def sample(model: MatrixGameModel, conditioning: Conditioning, actions, seed: int, latent_frames: int,
           vae=None, local_attn_size: int = 0, sink_size: int = 0, denoising_steps: str = "") -> Dict[str, torch.Tensor]:
    """Generate ``latent_frames`` latent frames block by block; returns LATENT ``{"samples": raw
    (un-normalized) Wan-2.1 latents [B,16,latent_frames,44,80]}`` on ComfyUI's intermediate device.

    After each block: a progress step with a preview (the block's first latent frame decoded on its
    own when ``vae`` is given, else a latent->RGB preview) and an interrupt check; interrupts are
    also checked between denoising steps."""
    if not isinstance(model, MatrixGameModel):
        raise MatrixGameError("model must come from the Matrix-Game model loader.")
    if not isinstance(conditioning, Conditioning):
        raise MatrixGameError("conditioning must come from the Matrix-Game start-image encode node.")
    n = int(latent_frames)
    if n <= 0 or n % BLOCK:
        lo, hi = max(BLOCK, n // BLOCK * BLOCK), (n // BLOCK + 1) * BLOCK
        raise MatrixGameError(f"latent frames must be a multiple of {BLOCK} (the model makes {BLOCK} latent frames per "
                              f"block); got {n}. Use {lo}" + (f" or {hi}" if hi != lo else "") +
                              f" ({video_frames_for_latents(lo)} / {video_frames_for_latents(hi)} video frames).")
    if getattr(actions, "mode", None) != model.mode:
        raise MatrixGameError(f"The action track is for mode {getattr(actions, 'mode', '?')!r} but the model is "
                              f"{model.mode!r}; make the track for {model.mode!r} (e.g. benchmark actions with mode "
                              f"{model.mode!r}) or load the {getattr(actions, 'mode', '?')} model.")
    if hasattr(actions, "validate"):
        actions.validate(any_length=True)
    need = video_frames_for_latents(n)
    have = int(torch.as_tensor(actions.keyboard).shape[0])
    if have < need:
        usable = ((1 + (have - 1) // 4) // BLOCK * BLOCK) if have >= 1 else 0
        raise MatrixGameError(f"The action track has {have} video frames but {n} latent frames need {need}; lengthen "
                              f"the track to {need} frames or set latent frames to {usable} or less."
                              if usable else
                              f"The action track has {have} video frames but {n} latent frames need {need}; "
                              f"lengthen the track to {need} frames.")
    steps = parse_steps(denoising_steps)
    if local_attn_size < 0 or sink_size < 0:
        raise MatrixGameError("local attention window and sink size must be 0 (model default) or positive.")
    window = None if local_attn_size == 0 else int(local_attn_size)
    sink = None if sink_size == 0 else int(sink_size)
    model.ensure_loaded()
    cfg = model.module.cfg
    vis = conditioning.visual_context
    if vis.shape[-1] != cfg.img_dim:
        raise MatrixGameError(f"The start-image features have width {vis.shape[-1]} but this model expects {cfg.img_dim}: "
                              + ("the random-tiny model needs the random-tiny VAE and image encoder."
                                 if model.is_tiny or cfg.img_dim != 1280 else
                                 "use clip_vision_h (ViT-H/14, 1280) for the image encoder."))
    if conditioning.cond_concat.shape[1] != cfg.in_dim - cfg.out_dim:
        raise MatrixGameError(f"conditioning has {conditioning.cond_concat.shape[1]} channels; expected "
                              f"{cfg.in_dim - cfg.out_dim}. Encode the start image with a Wan 2.1 VAE.")
    eff_window = window or model.module.window_frames
    if sink is not None and sink >= eff_window:
        raise MatrixGameError(f"sink size {sink} must be smaller than the local attention window ({eff_window}).")
    h, w = conditioning.cond_concat.shape[-2:]
    tokens = (h // cfg.patch_size[1]) * (w // cfg.patch_size[2])
    vae_part = engine_vae(vae) if vae is not None else None
    host.load_models([model.patcher] + ([vae_part.patcher] if vae_part else []),
                     memory_required=_cache_bytes(cfg, tokens, eff_window, model.dtype,
                                                  conditioning.cond_concat.shape[0]))
    dev = next(model.module.parameters()).device
    kb = torch.as_tensor(actions.keyboard)[:need].to(dev)
    ms = None if actions.mouse is None else torch.as_tensor(actions.mouse)[:need].to(dev)
    if cfg.has_mouse and ms is None:
        raise MatrixGameError(f"mode {model.mode!r} needs mouse actions; the track has none.")
    if not cfg.has_mouse:
        ms = None
    session = WorldSession(model.module, conditioning, seed=int(seed), local_attn_size=window, sink_size=sink,
                           denoising_step_list=steps, interrupt=host.interrupt_hook())
    bar = host.Progress(n // BLOCK, "sample")

    def on_block(res):
        first = res.latents[:, :, :1]
        if vae_part is not None:
            v = vae_part.module
            frame = StreamingDecoder(v).decode(first.to(v.device))             # [B,3,1,H,W] in [-1,1]
            preview = _to_pil(frames_to_images(frame)[0])
        else:
            preview = latent_preview(first)
        bar.update(res.block + 1, preview)
        host.check_interrupt()

    latents, _ = session.generate(kb, ms, n, callback=on_block, decode=False)
    raw = denormalize_latents(latents.float())
    return {"samples": raw.to(host.intermediate_device())}


# ================================================================================================ decode
def decode(vae, latent) -> torch.Tensor:
    """LATENT (raw Wan-2.1 latents ``[B,16,n,h,w]``) -> IMAGE ``[B*T,8h,8w,3]``, T = 1 + 4(n-1),
    through the engine's streaming decoder (one feature cache across the whole video)."""
    z = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(z, torch.Tensor) or z.dim() != 5 or z.shape[1] != 16:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise MatrixGameError(f"Expected a video LATENT of Wan 2.1 latents [B,16,T,h,w]; got {shape}. Connect the "
                              f"Matrix-Game sampler's output (or another Wan 2.1 video latent).")
    part = engine_vae(vae)
    host.load_models([part.patcher])
    dec = StreamingDecoder(part.module)
    n = z.shape[2]
    bar = host.Progress(n, "decode")
    chunks = []
    for i in range(0, n, BLOCK):
        out = dec.decode_raw(z[:, :, i:i + BLOCK].to(part.module.device))    # [B,3,t,H,W] float32 in [-1,1]
        chunks.append(out.to(host.intermediate_device()))
        bar.update(min(n, i + BLOCK))
        host.check_interrupt()
    return frames_to_images(torch.cat(chunks, dim=2)).to(host.intermediate_device())


# ================================================================================================ overlay
def overlay(images: torch.Tensor, actions) -> torch.Tensor:
    """IMAGE ``[T,H,W,3]`` + action track -> IMAGE with the official key / mouse overlay."""
    from matrix_game_core.video import draw_overlay
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[-1] != 3:
        raise MatrixGameError("images must be an IMAGE batch [T,H,W,3] (e.g. from the Matrix-Game decode node).")
    return draw_overlay(images, actions)


# ================================================================================================ demo files
_PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Demo inputs shipped with the pack (start images, action tracks); copied into ComfyUI's input
#: folder with a ``matrixgame_`` prefix, which is how the example workflows refer to them.
DEMO_SOURCES = ((os.path.join(_PACK_DIR, "assets", "demo_images"), (".png", ".jpg")),
                (os.path.join(_PACK_DIR, "workflows", "tracks"), (".json",)))
DEMO_PREFIX = "matrixgame_"


def demo_inputs() -> List[Tuple[str, str]]:
    """``(source path, name in the input folder)`` of every demo input the pack ships."""
    out = []
    for folder, exts in DEMO_SOURCES:
        if os.path.isdir(folder):
            for f in sorted(os.listdir(folder)):
                if f.lower().endswith(exts) and os.path.isfile(os.path.join(folder, f)):
                    out.append((os.path.join(folder, f), DEMO_PREFIX + f))
    return out


def install_demo_inputs(dest: Optional[str] = None) -> List[str]:
    """Copy the demo inputs into ComfyUI's input folder, never overwriting a file that is already
    there. Returns the names copied."""
    dest = dest or host.input_dir()
    copied = []
    for src, name in demo_inputs():
        dst = os.path.join(dest, name)
        if not os.path.exists(dst):
            os.makedirs(dest, exist_ok=True)
            shutil.copyfile(src, dst)
            copied.append(name)
    return copied


# ================================================================================================ evaluate
def action_following_report(images: torch.Tensor, actions) -> Tuple[str, float]:
    """GameWorld-style action following of a generated video (engine ``evaluate.action_following``).

    Args:
        images: IMAGE ``[T, H, W, 3]`` in 0..1 (e.g. Matrix-Game Decode output).
        actions: the ActionTrack the video was generated with (needs mouse: universal / gta_drive).
    Returns:
        ``(report text, accuracy in [0, 1] or -1 when no block commanded a turn or look)``.
    """
    from matrix_game_core.evaluate import action_following

    if getattr(actions, "mouse", None) is None:
        raise MatrixGameError(f"the {getattr(actions, 'mode', '?')} track has no mouse actions; action following "
                              f"measures camera turns, so use a universal or gta_drive track.")
    rep = action_following(images, actions.mouse)
    lines = [f"action following over {len(rep.blocks)} blocks (sign of global image motion vs mouse command):"]
    for name, v in rep.per_class.items():
        acc = "n/a" if v["accuracy"] is None else f"{100 * v['accuracy']:.0f}%"
        lines.append(f"  {name:<10} {v['correct']}/{v['n']} {acc}")
    total = -1.0 if rep.accuracy is None else float(rep.accuracy)
    lines.append("  overall    " + ("n/a (no block turns or looks)" if total < 0 else f"{100 * total:.0f}%"))
    return "\n".join(lines), total
