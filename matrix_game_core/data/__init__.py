"""Interactive training data: ViZDoom recordings with frame-accurate actions (issue #5).

* :mod:`.doom` — the headless, deterministic game set-up and the degree <-> official-unit conversion;
* :mod:`.policy` — the scripted exploration policy (walk, strafe, OU yaw, look up/down, wall avoidance);
* :mod:`.record` — episodes -> shards, resumable, parallel, with a progress bar;
* :mod:`.shards` — the shard files and ``manifest.json``;
* :mod:`.dataset` — clips for training (video in [-1, 1] + keyboard/mouse rows).

CLI: ``python -m matrix_game_core.data record --out DIR --hours 2`` (see ``--help``).
Only :mod:`.doom` / :mod:`.record` need ``vizdoom``; reading recordings does not.
"""
from .shards import Shard, entries, iter_shards, load_shard, read_manifest  # noqa: F401
