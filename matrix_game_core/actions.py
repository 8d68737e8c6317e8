"""Action tracks: per-video-frame keyboard and mouse conditions (reference §3.3, §6, §7).

An :class:`ActionTrack` holds, for every **video frame** ``t`` of a run, the keyboard state (multi-hot
row ``keyboard[t]``) and, except in templerun, the camera motion ``mouse[t] = (pitch, yaw)``. A track
for the model has ``T = 1 + 4n`` rows (``n + 1`` latent frames); latent frame ``f`` is conditioned on
rows ``[4f - 12, 4f)`` (:func:`latent_action_windows`).

Keys per mode (index order = the official keyboard column order; labels = the official terminal keys):

=========== ================================================================== =====================
mode        keys                                                               labels
=========== ================================================================== =====================
universal   forward, back, left, right                                         W S A D
gta_drive   forward, back (steering is mouse yaw)                              W S
templerun   nomove, jump, slide, turn_left, turn_right, left_side, right_side  Q W S Z C A D
=========== ================================================================== =====================

Mouse units are the official ones: channel 0 = pitch (looking up is +), channel 1 = yaw (turning
right is +), ``CAM_VALUE = 0.1`` = one camera step of the official benchmark / terminal demo per video
frame. Values up to ``MOUSE_LIMIT = 1.0`` (ten official steps per frame) are accepted.

This module gathers the three parts under one name (import from here):

* :mod:`matrix_game_core.action_track`: the model, :class:`ActionTrack` (validation, constructors,
  editing), the key tables and :func:`latent_action_windows`;
* :mod:`matrix_game_core.action_json`: the versioned JSON form (its docstring is the format
  specification; JSON Schema: ``matrix_game_core/action_track.schema.json``);
* :mod:`matrix_game_core.action_bench`: the official seeded benchmark tracks.
"""
from .action_bench import bench_actions, bench_pool
from .action_json import format_number, track_from_dict, track_from_json, track_to_dict, track_to_json
from .action_track import (CAM_VALUE, DEFAULT_FPS, KEY_LABELS, KEYS, MAX_FRAMES, MOUSE_CHANNELS, MOUSE_LIMIT,
                           MOUSE_MODES, SCHEMA_VERSION, ActionTrack, block_row_range, latent_action_windows)

__all__ = ["ActionTrack", "bench_actions", "bench_pool", "block_row_range", "format_number", "latent_action_windows",
           "track_from_dict", "track_from_json", "track_to_dict", "track_to_json", "CAM_VALUE", "DEFAULT_FPS",
           "KEY_LABELS", "KEYS", "MAX_FRAMES", "MOUSE_CHANNELS", "MOUSE_LIMIT", "MOUSE_MODES", "SCHEMA_VERSION"]
