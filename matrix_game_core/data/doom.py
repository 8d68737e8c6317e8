"""ViZDoom as a headless, deterministic, frame-accurate data source.

ViZDoom (PyPI ``vizdoom``, MIT; its wheel ships the Freedoom: Phase 2 IWAD ``freedoom2.wad``, BSD-3,
see THIRD_PARTY_NOTICES.md) runs the Doom engine (ZDoom) in synchronous ``PLAYER`` mode: the game
advances only inside ``make_action``, so every frame and pose is a pure function of the seed, the
map and the action sequence.

Set-up (issue #5): window hidden, sound off, no HUD / crosshair / weapon / messages / flashes,
``+dmflags 655360 +freelook 1`` (enables freelook and jump; 655360 = 0x10000 | 0x80000 keeps the
player's own pitch/jump settings), optional ``-nomonsters``; 8 no-op tics after ``new_episode()``
(the engine ignores input during the first ~7 tics); ``tics_per_frame = 2`` game tics per
recorded video frame (35 tics/s -> 17.5 frames/s).

Buttons (in this order): ``MOVE_FORWARD, MOVE_BACKWARD, MOVE_LEFT, MOVE_RIGHT`` (binary) and the
continuous ``TURN_LEFT_RIGHT_DELTA`` / ``LOOK_UP_DOWN_DELTA`` in **degrees per tic**. Measured signs
(ViZDoom 1.3.2): ``TURN_LEFT_RIGHT_DELTA = +d`` lowers ``ANGLE`` by ``d`` per tic (turns right);
``LOOK_UP_DOWN_DELTA = +d`` lowers ``PITCH`` by ``d`` per tic (looks up; ZDoom's pitch is positive
looking down, limited to [-32, +56] degrees).

Units (our ActionTrack, universal mode): ``mouse = (pitch, yaw)`` with pitch up + and yaw right +
in official units where **0.1 = one camera step per video frame**. The official code never says
what a camera step is in degrees (upstream issue #50); we define it as ``deg_per_step`` degrees per
video frame (default 5.0, recorded in every manifest)::

    mouse_official = degrees_per_video_frame * 0.1 / deg_per_step
    delta_per_tic  = degrees_per_video_frame / tics_per_frame
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from ..errors import MatrixGameError

#: Official units of one camera step (``CAM_VALUE`` of ``utils/conditions.py``).
CAM_VALUE = 0.1
#: Freedoom: Phase 2 maps.
FREEDOOM2_MAPS = tuple(f"MAP{i:02d}" for i in range(1, 33))
#: The 16:9 screen resolutions ViZDoom offers, smallest first (width, height).
RES_16_9 = ((256, 144), (320, 180), (400, 225), (512, 288), (640, 360), (800, 450), (1024, 576),
            (1280, 720), (1600, 900), (1920, 1080))
#: Frames of pose columns: x, y, z (map units), angle (deg, CCW, 0 = east), pitch (deg, + = down).
POSE_COLUMNS = ("x", "y", "z", "angle", "pitch")
WARMUP_TICS = 8


def import_vizdoom():
    """Import ``vizdoom`` or raise :class:`MatrixGameError` with the install line."""
    try:
        import vizdoom  # noqa: F401
    except ImportError as e:
        raise MatrixGameError("recording needs ViZDoom: `pip install vizdoom` (the wheel ships the "
                              "Freedoom 2 IWAD; Linux/macOS/Windows wheels for Python 3.9+).") from e
    return vizdoom


def degrees_to_official(deg_per_frame, deg_per_step: float):
    """Degrees per video frame -> official mouse units (0.1 = one camera step per frame)."""
    return np.asarray(deg_per_frame, dtype=np.float64) * (CAM_VALUE / deg_per_step)


def official_to_degrees(units, deg_per_step: float):
    """Official mouse units -> degrees per video frame (inverse of :func:`degrees_to_official`)."""
    return np.asarray(units, dtype=np.float64) * (deg_per_step / CAM_VALUE)


def pick_render_resolution(height: int, width: int) -> Tuple[int, int]:
    """Smallest 16:9 ViZDoom resolution covering ``height x width`` -> ``(w, h)``."""
    for w, h in RES_16_9:
        if w >= width and h >= height:
            return w, h
    return RES_16_9[-1]


def fit_frame(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop ``rgb [H, W, 3] uint8`` to the aspect ``height:width`` and resize (Pillow
    bilinear, antialiased) -> ``[height, width, 3] uint8``. A pure crop when sizes allow it
    (320x180 -> 176x320 drops 2 rows top and bottom)."""
    h, w = rgb.shape[:2]
    if h * width > w * height:           # too tall: crop rows
        nh, nw = int(round(w * height / width)), w
    else:
        nh, nw = h, int(round(h * width / height))
    t, l = (h - nh) // 2, (w - nw) // 2
    rgb = rgb[t:t + nh, l:l + nw]
    if (nh, nw) != (height, width):
        from PIL import Image
        rgb = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((width, height), Image.BILINEAR))
    return np.ascontiguousarray(rgb)


@dataclass
class GameConfig:
    """How ViZDoom is set up for one recording (stored in the manifest)."""

    height: int = 176
    width: int = 320
    render: Optional[Tuple[int, int]] = None   # (w, h); default: smallest 16:9 covering the size
    tics_per_frame: int = 2
    monsters: bool = False
    maps: List[str] = field(default_factory=lambda: list(FREEDOOM2_MAPS))
    wad: str = "freedoom2.wad"
    skill: int = 3

    def render_size(self) -> Tuple[int, int]:
        return tuple(self.render) if self.render else pick_render_resolution(self.height, self.width)

    def to_dict(self):
        d = asdict(self)
        d["render"] = list(self.render_size())
        return d


class DoomGame:
    """One headless ViZDoom instance.

    ``reset(map, seed)`` starts an episode; ``observe()`` returns the current frame, depth and pose;
    ``step(keys, yaw_deg, pitch_deg)`` applies one video frame's action (``tics_per_frame`` tics).
    """

    def __init__(self, cfg: GameConfig):
        vzd = import_vizdoom()
        self.vzd, self.cfg = vzd, cfg
        g = vzd.DoomGame()
        wad = cfg.wad if os.path.isabs(cfg.wad) else os.path.join(os.path.dirname(vzd.__file__), cfg.wad)
        if not os.path.isfile(wad):
            raise MatrixGameError(f"IWAD {wad!r} not found; the vizdoom wheel ships freedoom2.wad.")
        g.set_doom_game_path(wad)
        rw, rh = cfg.render_size()
        res = getattr(vzd.ScreenResolution, f"RES_{rw}X{rh}", None)
        if res is None:
            raise MatrixGameError(f"ViZDoom has no {rw}x{rh} resolution; pick one of "
                                  f"{', '.join(f'{w}x{h}' for w, h in RES_16_9)}.")
        g.set_screen_resolution(res)
        g.set_screen_format(vzd.ScreenFormat.RGB24)
        g.set_depth_buffer_enabled(True)
        for fn in ("set_render_hud", "set_render_minimal_hud", "set_render_crosshair", "set_render_weapon",
                   "set_render_messages", "set_render_screen_flashes", "set_render_corpses"):
            getattr(g, fn)(False)
        g.set_window_visible(False)
        g.set_sound_enabled(False)
        g.set_mode(vzd.Mode.PLAYER)
        g.set_episode_timeout(0)
        g.set_episode_start_time(1)
        g.set_doom_skill(cfg.skill)
        args = "+dmflags 655360 +freelook 1"
        if not cfg.monsters:
            args += " -nomonsters"
        g.add_game_args(args)
        B = vzd.Button
        g.set_available_buttons([B.MOVE_FORWARD, B.MOVE_BACKWARD, B.MOVE_LEFT, B.MOVE_RIGHT,
                                 B.TURN_LEFT_RIGHT_DELTA, B.LOOK_UP_DOWN_DELTA])
        V = vzd.GameVariable
        g.set_available_game_variables([V.POSITION_X, V.POSITION_Y, V.POSITION_Z, V.ANGLE, V.PITCH])
        # ViZDoom writes _vizdoom.ini and a _vizdoom/ folder into the working directory: keep them
        # in a private temporary folder instead
        self._tmp = tempfile.mkdtemp(prefix="mg_vizdoom_")
        g.set_doom_config_path(os.path.join(self._tmp, "_vizdoom.ini"))
        self.game = g
        self._inited = False

    def reset(self, map_name: str, seed: int) -> None:
        """Start a new episode on ``map_name`` with the engine RNG seeded, then warm up."""
        g = self.game
        g.set_seed(int(seed) % (2 ** 31))
        g.set_doom_map(map_name)
        if not self._inited:
            cwd = os.getcwd()
            os.chdir(self._tmp)
            try:
                g.init()
            finally:
                os.chdir(cwd)
            self._inited = True
        g.new_episode()
        for _ in range(WARMUP_TICS):
            g.make_action([0.0] * 6, 1)

    @property
    def finished(self) -> bool:
        return self.game.is_episode_finished() or self.game.is_player_dead()

    def observe(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rgb [H,W,3] uint8 at the training size, depth [h,w] uint8 at render size, pose [5] f64)``."""
        s = self.game.get_state()
        rgb = fit_frame(s.screen_buffer, self.cfg.height, self.cfg.width)
        return rgb, s.depth_buffer, np.asarray(s.game_variables, dtype=np.float64)

    def step(self, keys: np.ndarray, yaw_deg: float, pitch_deg: float) -> None:
        """Apply one video frame: keys W S A D, yaw (right +) and pitch (up +) in degrees per frame."""
        n = self.cfg.tics_per_frame
        a = [float(k) for k in keys[:4]] + [float(yaw_deg) / n, float(pitch_deg) / n]
        self.game.make_action(a, n)

    def close(self) -> None:
        try:
            self.game.close()
        except Exception:
            pass
        shutil.rmtree(self._tmp, ignore_errors=True)


def wrap_degrees(d):
    """Wrap angles (degrees) to (-180, 180]."""
    d = np.asarray(d, dtype=np.float64)
    return -((-d + 180.0) % 360.0 - 180.0)


def applied_rotation(pose: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per-frame rotation the poses show: ``(yaw right + [T-1], pitch up + [T-1])`` in degrees.

    ``yaw[t] = -(angle[t+1] - angle[t])`` (wrapped), ``pitch[t] = -(pitch[t+1] - pitch[t])``: the
    rotation between frame t and t+1, i.e. the effect of action row t.
    """
    yaw = -wrap_degrees(np.diff(pose[:, 3]))
    pitch = -np.diff(pose[:, 4])
    return yaw, pitch
