"""Model and sampler configurations as data.

The field names mirror the official ``configs/distilled_model/<mode>/config.json`` files of
SkyworkAI/Matrix-Game (``Matrix-Game-2/``, commit 3ceb3114) so that an official config (or a golden
case's ``CausalWanModel_constructor_args``) parses unchanged with :meth:`ModelConfig.from_dict`.

Presets:

* full size: ``universal``, ``gta_drive``, ``templerun`` (distilled students) and ``foundation``
  (the teacher; ``local_attn_size = -1``; no official sampling recipe exists for it);
* ``tiny_<mode>``: the tiny random-weight configs of the golden data (dim 128, 4 layers), used by
  tests, the CPU workflow and ``--random-weights tiny``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .errors import MatrixGameError

MODES = ("universal", "gta_drive", "templerun")

#: Latent frames per block; official ``num_frame_per_block`` (configs/inference_yaml/*.yaml).
NUM_FRAME_PER_BLOCK = 3
#: Video frames per latent frame after the first (Wan-2.1 VAE temporal compression, reference §5).
VAE_TIME_COMPRESSION = 4
#: Spatial compression of the Wan-2.1 VAE.
VAE_SPATIAL_COMPRESSION = 8
#: The official output size (reference §2.2: 880 tokens per latent frame are hard-coded officially).
VIDEO_HEIGHT, VIDEO_WIDTH = 352, 640
LATENT_HEIGHT, LATENT_WIDTH = VIDEO_HEIGHT // 8, VIDEO_WIDTH // 8
#: Flow-matching time shift (``model_kwargs.timestep_shift``, configs/inference_yaml/*.yaml).
TIMESTEP_SHIFT = 5.0


@dataclass
class ActionConfig:
    """``action_config`` of the official model config (reference §3.1)."""

    blocks: List[int] = field(default_factory=lambda: list(range(15)))
    enable_keyboard: bool = True
    enable_mouse: bool = True
    heads_num: int = 16
    hidden_size: int = 128
    img_hidden_size: int = 1536
    keyboard_dim_in: int = 4
    keyboard_hidden_dim: int = 1024
    mouse_dim_in: int = 2
    mouse_hidden_dim: int = 1024
    mouse_qk_dim_list: List[int] = field(default_factory=lambda: [8, 28, 28])
    patch_size: List[int] = field(default_factory=lambda: [1, 2, 2])
    qk_norm: bool = True
    qkv_bias: bool = False
    rope_dim_list: List[int] = field(default_factory=lambda: [8, 28, 28])
    rope_theta: float = 256
    vae_time_compression_ratio: int = 4
    windows_size: int = 3

    @property
    def head_dim(self) -> int:
        # the action RoPE table of the official code is built for head_dim 64 (sum(rope_dim_list))
        return sum(self.rope_dim_list)


@dataclass
class ModelConfig:
    """``CausalWanModel`` constructor arguments (reference §2.1) plus the sampling recipe.

    ``denoising_step_list`` is the YAML key of ``configs/inference_yaml/inference_<mode>.yaml``.
    """

    mode: str = "universal"
    model_type: str = "i2v"
    patch_size: List[int] = field(default_factory=lambda: [1, 2, 2])
    in_dim: int = 36
    dim: int = 1536
    ffn_dim: int = 8960
    freq_dim: int = 256
    out_dim: int = 16
    num_heads: int = 12
    num_layers: int = 30
    local_attn_size: int = 6
    sink_size: int = 0
    qk_norm: bool = True
    cross_attn_norm: bool = True
    eps: float = 1e-6
    img_dim: int = 1280
    action_config: Optional[ActionConfig] = field(default_factory=ActionConfig)
    denoising_step_list: List[int] = field(default_factory=lambda: [1000, 666, 333])
    num_frame_per_block: int = NUM_FRAME_PER_BLOCK
    timestep_shift: float = TIMESTEP_SHIFT
    context_noise: int = 0
    #: Models trained by this pack (not in official configs): the video frame size ``[H, W]`` the
    #: model was trained at (None = the official 352x640) and the number of start-image
    #: conditioning latent frames it was trained with, the last one repeated beyond (None = the
    #: whole run is encoded, as the official ``inference.py`` does).
    video_size: Optional[List[int]] = None
    cond_latent_frames: Optional[int] = None
    #: Action guidance scale ``w`` of the sampler (this pack's; official configs have none: their
    #: distilled models sample without guidance): every denoising step runs the DiT twice, with the
    #: block's actions and with no actions (keys up, mouse 0), and uses
    #: ``flow = flow(no actions) + w * (flow(actions) - flow(no actions))``, classifier-free
    #: guidance (Ho & Salimans, arXiv 2207.12598) on the action track. 1 = off (one DiT pass per
    #: step, the official sampler). The embedded ViZDoom model ships with its own value.
    action_guidance: float = 1.0
    #: Pitch guidance ``w_p`` (this pack's): a separate guidance scale for the mouse pitch channel
    #: (look up/down), ``flow = f(0) + w (f(a without pitch) - f(0)) + w_p (f(a) - f(a without
    #: pitch))`` (:mod:`.guidance`; InstructPix2Pix-style nested guidance). None = ``w`` (plain
    #: action guidance); a different value costs one more DiT pass per denoising step.
    pitch_guidance: Optional[float] = None
    #: Keyboard guidance ``w_k`` (this pack's): the same for the keys (:mod:`.guidance`); None = ``w``.
    keyboard_guidance: Optional[float] = None
    #: Guidance interval (this pack's): only the first ``guidance_steps`` denoising steps of a block
    #: are guided; the later, low-noise steps run one unguided DiT pass (guidance in a limited
    #: interval, Kynkaanniemi et al., arXiv 2404.07724: the coarse layout, here the camera motion,
    #: is settled at high noise, and guiding the detail steps costs fidelity). None = every step.
    guidance_steps: Optional[int] = None
    #: Guidance rescale ``phi`` in [0, 1] (this pack's): the guided x0 prediction is scaled back
    #: toward the standard deviation of the x0 under all the actions (Lin et al., arXiv 2305.08891,
    #: section 3.4; :func:`.guidance.rescale_flow`). 0 = off (plain guidance); no extra DiT pass.
    guidance_rescale: float = 0.0
    #: Guidance hold ``h`` in [0, 1] (this pack's): the levels below "all the actions" see, instead
    #: of no actions, ``h`` x the actions in effect before the block, held through it
    #: (:func:`.guidance.held_reference`; none for the first block). 0 = classic guidance; 1 = only
    #: a *change* of actions is guided (a turn that goes on is left to the model, which continues it
    #: from its context, in teacher-forced prediction, but lets it fade in free play); in between, a
    #: held command keeps about ``(1 - h) w + h`` of the scale ``w``. No extra DiT pass.
    guidance_hold: float = 0.0

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def frame_size(self) -> Tuple[int, int]:
        """``(height, width)`` of the video frames (and start image) this model works at."""
        if self.video_size:
            return int(self.video_size[0]), int(self.video_size[1])
        return VIDEO_HEIGHT, VIDEO_WIDTH

    def conditioning_frames(self, num_latent_frames: int) -> int:
        """How many latent frames of start-image conditioning to encode for a run of
        ``num_latent_frames`` (:attr:`cond_latent_frames` caps it; sessions repeat the last one)."""
        n = int(num_latent_frames)
        return min(n, int(self.cond_latent_frames)) if self.cond_latent_frames else n

    @property
    def keyboard_dim(self) -> int:
        return self.action_config.keyboard_dim_in if self.action_config else 0

    @property
    def has_mouse(self) -> bool:
        return bool(self.action_config and self.action_config.enable_mouse)

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def from_dict(cls, d: Dict[str, Any], mode: Optional[str] = None, **overrides) -> "ModelConfig":
        """Parse an official ``config.json`` dict (unknown keys such as ``_class_name`` ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        ac = kw.get("action_config")
        if isinstance(ac, dict):
            anames = {f.name for f in dataclasses.fields(ActionConfig)}
            kw["action_config"] = ActionConfig(**{k: v for k, v in ac.items() if k in anames})
        if mode is not None:
            kw["mode"] = mode
        kw.update(overrides)
        cfg = cls(**kw)
        if "denoising_step_list" not in d and "denoising_step_list" not in overrides:
            cfg.denoising_step_list = list(DEFAULT_STEPS.get(cfg.mode, [1000, 666, 333]))
        return cfg

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def load(cls, path: str) -> "ModelConfig":
        """Read a config JSON written by :meth:`save` or an official ``config.json``.

        Raises:
            MatrixGameError: the file is missing or not valid JSON.
        """
        try:
            with open(path, "r", encoding="utf-8") as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            raise MatrixGameError(f"Cannot read model config {path!r}: {e}. "
                                  "Pass an official config.json or one written by the engine.") from e
        return cls.from_dict(d)

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)


#: ``denoising_step_list`` per mode (configs/inference_yaml/inference_<mode>.yaml).
DEFAULT_STEPS = {
    "universal": [1000, 666, 333],
    "gta_drive": [1000, 666, 333],
    "templerun": [1000, 750, 500, 250],
}


def _full(mode: str) -> ModelConfig:
    if mode == "foundation":
        return ModelConfig(mode="universal", local_attn_size=-1,
                           action_config=ActionConfig(blocks=list(range(30))))
    kb = {"universal": 4, "gta_drive": 2, "templerun": 7}[mode]
    ac = ActionConfig(keyboard_dim_in=kb, enable_mouse=(mode != "templerun"))
    return ModelConfig(mode=mode, local_attn_size=4 if mode == "gta_drive" else 6, action_config=ac,
                       denoising_step_list=list(DEFAULT_STEPS[mode]))


def _tiny(mode: str) -> ModelConfig:
    """The golden tiny configs (shared/golden/dit_*_tiny/config.json)."""
    kb = {"universal": 4, "gta_drive": 2, "templerun": 7}[mode]
    ac = ActionConfig(blocks=[0, 1], heads_num=2, hidden_size=32, img_hidden_size=128,
                      keyboard_dim_in=kb, keyboard_hidden_dim=128, mouse_hidden_dim=128,
                      enable_mouse=(mode != "templerun"))
    return ModelConfig(mode=mode, dim=128, ffn_dim=256, num_heads=1 if mode == "templerun" else 2,
                       num_layers=4, local_attn_size=4 if mode == "gta_drive" else 6,
                       action_config=ac, denoising_step_list=list(DEFAULT_STEPS[mode]))


PRESETS = ("universal", "gta_drive", "templerun", "foundation",
           "tiny_universal", "tiny_gta_drive", "tiny_templerun")


def preset(name: str) -> ModelConfig:
    """Return a fresh :class:`ModelConfig` for a preset name (see module docstring).

    Raises:
        MatrixGameError: unknown name (the message lists the valid ones).
    """
    if name in MODES or name == "foundation":
        return _full(name)
    if name.startswith("tiny_") and name[5:] in MODES:
        return _tiny(name[5:])
    raise MatrixGameError(f"Unknown model preset {name!r}; choose one of {', '.join(PRESETS)}.")


def check_mode(mode: str) -> str:
    """Validate a mode name. Raises MatrixGameError naming the valid modes."""
    if mode not in MODES:
        raise MatrixGameError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}.")
    return mode


def video_frames_for_latents(n_latent: int) -> int:
    """Video frames decoded from ``n_latent`` latent frames: ``1 + 4 (n - 1)``."""
    return 1 + VAE_TIME_COMPRESSION * (n_latent - 1)


def latents_for_video_frames(n_video: int) -> int:
    """Inverse of :func:`video_frames_for_latents` (``n_video`` must be ``1 + 4k``)."""
    if n_video < 1 or (n_video - 1) % VAE_TIME_COMPRESSION:
        raise MatrixGameError(f"{n_video} video frames is not 1 + 4k; use e.g. "
                              f"{1 + 4 * max(0, (n_video - 1) // 4)} or {1 + 4 * ((n_video + 2) // 4)}.")
    return 1 + (n_video - 1) // VAE_TIME_COMPRESSION
