"""From a start image to conditioning, and the three models a run needs.

Official source: ``Matrix-Game-2/inference.py`` (``_resizecrop``, ``frame_process``,
``generate_videos``), reference §4.3:

1. centre-crop the image to the 352:640 aspect (PIL ``crop`` with rounded box), resize to 352x640
   (bilinear with antialias), map to [-1, 1];
2. VAE-encode the image followed by ``4(N-1)`` mid-grey frames (value 0) -> ``[1,16,N,44,80]``,
   normalize; ``cond_concat = cat[mask(4 ch, 1 at latent 0), latents]``;
3. ``visual_context`` = CLIP ViT-H/14 penultimate features of the frame squashed to 224^2.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from .config import LATENT_HEIGHT, LATENT_WIDTH, VIDEO_HEIGHT, VIDEO_WIDTH, ModelConfig, preset
from .errors import MatrixGameError
from .sampling import Conditioning

CROP_MODES = ("center", "stretch", "pad")
#: Smallest accepted start image side (pixels); smaller images carry too little to upscale.
MIN_IMAGE_SIDE = 64


def _crop_box(w: int, h: int, th: int, tw: int):
    """The official ``_resizecrop`` box (floats; PIL rounds them)."""
    if h / w > th / tw:
        new_w, new_h = int(w), int(int(w) * th / tw)
    else:
        new_h, new_w = int(h), int(int(h) * tw / th)
    return (w - new_w) / 2, (h - new_h) / 2, (w + new_w) / 2, (h + new_h) / 2


def prepare_image(image: torch.Tensor, crop: str = "center", height: int = VIDEO_HEIGHT,
                  width: int = VIDEO_WIDTH) -> torch.Tensor:
    """Fit a start image to the model's frame size.

    Args:
        image: ``[B, H, W, 3]`` float in [0, 1] (ComfyUI IMAGE) or ``[B, 3, H, W]`` in [0, 1].
        crop: ``"center"`` (official: centre-crop to the aspect, then resize), ``"stretch"``
            (resize, aspect squashed) or ``"pad"`` (letterbox with mid-grey).
    Returns:
        ``[B, 3, height, width]`` float32 in [-1, 1].
    Raises:
        MatrixGameError: wrong layout, unknown crop mode, an image smaller than 64 px.
    """
    if crop not in CROP_MODES:
        raise MatrixGameError(f"Unknown crop mode {crop!r}; choose one of {', '.join(CROP_MODES)}.")
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or 3 not in (image.shape[1], image.shape[-1]):
        raise MatrixGameError(f"start image has shape {tuple(image.shape)}; expected an RGB image "
                              f"[B, H, W, 3] with values in 0..1.")
    x = image.float()
    if x.shape[-1] == 3:  # ComfyUI's channels-last IMAGE (wins when both layouts would fit)
        x = x.permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    if min(h, w) < MIN_IMAGE_SIDE:
        raise MatrixGameError(f"start image is {w}x{h} pixels; it must be at least {MIN_IMAGE_SIDE} px on each "
                              f"side (ideally {width}x{height} or larger). Use a larger image.")
    if crop == "center":
        l, t, r, b = (int(round(v)) for v in _crop_box(w, h, height, width))
        x = x[:, :, t:b, l:r]
    elif crop == "pad":
        s = min(height / h, width / w)
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        out = torch.full((x.shape[0], 3, height, width), 0.5)
        t0, l0 = (height - nh) // 2, (width - nw) // 2
        out[:, :, t0:t0 + nh, l0:l0 + nw] = x
        return (out.clamp(0, 1) * 2 - 1)
    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1) * 2 - 1


def _pil_to_tensor(im) -> torch.Tensor:
    """A PIL image as ``[1, H, W, 3]`` float32 in [0, 1]. High bit depth (16-bit greyscale ``I;16*``,
    32-bit ``I`` as 16-bit PNGs open, float ``F``) is scaled from its own range instead of being
    clipped to 255 (which made a 16-bit PNG all white); everything else goes through RGB."""
    import numpy as np

    if im.mode.startswith("I;16") or im.mode == "I":
        grey = np.asarray(im, dtype=np.float32) / 65535.0
    elif im.mode == "F":
        grey = np.asarray(im, dtype=np.float32)
    else:
        rgb = np.array(im.convert("RGB"), dtype=np.uint8)
        return torch.from_numpy(rgb)[None].float() / 255.0
    grey = np.clip(np.nan_to_num(grey, nan=0.0), 0.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(grey))[None, :, :, None].expand(-1, -1, -1, 3).contiguous()


def load_image(path: str) -> torch.Tensor:
    """Read an image file as ``[1, H, W, 3]`` float32 in [0, 1] (Pillow; 8- and 16-bit PNGs, JPEG, ...).

    Raises:
        MatrixGameError: missing or unreadable file.
    """
    try:
        from PIL import Image
        with Image.open(path) as im:
            return _pil_to_tensor(im)
    except FileNotFoundError as e:
        raise MatrixGameError(f"start image {path!r} does not exist.") from e
    except Exception as e:
        raise MatrixGameError(f"cannot read start image {path!r} ({type(e).__name__}: {e}); use a PNG or JPEG.") from e


@torch.no_grad()
def encode_conditioning(vae, image_encoder, image: torch.Tensor, num_latent_frames: int) -> Conditioning:
    """Conditioning of a prepared start image (reference §4.3).

    Args:
        vae: :class:`~matrix_game_core.vae.WanVAE` with its encoder.
        image_encoder: :class:`~matrix_game_core.image_encoder.CLIPVisionTower`, or None for a
            model configured without image tokens (then zeros are used).
        image: ``[B, 3, 352, 640]`` in [-1, 1] (from :func:`prepare_image`).
        num_latent_frames: N latent frames to encode (the official code encodes the whole run;
            sessions run past N by repeating the last frame, see :meth:`Conditioning.frames`).
    Returns:
        :class:`Conditioning` with ``cond_concat [B,20,N,44,80]`` and ``visual_context [B,257,D]``
        in float32 on the VAE's device.
    """
    from .image_encoder import encode_image
    from .vae import encode_start_image

    if num_latent_frames < 1:
        raise MatrixGameError(f"need at least 1 latent frame (got {num_latent_frames}).")
    cond_concat = encode_start_image(vae, image, num_latent_frames).float()
    if image_encoder is not None:
        dev = next(image_encoder.parameters()).device
        visual = encode_image(image_encoder, image.to(dev)).float().to(cond_concat.device)
    else:
        visual = torch.zeros(image.shape[0], 257, 1280, device=cond_concat.device)
    return Conditioning(cond_concat, visual)


def frames_to_images(frames: torch.Tensor) -> torch.Tensor:
    """``[B, 3, T, H, W]`` in [-1, 1] -> ComfyUI IMAGE ``[B*T, H, W, 3]`` float32 in [0, 1] (CPU)."""
    x = (frames.float().clamp(-1, 1) + 1) / 2
    return x.permute(0, 2, 3, 4, 1).reshape(-1, x.shape[3], x.shape[4], 3).cpu()


# ---------------------------------------------------------------------------------------------- models
@dataclass
class Components:
    """The three models of a run: the DiT, the Wan VAE and the image encoder (may be None)."""

    dit: torch.nn.Module
    vae: torch.nn.Module
    image_encoder: Optional[torch.nn.Module]
    label: str
    #: ``{"DiT" | "VAE" | "image encoder": file it was read from}`` (empty for random weights).
    files: Dict[str, str] = field(default_factory=dict)


def random_tiny(mode: str = "universal", seed: int = 0, device="cpu") -> Components:
    """UNTRAINED tiny models of the real architecture (random weights): for smoke tests and
    workflows that must run without the 6 GB checkpoint. Their output is noise."""
    from .image_encoder import CLIPVisionTower, VisionConfig
    from .model import build_model
    from .vae import WanVAE

    g = torch.Generator().manual_seed(seed)
    cfg: ModelConfig = preset(f"tiny_{mode}")
    vcfg = VisionConfig(dim=64, num_heads=2, num_layers=2, out_dim=32)
    cfg.img_dim = vcfg.dim
    dit = build_model(cfg, dtype=torch.float32)
    vae = WanVAE(dim=8).eval().requires_grad_(False)
    clip = CLIPVisionTower(vcfg).eval().requires_grad_(False)
    with torch.no_grad():
        for mod in (dit, vae, clip):
            for n, p in mod.named_parameters():
                if p.dim() >= 2:
                    p.copy_(torch.randn(p.shape, generator=g) / max(1, p[0].numel()) ** 0.5)
                elif "norm" in n or "gamma" in n:
                    p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.02 * torch.randn(p.shape, generator=g))
    return Components(dit.to(device), vae.to(device), clip.to(device), f"random-weights tiny ({mode}) - UNTRAINED")


def component_files(checkpoint_dir: str, mode: str) -> Dict[str, str]:
    """The files a mode's run reads from ``checkpoint_dir``, found without loading anything and only
    where the official layout (or the folder itself) puts them
    (:func:`~matrix_game_core.checkpoints.find_file`).

    Returns:
        ``{"DiT": path, "VAE": path, "image encoder": path}``.
    Raises:
        MatrixGameError: the folder does not exist, or files are missing (the message lists them, where
            they were looked for, and the download command).
    """
    from .checkpoints import CLIP_FILE, DIT_FILES, VAE_FILE, candidate_paths, files_for_mode, find_file

    if not checkpoint_dir or not os.path.isdir(checkpoint_dir):
        raise MatrixGameError(f"checkpoint folder {checkpoint_dir!r} does not exist; download with "
                              f"`python -m matrix_game_core download --mode {mode} --dir DIR`.")
    paths = {rp: find_file(checkpoint_dir, rp) for rp in files_for_mode(mode)}
    missing = [rp for rp, p in paths.items() if p is None]
    if missing:
        looked = "; ".join(" or ".join(candidate_paths(checkpoint_dir, rp)) for rp in missing)
        raise MatrixGameError(f"{checkpoint_dir} lacks {', '.join(missing)} (looked for {looked}); download them with "
                              f"`python -m matrix_game_core download --mode {mode} --dir {checkpoint_dir}`.")
    return {"DiT": paths[DIT_FILES[mode]], "VAE": paths[VAE_FILE], "image encoder": paths[CLIP_FILE]}


def load_components(checkpoint_dir: str, mode: str, device="cpu", dtype=torch.bfloat16,
                    attention_backend: str = "auto", vae_dtype: Optional[torch.dtype] = None,
                    files: Optional[Dict[str, str]] = None) -> Components:
    """Load a mode's official files from ``checkpoint_dir`` (as laid out by
    :func:`~matrix_game_core.checkpoints.download`, or flat); ``files`` (from
    :func:`component_files`) skips the lookup. ``Components.files`` says which file came from where.

    Raises:
        MatrixGameError: a file is missing (the message lists what to download) or invalid.
    """
    from .checkpoints import load_dit
    from .image_encoder import load_image_encoder
    from .vae import load_wan_vae

    files = dict(files or component_files(checkpoint_dir, mode))
    dit = load_dit(files["DiT"], mode=mode, device=device, dtype=dtype, attention_backend=attention_backend)
    vae = load_wan_vae(files["VAE"], device=device, dtype=vae_dtype or dtype)
    clip = load_image_encoder(files["image encoder"], device=device, dtype=dtype)
    return Components(dit, vae, clip, f"{mode} ({os.path.basename(files['DiT'])})", files)
