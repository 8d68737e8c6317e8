"""What each node does, as plain functions (no ComfyUI import here; see :mod:`.host`).

The ``io.ComfyNode`` classes in :mod:`.nodes_v3` are thin wrappers around these functions, and the
CI tests call these functions directly. No model math lives here: every tensor operation that
matters is an engine call (``matrix_game_core``); this module translates ComfyUI's types
(``IMAGE [B,H,W,3]`` in 0..1, ``LATENT {"samples": raw Wan-2.1 latents}``, native ``VAE`` and
``CLIP_VISION`` objects) to engine calls and back, and checks inputs early with messages that say
how to fix them (:class:`~matrix_game_core.errors.MatrixGameError`, shown by ComfyUI on the node).

The functions live in four modules, one responsibility each; this module re-exports every name:

* :mod:`.loaders`: the DiT, VAE and image-encoder loaders (and the untrained tiny models);
* :mod:`.tracks`: the action-track nodes and the track summary;
* :mod:`.generation`: encode the start image, sample, decode, overlay;
* :mod:`.extras`: the demo inputs and the action-following report.
"""
from .extras import DEMO_PREFIX, DEMO_SOURCES, action_following_report, demo_inputs, install_demo_inputs
from .generation import (COMPILE, _cache_bytes, _to_pil, check_conditioning, check_sample_inputs, check_vae,
                         compile_flag, decode, encode, latent_preview, overlay, parse_steps, sample)
from .loaders import (ATTENTION, DTYPES, EMBEDDED, OFFICIAL_FRAME, TINY_MODEL, TINY_PART, TINY_SEED, MatrixGameModel,
                      ModelFrame, NoImageEncoder, check_file_name, clip_config, embedded_frame, engine_clip,
                      engine_clip_to_hf, engine_vae, list_checkpoints, list_clip_files, list_vae_files,
                      load_clip_vision, load_model, load_vae, model_frame, resolve_checkpoint, tiny_components)
from .tracks import (BLOCK, FPS, action_file_stamp, actions_bench, actions_concat, actions_from_file,
                     actions_from_json, default_track_json, list_action_files, summarize)
