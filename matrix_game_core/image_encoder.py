"""CLIP ViT-H/14 image encoder: the visual tower of Wan-2.1's XLM-RoBERTa CLIP (``visual_context``
of Matrix-Game 2.0, reference §4.3 item 4).

Two parts, one idea each; this module re-exports every name:

* :mod:`matrix_game_core.clip_vision`: the architecture (:class:`VisionConfig`,
  :class:`CLIPVisionTower`), the official preprocessing and :func:`encode_image`
  (``[B, 257, 1280]`` penultimate features);
* :mod:`matrix_game_core.clip_vision_files`: the state-dict layouts (official ``.pth``, ComfyUI's
  ``clip_vision_h.safetensors``, native), their conversions and :func:`load_image_encoder`.
"""
from .clip_vision import CLIP_MEAN, CLIP_STD, CLIPVisionTower, VisionConfig, encode_image, preprocess
from .clip_vision_files import (convert_comfy_clip_vision, convert_official_clip, convert_to_comfy_clip_vision,
                                infer_vision_config, load_image_encoder)

__all__ = [
    "CLIP_MEAN", "CLIP_STD", "VisionConfig", "CLIPVisionTower", "preprocess", "encode_image",
    "convert_official_clip", "convert_comfy_clip_vision", "convert_to_comfy_clip_vision", "infer_vision_config",
    "load_image_encoder",
]
