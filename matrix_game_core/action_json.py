"""The JSON form of an action track: canonical writing and checked reading.

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

import json
import math
from decimal import Decimal
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

from .action_track import (CAM_VALUE, DEFAULT_FPS, KEYS, MAX_FRAMES, MOUSE_CHANNELS, MOUSE_LIMIT, MOUSE_MODES,
                           SCHEMA_VERSION, ActionTrack, _f32, _is_int, _is_num, _keys_text, _nearest_valid,
                           _suggest)
from .config import MODES
from .errors import MatrixGameError
from .json_input import MAX_DEPTH, depth, loads

_TOP_COMPACT = ("version", "mode", "num_frames", "fps", "keyboard", "mouse", "meta")
_TOP_ALL = frozenset(_TOP_COMPACT + ("keyboard_rows", "mouse_rows", "$schema"))


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



def track_to_dict(track: ActionTrack) -> Dict[str, Any]:
    """The canonical compact JSON object of ``track`` (module docstring); any ``T >= 1``."""
    track.validate(any_length=True)
    mode, T = track.mode, track.num_frames
    fps = float(track.fps)
    d: Dict[str, Any] = {"version": SCHEMA_VERSION, "mode": mode, "num_frames": T,
                         "fps": int(fps) if fps.is_integer() else fps}
    d["keyboard"] = {k: _ranges(track.keyboard[:, i]) for i, k in enumerate(KEYS[mode])}
    if track.mouse is not None:
        d["mouse"] = {c: _channel_value(track.mouse[:, i]) for i, c in enumerate(MOUSE_CHANNELS)}
    if track.meta:
        d["meta"] = track.meta
    return d


def track_to_json(track: ActionTrack) -> str:
    """Canonical compact JSON text (module docstring); ``track_from_json(track_to_json(t)) == t``."""
    d = track_to_dict(track)
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


def track_from_json(text: Union[str, bytes], any_length: bool = False) -> ActionTrack:
    """Parse JSON text (``bytes`` must be UTF-8) with :func:`~matrix_game_core.json_input.loads`, then
    :func:`track_from_dict`.

    Raises:
        MatrixGameError: not UTF-8, not JSON (line and column), nested too deeply, an integer with too
            many digits, or an invalid track (the JSON path and the fix).
    """
    return track_from_dict(loads(text, "action track JSON"), any_length)


def track_from_dict(d: Any, any_length: bool = False) -> ActionTrack:
    """Parse a compact or dense JSON object (module docstring).

    Args:
        any_length: accept any ``T >= 1`` (recordings) instead of requiring ``1 + 4n``.
    Raises:
        MatrixGameError: naming the JSON path of the problem (``$.keyboard.forward[1]``) and the fix.
    """
    return _parse(d, any_length)


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
def _show(v: Any, n: int = 40) -> str:
    """At most ``n`` characters of ``v`` as JSON, for messages (safe for any value)."""
    if isinstance(v, (list, dict)) and depth(v) > 3:
        return "[...]" if isinstance(v, list) else "{...}"
    try:
        return json.dumps(v)[:n]
    except (TypeError, ValueError, RecursionError):
        return type(v).__name__


def _err(path: str, msg: str) -> MatrixGameError:
    return MatrixGameError(f"action track JSON, {path}: {msg}")


def _number(v: Any, path: str) -> float:
    if not _is_num(v):
        raise _err(path, f"expected a number, got {_show(v, 40)}.")
    try:
        x = float(v)
        if math.isfinite(x):
            return _f32(x)
    except OverflowError:   # a huge int (float() refuses it) or beyond float32
        raise _err(path, f"{_show(v)} is out of range (mouse values are at most +-{MOUSE_LIMIT:g}).") from None
    raise _err(path, f"{x} is not a finite number.")


def _mouse_number(v: Any, path: str) -> float:
    x = _number(v, path)
    if abs(x) > MOUSE_LIMIT:
        raise _err(path, f"{x:g} is beyond the mouse limit +-{MOUSE_LIMIT:g} per frame (official units: "
                         f"{CAM_VALUE} = one camera step per frame); scale it down.")
    return x


def _frame(v: Any, path: str, lo: int, hi: int, hi_name: str) -> int:
    if not _is_int(v):
        raise _err(path, f"expected a whole video-frame number, got {_show(v, 40)}.")
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
            raise _err(f"{path}.interp", f"{_show(interp, 40)} is not \"step\" or \"linear\".")
        pts = v["points"]
        if not isinstance(pts, list):
            raise _err(f"{path}.points", "expected a list of [frame, value] pairs.")
        frames: List[int] = []
        values: List[float] = []
        for i, p in enumerate(pts):
            pp = f"{path}.points[{i}]"
            if not (isinstance(p, list) and len(p) == 2):
                raise _err(pp, f"expected [frame, value], got {_show(p, 40)}.")
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
            raise _err(rp, f"expected a row of {width} {kind} values, got {_show(r, 60)}.")
        row = []
        for i, x in enumerate(r):
            if kind == "key":
                if not _is_num(x) or x not in (0, 1):
                    raise _err(f"{rp}[{i}]", f"keys are 0 (up) or 1 (held), got {_show(x, 40)}.")
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
        raise _err("$.version", f"must be the number {SCHEMA_VERSION}, got {_show(ver, 40)}.")
    if ver > SCHEMA_VERSION:
        raise _err("$.version", f"version {ver} was written by a newer ComfyUI-MatrixGame (this one reads "
                                f"version {SCHEMA_VERSION}); update the pack.")
    if ver != SCHEMA_VERSION:
        raise _err("$.version", f"unsupported version {ver}; this pack reads version {SCHEMA_VERSION}.")
    if "mode" not in d:
        raise _err("$", f"missing \"mode\"; one of {', '.join(json.dumps(m) for m in MODES)}.")
    mode = d["mode"]
    if mode not in KEYS:
        raise _err("$.mode", f"unknown mode {_show(mode, 40)}{_suggest(mode, MODES)}; choose one of "
                             f"{', '.join(MODES)}.")
    names = KEYS[mode]

    T: Optional[int] = None
    if "num_frames" in d:
        T = d["num_frames"]
        if not _is_int(T) or not 1 <= T <= MAX_FRAMES:
            raise _err("$.num_frames", f"must be a whole number in 1..{MAX_FRAMES}, got {_show(T, 40)}.")
    fps = DEFAULT_FPS
    if "fps" in d:
        fps = d["fps"]
        if not _is_num(fps) or not math.isfinite(float(fps)) or fps <= 0:
            raise _err("$.fps", f"must be a positive number, got {_show(fps, 40)}.")
        fps = float(fps)
    meta = d.get("meta", {})
    if not isinstance(meta, dict):
        raise _err("$.meta", "must be a JSON object.")
    if depth(meta) >= MAX_DEPTH:
        raise _err("$.meta", f"is nested too deeply (at most {MAX_DEPTH - 1} levels).")

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
                    raise _err(rp, f"expected [start, end] (end exclusive), got {_show(r, 40)}.")
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
