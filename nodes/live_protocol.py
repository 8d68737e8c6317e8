"""The live session's wire format: client messages checked (:func:`parse_message`) and the
binary frame messages (:func:`frame_message`). Pure functions; see :mod:`.interactive` for the overview.

Wire format (client -> server; a websocket text message or the body of ``POST .../input``, at most
:data:`MAX_INPUT_BYTES`)::

    {"type": "input", "id": 17, "keys": [1, 0, 0, 1] | ["forward", "right"],
     "mouse": [dpitch, dyaw], "look": [pitch, yaw], "t": <client ms>}      (all but type optional)
    {"type": "stop"}                 end the session (the node returns what was played)
    {"type": "ping", "t": <ms>}      answered with {"type": "pong", "t": ..., "server_time": ...}

Server -> client on the websocket: text ``{"type": "session" | "block" | "ended" | "error" | "pong"}``
messages, and per frame a binary message ``uint32 BE header length | header JSON | JPEG bytes`` whose
header has ``block``, ``index`` (in the block), ``frame`` (absolute video frame), ``action_id`` (the
last input id the block was conditioned on: the browser's key-press -> frame latency) and ``t``.
"""
from __future__ import annotations

import io
import json
import math
import struct
from typing import Any, Dict, Tuple

import torch

from matrix_game_core.actions import KEYS, MOUSE_LIMIT
from matrix_game_core.errors import MatrixGameError
from matrix_game_core.json_input import loads

#: URL prefix of the pack's routes.
PREFIX = "/matrix_game"
#: Largest accepted client message (bytes); larger POST bodies get 413, larger websocket messages
#: close the socket with code 1009 (message too big).
MAX_INPUT_BYTES = 4096
#: Deepest nesting a client message may have (a valid one needs 2).
MAX_MESSAGE_DEPTH = 8
#: Largest summed mouse delta one message may carry (official units); more is a malformed message.
MAX_MOUSE_DELTA = 100.0


class InputError(ValueError):
    """A malformed client message (HTTP 400 / a websocket ``error`` message)."""


# ================================================================================================ messages
def decode_message(raw) -> Any:
    """JSON-decode one client message (``bytes`` must be UTF-8), bounded: nesting deeper than
    :data:`MAX_MESSAGE_DEPTH`, integers of more than 30 digits, binary text and bad syntax are refused.

    Raises:
        InputError: the reason (HTTP 400 / a websocket ``error`` message).
    """
    try:
        return loads(raw, "the message", max_depth=MAX_MESSAGE_DEPTH)
    except MatrixGameError as e:
        raise InputError(str(e)) from None


def _finite(v: Any, path: str, limit: float) -> float:
    try:
        x = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
    except OverflowError:   # an int too large for a float
        x = math.inf
    if not math.isfinite(x):
        raise InputError(f"{path} must be a finite number, got {str(v)[:40]}.")
    if abs(x) > limit:
        raise InputError(f"{path} = {x:g} is beyond +-{limit:g}.")
    return x


def _pair(v: Any, path: str, limit: float) -> Tuple[float, float]:
    if not (isinstance(v, list) and len(v) == 2):
        raise InputError(f"{path} must be [pitch, yaw], got {json.dumps(v)[:40]}.")
    return _finite(v[0], path + "[0]", limit), _finite(v[1], path + "[1]", limit)


def parse_message(payload: Any, mode: str) -> Dict[str, Any]:
    """Check one client message (already JSON-decoded) for a session of ``mode``.

    Returns a normalized dict: ``{"type": "input", "id", "keys": [K floats], "mouse": (p, y) or None,
    "look": (p, y) or None, "t"}`` or ``{"type": "stop"}`` / ``{"type": "ping", "t"}``.
    Raises:
        InputError: the message is malformed (the text says what is wrong).
    """
    if not isinstance(payload, dict):
        raise InputError("a message is a JSON object such as {\"type\": \"input\", \"keys\": [...]}.")
    kind = payload.get("type", "input")
    allowed = {"input": {"type", "id", "keys", "mouse", "look", "t"}, "stop": {"type", "reason"},
               "ping": {"type", "t"}}
    if kind not in allowed:
        raise InputError(f"unknown message type {json.dumps(kind)[:40]}; use input, stop or ping.")
    unknown = sorted(set(payload) - allowed[kind])
    if unknown:
        raise InputError(f"unknown field {unknown[0]!r} in a {kind} message; fields are "
                         f"{', '.join(sorted(allowed[kind]))}.")
    out: Dict[str, Any] = {"type": kind}
    t = payload.get("t")
    if t is not None:
        out["t"] = _finite(t, "t", 1e300)
    if kind != "input":
        return out
    mid = payload.get("id")
    if mid is not None and (isinstance(mid, bool) or not isinstance(mid, int) or not 0 <= mid < 2 ** 53):
        raise InputError(f"id must be a whole number >= 0, got {json.dumps(mid)[:40]}.")
    out["id"] = mid
    names = KEYS[mode]
    keys = payload.get("keys")
    if keys is None:
        out["keys"] = None
    elif isinstance(keys, list) and all(isinstance(k, str) for k in keys):
        row = [0.0] * len(names)
        for k in keys:
            if k not in names:
                raise InputError(f"unknown key {k!r} for mode {mode!r}; keys are {', '.join(names)}.")
            row[names.index(k)] = 1.0
        out["keys"] = row
    elif isinstance(keys, list) and len(keys) == len(names):
        row = []
        for i, v in enumerate(keys):
            if isinstance(v, bool):
                v = int(v)
            if not isinstance(v, (int, float)) or v not in (0, 1):
                raise InputError(f"keys[{i}] must be 0 (up) or 1 (held), got {json.dumps(v)[:40]}.")
            row.append(float(v))
        out["keys"] = row
    else:
        raise InputError(f"keys must be {len(names)} values 0/1 ({', '.join(names)}) or a list of held key names, "
                         f"got {json.dumps(keys)[:60]}.")
    out["mouse"] = None if payload.get("mouse") is None else _pair(payload["mouse"], "mouse", MAX_MOUSE_DELTA)
    out["look"] = None if payload.get("look") is None else _pair(payload["look"], "look", MOUSE_LIMIT)
    return out


def frame_message(header: Dict[str, Any], jpeg: bytes) -> bytes:
    """A binary frame message: ``uint32 BE header length | header JSON | JPEG``."""
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack(">I", len(h)) + h + jpeg


def parse_frame_message(data: bytes) -> Tuple[Dict[str, Any], bytes]:
    """Inverse of :func:`frame_message` (for tests and Python clients)."""
    (n,) = struct.unpack(">I", data[:4])
    return json.loads(data[4:4 + n]), data[4 + n:]


def encode_jpeg(frame_u8: torch.Tensor, quality: int = 85) -> bytes:
    """``[H, W, 3]`` uint8 -> JPEG bytes."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(frame_u8.cpu().numpy()).save(buf, "JPEG", quality=int(quality))
    return buf.getvalue()
