"""The action-track model: per-video-frame keyboard and mouse conditions (reference §3.3, §6).

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

Its JSON form is :mod:`matrix_game_core.action_json`; the official benchmark tracks are
:mod:`matrix_game_core.action_bench`; :mod:`matrix_game_core.actions` re-exports all three.
"""
from __future__ import annotations

import difflib
import math
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple, Union

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
        """The canonical compact JSON object (:mod:`~matrix_game_core.action_json`); any ``T >= 1``."""
        from .action_json import track_to_dict
        return track_to_dict(self)

    def to_json(self) -> str:
        """Canonical compact JSON text (:mod:`~matrix_game_core.action_json`); ``from_json(to_json(t)) == t``."""
        from .action_json import track_to_json
        return track_to_json(self)

    @classmethod
    def from_dict(cls, d: Any, any_length: bool = False) -> "ActionTrack":
        """Parse a compact or dense JSON object (:mod:`~matrix_game_core.action_json`).

        Args:
            any_length: accept any ``T >= 1`` (recordings) instead of requiring ``1 + 4n``.
        Raises:
            MatrixGameError: naming the JSON path of the problem (``$.keyboard.forward[1]``) and the fix.
        """
        from .action_json import track_from_dict
        return track_from_dict(d, any_length)

    @classmethod
    def from_json(cls, text: Union[str, bytes], any_length: bool = False) -> "ActionTrack":
        """Parse JSON text (compact or dense form; ``bytes`` must be UTF-8). Errors as :meth:`from_dict`;
        bad JSON syntax is reported with line and column, binary text, nesting deeper than 64 levels and
        integers of more than 30 digits are refused (:func:`matrix_game_core.json_input.loads`)."""
        from .action_json import track_from_json
        return track_from_json(text, any_length)

    def save(self, path: str) -> str:
        """Write :meth:`to_json` to ``path``.

        Raises:
            MatrixGameError: the file cannot be written.
        """
        text = self.to_json()
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise MatrixGameError(f"cannot write action track {path!r}: {e}") from e
        return path

    @classmethod
    def load(cls, path: str, any_length: bool = False) -> "ActionTrack":
        """Read a track JSON file (UTF-8).

        Raises:
            MatrixGameError: unreadable, binary or malformed file; invalid track (as :meth:`from_dict`).
        """
        from .action_json import track_from_dict
        from .json_input import read_file
        return track_from_dict(read_file(path, "action track"), any_length)


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
