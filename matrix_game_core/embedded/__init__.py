"""The embedded default world model: a small Matrix-Game model trained on ViZDoom play by the
pack's own recipe (``matrix_game_core.data`` + ``matrix_game_core.train``, preset ``embedded``),
shipped inside the package so that the CLI, the CPU workflows and the live session show a real,
reacting world on any machine, without the official 6.5 GB checkpoint.

Files (``matrix_game_core/embedded/vizdoom/``; written by :func:`install_from_export`)::

    dit/model.safetensors   # CausalWanModel, official file format (model.-prefixed keys), float16
    dit/config.json         # its ModelConfig (universal mode, denoising_step_list) + "video_size"
                            # [H, W] it was trained at + "image_encoder": null
    vae.safetensors         # Wan-2.1 VAE at width 16 (Wan2.1_VAE keys), float16
    MODEL_CARD.md           # data, recipe, steps, losses, behaviour and speed metrics
    NOTICE.md               # Freedoom BSD-3 notice (trained on Freedoom imagery)

The model is image-encoder free (zero image tokens; the start image reaches it through the VAE
latents of ``cond_concat``, as officially) and runs at its trained frame size (64x112 video,
8x14 latents); start images of any size are centre-cropped and resized to it
(:func:`~matrix_game_core.pipeline.prepare_image`), as they are for the official model.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Dict, Optional, Tuple

import torch

from ..errors import MatrixGameError

#: The name front ends show (CLI line, ComfyUI loader entries).
NAME = "embedded ViZDoom (CPU)"
#: Folder of the shipped files.
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vizdoom")
DIT_DIR = os.path.join(ROOT, "dit")
DIT_FILE = os.path.join(DIT_DIR, "model.safetensors")
CONFIG_FILE = os.path.join(DIT_DIR, "config.json")
VAE_FILE = os.path.join(ROOT, "vae.safetensors")
CARD_FILE = os.path.join(ROOT, "MODEL_CARD.md")
#: Shipped file dtype (2 bytes a weight; float16 keeps 3 more mantissa bits than bfloat16).
FILE_DTYPE = torch.float16
#: Size budget of the shipped weights (issue 10: DiT + VAE at most 40 MB together).
MAX_BYTES = 40_000_000


def available(root: str = ROOT) -> bool:
    """True when the shipped DiT, its config and the VAE are all present under ``root``."""
    return all(os.path.isfile(os.path.join(root, p)) for p in ("dit/model.safetensors", "dit/config.json",
                                                                 "vae.safetensors"))


def _require(root: str) -> None:
    if not available(root):
        raise MatrixGameError(f"the embedded model's files are missing under {root} (dit/model.safetensors, "
                              f"dit/config.json, vae.safetensors); reinstall the pack, or pass --checkpoint-dir "
                              f"for the official model.")


def config_json(root: str = ROOT) -> Dict:
    """The shipped ``dit/config.json`` as a dict (ModelConfig fields plus ``video_size``)."""
    _require(root)
    with open(os.path.join(root, "dit", "config.json"), "r", encoding="utf-8") as f:
        return json.load(f)


def video_size(root: str = ROOT) -> Tuple[int, int]:
    """``(height, width)`` in pixels of the video the embedded model makes (and its start image)."""
    hw = config_json(root).get("video_size")
    if not (isinstance(hw, list) and len(hw) == 2):
        raise MatrixGameError(f"{os.path.join(root, 'dit', 'config.json')} lacks \"video_size\": [H, W].")
    return int(hw[0]), int(hw[1])


def fps(root: str = ROOT) -> float:
    """Frame rate of the recordings the model learnt from (video frames per second); 17.5 for
    ViZDoom at 2 tics a frame."""
    return float(config_json(root).get("fps", 17.5))


def load(device="cpu", dtype: torch.dtype = torch.float32, attention_backend: str = "auto",
         root: str = ROOT):
    """Load the embedded model as :class:`~matrix_game_core.pipeline.Components`.

    Args:
        device / dtype: where and in which dtype the DiT runs (the VAE always runs in float32 on
            the CPU, bf16/fp16 elsewhere when ``dtype`` is).
    Returns:
        ``Components(dit, vae, image_encoder=None, label)``.
    Raises:
        MatrixGameError: missing or damaged files.
    """
    from ..checkpoints import load_dit
    from ..pipeline import Components
    from ..vae import load_wan_vae

    _require(root)
    dit = load_dit(os.path.join(root, "dit", "model.safetensors"), mode="universal", device=device, dtype=dtype,
                   attention_backend=attention_backend)
    vdt = torch.float32 if torch.device(device).type == "cpu" else dtype
    vae = load_wan_vae(os.path.join(root, "vae.safetensors"), device=device, dtype=vdt)
    h, w = video_size(root)
    return Components(dit, vae, None, f"{NAME}: trained on Freedoom (ViZDoom) play, {w}x{h}")


def _save_file(sd: Dict[str, torch.Tensor], dst: str) -> int:
    """Write a state dict to ``dst`` atomically (readable by everyone); returns its size in bytes."""
    from safetensors.torch import save_file
    tmp = dst + ".tmp"
    save_file(sd, tmp, metadata={"format": "pt"})
    os.chmod(tmp, 0o644)                      # readable by everyone, like the rest of the package
    os.replace(tmp, dst)
    return os.path.getsize(dst)


def _cast_file(src: str, dst: str, dtype: torch.dtype) -> int:
    from safetensors.torch import load_file
    return _save_file({k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
                       for k, v in load_file(src).items()}, dst)


def _blend_file(student: str, teacher: str, dst: str, w: float, dtype: torch.dtype) -> int:
    """``w * student + (1 - w) * teacher``, tensor by tensor in float32 (weight-space interpolation of a
    fine-tuned model with its start, WiSE-FT: Wortsman et al., arXiv 2109.01903), cast to ``dtype``.

    Raises:
        MatrixGameError: the two files hold different tensors (not a student of this teacher)."""
    from safetensors.torch import load_file
    s, t = load_file(student), load_file(teacher)
    if set(s) != set(t) or any(s[k].shape != t[k].shape for k in s):
        raise MatrixGameError(f"{student} and {teacher} hold different tensors: a student can only be blended "
                              f"with its own teacher (the run's export/dit).")
    return _save_file({k: ((w * v.float() + (1.0 - w) * t[k].float()).to(dtype) if v.is_floating_point()
                           else v).contiguous() for k, v in s.items()}, dst)


def install_from_export(export_dir: str, dest: str = ROOT, dtype: torch.dtype = FILE_DTYPE,
                        fps: Optional[float] = None, denoising_step_list=None, model: str = "dit",
                        student_weight: float = 1.0) -> Dict[str, int]:
    """Copy a training export (``RUN/export``: ``dit/``, ``vae.safetensors``, ``NOTICE.md``) into
    ``dest`` with the weights cast to ``dtype``. Returns the file sizes in bytes.

    ``fps`` / ``denoising_step_list`` are written into the shipped ``config.json`` when given.
    ``model``: ``"dit"`` (the diffusion-forcing DiT, ``export/dit``) or ``"student"`` (the distilled
    student of ``train distill``, ``export/student``); either is installed as ``dest/dit``.
    ``student_weight`` < 1 installs the student's weights interpolated with its teacher's
    (``export/dit``): ``w * student + (1 - w) * teacher`` (:func:`_blend_file`), a point between the
    teacher's fidelity and the student's following and free-play contrast.

    Raises:
        MatrixGameError: missing export files (``export/student``; ``export/dit`` to blend with), an
            unknown ``model``, a ``student_weight`` outside [0, 1] or given for the DiT, a student whose
            tensors differ from its teacher's, or weights over :data:`MAX_BYTES` together.
    """
    if model not in ("dit", "student"):
        raise MatrixGameError(f"model must be 'dit' or 'student' (got {model!r}).")
    if not 0.0 <= student_weight <= 1.0 or (student_weight != 1.0 and model != "student"):
        raise MatrixGameError(f"student weight must be in [0, 1] and is only for model 'student' (got "
                              f"{student_weight:g} for {model!r}).")
    need = [os.path.join(export_dir, p) for p in (f"{model}/model.safetensors", f"{model}/config.json",
                                                  "vae.safetensors")]
    for p in need:
        if not os.path.isfile(p):
            hint = ("finish the distillation (python -m matrix_game_core.train distill, which ends with export/student)"
                    if model == "student" and "student" in p else "run `python -m matrix_game_core.train export`")
            raise MatrixGameError(f"{p} is missing; {hint} first.")
    os.makedirs(os.path.join(dest, "dit"), exist_ok=True)
    dit_dst = os.path.join(dest, "dit", "model.safetensors")
    teacher = os.path.join(export_dir, "dit", "model.safetensors")
    if student_weight != 1.0 and not os.path.isfile(teacher):
        raise MatrixGameError(f"{teacher} is missing: blending the student needs its teacher; run "
                              f"`python -m matrix_game_core.train export` first.")
    sizes = {"dit/model.safetensors": (_cast_file(need[0], dit_dst, dtype) if student_weight == 1.0
                                       else _blend_file(need[0], teacher, dit_dst, student_weight, dtype)),
             "vae.safetensors": _cast_file(need[2], os.path.join(dest, "vae.safetensors"), dtype)}
    with open(need[1], "r", encoding="utf-8") as f:
        cfg = json.load(f)
    cfg.pop("vae_file", None)
    cfg["vae_file"] = "../vae.safetensors"
    if fps is not None:
        cfg["fps"] = float(fps)
    if denoising_step_list is not None:
        cfg["denoising_step_list"] = [int(s) for s in denoising_step_list]
    with open(os.path.join(dest, "dit", "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=1)
    notice = os.path.join(export_dir, "NOTICE.md")
    if os.path.isfile(notice):
        shutil.copyfile(notice, os.path.join(dest, "NOTICE.md"))
    total = sum(sizes.values())
    if total > MAX_BYTES:
        raise MatrixGameError(f"the embedded weights take {total / 1e6:.1f} MB, over the {MAX_BYTES / 1e6:.0f} MB "
                              f"budget; train a smaller preset.")
    return sizes
