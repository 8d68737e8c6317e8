"""Training a small Matrix-Game-architecture world model from recordings (issue #5).

Same modules as inference: stage 1 trains the engine's :class:`~matrix_game_core.vae.WanVAE` at a
small width (:mod:`.vae`), recordings are encoded to latent clips (:mod:`.latents`), stage 2 trains
the engine's :class:`~matrix_game_core.model.CausalWanModel` with diffusion forcing on its
block-causal local-window mask (:mod:`.dit`), and :mod:`.export` writes the official file formats.

CLI: ``python -m matrix_game_core.train all --data REC --out RUN [--preset small|smoke]``.
"""
from .config import DiTStage, TrainConfig, VAEStage  # noqa: F401
