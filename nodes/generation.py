"""Generation nodes' logic: encode the start image, sample block by block (with previews), decode
and draw the overlay.

Part of :mod:`.logic` (which re-exports every name); no ComfyUI import here (see :mod:`.host`).
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional

import torch

from matrix_game_core.config import video_frames_for_latents
from matrix_game_core.errors import MatrixGameError
from matrix_game_core.image_encoder import encode_image
from matrix_game_core.pipeline import CROP_MODES, frames_to_images, prepare_image
from matrix_game_core.sampling import Conditioning, WorldSession
from matrix_game_core.vae import StreamingDecoder, denormalize_latents, encode_start_image

from . import host
from .loaders import (EMBEDDED, OFFICIAL_FRAME, MatrixGameModel, ModelFrame, NoImageEncoder, embedded_fix,
                      embedded_frame, engine_clip, engine_vae, model_frame)
from .overlap import OneAhead
from .tracks import BLOCK

log = logging.getLogger(__name__)


# ================================================================================================ encode
def _check_encoder_pair(frame: ModelFrame, clip_vision, clip_vision_output) -> None:
    """The VAE and the image encoder must belong to the same model (the embedded model: its VAE and
    the image encoder 'none'; the official models: the Wan 2.1 VAE and CLIP ViT-H/14)."""
    none = isinstance(clip_vision, NoImageEncoder)
    real = clip_vision_output is not None or (clip_vision is not None and not none)
    if not frame.image_encoder and real:
        raise MatrixGameError(f"The VAE is the {frame.name!r} model's, which takes no image encoder, but an image "
                              f"encoder is connected: " + embedded_fix(" (or use the Wan 2.1 VAE for an official "
                                                                       "model)."))
    if frame.image_encoder and none:
        raise MatrixGameError(f"The image encoder is {EMBEDDED!r} (none), but the VAE is not that model's: "
                              + embedded_fix(" (or, for an official model, Load CLIP Vision with clip_vision_h "
                                             "and the Wan 2.1 VAE)."))
    if frame.image_encoder and not real:
        raise MatrixGameError("Connect an image encoder: 'clip_vision' (Load CLIP Vision with clip_vision_h.safetensors, "
                              "or the Matrix-Game image encoder loader) or a 'clip_vision_output'.")


def encode(image: torch.Tensor, vae, clip_vision=None, clip_vision_output=None, crop: str = "center",
           length: int = 15) -> Conditioning:
    """Start image -> ``MATRIX_GAME_CONDITIONING``.

    The model the VAE belongs to (:func:`~.loaders.model_frame`: the official models, or the
    embedded ViZDoom model whose VAE says so) sets the frame size ``H x W`` (352x640 official,
    64x112 embedded) and how many latent frames are encoded (official: ``length``; embedded: the 3
    it was trained with, the sampler repeats the last).

    ``image``: IMAGE ``[B,H,W,3]`` in 0..1 (the first image is used), fitted to ``H x W`` by ``crop``.
    ``cond_concat [1,20,n,H/8,W/8]`` comes from the engine's causal VAE encode of the image and
    grey frames; ``visual_context [1,257,1280]`` from ``clip_vision`` encoded the official way (224^2
    squash, no crop, 31 of 32 blocks), taken as is from ``clip_vision_output.penultimate_hidden_states``,
    or zeros for a model that takes no image encoder (:class:`~.loaders.NoImageEncoder`).
    """
    if crop not in CROP_MODES:
        raise MatrixGameError(f"Unknown crop mode {crop!r}; choose one of {', '.join(CROP_MODES)}.")
    if length < 1:
        raise MatrixGameError(f"length must be at least 1 latent frame (got {length}).")
    frame = model_frame(vae)
    _check_encoder_pair(frame, clip_vision, clip_vision_output)
    if not isinstance(image, torch.Tensor):
        raise MatrixGameError(f"image must be an IMAGE tensor, got {type(image).__name__}.")
    h, w = frame.frame_size
    img = prepare_image(image[:1] if image.dim() == 4 else image, crop=crop, height=h, width=w)  # [1,3,h,w] in [-1,1]
    vae_part = engine_vae(vae)
    parts = [vae_part.patcher]
    clip_part = engine_clip(clip_vision) if frame.image_encoder and clip_vision_output is None else None
    if clip_part is not None:
        parts.append(clip_part.patcher)
    host.load_models(parts)
    v = vae_part.module
    cond_concat = encode_start_image(v, img.to(v.device), frame.conditioning_frames(length)).float()
    if not frame.image_encoder:
        visual = torch.zeros(1, 257, 1280)                   # no image tokens (pipeline.encode_conditioning)
    elif clip_part is not None:
        visual = encode_image(clip_part.module, img)
    else:
        visual = getattr(clip_vision_output, "penultimate_hidden_states", None)
        if not isinstance(visual, torch.Tensor) or visual.dim() != 3:
            raise MatrixGameError("clip_vision_output has no penultimate_hidden_states [B,257,D]; connect the output of "
                                  "CLIP Vision Encode (crop 'none') or use the clip_vision input instead.")
        visual = visual[:1]
    out = host.intermediate_device()
    return Conditioning(cond_concat.to(out), visual.float().to(out))


def check_conditioning(model: MatrixGameModel, conditioning) -> None:
    """The start image's conditioning must fit the model: its image features (width, and none for
    the embedded model), its channels and its latent frame size (``frame_size / 8``; a conditioning
    encoded with another model's VAE has another size; the untrained random-tiny model takes any
    size). Used by the sampler and the live session.

    Raises:
        MatrixGameError: the first mismatch, naming the loaders to fix.
    """
    if not isinstance(conditioning, Conditioning):
        raise MatrixGameError("conditioning must come from the Matrix-Game start-image encode node.")
    cfg = model.module.cfg
    vis, cc = conditioning.visual_context, conditioning.cond_concat
    if vis.shape[-1] != cfg.img_dim:
        raise MatrixGameError(f"The start-image features have width {vis.shape[-1]} but this model expects {cfg.img_dim}: "
                              + ("the random-tiny model needs the random-tiny VAE and image encoder."
                                 if model.is_tiny or cfg.img_dim != 1280 else embedded_fix(".") if model.is_embedded else
                                 "use clip_vision_h (ViT-H/14, 1280) for the image encoder."))
    if cc.shape[1] != cfg.in_dim - cfg.out_dim:
        raise MatrixGameError(f"conditioning has {cc.shape[1]} channels; expected "
                              f"{cfg.in_dim - cfg.out_dim}. Encode the start image with a Wan 2.1 VAE.")
    fh, fw = cfg.frame_size
    h, w = (int(s) * 8 for s in cc.shape[-2:])
    if (h, w) != (fh, fw) and not model.is_tiny:     # the untrained tiny model has no trained size (tests)
        fix = (embedded_fix(".") if model.is_embedded else
               f"use the Wan 2.1 VAE (wan_2.1_vae.safetensors) and clip_vision_h with this model, or pick {EMBEDDED!r} "
               f"in the model loader too." if (h, w) == embedded_frame().frame_size else
               "encode the start image with this model's VAE.")
        raise MatrixGameError(f"The start image was encoded at {w}x{h} but {model.label} works at {fw}x{fh}: {fix}")
    if model.is_embedded and bool(vis.abs().sum() > 0):
        raise MatrixGameError(f"The conditioning carries image-encoder features but {EMBEDDED!r} takes none: "
                              + embedded_fix("."))


def check_vae(model: MatrixGameModel, vae) -> None:
    """A VAE that decodes this model's latents must be its VAE: the embedded model's with the
    embedded model, a Wan 2.1 VAE with the official ones (:func:`~.loaders.model_frame`).

    Raises:
        MatrixGameError: the VAE belongs to another model.
    """
    frame = model_frame(vae)
    if frame.frame_size != tuple(model.module.cfg.frame_size):
        fix = embedded_fix(".") if model.is_embedded or frame.name == EMBEDDED else "use this model's VAE."
        raise MatrixGameError(f"The VAE is the {frame.name} VAE ({frame.frame_size[1]}x{frame.frame_size[0]}) but the "
                              f"model is {model.label}: {fix}")


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


COMPILE = ("auto", "on", "off")


def compile_flag(choice: str):
    """The nodes' compile option -> :class:`WorldSession`'s ``compile`` (auto = on for CUDA)."""
    if choice not in COMPILE:
        raise MatrixGameError(f"Unknown compile option {choice!r}; choose one of {', '.join(COMPILE)}.")
    return None if choice == "auto" else choice == "on"


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


def check_sample_inputs(model, actions, latent_frames: int, local_attn_size: int = 0, sink_size: int = 0,
                        denoising_steps: str = "") -> Optional[List[int]]:
    """The sampler's checks that need neither the start image's conditioning nor the DiT's weights:
    the model handle, the frame count, the track's mode and length, the schedule and window settings.
    The sampler node runs them before it asks ComfyUI for the (lazy) conditioning input, so a wrong
    track is reported before the start image is encoded.

    Returns:
        the parsed denoising steps (None = the model's).
    Raises:
        MatrixGameError: the first problem, with the fix.
    """
    if not isinstance(model, MatrixGameModel):
        raise MatrixGameError("model must come from the Matrix-Game model loader.")
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
    return steps


def sample(model: MatrixGameModel, conditioning: Conditioning, actions, seed: int, latent_frames: int,
           vae=None, local_attn_size: int = 0, sink_size: int = 0, denoising_steps: str = "",
           compile: str = "auto", action_guidance: float = 0.0,
           pitch_guidance: float = 0.0, keyboard_guidance: float = 0.0,
           guidance_rescale: float = -1.0, guidance_hold: float = -1.0) -> Dict[str, torch.Tensor]:
    """Generate ``latent_frames`` latent frames block by block; returns LATENT ``{"samples": raw
    (un-normalized) Wan-2.1 latents [B,16,latent_frames,H/8,W/8]}`` (44x80; 8x14 for the
    embedded model) on ComfyUI's intermediate device.

    Inputs are checked first (:func:`check_sample_inputs`). After each block: a progress step with a
    preview (the block's first latent frame decoded on its own when ``vae`` is given, else a
    latent->RGB preview) and an interrupt check; interrupts are also checked between denoising steps.
    ``action_guidance`` / ``pitch_guidance`` / ``keyboard_guidance`` 0 = the model's own scale
    (:attr:`ModelConfig.action_guidance` and the others: unset, they follow the action guidance);
    ``guidance_rescale`` below 0 = the model's own (:attr:`ModelConfig.guidance_rescale`), 0 = off;
    ``guidance_hold`` likewise (:attr:`ModelConfig.guidance_hold`; below 0 = the model's own)."""
    steps = check_sample_inputs(model, actions, latent_frames, local_attn_size, sink_size, denoising_steps)
    n = int(latent_frames)
    need = video_frames_for_latents(n)
    window = None if local_attn_size == 0 else int(local_attn_size)
    sink = None if sink_size == 0 else int(sink_size)
    model.ensure_loaded()
    check_conditioning(model, conditioning)
    cfg = model.module.cfg
    eff_window = window or model.module.window_frames
    if sink is not None and sink >= eff_window:
        raise MatrixGameError(f"sink size {sink} must be smaller than the local attention window ({eff_window}).")
    h, w = conditioning.cond_concat.shape[-2:]
    tokens = (h // cfg.patch_size[1]) * (w // cfg.patch_size[2])
    if vae is not None:
        check_vae(model, vae)
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
                           denoising_step_list=steps, interrupt=host.interrupt_hook(), compile=compile_flag(compile),
                           action_guidance=None if not action_guidance else float(action_guidance),
                           pitch_guidance=None if not pitch_guidance else float(pitch_guidance),
                           keyboard_guidance=None if not keyboard_guidance else float(keyboard_guidance),
                           guidance_rescale=None if guidance_rescale is None or guidance_rescale < 0
                           else float(guidance_rescale),
                           guidance_hold=None if guidance_hold is None or guidance_hold < 0 else float(guidance_hold))
    bar = host.Progress(n // BLOCK, "sample")
    previews = OneAhead("preview", side_stream=True)     # the next block does not wait for the preview

    def preview(block, first):
        try:
            _show_preview(block, first)
        except Exception as e:  # a preview never fails the sampler
            log.warning("MatrixGame: preview failed: %s", e)

    def _show_preview(block, first):
        if vae_part is not None:
            v = vae_part.module
            frame = StreamingDecoder(v).decode(first.to(v.device))             # [B,3,1,H,W] in [-1,1]
            img = _to_pil(frames_to_images(frame)[0])
        else:
            img = latent_preview(first)
        bar.update(block + 1, img)

    def on_block(res):
        previews.submit(preview, res.block, res.latents[:, :, :1])
        host.check_interrupt()

    try:
        latents, _ = session.generate(kb, ms, n, callback=on_block, decode=False)
    finally:
        previews.close()
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
    frame = model_frame(vae)
    if frame is not OFFICIAL_FRAME and tuple(8 * int(d) for d in z.shape[-2:]) != frame.frame_size:
        raise MatrixGameError(f"These latents are {8 * z.shape[-1]}x{8 * z.shape[-2]} video but the VAE is the {frame.name} "
                              f"VAE ({frame.frame_size[1]}x{frame.frame_size[0]}): decode them with the VAE of the model "
                              f"that made them (the Wan 2.1 VAE for the official models).")
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
