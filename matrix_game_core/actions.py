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

JSON format (``version`` 1)
===========================

Compact form (what :meth:`ActionTrack.to_json` writes; the timeline widget, the nodes and the CLI
read and write it; JSON Schema: ``matrix_game_core/action_track.schema.json``)::

    {
      "version": 1,
      "mode": "universal",
      "num_frames": 57,
      "fps": 25,
      "keyboard": {
        "forward": [[0, 33]],
        "back": [],
        "left": [[33, 57]],
        "right": []
      },
      "mouse": {
        "pitch": {"points": [[0, 0], [33, 0.05], [45, 0]], "interp": "step"},
        "yaw": {"points": [[0, 0.1], [33, 0]], "interp": "step"}
      }
    }

* ``version`` (required) = 1. ``mode`` (required): ``universal`` | ``gta_drive`` | ``templerun``.
* ``num_frames`` (required): ``T``, the number of video frames; ``1 + 4n`` for the model.
* ``fps`` (optional, default 25): playback rate of the timeline; informational for the engine.
* ``meta`` (optional): any JSON object (e.g. where a recording came from); kept as is.
* ``keyboard`` (required): key name -> list of **half-open video-frame ranges** ``[start, end)``
  during which the key is held, ``0 <= start < end <= num_frames``. Keys left out are never held;
  ranges may overlap or touch (they are united). Unknown key names are errors.
* ``mouse`` (required for universal and gta_drive, forbidden for templerun): an object with
  ``pitch`` and ``yaw`` (each optional, default 0). A channel is one of

  - a number: the same value on every frame;
  - a list of ``num_frames`` numbers: the per-frame values (painted curves, recordings);
  - ``{"points": [[frame, value], ...], "interp": "step" | "linear"}``: keyframes with integer
    frames ``0 <= frame < num_frames``, strictly increasing; ``interp`` defaults to ``"step"``.
    Frames before the first point are 0 (no camera motion); from the last point on, its value
    holds. ``step``: a point's value holds until the next point. ``linear``: between points
    ``(f0, v0)`` and ``(f1, v1)``, frame ``f`` gets ``v0 + (v1 - v0) * (f - f0) / (f1 - f0)``
    evaluated in float64, then rounded to float32.

Dense form (accepted by :meth:`ActionTrack.from_json`; useful for programs)::

    {"version": 1, "mode": "universal", "keyboard_rows": [[0, 1, 0, 0], ...],
     "mouse_rows": [[pitch, yaw], ...]}

``keyboard_rows`` replaces ``keyboard`` and ``mouse_rows`` replaces ``mouse`` (each part may use
either form); ``num_frames`` is optional then (if given it must equal the number of rows).

Numbers are stored as float32. Canonical output (:meth:`ActionTrack.to_json`), so that another
implementation (the browser widget) can reproduce it byte for byte:

* top-level keys in the order ``version, mode, num_frames, fps, keyboard, mouse, meta``
  (``mouse`` only for mouse modes, ``meta`` only when not empty); two-space indentation for the
  top level and for the entries of ``keyboard`` and ``mouse``; every value below that on one line,
  with ``", "`` and ``": "`` separators; ``meta`` is written with sorted keys;
* ``keyboard`` lists every key of the mode in index order, with merged, sorted ranges
  (``[]`` when never held);
* a mouse channel is a number when it is constant; else ``{"points": ..., "interp": "step"}`` with
  one point per run of equal values when ``2 * points <= num_frames``; else the list of values;
* a number is written as the correctly rounded decimal with the fewest significant digits
  ``p`` (1..9) whose value, read as a double and rounded to float32, is the stored float32 value;
  in positional notation (never an exponent), integral values without a fraction (``0``, ``1``,
  ``-1``), ``-0`` written as ``0``.

``ActionTrack.from_json(t.to_json()) == t`` holds for every valid track (per-frame float32 values
included), so session recordings round-trip exactly.
"""
from __future__ import annotations

import difflib
import json
import math
import random as _random
import struct
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch

from .config import MODES
from .errors import MatrixGameError

#: Version of the JSON format written by :meth:`ActionTrack.to_json`.
SCHEMA_VERSION = 1
#: One camera step of the official benchmark actions (``utils/conditions.py``).
CAM_VALUE = 0.1
#: Largest accepted ``|pitch|`` / ``|yaw|`` per frame (ten official camera steps).
MOUSE_LIMIT = 1.0
#: Longest track accepted from JSON (video frames; about 11 hours at 25 fps).
MAX_FRAMES = 1_000_000
#: Default playback rate written into JSON tracks.
DEFAULT_FPS = 25.0

#: Key names per mode; index order = the official keyboard column order.
KEYS: Dict[str, Tuple[str, ...]] = {
    "universal": ("forward", "back", "left", "right"),
    "gta_drive": ("forward", "back"),
    "templerun": ("nomove", "jump", "slide", "turn_left", "turn_right", "left_side", "right_side"),
}
#: The official terminal keys (``get_current_action``) for each key of :data:`KEYS`.
KEY_LABELS: Dict[str, Tuple[str, ...]] = {
    "universal": ("W", "S", "A", "D"),
    "gta_drive": ("W", "S"),
    "templerun": ("Q", "W", "S", "Z", "C", "A", "D"),
}
#: Modes whose model takes mouse (camera) actions.
MOUSE_MODES = frozenset({"universal", "gta_drive"})
#: Names of the two mouse channels.
MOUSE_CHANNELS = ("pitch", "yaw")

_TOP_COMPACT = ("version", "mode", "num_frames", "fps", "keyboard", "mouse", "meta")
_TOP_ALL = frozenset(_TOP_COMPACT + ("keyboard_rows", "mouse_rows", "$schema"))


# ================================================================================================ helpers
def _check_mode(mode: Any, where: str = "mode") -> str:
    if mode not in KEYS:
        raise MatrixGameError(f"Unknown mode {mode!r} ({where}); choose one of {', '.join(MODES)}.")
    return mode


def _keys_text(mode: str) -> str:
    return ", ".join(f"{k} ({l})" for k, l in zip(KEYS[mode], KEY_LABELS[mode]))


def _nearest_valid(t: int) -> str:
    lo = 1 + 4 * max(0, (t - 1) // 4)
    hi = lo + 4 if lo < t else lo
    if lo == hi:
        return f"{lo}"
    return f"{lo} or {hi}"


def _check_length(t: int, what: str = "the track") -> None:
    if t < 1 or (t - 1) % 4:
        raise MatrixGameError(
            f"{what} has {t} video frames, but a track needs 1 + 4n frames (n + 1 latent frames); "
            f"use {_nearest_valid(t)} (crop it with .crop() or hold the last action with .extended()).")


def _f32(x: float) -> float:
    """Round a Python float to the nearest float32 (returned as a float)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def format_number(x: float) -> str:
    """The canonical JSON text of a float32 value (see the module docstring)."""
    x = float(x)
    if x == 0.0:
        return "0"
    if not math.isfinite(x):
        raise MatrixGameError(f"cannot write {x} into an action track; values must be finite.")
    v = _f32(x)
    s = None
    for p in range(1, 10):
        cand = "%.*g" % (p, v)
        if _f32(float(cand)) == v:
            s = cand
            break
    if s is None:  # unreachable for float32 (9 digits always suffice)
        s = repr(v)
    d = Decimal(s)
    if d == d.to_integral_value():
        return str(int(d))
    out = format(d, "f")
    if "." in out:
        out = out.rstrip("0").rstrip(".")
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool))


def _suggest(name: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(name), list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _as_f32_tensor(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.dtype != torch.float32:
            t = t.to(torch.float32)
        return t.cpu() if t.device.type != "cpu" else t
    try:
        return torch.as_tensor(x, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as e:
        raise MatrixGameError(f"{what} must be a numeric [T, C] array: {e}") from e


def _runs(col: torch.Tensor) -> List[Tuple[int, float]]:
    """``[(start, value), ...]`` one entry per run of equal consecutive values."""
    vals = col.tolist()
    out: List[Tuple[int, float]] = []
    for i, v in enumerate(vals):
        if not out or v != out[-1][1]:
            out.append((i, v))
    return out


def _ranges(col: torch.Tensor) -> List[List[int]]:
    """Half-open ``[start, end)`` ranges where a 0/1 column is 1."""
    out: List[List[int]] = []
    start = None
    vals = col.tolist()
    for i, v in enumerate(vals):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append([start, i])
            start = None
    if start is not None:
        out.append([start, len(vals)])
    return out


def block_row_range(block_index: int, frames_per_block: int = 3) -> Tuple[int, int]:
    """Rows ``[start, end)`` of the raw action track that a streaming block covers.

    The official streaming pipeline (``cond_current(..., replace=action)``) overwrites, for block
    ``b`` with first latent frame ``s = frames_per_block * b``: rows ``[0, 1 + 4 (F - 1))`` for
    ``b = 0`` (``[0, 9)`` for ``F = 3``), else ``[4s - 3, 4s + 4F - 3)`` (``[4s - 3, 4s + 9)``).
    """
    if not _is_int(block_index) or block_index < 0:
        raise MatrixGameError(f"block index must be a whole number >= 0 (got {block_index!r}).")
    if not _is_int(frames_per_block) or frames_per_block < 1:
        raise MatrixGameError(f"frames per block must be a whole number >= 1 (got {frames_per_block!r}).")
    if block_index == 0:
        return 0, 1 + 4 * (frames_per_block - 1)
    s = frames_per_block * block_index
    return 4 * s - 3, 4 * s + 4 * frames_per_block - 3


# ================================================================================================ track
@dataclass(eq=False)
class ActionTrack:
    """Per-video-frame actions of one run.

    Attributes:
        mode: ``universal`` | ``gta_drive`` | ``templerun``.
        keyboard: ``[T, K]`` float32, values 0 (up) or 1 (held); columns = :data:`KEYS` ``[mode]``.
        mouse: ``[T, 2]`` float32 ``(pitch, yaw)`` in official units, or ``None`` (templerun).
        fps: playback rate stored in the JSON (informational).
        meta: free JSON object stored in the JSON.

    The constructor converts arrays to CPU float32 tensors and checks nothing else; call
    :meth:`validate` (the ``from_*`` constructors and :func:`bench_actions` do).
    Two tracks are equal when mode, fps, meta and every value are equal.
    """

    mode: str
    keyboard: torch.Tensor
    mouse: Optional[torch.Tensor] = None
    fps: float = DEFAULT_FPS
    meta: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.keyboard = _as_f32_tensor(self.keyboard, "keyboard")
        if self.mouse is not None:
            self.mouse = _as_f32_tensor(self.mouse, "mouse")
        if self.meta is None:
            self.meta = {}

    # ------------------------------------------------------------------ basics
    @property
    def num_frames(self) -> int:
        """``T``, the number of video frames (rows)."""
        return int(self.keyboard.shape[0]) if self.keyboard.dim() >= 1 else 0

    def __len__(self) -> int:
        return self.num_frames

    @property
    def num_latent_frames(self) -> int:
        """Latent frames this track drives: ``1 + (T - 1) // 4``."""
        return 1 + (self.num_frames - 1) // 4

    @property
    def keys(self) -> Tuple[str, ...]:
        """The key names of the keyboard columns."""
        return KEYS[_check_mode(self.mode)]

    @property
    def labels(self) -> Tuple[str, ...]:
        """The official terminal keys of the keyboard columns."""
        return KEY_LABELS[_check_mode(self.mode)]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ActionTrack):
            return NotImplemented
        if self.mode != other.mode or float(self.fps) != float(other.fps) or self.meta != other.meta:
            return False
        if self.keyboard.shape != other.keyboard.shape or not torch.equal(self.keyboard, other.keyboard):
            return False
        if (self.mouse is None) != (other.mouse is None):
            return False
        if self.mouse is not None:
            return self.mouse.shape == other.mouse.shape and torch.equal(self.mouse, other.mouse)
        return True

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        m = "none" if self.mouse is None else f"{list(self.mouse.shape)}"
        return (f"ActionTrack(mode={self.mode!r}, frames={self.num_frames}, "
                f"keyboard={list(self.keyboard.shape)}, mouse={m})")

    def _replace(self, keyboard: torch.Tensor, mouse: Optional[torch.Tensor]) -> "ActionTrack":
        return ActionTrack(self.mode, keyboard, mouse, self.fps, dict(self.meta))

    # ------------------------------------------------------------------ validation
    def validate(self, any_length: bool = False) -> "ActionTrack":
        """Check the track; returns ``self``.

        Args:
            any_length: accept any ``T >= 1`` instead of requiring ``T = 1 + 4n``.
        Raises:
            MatrixGameError: unknown mode; wrong keyboard width for the mode; mouse missing (universal,
                gta_drive) or present (templerun) or not ``[T, 2]``; ``T`` not ``1 + 4n``; NaN/inf;
                keyboard values other than 0/1; ``|mouse| > MOUSE_LIMIT``. The message says how to fix it.
        """
        mode = _check_mode(self.mode)
        kb = self.keyboard
        K = len(KEYS[mode])
        if kb.dim() != 2 or kb.shape[1] != K:
            raise MatrixGameError(
                f"mode {mode!r} needs keyboard rows of {K} keys [{_keys_text(mode)}]; got a keyboard of shape "
                f"{list(kb.shape)} (expected [T, {K}]). Make the track for the model's mode.")
        T = kb.shape[0]
        if T < 1:
            raise MatrixGameError("the action track is empty; it needs at least 1 video frame (1 + 4n).")
        if mode in MOUSE_MODES:
            if self.mouse is None:
                raise MatrixGameError(
                    f"mode {mode!r} needs mouse rows [T, 2] (pitch, yaw); the track has none. Add mouse rows "
                    f"(zeros for no camera motion), e.g. \"mouse\": {{\"pitch\": 0, \"yaw\": 0}} in JSON.")
        elif self.mouse is not None:
            raise MatrixGameError(f"mode {mode!r} has no mouse input; remove the mouse rows from the track.")
        if self.mouse is not None:
            m = self.mouse
            if m.dim() != 2 or m.shape[1] != 2 or m.shape[0] != T:
                raise MatrixGameError(f"mouse rows must be [T, 2] = [{T}, 2] (pitch, yaw) like the keyboard rows; "
                                      f"got {list(m.shape)}.")
        if not any_length:
            _check_length(T)
        bad = ~torch.isfinite(kb)
        if bad.any():
            t, k = (int(i) for i in bad.nonzero()[0])
            raise MatrixGameError(f"keyboard value at frame {t}, key {KEYS[mode][k]!r} is {kb[t, k].item()} "
                                  f"(NaN/inf); keys are 0 (up) or 1 (held).")
        bad = (kb != 0) & (kb != 1)
        if bad.any():
            t, k = (int(i) for i in bad.nonzero()[0])
            raise MatrixGameError(f"keyboard value at frame {t}, key {KEYS[mode][k]!r} is {kb[t, k].item():g}; "
                                  f"keys are 0 (up) or 1 (held).")
        if self.mouse is not None:
            m = self.mouse
            bad = ~torch.isfinite(m)
            if bad.any():
                t, c = (int(i) for i in bad.nonzero()[0])
                raise MatrixGameError(f"mouse {MOUSE_CHANNELS[c]} at frame {t} is {m[t, c].item()} (NaN/inf); "
                                      f"use finite values ({CAM_VALUE} = one camera step per frame).")
            bad = m.abs() > MOUSE_LIMIT
            if bad.any():
                t, c = (int(i) for i in bad.nonzero()[0])
                raise MatrixGameError(
                    f"mouse {MOUSE_CHANNELS[c]} at frame {t} is {m[t, c].item():g}, beyond the limit "
                    f"+-{MOUSE_LIMIT:g} per frame; official units are {CAM_VALUE} per camera step "
                    f"(scale the values down).")
        if not (isinstance(self.fps, (int, float)) and not isinstance(self.fps, bool)
                and math.isfinite(self.fps) and self.fps > 0):
            raise MatrixGameError(f"fps must be a positive number (got {self.fps!r}).")
        return self

    # ------------------------------------------------------------------ constructors
    @classmethod
    def empty(cls, mode: str, num_frames: int, fps: float = DEFAULT_FPS) -> "ActionTrack":
        """All keys up, no camera motion, ``num_frames`` (``1 + 4n``) rows."""
        _check_mode(mode)
        if not _is_int(num_frames):
            raise MatrixGameError(f"num_frames must be a whole number (got {num_frames!r}).")
        _check_length(num_frames, "the requested track")
        kb = torch.zeros(num_frames, len(KEYS[mode]))
        ms = torch.zeros(num_frames, 2) if mode in MOUSE_MODES else None
        return cls(mode, kb, ms, fps).validate()

    @classmethod
    def from_segments(cls, mode: str, num_frames: int, segments: Iterable[Dict[str, Any]],
                      fps: float = DEFAULT_FPS) -> "ActionTrack":
        """Build a track from segments.

        Each segment is ``{"start": s, "end": e, "keys": [names], "mouse": [pitch, yaw]}`` for the
        half-open video-frame range ``[s, e)`` (``end`` may be omitted/None = to the end; ``keys`` and
        ``mouse`` are optional). Keys of overlapping segments are united; a later segment's ``mouse``
        overwrites earlier ones. Frames outside every segment: no key, no camera motion.
        """
        tr = cls.empty(mode, num_frames, fps)
        kb, ms = tr.keyboard, tr.mouse
        names = KEYS[mode]
        for i, seg in enumerate(segments):
            where = f"segments[{i}]"
            if not isinstance(seg, dict):
                raise MatrixGameError(f"{where} must be a dict with start/end/keys/mouse.")
            unknown = set(seg) - {"start", "end", "keys", "mouse"}
            if unknown:
                raise MatrixGameError(f"{where} has unknown fields {sorted(unknown)}; use start, end, keys, mouse.")
            s = seg.get("start", 0)
            e = seg.get("end", None)
            e = num_frames if e is None else e
            if not (_is_int(s) and _is_int(e) and 0 <= s < e <= num_frames):
                raise MatrixGameError(f"{where}: start/end must be whole frames with 0 <= start < end <= "
                                      f"{num_frames} (got start={s!r}, end={e!r}).")
            for k in seg.get("keys", ()) or ():
                if k not in names:
                    raise MatrixGameError(f"{where}: unknown key {k!r}{_suggest(k, names)} for mode {mode!r}; "
                                          f"keys are {_keys_text(mode)}.")
                kb[s:e, names.index(k)] = 1
            if seg.get("mouse") is not None:
                if mode not in MOUSE_MODES:
                    raise MatrixGameError(f"{where}: mode {mode!r} has no mouse input; remove \"mouse\".")
                m = seg["mouse"]
                if not (isinstance(m, (list, tuple)) and len(m) == 2 and all(_is_num(v) for v in m)):
                    raise MatrixGameError(f"{where}: mouse must be [pitch, yaw] numbers (got {m!r}).")
                ms[s:e] = torch.tensor([float(m[0]), float(m[1])], dtype=torch.float32)
        return tr.validate()

    @classmethod
    def from_block_actions(cls, mode: str, actions: Sequence[Tuple[Sequence[float], Optional[Sequence[float]]]],
                           frames_per_block: int = 3, fps: float = DEFAULT_FPS) -> "ActionTrack":
        """The track an interactive session builds: block ``b``'s ``(keyboard_row, mouse_row)`` fills
        :func:`block_row_range` ``(b)`` (official ``replace``). ``len(actions)`` blocks give
        ``1 + 4 (F * blocks - 1)`` rows."""
        if not actions:
            raise MatrixGameError("from_block_actions needs at least one block action.")
        n_lat = frames_per_block * len(actions)
        tr = cls.empty(mode, 1 + 4 * (n_lat - 1), fps)
        for b, (k, m) in enumerate(actions):
            tr = tr.with_block_action(b, k, m, frames_per_block)
        return tr

    # ------------------------------------------------------------------ editing
    def tensors(self, device: Union[str, torch.device, None] = None,
                dtype: torch.dtype = torch.float32) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``(keyboard [1, T, K], mouse [1, T, 2] or None)`` on ``device`` in ``dtype``."""
        kb = self.keyboard.unsqueeze(0).to(device=device, dtype=dtype)
        ms = None if self.mouse is None else self.mouse.unsqueeze(0).to(device=device, dtype=dtype)
        return kb, ms

    def concat(self, other: "ActionTrack") -> "ActionTrack":
        """``self`` followed by ``other`` (same mode).

        ``other``'s row 0 (the row of its start-image frame, which only conditions latent frame 0) is
        dropped, so ``1 + 4a`` and ``1 + 4b`` rows join into ``1 + 4(a + b)`` rows: the joined track
        drives ``self``'s latent frames then ``other``'s later ones. fps and meta are ``self``'s.
        """
        if not isinstance(other, ActionTrack):
            raise MatrixGameError(f"can only join an ActionTrack (got {type(other).__name__}).")
        if self.mode != other.mode:
            raise MatrixGameError(f"Cannot join a {self.mode!r} track with a {other.mode!r} track; both must be "
                                  f"for the same mode.")
        self.validate()
        other.validate()
        kb = torch.cat([self.keyboard, other.keyboard[1:]], 0)
        ms = None if self.mouse is None else torch.cat([self.mouse, other.mouse[1:]], 0)
        return self._replace(kb, ms)

    def crop(self, num_frames: int, start: int = 0) -> "ActionTrack":
        """Rows ``[start, start + num_frames)``; ``num_frames`` must be ``1 + 4n``."""
        if not (_is_int(num_frames) and _is_int(start)) or start < 0:
            raise MatrixGameError(f"crop needs whole numbers num_frames >= 1, start >= 0 "
                                  f"(got {num_frames!r}, {start!r}).")
        _check_length(num_frames, "the cropped track")
        if start + num_frames > self.num_frames:
            raise MatrixGameError(f"cannot crop {num_frames} frames from frame {start}: the track has only "
                                  f"{self.num_frames} frames; crop fewer or lengthen it with .extended().")
        sl = slice(start, start + num_frames)
        return self._replace(self.keyboard[sl].clone(),
                             None if self.mouse is None else self.mouse[sl].clone())

    def extended(self, num_frames: int) -> "ActionTrack":
        """Lengthen to ``num_frames`` (``1 + 4n``) rows by repeating the last row."""
        if not _is_int(num_frames):
            raise MatrixGameError(f"num_frames must be a whole number (got {num_frames!r}).")
        _check_length(num_frames, "the extended track")
        T = self.num_frames
        if num_frames < T:
            raise MatrixGameError(f"cannot extend a {T}-frame track to {num_frames} frames; use .crop({num_frames}) "
                                  f"to shorten it.")
        if T < 1:
            raise MatrixGameError("cannot extend an empty track; build one with ActionTrack.empty().")
        extra = num_frames - T
        kb = torch.cat([self.keyboard, self.keyboard[-1:].expand(extra, -1)], 0)
        ms = None if self.mouse is None else torch.cat([self.mouse, self.mouse[-1:].expand(extra, -1)], 0)
        return self._replace(kb, ms)

    def for_latent_frames(self, n: int) -> "ActionTrack":
        """Exactly the ``1 + 4 (n - 1)`` rows that ``n`` latent frames read (longer tracks are cropped).

        Raises:
            MatrixGameError: the track is too short (the message gives the fix).
        """
        if not _is_int(n) or n < 1:
            raise MatrixGameError(f"latent frames must be a whole number >= 1 (got {n!r}).")
        self.validate(any_length=True)
        need = 1 + 4 * (n - 1)
        T = self.num_frames
        if T < need:
            have = 1 + (T - 1) // 4
            raise MatrixGameError(
                f"the action track has {T} video frames (enough for {have} latent frames), but {n} latent frames "
                f"need {need}; lengthen the track to {need} frames (e.g. track.extended({need}) holds the last "
                f"action), or generate at most {have} latent frames.")
        return self.crop(need)

    def block_rows(self, block_index: int, frames_per_block: int = 3) -> Tuple[int, int]:
        """Rows ``[start, end)`` the official streaming pipeline replaces for block ``block_index``
        (:func:`block_row_range`): ``[0, 9)`` for block 0, else ``[4s - 3, 4s + 9)`` with ``s = 3 b``.

        Raises:
            MatrixGameError: the block reaches past the end of the track.
        """
        s, e = block_row_range(block_index, frames_per_block)
        if e > self.num_frames:
            raise MatrixGameError(f"block {block_index} covers video frames [{s}, {e}) but the track has "
                                  f"{self.num_frames}; extend it to {e} frames with .extended({e}).")
        return s, e

    def with_block_action(self, block_index: int, keyboard: Sequence[float], mouse: Optional[Sequence[float]] = None,
                          frames_per_block: int = 3) -> "ActionTrack":
        """A copy with the rows of :meth:`block_rows` set to one action (official ``replace``)."""
        s, e = self.block_rows(block_index, frames_per_block)
        row = torch.as_tensor(keyboard, dtype=torch.float32).reshape(-1)
        if row.numel() != len(self.keys):
            raise MatrixGameError(f"mode {self.mode!r} needs a keyboard row of {len(self.keys)} values "
                                  f"[{_keys_text(self.mode)}]; got {row.numel()}.")
        kb = self.keyboard.clone()
        kb[s:e] = row
        ms = None
        if self.mouse is not None:
            ms = self.mouse.clone()
            ms[s:e] = torch.as_tensor([0.0, 0.0] if mouse is None else mouse, dtype=torch.float32).reshape(1, 2)
        elif mouse is not None:
            raise MatrixGameError(f"mode {self.mode!r} has no mouse input; pass mouse=None.")
        return self._replace(kb, ms).validate(any_length=True)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> Dict[str, Any]:
        """The canonical compact JSON object (see the module docstring); any ``T >= 1``."""
        self.validate(any_length=True)
        mode, T = self.mode, self.num_frames
        fps = float(self.fps)
        d: Dict[str, Any] = {"version": SCHEMA_VERSION, "mode": mode, "num_frames": T,
                             "fps": int(fps) if fps.is_integer() else fps}
        d["keyboard"] = {k: _ranges(self.keyboard[:, i]) for i, k in enumerate(KEYS[mode])}
        if self.mouse is not None:
            d["mouse"] = {c: _channel_value(self.mouse[:, i]) for i, c in enumerate(MOUSE_CHANNELS)}
        if self.meta:
            d["meta"] = self.meta
        return d

    def to_json(self) -> str:
        """Canonical compact JSON text (module docstring); ``from_json(to_json(t)) == t``."""
        d = self.to_dict()
        lines = ["{"]
        items = list(d.items())
        for j, (k, v) in enumerate(items):
            comma = "," if j < len(items) - 1 else ""
            if k in ("keyboard", "mouse") and v:
                lines.append(f"  {json.dumps(k)}: {{")
                sub = list(v.items())
                for i, (kk, vv) in enumerate(sub):
                    c2 = "," if i < len(sub) - 1 else ""
                    lines.append(f"    {json.dumps(kk)}: {_dump(vv)}{c2}")
                lines.append("  }" + comma)
            elif k == "meta":
                lines.append(f"  {json.dumps(k)}: "
                             f"{json.dumps(v, sort_keys=True, separators=(', ', ': '), ensure_ascii=False)}{comma}")
            else:
                lines.append(f"  {json.dumps(k)}: {_dump(v)}{comma}")
        lines.append("}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_dict(cls, d: Any, any_length: bool = False) -> "ActionTrack":
        """Parse a compact or dense JSON object (module docstring).

        Args:
            any_length: accept any ``T >= 1`` (recordings) instead of requiring ``1 + 4n``.
        Raises:
            MatrixGameError: naming the JSON path of the problem (``$.keyboard.forward[1]``) and the fix.
        """
        return _parse(d, any_length)

    @classmethod
    def from_json(cls, text: Union[str, bytes], any_length: bool = False) -> "ActionTrack":
        """Parse JSON text (compact or dense form). Errors as :meth:`from_dict`; bad JSON syntax is
        reported with line and column."""
        if isinstance(text, (bytes, bytearray)):
            text = text.decode("utf-8", errors="replace")
        if not isinstance(text, str):
            raise MatrixGameError(f"an action track JSON must be text (got {type(text).__name__}).")
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise MatrixGameError(f"action track JSON is not valid JSON: {e.msg} at line {e.lineno}, column "
                                  f"{e.colno}; fix the syntax (quotes around names, no trailing commas).") from e
        return _parse(d, any_length)

    def save(self, path: str) -> str:
        """Write :meth:`to_json` to ``path``."""
        text = self.to_json()
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise MatrixGameError(f"cannot write action track {path!r}: {e}") from e
        return path

    @classmethod
    def load(cls, path: str, any_length: bool = False) -> "ActionTrack":
        """Read a track JSON file."""
        try:
            with open(path, "r", encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise MatrixGameError(f"cannot read action track {path!r}: {e}") from e
        return cls.from_json(text, any_length)


# ================================================================================================ JSON writing
class _Num(float):
    """A float that :func:`_dump` writes with :func:`format_number`."""


def _num_value(x: float) -> Union[int, float]:
    s = format_number(x)
    return int(s) if "." not in s else _Num(float(s))


def _channel_value(col: torch.Tensor) -> Any:
    runs = _runs(col)
    T = int(col.shape[0])
    if len(runs) == 1:
        return _num_value(runs[0][1])
    if 2 * len(runs) <= T:
        return {"points": [[s, _num_value(v)] for s, v in runs], "interp": "step"}
    return [_num_value(v) for v in col.tolist()]


def _dump(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, _Num):
        return format_number(v)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_dump(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)}: {_dump(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


# ================================================================================================ JSON reading
def _err(path: str, msg: str) -> MatrixGameError:
    return MatrixGameError(f"action track JSON, {path}: {msg}")


def _number(v: Any, path: str) -> float:
    if not _is_num(v):
        raise _err(path, f"expected a number, got {json.dumps(v)[:40]}.")
    x = float(v)
    if not math.isfinite(x):
        raise _err(path, f"{x} is not a finite number.")
    try:
        return _f32(x)
    except OverflowError:
        raise _err(path, f"{x:g} is out of range.") from None


def _mouse_number(v: Any, path: str) -> float:
    x = _number(v, path)
    if abs(x) > MOUSE_LIMIT:
        raise _err(path, f"{x:g} is beyond the mouse limit +-{MOUSE_LIMIT:g} per frame (official units: "
                         f"{CAM_VALUE} = one camera step per frame); scale it down.")
    return x


def _frame(v: Any, path: str, lo: int, hi: int, hi_name: str) -> int:
    if not _is_int(v):
        raise _err(path, f"expected a whole video-frame number, got {json.dumps(v)[:40]}.")
    if not lo <= v <= hi:
        raise _err(path, f"frame {v} is outside 0..{hi} ({hi_name}).")
    return v


def _parse_channel(v: Any, T: int, path: str) -> torch.Tensor:
    if _is_num(v):
        return torch.full((T,), _mouse_number(v, path), dtype=torch.float32)
    if isinstance(v, list):
        if len(v) != T:
            raise _err(path, f"a list of per-frame values needs num_frames = {T} values, got {len(v)}.")
        return torch.tensor([_mouse_number(x, f"{path}[{i}]") for i, x in enumerate(v)], dtype=torch.float32)
    if isinstance(v, dict):
        unknown = sorted(set(v) - {"points", "interp"})
        if unknown:
            raise _err(f"{path}.{unknown[0]}", "unknown field; a keyframe curve has \"points\" and \"interp\".")
        if "points" not in v:
            raise _err(path, "missing \"points\": [[frame, value], ...].")
        interp = v.get("interp", "step")
        if interp not in ("step", "linear"):
            raise _err(f"{path}.interp", f"{json.dumps(interp)[:40]} is not \"step\" or \"linear\".")
        pts = v["points"]
        if not isinstance(pts, list):
            raise _err(f"{path}.points", "expected a list of [frame, value] pairs.")
        frames: List[int] = []
        values: List[float] = []
        for i, p in enumerate(pts):
            pp = f"{path}.points[{i}]"
            if not (isinstance(p, list) and len(p) == 2):
                raise _err(pp, f"expected [frame, value], got {json.dumps(p)[:40]}.")
            f = _frame(p[0], pp + "[0]", 0, T - 1, "num_frames - 1")
            if frames and f <= frames[-1]:
                raise _err(pp + "[0]", f"frame {f} must be after the previous point's frame {frames[-1]} "
                                       f"(points strictly increasing).")
            frames.append(f)
            values.append(_mouse_number(p[1], pp + "[1]"))
        out = [0.0] * T
        for i, f0 in enumerate(frames):
            f1 = frames[i + 1] if i + 1 < len(frames) else T
            v0 = values[i]
            if interp == "linear" and i + 1 < len(frames):
                v1 = values[i + 1]
                for f in range(f0, f1):
                    out[f] = v0 + (v1 - v0) * (f - f0) / (f1 - f0)
            else:
                for f in range(f0, f1):
                    out[f] = v0
        return torch.tensor(out, dtype=torch.float64).to(torch.float32)
    raise _err(path, "a mouse channel is a number, a list of per-frame values, or "
                     "{\"points\": [[frame, value], ...], \"interp\": \"step\"}.")


def _parse_rows(rows: Any, width: int, path: str, kind: str, T: Optional[int]) -> List[List[float]]:
    if not isinstance(rows, list):
        raise _err(path, f"expected a list of [{width}-value] rows.")
    if T is not None and len(rows) != T:
        raise _err(path, f"has {len(rows)} rows but num_frames is {T}.")
    out = []
    for t, r in enumerate(rows):
        rp = f"{path}[{t}]"
        if not (isinstance(r, list) and len(r) == width):
            raise _err(rp, f"expected a row of {width} {kind} values, got {json.dumps(r)[:60]}.")
        row = []
        for i, x in enumerate(r):
            if kind == "key":
                if not _is_num(x) or x not in (0, 1):
                    raise _err(f"{rp}[{i}]", f"keys are 0 (up) or 1 (held), got {json.dumps(x)[:40]}.")
                row.append(float(x))
            else:
                row.append(_mouse_number(x, f"{rp}[{i}]"))
        out.append(row)
    return out


def _parse(d: Any, any_length: bool) -> ActionTrack:
    if not isinstance(d, dict):
        raise _err("$", "an action track is a JSON object {\"version\": 1, \"mode\": ..., ...}.")
    unknown = sorted(k for k in d if k not in _TOP_ALL)
    if unknown:
        raise _err(f"$.{unknown[0]}", f"unknown field{_suggest(unknown[0], sorted(_TOP_ALL))}; fields are "
                                     f"{', '.join(_TOP_COMPACT)} (or keyboard_rows / mouse_rows).")
    if "version" not in d:
        raise _err("$", f"missing \"version\"; add \"version\": {SCHEMA_VERSION}.")
    ver = d["version"]
    if not _is_int(ver):
        raise _err("$.version", f"must be the number {SCHEMA_VERSION}, got {json.dumps(ver)[:40]}.")
    if ver > SCHEMA_VERSION:
        raise _err("$.version", f"version {ver} was written by a newer ComfyUI-MatrixGame (this one reads "
                                f"version {SCHEMA_VERSION}); update the pack.")
    if ver != SCHEMA_VERSION:
        raise _err("$.version", f"unsupported version {ver}; this pack reads version {SCHEMA_VERSION}.")
    if "mode" not in d:
        raise _err("$", f"missing \"mode\"; one of {', '.join(json.dumps(m) for m in MODES)}.")
    mode = d["mode"]
    if mode not in KEYS:
        raise _err("$.mode", f"unknown mode {json.dumps(mode)[:40]}{_suggest(mode, MODES)}; choose one of "
                             f"{', '.join(MODES)}.")
    names = KEYS[mode]

    T: Optional[int] = None
    if "num_frames" in d:
        T = d["num_frames"]
        if not _is_int(T) or not 1 <= T <= MAX_FRAMES:
            raise _err("$.num_frames", f"must be a whole number in 1..{MAX_FRAMES}, got {json.dumps(T)[:40]}.")
    fps = DEFAULT_FPS
    if "fps" in d:
        fps = d["fps"]
        if not _is_num(fps) or not math.isfinite(float(fps)) or fps <= 0:
            raise _err("$.fps", f"must be a positive number, got {json.dumps(fps)[:40]}.")
        fps = float(fps)
    meta = d.get("meta", {})
    if not isinstance(meta, dict):
        raise _err("$.meta", "must be a JSON object.")

    # ---- keyboard
    if ("keyboard" in d) == ("keyboard_rows" in d):
        raise _err("$", "give exactly one of \"keyboard\" (key -> [[start, end], ...] ranges) or "
                        "\"keyboard_rows\" (one 0/1 row per frame).")
    if "keyboard_rows" in d:
        rows = _parse_rows(d["keyboard_rows"], len(names), "$.keyboard_rows", "key", T)
        T = len(rows) if T is None else T
        if T < 1:
            raise _err("$.keyboard_rows", "needs at least one row.")
        kb = torch.tensor(rows, dtype=torch.float32).reshape(T, len(names))
    else:
        if T is None:
            raise _err("$", "missing \"num_frames\" (the number of video frames, 1 + 4n).")
        kd = d["keyboard"]
        if not isinstance(kd, dict):
            raise _err("$.keyboard", f"expected an object {{key: [[start, end], ...]}} with keys {_keys_text(mode)}.")
        kb = torch.zeros(T, len(names), dtype=torch.float32)
        for k, ranges in kd.items():
            kp = f"$.keyboard.{k}"
            if k not in names:
                raise _err(kp, f"unknown key {json.dumps(k)}{_suggest(k, names)} for mode {mode!r}; keys are "
                               f"{_keys_text(mode)}.")
            if not isinstance(ranges, list):
                raise _err(kp, "expected a list of [start, end] frame ranges (end exclusive).")
            col = names.index(k)
            for i, r in enumerate(ranges):
                rp = f"{kp}[{i}]"
                if not (isinstance(r, list) and len(r) == 2):
                    raise _err(rp, f"expected [start, end] (end exclusive), got {json.dumps(r)[:40]}.")
                s = _frame(r[0], rp + "[0]", 0, T - 1, "num_frames - 1")
                e = _frame(r[1], rp + "[1]", 1, T, "num_frames")
                if e <= s:
                    raise _err(rp, f"empty range [{s}, {e}); end must be greater than start (end exclusive).")
                kb[s:e, col] = 1

    # ---- mouse
    has_mouse = "mouse" in d or "mouse_rows" in d
    ms = None
    if mode not in MOUSE_MODES:
        if has_mouse:
            raise _err("$.mouse" if "mouse" in d else "$.mouse_rows",
                       f"mode {mode!r} has no mouse input; remove it.")
    else:
        if not has_mouse:
            raise _err("$", f"mode {mode!r} needs \"mouse\" (pitch/yaw per frame); add "
                            f"\"mouse\": {{\"pitch\": 0, \"yaw\": 0}} for no camera motion.")
        if "mouse" in d and "mouse_rows" in d:
            raise _err("$", "give only one of \"mouse\" and \"mouse_rows\".")
        if "mouse_rows" in d:
            ms = torch.tensor(_parse_rows(d["mouse_rows"], 2, "$.mouse_rows", "mouse", T),
                              dtype=torch.float32).reshape(T, 2)
        else:
            md = d["mouse"]
            if not isinstance(md, dict):
                raise _err("$.mouse", "expected an object {\"pitch\": ..., \"yaw\": ...}.")
            unknown = sorted(set(md) - set(MOUSE_CHANNELS))
            if unknown:
                raise _err(f"$.mouse.{unknown[0]}", f"unknown channel{_suggest(unknown[0], MOUSE_CHANNELS)}; "
                                                   f"channels are pitch (up +) and yaw (right +).")
            ms = torch.stack([_parse_channel(md.get(c, 0), T, f"$.mouse.{c}") for c in MOUSE_CHANNELS], 1)
    if not any_length and (T - 1) % 4:
        raise _err("$.num_frames", f"{T} video frames is not 1 + 4n (n + 1 latent frames); use "
                                   f"{_nearest_valid(T)} frames.")
    return ActionTrack(mode, kb, ms, fps, meta).validate(any_length=True)


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


# ================================================================================================ windows
def latent_action_windows(rows: torch.Tensor, start_frame: int, num_frames: int,
                          ratio: int = 4, windows_size: int = 3) -> torch.Tensor:
    """Gather the raw action rows each latent frame is conditioned on.

    Latent frame ``f`` (absolute index) sees raw rows ``[ratio*f - ratio*windows_size, ratio*f)``;
    indices below 0 are copies of row 0 (official ``ActionModule``: the sequence is left-padded with
    ``ratio*windows_size`` copies of row 0, ``wan/modules/action_module.py``). The row ``ratio*f``
    itself is not in latent ``f``'s window and the last raw row of a track is never used.

    Args:
        rows: ``[B, T, C]`` raw per-video-frame actions (any float dtype); ``T`` must reach
            ``ratio*(start_frame+num_frames-1)`` rows (exclusive end of the last window).
        start_frame: absolute index of the first latent frame.
        num_frames: number of latent frames.
    Returns:
        ``[B, num_frames, ratio*windows_size, C]``, same dtype/device as ``rows``.
    Raises:
        ValueError: ``rows`` is too short for the requested latent frames.
    """
    w = ratio * windows_size
    need = ratio * (start_frame + num_frames - 1)
    if rows.shape[1] < max(need, 1):
        raise ValueError(f"action rows too short: {rows.shape[1]} rows, latent frames "
                         f"{start_frame}..{start_frame + num_frames - 1} need {need}")
    f = torch.arange(start_frame, start_frame + num_frames, device=rows.device)
    idx = (ratio * f)[:, None] - w + torch.arange(w, device=rows.device)[None, :]
    idx = idx.clamp_min(0)
    return rows[:, idx]
