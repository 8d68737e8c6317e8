"""Action-track nodes' logic: JSON, benchmark, file and join nodes, and the readable summary.

Part of :mod:`.logic` (which re-exports every name); no ComfyUI import here (see :mod:`.host`).
"""
from __future__ import annotations

import os
from typing import List

import torch

from matrix_game_core.config import NUM_FRAME_PER_BLOCK, check_mode, video_frames_for_latents
from matrix_game_core.errors import MatrixGameError

from . import host

#: Video frame rate of Matrix-Game 2.0 (the README's real-time 25 fps).
FPS = 25
#: Latent frames per block (3): the sampler's frame count must be a multiple of it.
BLOCK = NUM_FRAME_PER_BLOCK


# ================================================================================================ actions
def _actions_mod():
    from matrix_game_core import actions
    return actions


def actions_from_json(track_json: str):
    """Parse an action track JSON string (schema: the engine's ``ActionTrack.to_json``)."""
    if not isinstance(track_json, str) or not track_json.strip():
        raise MatrixGameError("track_json is empty; paste an action track (JSON) or use the benchmark actions node.")
    return _actions_mod().ActionTrack.from_json(track_json)


def actions_bench(mode: str, frames: int, seed: int):
    """The official random benchmark track (``Bench_actions_<mode>``) of ``frames`` video frames."""
    check_mode(mode)
    return _actions_mod().bench_actions(mode, int(frames), int(seed))


def list_action_files() -> List[str]:
    """``.json`` files in ComfyUI's input folder (and its sub-folders)."""
    try:
        root = host.input_dir()
    except RuntimeError:
        return []
    out = []
    for dirpath, _dirs, files in os.walk(root, followlinks=True):
        for f in files:
            if f.lower().endswith(".json"):
                out.append(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/"))
    return sorted(out)


def actions_from_file(name: str):
    """Read an action track JSON file (UTF-8) from ComfyUI's input folder.

    Raises:
        MatrixGameError: no name, a name leaving the folder, an unreadable / binary / malformed file.
    """
    if not isinstance(name, str) or not name.strip():
        raise MatrixGameError("No action file selected; put a .json track into ComfyUI/input/ and refresh the page.")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts or os.path.isabs(name) or "\x00" in name:
        raise MatrixGameError(f"Action file name {name!r} points outside ComfyUI's input folder; pick a file "
                              f"from the list.")
    path = os.path.join(host.input_dir(), *parts)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise MatrixGameError(f"Cannot read action file {name!r} in ComfyUI/input ({e.strerror or e}); put the file "
                              f"there and refresh the page.") from e
    return _actions_mod().ActionTrack.from_json(data)     # bytes: must be UTF-8 (a clear error otherwise)


def action_file_stamp(name: str) -> str:
    """Changes when the file changes (so ComfyUI re-reads an edited track)."""
    try:
        parts = str(name).replace("\\", "/").split("/")
        st = os.stat(os.path.join(host.input_dir(), *parts))
        return f"{name}:{st.st_mtime_ns}:{st.st_size}"
    except (OSError, RuntimeError):
        return f"{name}:missing"


def default_track_json() -> str:
    """Default of the JSON node: universal, 57 video frames (15 latent frames): walk forward while
    turning right, then walk left while looking a little up."""
    try:
        a = _actions_mod()
        T = video_frames_for_latents(15)
        return a.ActionTrack.from_segments("universal", T, [
            {"start": 0, "end": 33, "keys": ["forward"], "mouse": [0, 0.1]},
            {"start": 33, "end": T, "keys": ["left"]},
            {"start": 33, "end": 45, "mouse": [0.05, 0]},
        ]).to_json()
    except Exception:  # the engine's action module is unavailable: an empty default
        return ""


def actions_concat(first, second):
    """``first`` followed by ``second`` (same mode)."""
    if first.mode != second.mode:
        raise MatrixGameError(f"Cannot join a {first.mode!r} track with a {second.mode!r} track; both must be for "
                              f"the same mode.")
    return first.concat(second)


def _key_labels(mode: str) -> List[str]:
    """``"W forward"``, ... (official terminal key + key name) for each keyboard column."""
    a = _actions_mod()
    names = list(getattr(a, "KEYS", {}).get(mode, ()))
    labels = list(getattr(a, "KEY_LABELS", {}).get(mode, ()))
    if names and len(labels) == len(names):
        return [f"{lab} {name}" for lab, name in zip(labels, names)]
    return names or [f"key{i}" for i in range({"universal": 4, "gta_drive": 2, "templerun": 7}[mode])]


def summarize(track) -> str:
    """A readable summary: frames, seconds at 25 fps, latent frames it can drive, frames each key is
    held, mouse ranges."""
    kb = torch.as_tensor(track.keyboard).float()
    T = int(kb.shape[0])
    n_lat = 1 + (T - 1) // 4 if T >= 1 else 0
    usable = (n_lat // BLOCK) * BLOCK
    lines = [f"{track.mode}: {T} video frames = {T / FPS:.2f} s at {FPS} fps",
             f"drives up to {usable} latent frames (sampler 'latent frames' <= {usable})" if usable else
             "too short for one block (needs at least 9 video frames)"]
    held = [f"{lab} {int((kb[:, i] > 0.5).sum())}" for i, lab in enumerate(_key_labels(track.mode)) if i < kb.shape[1]]
    lines.append("keys held (frames): " + ", ".join(held))
    if getattr(track, "mouse", None) is not None:
        m = torch.as_tensor(track.mouse).float()
        if m.numel():
            lines.append(f"mouse pitch {m[:, 0].min().item():+.3f}..{m[:, 0].max().item():+.3f}, "
                         f"yaw {m[:, 1].min().item():+.3f}..{m[:, 1].max().item():+.3f} "
                         f"({int((m.abs().sum(1) > 0).sum())} frames moving)")
    else:
        lines.append("no mouse (keyboard only)")
    return "\n".join(lines)
