"""matrix_game_core: the Matrix-Game 2.0 inference engine (pure PyTorch, no ComfyUI import).

Modules: :mod:`.config` (model configs as data), :mod:`.model` (causal DiT + action module),
:mod:`.caches` (ring-buffer KV caches), :mod:`.sampling` (scheduler, :class:`WorldSession`),
:mod:`.vae` (Wan-2.1 VAE, streaming decoder), :mod:`.image_encoder` (CLIP ViT-H/14),
:mod:`.actions` (ActionTrack), :mod:`.checkpoints` (find/download/load), :mod:`.pipeline`
(image -> conditioning), :mod:`.video` (mp4, overlay), :mod:`.cli`.
"""
from .errors import MatrixGameError, MatrixGameInterrupted

__version__ = "0.1.0"
__all__ = ["MatrixGameError", "MatrixGameInterrupted", "__version__"]
