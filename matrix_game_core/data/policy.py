"""A scripted exploration policy for recording interactive game data.

The policy plays a first-person game frame by frame and produces exactly the actions of the
universal Matrix-Game action space: the four movement keys ``W S A D`` (multi-hot) and a camera
rotation ``(yaw, pitch)`` in **degrees per video frame** (yaw right +, pitch up +). It is pure
NumPy, seeded, and has no hidden state besides its ``numpy.random.Generator``, so an episode is a
deterministic function of ``(seed, observations)``.

Behaviour (all per video frame):

* **movement**: a semi-Markov chain over key combinations (forward, forward+strafe, strafe, back,
  idle), each held for a random number of frames;
* **yaw**: an Ornstein–Uhlenbeck process whose mean switches now and then (smooth curves), plus
  *camera gestures*: the yaw (or pitch) held at exactly ``±deg_per_step`` (one official camera step,
  0.1 in official units) for 4..16 frames, so the data holds the commands the Matrix-Game
  benchmark uses (look gestures: 0.4, 0.7 or 1 step for 4..12 frames, within the pitch limit);
* **pitch**: an OU process pulled back to the horizon, plus look-up / look-down gestures, kept
  inside ``±max_pitch`` degrees using the pose (so the engine never clips a requested rotation and
  recorded actions equal applied rotations);
* **still, then a camera gesture** (``still_prob``, off by default so that earlier recordings stay
  a function of their seeds): the player stops (no key, no rotation) for ``still_min..still_max``
  frames and then, with chance ``still_then_gesture``, starts a turn or look gesture from rest:
  what a user of the live session does, and the situation of the action-following benchmark
  (an idle block, then a turn), which the OU camera otherwise never shows;
* **walls**: the depth buffer's central window says how close the wall ahead is; when it is near,
  the policy turns towards the side with more free space (and backs off when very near); when the
  player stops moving while pushing forward (stuck on a ledge, a closed door) it turns away.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import numpy as np

#: Keyboard channels of the universal mode (official ``utils/conditions.py``): W, S, A, D.
KEY_NAMES = ("forward", "back", "left", "right")

#: Movement modes: (weight, keys W S A D).
_MOVES = (
    (0.40, (1, 0, 0, 0)),
    (0.10, (1, 0, 1, 0)),
    (0.10, (1, 0, 0, 1)),
    (0.08, (0, 0, 1, 0)),
    (0.08, (0, 0, 0, 1)),
    (0.08, (0, 1, 0, 0)),
    (0.16, (0, 0, 0, 0)),
)


@dataclass
class PolicyConfig:
    """Knobs of :class:`ExplorationPolicy` (degrees are per video frame)."""

    #: One official camera step (0.1 official units) in degrees per video frame.
    deg_per_step: float = 5.0
    #: Movement segment length range (frames).
    move_min: int = 6
    move_max: int = 36
    #: Yaw OU: mean reversion per frame, noise std (deg/frame), chance per frame of a new mean.
    yaw_theta: float = 0.15
    yaw_sigma: float = 0.6
    yaw_mean_switch: float = 0.03
    #: Pitch OU towards the horizon.
    pitch_theta: float = 0.08
    pitch_sigma: float = 0.35
    max_pitch: float = 25.0
    #: Chance per frame to start a yaw / pitch gesture and its length range (frames).
    yaw_gesture: float = 0.02
    pitch_gesture: float = 0.025
    gesture_min: int = 4
    gesture_max: int = 16
    #: Chance per frame to stop and hold still (keys, yaw and pitch 0) for still_min..still_max
    #: frames, after which a camera gesture starts with chance still_then_gesture (0 = never stop).
    still_prob: float = 0.0
    still_min: int = 6
    still_max: int = 30
    still_then_gesture: float = 0.8
    #: Depth-buffer thresholds (ViZDoom depth units, ~7 map units each) for "wall ahead".
    near_depth: float = 10.0
    very_near_depth: float = 4.0
    #: Frames of low displacement (< stuck_dist map units/frame) while pushing forward = stuck.
    stuck_frames: int = 6
    stuck_dist: float = 1.0

    def to_dict(self):
        return asdict(self)


class ExplorationPolicy:
    """Walks, strafes, turns smoothly, looks up and down, and steers away from walls.

    Args:
        rng: a seeded ``numpy.random.Generator`` (the only source of randomness).
        cfg: :class:`PolicyConfig`.

    Call :meth:`act` once per video frame with that frame's observation.
    """

    def __init__(self, rng: np.random.Generator, cfg: Optional[PolicyConfig] = None):
        self.rng = rng
        self.cfg = cfg or PolicyConfig()
        self.reset()

    def reset(self) -> None:
        self.keys = np.zeros(4, dtype=np.float32)
        self.move_left = 0
        self.yaw = 0.0
        self.yaw_mean = 0.0
        self.pitch_rate = 0.0
        self.gesture_yaw = 0.0
        self.gesture_pitch = 0.0
        self.gesture_left = 0
        self.avoid = 0.0
        self.avoid_left = 0
        self.last_xy: Optional[np.ndarray] = None
        self.slow = 0
        self.still_left = 0
        self.gesture_pure = False

    # ------------------------------------------------------------------------------------------
    def _pick_move(self) -> None:
        r = self.rng
        w = np.array([m[0] for m in _MOVES])
        i = int(r.choice(len(_MOVES), p=w / w.sum()))
        self.keys = np.array(_MOVES[i][1], dtype=np.float32)
        self.move_left = int(r.integers(self.cfg.move_min, self.cfg.move_max + 1))

    def _start_gesture(self, yaw: bool) -> None:
        """A yaw gesture (one camera step, either way, gesture_min..gesture_max frames) or a look
        gesture (0.4, 0.7 or 1 step up or down, 4..12 frames: slower and shorter than turns since
        the pitch is limited to +-max_pitch)."""
        r, cfg = self.rng, self.cfg
        self.gesture_pure = False
        if yaw:
            self.gesture_yaw = float(r.choice([-1.0, 1.0])) * cfg.deg_per_step
            self.gesture_pitch = 0.0
            self.gesture_left = int(r.integers(cfg.gesture_min, cfg.gesture_max + 1))
        else:
            self.gesture_yaw = 0.0
            self.gesture_pitch = float(r.choice([-1.0, 1.0]) * r.choice([0.4, 0.7, 1.0])) * cfg.deg_per_step
            self.gesture_left = int(r.integers(4, 13))

    def _wall(self, depth: Optional[np.ndarray]) -> Tuple[float, float]:
        """``(centre depth, left-minus-right free space)`` from a ``[H, W]`` depth buffer."""
        if depth is None:
            return np.inf, 0.0
        h, w = depth.shape
        d = depth[h // 4:3 * h // 4:2, ::2]                     # subsampled: cheap and enough
        dw = d.shape[1]
        c = d[d.shape[0] // 6:d.shape[0] * 5 // 6, dw * 3 // 8:dw * 5 // 8].ravel()
        k = len(c) // 5
        centre = float(np.partition(c, k)[k])                   # 20th percentile
        left = float(d[:, :dw // 3].mean())
        right = float(d[:, 2 * dw // 3:].mean())
        return centre, left - right

    def act(self, depth: Optional[np.ndarray], pose: np.ndarray) -> Tuple[np.ndarray, float, float]:
        """Choose the action for the current frame.

        Args:
            depth: ``[H, W]`` uint8 depth buffer of the current frame (or None: no wall avoidance).
            pose: ``[5]`` = x, y, z (map units), angle (deg, counter-clockwise), pitch (deg, ZDoom
                sign: positive = looking **down**).
        Returns:
            ``(keys [4] float32 in {0,1} (W S A D), yaw deg/frame (right +), pitch deg/frame (up +))``.
        """
        cfg, r = self.cfg, self.rng
        # ---- still, then (usually) a camera gesture from rest
        if self.still_left > 0:
            self.still_left -= 1
            self.last_xy = np.asarray(pose[:2], dtype=np.float64)
            self.slow = 0
            if self.still_left == 0 and r.random() < cfg.still_then_gesture:
                self._start_gesture(yaw=r.random() < 0.5)
                self.keys = np.zeros(4, dtype=np.float32)   # turn / look in place, the other axis at rest
                self.move_left = self.gesture_left
                self.gesture_pure = True
            return np.zeros(4, dtype=np.float32), 0.0, 0.0
        if (cfg.still_prob > 0 and self.avoid_left <= 0 and self.gesture_left <= 0
                and r.random() < cfg.still_prob):
            self.still_left = int(r.integers(cfg.still_min, cfg.still_max + 1))
            self.yaw = self.yaw_mean = self.pitch_rate = 0.0
            return self.act(depth, pose)
        # ---- movement
        if self.move_left <= 0:
            self._pick_move()
        self.move_left -= 1
        keys = self.keys.copy()

        # ---- stuck / wall detection
        xy = np.asarray(pose[:2], dtype=np.float64)
        if self.last_xy is not None and keys[0] > 0 and np.hypot(*(xy - self.last_xy)) < cfg.stuck_dist:
            self.slow += 1
        else:
            self.slow = 0
        self.last_xy = xy
        centre, free = self._wall(depth)
        if self.avoid_left <= 0:
            if self.slow >= cfg.stuck_frames:
                self.avoid = float(r.choice([-1.0, 1.0])) * float(r.uniform(0.8, 1.2))
                self.avoid_left = int(r.integers(8, 20))
                self.slow = 0
            elif centre < cfg.near_depth and keys[0] > 0:
                side = -1.0 if free > 0 else 1.0      # more room on the left -> turn left (yaw -)
                if abs(free) < 1.0:
                    side = float(r.choice([-1.0, 1.0]))
                self.avoid = side * float(r.uniform(0.6, 1.2))
                self.avoid_left = int(r.integers(4, 12))
        if self.avoid_left > 0:
            self.avoid_left -= 1
            yaw = self.avoid * cfg.deg_per_step
            if centre < cfg.very_near_depth:
                keys[:] = 0
                keys[1] = 1.0  # back off
            self.yaw = yaw
        else:
            # ---- yaw: gestures or OU
            if self.gesture_left <= 0 and r.random() < cfg.yaw_gesture:
                self._start_gesture(yaw=True)
            elif self.gesture_left <= 0 and r.random() < cfg.pitch_gesture:
                self._start_gesture(yaw=False)
            if r.random() < cfg.yaw_mean_switch:
                self.yaw_mean = float(r.normal(0.0, 0.5 * cfg.deg_per_step))
            self.yaw += cfg.yaw_theta * (self.yaw_mean - self.yaw) + cfg.yaw_sigma * float(r.normal())
            self.yaw = float(np.clip(self.yaw, -2 * cfg.deg_per_step, 2 * cfg.deg_per_step))
            yaw = self.yaw
            if self.gesture_left > 0 and self.gesture_yaw != 0.0:
                yaw = self.gesture_yaw
            elif self.gesture_left > 0 and self.gesture_pure:
                yaw = 0.0

        # ---- pitch (up +); current pitch up = -pose[4]
        pitch_up = -float(pose[4])
        self.pitch_rate += -cfg.pitch_theta * pitch_up * 0.1 - 0.3 * self.pitch_rate + cfg.pitch_sigma * float(r.normal())
        pitch = self.pitch_rate
        if self.gesture_left > 0:
            self.gesture_left -= 1
            if self.gesture_pitch != 0.0:
                pitch = self.gesture_pitch
            elif self.gesture_pure:
                pitch = 0.0
        lo, hi = -cfg.max_pitch - pitch_up, cfg.max_pitch - pitch_up
        if not lo <= pitch <= hi:
            pitch = float(np.clip(pitch, lo, hi))
            self.pitch_rate = 0.0
            if self.gesture_pure and self.gesture_pitch != 0.0:
                self.gesture_left, self.gesture_pure = 0, False     # a look from rest ends at the limit
            self.gesture_pitch = 0.0
        return keys.astype(np.float32), float(yaw), float(pitch)
