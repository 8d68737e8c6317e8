"""Training configuration: the two stages, their model sizes, and presets.

Presets (``TrainConfig.preset(name)``):

=========  ==========================================  ==========================================
preset     VAE (engine ``WanVAE``)                       DiT (engine ``CausalWanModel``)
=========  ==========================================  ==========================================
``smoke``  dim 8, clips 5 x 32x64, 150 steps           dim 64, 2 layers, 6-latent clips, 150 steps
``small``  dim 32, clips 9 x 128x128 crops, 40k steps   dim 384, 10 layers (action in 0..7),
                                                       15-latent clips (57 frames), 200k steps
``embedded`` dim 16, clips 33 x 32x48 crops of 64x112, dim 192, 6 layers, 3 heads (action in 0..3,
           batch 1, 2.25k steps, latent anchor 0.5     2 x 64 wide), 9-latent clips (33 frames),
                                                       batch 4, 4 denoising steps, 40k steps
=========  ==========================================  ==========================================

``embedded`` is the model that ships in the pack (``matrix_game_core/embedded``): sized to play
live on a 2-core CPU (>= 10 video frames/s at 64x112, DiT + streaming decode) and to fit in
40 MB as fp16 (DiT ~8 M + VAE 3.6 M parameters).

Both write files in the engine's formats: the VAE as a ``Wan2.1_VAE``-keyed safetensors
(:func:`~matrix_game_core.vae.load_wan_vae` infers ``dim``), the DiT as the official
``model.``-prefixed safetensors plus its ``config.json`` (:func:`~matrix_game_core.checkpoints.load_dit`).

The DiT is **image-encoder free**: ``img_dim = 1280`` with all-zero image tokens, which is exactly
what :func:`~matrix_game_core.pipeline.encode_conditioning` produces without an image encoder, so
the trained model runs through the ordinary pipeline and WorldSession unchanged. (Cross-attention
to identical tokens does not depend on their number: 1 token in training = 257 at inference.)
The start image reaches the model through ``cond_concat`` (mask + image latents), as officially.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..config import ActionConfig, ModelConfig
from ..errors import MatrixGameError

#: Picture motion per official mouse unit as a fraction of the frame (height for pitch, width for yaw):
#: ViZDoom at 5 degrees a camera step, measured on the embedded model's recordings (train/augment.py).
DOOM_PAN_PER_UNIT = (0.678, -0.313)


@dataclass
class VAEStage:
    dim: int = 32
    clip_frames: int = 9                     # 1 + 4k
    crop: Optional[Tuple[int, int]] = (128, 128)
    batch: int = 8
    steps: int = 40_000
    lr: float = 3e-4                         # >= 1e-3 makes the decoder learn the average frame
    warmup: int = 500
    kl_weight: float = 1e-6
    latent_gain: float = 4.0                 # scale of the batch-standardised latent fed to the decoder
    anchor_weight: float = 0.0               # pull latent channels 0-2 to the 8x8-pooled picture (train/vae.py)
    ssim_weight: float = 0.2
    grad_weight: float = 0.1
    calib_clips: int = 64                    # clips used to measure latent statistics


@dataclass
class DecoderStage:
    """Stage 1b: decoder fine-tune with the encoder frozen (:mod:`matrix_game_core.train.decoder`).
    ``steps`` 0 skips it (the stage-1 VAE ships as trained)."""

    steps: int = 0
    clip_frames: int = 33                    # 1 + 4k; as long as stage 1's clips (causal caches)
    crop: Optional[Tuple[int, int]] = None   # None: full frames (the decoder then sees the borders)
    batch: int = 1
    lr: float = 5e-5
    warmup: int = 20
    mse_weight: float = 10.0                 # MSE weight beside L1 (PSNR is the MSE)
    ssim_weight: float = 0.05
    grad_weight: float = 0.0
    kl_weight: float = 0.0                   # (unused: the encoder is frozen)
    latent_noise: float = 0.0                # std of noise added to the latents, normalised units
    generated_share: float = 0.0             # share of clips whose blocks after the first are the generator's
                                             # teacher-forced predictions (decoding what the DiT makes)
    generator: Optional[str] = None          # that DiT: model.safetensors or its folder (None: RUN/export/student)
    val_clips: int = 4                       # fixed full-size clips of the val split for decoder_val
    ckpt_every: Optional[int] = None         # None: the run's ckpt_every


@dataclass
class DiTStage:
    dim: int = 384
    num_layers: int = 10
    num_heads: int = 6
    ffn_mult: int = 4
    action_blocks: Optional[List[int]] = None    # default: first 3/4 of the layers
    action_heads: int = 4                     # x 64 = mouse/keyboard hidden dims
    keyboard_hidden: int = 128
    local_attn_size: int = 6
    clip_latents: int = 15                    # multiple of 3 (57 video frames)
    clip_stride: Optional[int] = None         # video frames between encoded clips (default: clip length)
    clip_encoding: str = "clip"               # "clip" (each clip on its own) | "episode" (see train/latents.py)
    cond_latents: Optional[int] = None        # conditioning latents encoded (last repeated); None = clip length
    max_shards: Optional[Dict[str, int]] = None   # encode at most this many shards per split
    batch: int = 8
    steps: int = 200_000
    lr: float = 2e-4
    warmup: int = 1000
    weight_decay: float = 0.01
    ema: float = 0.999
    clean_context_prob: float = 0.25          # share of samples whose first blocks are clean context
    denoising_step_list: List[int] = field(default_factory=lambda: [1000, 875, 750, 625, 500, 375, 250, 125])
    mouse_init_gain: float = 10.0             # init scale of the mouse inputs of the action MLPs (train/dit.py)
    action_lr_mult: float = 1.0               # learning-rate multiplier of the action modules' parameters
    camera_pan_prob: float = 0.0              # share of clips replaced by pure camera pans (train/augment.py)
    camera_pan_per_unit: List[float] = field(default_factory=lambda: list(DOOM_PAN_PER_UNIT))  # (pitch, yaw)
    camera_pan_random_track: float = 0.0      # share of the pans under a random block-wise camera track
    onset_share: float = 0.0                  # share of each batch drawn from camera-onset clips (train/latents.py)
    onset_still_frames: int = 8               # still video frames before the camera moves, for an onset clip
    onset_axis: str = "any"                   # onset clips that start with: any | yaw (a turn) | pitch (a look)

    def model_config(self, keyboard_dim: int = 4) -> ModelConfig:
        """The engine :class:`ModelConfig` of this stage (universal mode, image-encoder free)."""
        if self.dim % self.num_heads or (self.dim // self.num_heads) % 2:
            raise MatrixGameError(f"DiT dim {self.dim} must split into {self.num_heads} heads of even size.")
        if self.clip_latents % 3:
            raise MatrixGameError(f"clip_latents {self.clip_latents} must be a multiple of 3 (blocks).")
        blocks = self.action_blocks
        if blocks is None:
            blocks = list(range(max(1, (3 * self.num_layers + 3) // 4)))
        hid = 64 * self.action_heads
        ac = ActionConfig(blocks=list(blocks), heads_num=self.action_heads, hidden_size=self.keyboard_hidden,
                          img_hidden_size=self.dim, keyboard_dim_in=keyboard_dim, keyboard_hidden_dim=hid,
                          mouse_hidden_dim=hid, enable_mouse=True)
        return ModelConfig(mode="universal", dim=self.dim, ffn_dim=self.ffn_mult * self.dim,
                           num_heads=self.num_heads, num_layers=self.num_layers,
                           local_attn_size=self.local_attn_size, img_dim=1280, action_config=ac,
                           denoising_step_list=list(self.denoising_step_list))


@dataclass
class DistillStage:
    """Stage 3: Self-Forcing distillation of the diffusion-forcing DiT into a few-step student
    (:mod:`matrix_game_core.train.distill`). Student and critic start from the teacher's weights."""

    steps: int = 6_000
    batch: int = 8                             # global batch (split over the ranks)
    lr: float = 2e-5                           # student (generator) AdamW lr; Self-Forcing's 1.3B: 2e-6
    critic_lr: float = 2e-5                    # critic (fake score) AdamW lr; Self-Forcing's 1.3B: 4e-7
    warmup: int = 100
    weight_decay: float = 0.01
    ema: float = 0.99
    critic_steps: int = 5                      # critic updates per student update (DMD2 TTUR, 2405.14867 §4.1)
    critic_warmup: int = 0                     # critic-only updates before the first student update
    denoising_step_list: List[int] = field(default_factory=lambda: [1000, 666, 333])  # the students' 3 steps
    last_step_only: bool = False               # True: always exit at the last step (no random exit)
    min_score_t: float = 0.02                  # DMD timesteps in [min, max] x 1000 (DMD / Self-Forcing)
    max_score_t: float = 0.98
    # action guidance in the real score (the teacher's x0; matrix_game_core/guidance.py): the student
    # learns the guided teacher's distribution and samples it without guidance (one DiT pass a step).
    # Self-Forcing guides its real score (text CFG 3.0); 1 = the plain conditional teacher.
    guidance: float = 1.0
    pitch_guidance: Optional[float] = None     # None: = guidance
    keyboard_guidance: Optional[float] = None  # None: = guidance
    guidance_rescale: float = 0.0              # arXiv 2305.08891 (0 = off)
    # data regression beside DMD (DMD, arXiv 2311.18828 eq. 9 regresses onto teacher ODE outputs; here
    # onto recorded latents): teacher-forced x0 MSE of one recorded block per clip, earlier blocks
    # clean, the block noised at one of the student's own timesteps. 0 = pure DMD.
    regression_weight: float = 0.0
    regression_steps: Optional[int] = None     # regress at the first k of the student's steps only (None: all)


@dataclass
class TrainConfig:
    """Both stages plus run-level settings (saved as ``RUN/train_config.json``)."""

    vae: VAEStage = field(default_factory=VAEStage)
    decoder: DecoderStage = field(default_factory=DecoderStage)
    dit: DiTStage = field(default_factory=DiTStage)
    distill: DistillStage = field(default_factory=DistillStage)
    seed: int = 0
    log_every: int = 50
    ckpt_every: int = 1000
    num_workers: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        def sub(kls, dd):
            names = {f.name for f in dataclasses.fields(kls)}
            kw = {k: v for k, v in (dd or {}).items() if k in names}
            if "crop" in kw and kw["crop"] is not None:
                kw["crop"] = tuple(kw["crop"])
            return kls(**kw)
        top = {k: v for k, v in d.items() if k in {"seed", "log_every", "ckpt_every", "num_workers"}}
        return cls(vae=sub(VAEStage, d.get("vae")), decoder=sub(DecoderStage, d.get("decoder")),
                   dit=sub(DiTStage, d.get("dit")),
                   distill=sub(DistillStage, d.get("distill")), **top)

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def load(cls, path: str) -> "TrainConfig":
        with open(path, "r", encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    @classmethod
    def preset(cls, name: str) -> "TrainConfig":
        if name == "small":
            return cls()
        if name == "embedded":
            # VAE clips of 33 frames (9 latent frames): trained on 5- or 9-frame clips the causal
            # feature caches drift after the trained horizon (PSNR 26 dB -> 9 dB from latent frame 4 on,
            # measured at 64x112), and both the streaming decoder and the DiT's clips run longer
            return cls(vae=VAEStage(dim=16, clip_frames=33, crop=(32, 48), batch=1, steps=2_250, lr=3e-4, warmup=100,
                                    anchor_weight=0.5, calib_clips=32),
                       # stage 1b (train/decoder.py): held-out round trip 22.10 -> 23.59 dB in the first 100
                       # steps, flat after (~7-10 s a step of one 33-frame full-size clip on one CPU core)
                       decoder=DecoderStage(steps=300, clip_frames=33, lr=5e-5, warmup=20, ckpt_every=100),
                       dit=DiTStage(dim=192, num_layers=6, num_heads=3, ffn_mult=4, action_blocks=[0, 1, 2, 3],
                                    action_heads=2, keyboard_hidden=128, local_attn_size=6, clip_latents=9,
                                    clip_stride=24, clip_encoding="clip", cond_latents=3,
                                    # 43 still-start episodes + the first 48 of the main recording
                                    # (merged in that order: docs/data_and_training.md §3b)
                                    max_shards={"train": 91, "val": 2},
                                    # what the shipped run uses since step 4,750 (docs/data_and_training.md §3b)
                                    batch=4, steps=40_000, lr=5e-4, warmup=300, ema=0.998, action_lr_mult=3.0,
                                    denoising_step_list=[1000, 750, 500, 250]),
                       # the shipped student (docs/data_and_training.md §3h): the teacher's own 4 steps, the real
                       # score under the guidance its sampler used (keys 1, yaw 2, pitch 4, rescale 1); ~4 s a
                       # step on 2 CPU cores. The shipped run lowered the yaw scale to 1.5 from step 200; the
                       # shipped student was then distilled on 200 steps with a data regression (§3i, CLI flags).
                       distill=DistillStage(steps=500, batch=4, lr=5e-5, critic_lr=1e-4, warmup=20, ema=0.99,
                                            critic_steps=2, critic_warmup=10,
                                            denoising_step_list=[1000, 500, 150, 50], guidance=2.0,
                                            pitch_guidance=4.0, keyboard_guidance=1.0, guidance_rescale=1.0),
                       log_every=25, ckpt_every=250)
        if name == "smoke":
            return cls(vae=VAEStage(dim=8, clip_frames=5, crop=None, batch=2, steps=150, lr=3e-4, warmup=5,
                                    calib_clips=4),
                       decoder=DecoderStage(steps=20, clip_frames=5, batch=2, lr=3e-4, warmup=2, val_clips=2, ckpt_every=10),
                       dit=DiTStage(dim=64, num_layers=2, num_heads=2, ffn_mult=2, action_blocks=[0],
                                    action_heads=1, keyboard_hidden=16, clip_latents=6, batch=4, steps=150,
                                    lr=2e-3, warmup=10, ema=0.9, denoising_step_list=[1000, 750, 500, 250]),
                       distill=DistillStage(steps=12, batch=2, lr=1e-4, critic_lr=1e-3, warmup=2, ema=0.5,
                                            critic_steps=2, critic_warmup=10),
                       log_every=10, ckpt_every=50)
        raise MatrixGameError(f"unknown training preset {name!r}; choose smoke, small or embedded.")
