"""The official benchmark action tracks (``Bench_actions_<mode>``, reference §7)."""
from __future__ import annotations

import random as _random
from typing import List, Optional, Tuple

import torch

from .action_track import KEYS, MOUSE_MODES, ActionTrack, CAM_VALUE, _check_length, _check_mode, _is_int
from .config import MODES
from .errors import MatrixGameError


# ================================================================================================ benchmark
def _pool(mode: str) -> List[Tuple[str, Tuple[str, ...], Tuple[float, float]]]:
    """The official ``Bench_actions_<mode>`` action pool, in the official order.

    Entries ``(name, held keys, (pitch, yaw))``. Universal (45): ``[forward_left, forward_right] * 5``,
    ``[camera_l, camera_r] * 5``, ``[forward, left, right] * 5``, then each of forward, left, right,
    forward_left, forward_right combined with camera_l then camera_r. gta_drive (12):
    ``[camera_l, camera_r] * 2``, ``[forward, back] * 2``, then forward/back x camera_l/camera_r.
    templerun (7): jump, slide, leftside, rightside, turnleft, turnright, nomove (one key each).
    """
    cams = {"camera_l": (0.0, -CAM_VALUE), "camera_r": (0.0, CAM_VALUE)}
    keys_of = {"forward": ("forward",), "back": ("back",), "left": ("left",), "right": ("right",),
               "forward_left": ("forward", "left"), "forward_right": ("forward", "right")}

    def entry(name: str) -> Tuple[str, Tuple[str, ...], Tuple[float, float]]:
        move, cam = name, None
        for c in cams:
            if name == c:
                move, cam = None, c
            elif name.endswith("_" + c):
                move, cam = name[: -len(c) - 1], c
        return name, (keys_of[move] if move else ()), (cams[cam] if cam else (0.0, 0.0))

    if mode == "universal":
        moves, doubles, cam_names = ["forward", "left", "right"], ["forward_left", "forward_right"], list(cams)
        names = doubles * 5 + cam_names * 5 + moves * 5
        names += [f"{a}_{c}" for a in moves + doubles for c in cam_names]
        return [entry(n) for n in names]
    if mode == "gta_drive":
        moves, cam_names = ["forward", "back"], list(cams)
        names = cam_names * 2 + moves * 2 + [f"{a}_{c}" for a in moves for c in cam_names]
        return [entry(n) for n in names]
    if mode == "templerun":
        official = ["jump", "slide", "leftside", "rightside", "turnleft", "turnright", "nomove"]
        ours = {"leftside": "left_side", "rightside": "right_side", "turnleft": "turn_left",
                "turnright": "turn_right"}
        return [(n, (ours.get(n, n),), (0.0, 0.0)) for n in official]
    raise MatrixGameError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}.")


def bench_pool(mode: str) -> List[Tuple[str, Tuple[str, ...], Tuple[float, float]]]:
    """The official benchmark action pool of ``mode`` (see :func:`_pool`); a fresh list."""
    return list(_pool(_check_mode(mode)))


def bench_actions(mode: str, num_frames: int, seed: Optional[int] = 0,
                  rng: Optional[_random.Random] = None) -> ActionTrack:
    """The official random benchmark track ``Bench_actions_<mode>(num_frames)`` (reference §7).

    Procedure of the official ``combine_data`` (reproduced call for call): each step draws
    ``randint(0, 0)`` (the chunk length from ``selections = [12]``) then ``randint(0, len(pool) - 1)``
    (the action); the first step fills row 0 only, every later step fills the next
    ``min(12, T - t)`` rows with that action. The official script seeds the global ``random``
    module with ``set_seed(seed)`` (``--seed``, default 0; README examples use 42) and, as nothing
    else draws from it before, ``bench_actions(mode, T, seed)`` with ``random.Random(seed)``
    returns the same track as the official code with ``--seed seed``.

    Args:
        mode: the model mode.
        num_frames: ``T = 1 + 4 (N - 1)`` video frames for ``N`` latent frames.
        seed: seed of a private ``random.Random``; ``None`` draws from the global ``random`` module
            (exactly what the official code does after ``set_seed``).
        rng: an explicit ``random.Random`` to draw from (overrides ``seed``).
    """
    _check_mode(mode)
    if not _is_int(num_frames):
        raise MatrixGameError(f"num_frames must be a whole number (got {num_frames!r}).")
    _check_length(num_frames, "the benchmark track")
    if rng is None:
        rng = _random if seed is None else _random.Random(seed)
    pool = _pool(mode)
    names = KEYS[mode]
    K = len(names)
    kb = torch.zeros(num_frames, K)
    ms = torch.zeros(num_frames, 2) if mode in MOUSE_MODES else None
    selections = [12]
    t = 0
    while t < num_frames:
        length = selections[rng.randint(0, len(selections) - 1)]
        _, keys, mouse = pool[rng.randint(0, len(pool) - 1)]
        if t == 0:
            length = 1
        else:
            length = min(length, num_frames - t)
        for k in keys:
            kb[t:t + length, names.index(k)] = 1
        if ms is not None:
            ms[t:t + length] = torch.tensor(mouse, dtype=torch.float32)
        t += length
    return ActionTrack(mode, kb, ms).validate()
