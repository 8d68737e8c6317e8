"""Action tracks: per-video-frame keyboard and mouse conditions (reference §3.3, §6, §7).

An :class:`ActionTrack` holds, for every video frame of a run, the keyboard state and (except in
templerun) the camera motion; the key tables, units and limits are described in
:mod:`matrix_game_core.action_track`.

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
