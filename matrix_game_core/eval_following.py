"""Action following, GameWorld-style: does a video move the way its mouse commands say?

For blocks whose mouse command is turn left / right (look up / down), the sign of the global
horizontal (vertical) image motion between consecutive frames of the block must match the
command. Turning right moves the picture left (dx < 0); looking up moves it down (dy > 0).
Motion comes from :func:`~matrix_game_core.eval_video.global_motion`. Accuracy is reported per
action class. Public names are re-exported by :mod:`matrix_game_core.evaluate`.

Frame / action alignment (official convention, :mod:`matrix_game_core.actions`): action row ``t``
is the action taken at video frame ``t``; its effect first shows in frame ``t + 1``. A session's
block 0 holds rows/frames ``[0, 9)``, block ``b >= 1`` rows/frames ``[12b - 3, 12b + 9)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .actions import CAM_VALUE
from .data.synthetic import synthetic_panning_video
from .errors import MatrixGameError
from .eval_video import global_motion, to_gray

#: Motion estimator of :func:`action_following` (see :func:`~matrix_game_core.eval_video.global_motion`):
#: pairs of frames 2 apart, cross-power spectrum normalised by ``|R|^0.5``. Chosen on recorded
#: held-out Doom play (12 clips, 131 commanded blocks; docs/data_and_training.md §3c): frame-to-frame
#: phase correlation scores the raw frames 92 % but their round trip through the embedded VAE 3 %
#: (a blurred world moving in steps at latent-frame boundaries under a faint static pattern, which
#: full whitening locks onto); this one scores them 94 % and 86 % (negated commands: 5 % / 7 %).
MOTION_STRIDE = 2
MOTION_WHITEN = 0.5

#: Action classes of :func:`action_following`: (name, mouse channel, sign of the command).
ACTION_CLASSES = (("turn_left", 1, -1), ("turn_right", 1, +1), ("look_up", 0, +1), ("look_down", 0, -1))


def block_rows(block: int, frames_per_block: int = 12, first_block: int = 9) -> Tuple[int, int]:
    """Rows (= video frames) ``[start, end)`` of a session block (9 for block 0, 12 after)."""
    if block == 0:
        return 0, first_block
    s = first_block + frames_per_block * (block - 1)
    return s, s + frames_per_block


@dataclass
class FollowingReport:
    """Result of :func:`action_following`.

    Attributes:
        per_class: ``{class: {"n", "correct", "accuracy", "toward_px"}}`` for turn_left / turn_right /
            look_up / look_down (``accuracy`` None when ``n == 0``); ``toward_px``: the mean picture
            motion of the class's blocks in the commanded direction, pixels per frame (positive =
            the right way; a block is followed from ``min_motion`` x the frame width / height on),
            None when ``n == 0``: it shows progress while the accuracy is still 0.
        yaw_accuracy / pitch_accuracy / accuracy: pooled over the yaw classes, the pitch
            classes, and all four (None when no block of that kind).
        blocks: one dict per block: rows, mean commanded (pitch, yaw), mean measured (dx, dy) in
            pixels per frame, classes and whether each was followed.
    """

    per_class: Dict[str, Dict]
    yaw_accuracy: Optional[float]
    pitch_accuracy: Optional[float]
    accuracy: Optional[float]
    blocks: List[Dict] = field(default_factory=list)

    def to_dict(self) -> Dict:
        return {"per_class": self.per_class, "yaw_accuracy": self.yaw_accuracy,
                "pitch_accuracy": self.pitch_accuracy, "accuracy": self.accuracy, "blocks": self.blocks}


def _acc(c, n):
    return None if n == 0 else c / n


def action_following(video, mouse, threshold: float = 0.5 * CAM_VALUE, min_motion: float = 1e-3,
                     motion: Optional[np.ndarray] = None, frames_per_block: int = 12,
                     first_block: int = 9, pitch_threshold: Optional[float] = None,
                     stride: int = MOTION_STRIDE, whiten: float = MOTION_WHITEN,
                     scored: Optional[Callable[[int], bool]] = None) -> FollowingReport:
    """Does the video move the way the mouse commands say? (GameWorld-style mouse accuracy.)

    A block belongs to a class when the mean commanded value over its rows passes ``threshold``
    (official units; default half a camera step): yaw <= -thr turn_left, >= thr turn_right,
    pitch >= thr look_up, <= -thr look_down (a block may be in a yaw and a pitch class). It is
    *followed* when the mean image motion over the block's frame pairs ``(t, t+1)`` has the
    expected sign and a magnitude of at least ``min_motion`` x the frame width (or height) per
    frame: turn right -> dx < 0, turn left -> dx > 0, look up -> dy > 0, look down -> dy < 0.
    ``pitch_threshold`` (default ``threshold``) applies to the pitch classes: games that limit the
    pitch (Doom: about +-30 degrees) rarely hold a full camera step for a whole block.

    Args:
        video: ``T`` frames in any accepted layout.
        mouse: ``[T', 2]`` (pitch up +, yaw right +) official units, ``T' >= T - 1``
            (numpy / torch / an ActionTrack's ``mouse``).
        motion: precomputed :func:`global_motion` of ``video`` with the same ``stride`` (optional).
        stride, whiten: of :func:`global_motion`: a block's motion is the mean over its pairs
            ``(t, t + stride)`` with both frames in ``[s, e]`` (its rows ``[s, e)``; the effect of
            row ``t`` first shows in frame ``t + 1``).
        scored: which blocks (by index; 0 is the first) count in ``per_class`` and the accuracies;
            all by default. ``blocks`` still lists every block with its classes (e.g. a script
            holding each command 3 blocks scores only the blocks after the first of each hold).
    Returns:
        :class:`FollowingReport`.
    """
    m = mouse.detach().cpu().float().numpy() if isinstance(mouse, torch.Tensor) else np.asarray(mouse, np.float32)
    if m.ndim == 3:
        m = m[0]
    if m.ndim != 2 or m.shape[1] != 2:
        raise MatrixGameError(f"mouse has shape {m.shape}; expected [T, 2] (pitch, yaw).")
    h, w = to_gray(video).shape[1:]
    mo = global_motion(video, stride=stride, whiten=whiten) if motion is None else np.asarray(motion)
    t = mo.shape[0] + stride
    if m.shape[0] < t - 1:
        raise MatrixGameError(f"mouse track has {m.shape[0]} rows but the video has {t} frames.")
    per = {name: {"n": 0, "correct": 0, "toward_px": 0.0} for name, _, _ in ACTION_CLASSES}
    blocks = []
    b = 0
    while True:
        s, e = block_rows(b, frames_per_block, first_block)
        e = min(e, t - 1)
        if s >= e or s >= mo.shape[0]:
            break
        cmd = m[s:e].mean(0)
        d = mo[s:max(e - stride + 1, s + 1), :2].mean(0)
        info = {"block": b, "rows": [s, e], "command": [float(cmd[0]), float(cmd[1])],
                "motion_px": [float(d[0]), float(d[1])], "classes": {}}
        for name, ch, sign in ACTION_CLASSES:
            thr = threshold if ch == 1 or pitch_threshold is None else pitch_threshold
            if cmd[ch] * sign >= thr:
                # yaw right (+) -> picture moves left (dx < 0); pitch up (+) -> picture moves down (dy > 0)
                v = -d[0] if ch == 1 else d[1]
                size = w if ch == 1 else h
                ok = bool(v * sign > 0 and abs(v) >= min_motion * size)
                info["classes"][name] = ok
                if scored is None or scored(b):
                    per[name]["n"] += 1
                    per[name]["correct"] += int(ok)
                    per[name]["toward_px"] += float(v * sign)
        blocks.append(info)
        b += 1
    for v in per.values():
        v["accuracy"] = _acc(v["correct"], v["n"])
        v["toward_px"] = None if v["n"] == 0 else v["toward_px"] / v["n"]
    yc = per["turn_left"]["correct"] + per["turn_right"]["correct"]
    yn = per["turn_left"]["n"] + per["turn_right"]["n"]
    pc = per["look_up"]["correct"] + per["look_down"]["correct"]
    pn = per["look_up"]["n"] + per["look_down"]["n"]
    return FollowingReport(per, _acc(yc, yn), _acc(pc, pn), _acc(yc + pc, yn + pn), blocks)


# ---------------------------------------------------------------------------------------------- synthetic
def command_script(blocks: int, magnitude: float = CAM_VALUE, order: Sequence[str] = (
        "turn_left", "turn_right", "look_up", "look_down"), keyboard_dim: int = 4,
        first_block: int = 9, frames_per_block: int = 12,
        pitch_magnitude: Optional[float] = None, hold_blocks: int = 1) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
    """An action script for action-following tests: block 0 idle, then blocks cycling ``order``,
    each command of ``magnitude`` official units (``pitch_magnitude`` for the look classes, default
    the same) held for ``hold_blocks`` blocks in a row (1: a new command every block; more: a
    player holding the key, where a sampler that guides only changes lets the motion fade), no keys.

    Returns:
        ``(keyboard [T, K] float32, mouse [T, 2] float32, labels per block)``, ``T = 9 + 12 (blocks-1)``.
    """
    t = first_block + frames_per_block * (blocks - 1)
    mouse = torch.zeros(t, 2)
    labels = ["idle"]
    cls = {n: (ch, s) for n, ch, s in ACTION_CLASSES}
    for b in range(1, blocks):
        name = order[((b - 1) // max(1, int(hold_blocks))) % len(order)]
        ch, sgn = cls[name]
        s, e = block_rows(b, frames_per_block, first_block)
        mouse[s:e, ch] = sgn * (magnitude if ch == 1 or pitch_magnitude is None else pitch_magnitude)
        labels.append(name)
    return torch.zeros(t, keyboard_dim), mouse, labels


def synthetic_check(blocks: int = 9, seeds: int = 4, height: int = 64, width: int = 112) -> Dict:
    """Action following of :func:`synthetic_panning_video` under :func:`command_script` with
    several seeds and magnitudes (the evaluator's self-test; every class should be 100%)."""
    per = {name: {"n": 0, "correct": 0} for name, _, _ in ACTION_CLASSES}
    for s in range(seeds):
        for mag, px in ((0.1, 3.0), (0.06, 1.0), (0.1, 0.5)):
            _, ms, _ = command_script(blocks, mag)
            rep = action_following(synthetic_panning_video(ms, height, width, px, seed=s), ms)
            for k, v in rep.per_class.items():
                per[k]["n"] += v["n"]
                per[k]["correct"] += v["correct"]
    for v in per.values():
        v["accuracy"] = _acc(v["correct"], v["n"])
    tot_c = sum(v["correct"] for v in per.values())
    tot_n = sum(v["n"] for v in per.values())
    return {"per_class": per, "accuracy": _acc(tot_c, tot_n)}
