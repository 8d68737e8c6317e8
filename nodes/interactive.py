"""Live interactive world sessions: the session manager, the block loop, the aiohttp routes and the
plain logic of the *Matrix-Game Live Session* node (no ComfyUI import here; see :mod:`.host`).

How a session runs::

    node execute (ComfyUI's executor thread)                  browser (js/live_preview.js)
    ─────────────────────────────────────────                 ──────────────────────────────
    manager.open()  ──"matrix_game.session" (ComfyUI ws)──►   opens /matrix_game/session/<id>/ws
    play(): wait for the first input                     ◄──  {"type": "input", keys, mouse, ...}
      per block: take the latest keys + summed mouse,
      WorldSession.step(), decode, JPEG every frame   ──────►  {"type": "block"} + one binary message per frame
      ends on stop / idle / disconnect / max blocks /
      ComfyUI interrupt                               ──────►  {"type": "ended", "track": <ActionTrack JSON>}
    returns IMAGE frames + the recorded ActionTrack

Input accumulation (as pygame-style game loops, and Daydream Scope's controller): **keys = latest
state**, **mouse = summed deltas**. The browser sends ``mouse`` as deltas already in official units
(``0.1`` = one camera step per frame, pitch up +, yaw right +); every delta received between two
blocks is summed and the sum (plus the ``look`` rate of held camera keys), clamped to ``+-1``, is the
mouse value of every video frame of the next block. The recorded track holds exactly the rows
each block was generated with (9 for block 0, 12 after), so ``T = 1 + 4n`` and the track can be
edited in the timeline and re-rendered offline.

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

Routes (also under ``/api/...`` inside ComfyUI): ``GET /matrix_game/sessions``,
``GET /matrix_game/session/{id}``, ``POST /matrix_game/session/{id}/input``,
``POST /matrix_game/session/{id}/stop``, ``GET /matrix_game/session/{id}/track``,
``GET /matrix_game/session/{id}/ws``. Unknown id -> 404, ended session -> 410 (its final info and
track stay readable with GET), malformed payload -> 400, too large -> 413.

Limits: at most ``max_sessions`` sessions at once (env ``MATRIX_GAME_MAX_SESSIONS``, default 1;
opening one more is an error on the node); a session ends after ``idle_timeout`` seconds without
input, or :data:`DISCONNECT_GRACE_S` after its last websocket closed. Ending drops every reference
to the world session (KV caches, decoder cache) and asks ComfyUI to free memory.
"""
from __future__ import annotations

import asyncio
import collections
import io
import json
import logging
import math
import os
import re
import secrets
import struct
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from matrix_game_core.actions import KEY_LABELS, KEYS, MOUSE_LIMIT, MOUSE_MODES, ActionTrack
from matrix_game_core.errors import MatrixGameError

log = logging.getLogger("MatrixGame")

#: URL prefix of the pack's routes.
PREFIX = "/matrix_game"
#: Largest accepted client message (bytes); larger POST bodies get 413, larger websocket messages
#: close the socket with code 1009 (message too big).
MAX_INPUT_BYTES = 4096
#: Largest summed mouse delta one message may carry (official units); more is a malformed message.
MAX_MOUSE_DELTA = 100.0
#: A session whose last websocket closed ends after this many seconds (unless one reconnects).
DISCONNECT_GRACE_S = 5.0
#: Name of the ComfyUI websocket event that announces sessions to the browser.
EVENT = "matrix_game.session"
#: Outgoing messages queued per websocket before frames are dropped for that client.
MAX_QUEUED = 512
#: How often waits poll for stop / interrupt / idle (seconds).
POLL_S = 0.05

_SID_RE = re.compile(r"^[0-9a-f]{16}$")


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


class SessionLimitError(MatrixGameError):
    """Too many live sessions are open (the cap is ``max_sessions``)."""


class InputError(ValueError):
    """A malformed client message (HTTP 400 / a websocket ``error`` message)."""


# ================================================================================================ messages
def _finite(v: Any, path: str, limit: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise InputError(f"{path} must be a finite number, got {json.dumps(v)[:40]}.")
    if abs(float(v)) > limit:
        raise InputError(f"{path} = {v} is beyond +-{limit:g}.")
    return float(v)


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


# ================================================================================================ session
class LiveSession:
    """One live session: the latest client input, the websocket subscribers, the recorded actions.

    Thread-safe: the routes (event loop thread) and :func:`play` (the executor thread) share it
    through one condition variable. It holds no reference to the world model.
    """

    def __init__(self, manager: "SessionManager", sid: str, mode: str, node_id: Optional[str] = None,
                 idle_timeout: float = 60.0, wait_for_input: float = 0.0, max_blocks: int = 20,
                 seed: int = 0, fps: float = 25.0):
        if mode not in KEYS:
            raise MatrixGameError(f"Unknown mode {mode!r}.")
        self.manager, self.id, self.mode, self.node_id = manager, sid, mode, node_id
        self.idle_timeout, self.wait_for_input = float(idle_timeout), float(wait_for_input)
        self.max_blocks, self.seed, self.fps = int(max_blocks), int(seed), float(fps)
        self.cond = threading.Condition()
        K = len(KEYS[mode])
        self.keys: List[float] = [0.0] * K            # latest state
        self.look: Tuple[float, float] = (0.0, 0.0)   # latest state of the camera keys (per-frame rate)
        self.mouse_sum = [0.0, 0.0]                   # summed deltas since the last block
        self.last_id: Optional[int] = None
        self.last_t: Optional[float] = None
        self.inputs = 0                                # input messages received
        self.inputs_taken = 0                          # ... when the last block took its action
        self.created = time.time()
        self.last_input = time.monotonic()
        self.subscribers: Dict[int, Tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._next_sub = 0
        self.had_subscriber = False
        self.no_subscriber_since: Optional[float] = None
        self.stop_reason: Optional[str] = None
        self.state = "waiting"
        self.end_reason: Optional[str] = None
        self.blocks = 0
        self.frames = 0
        self.frame_size: Optional[Tuple[int, int]] = None
        self.rec_keyboard: List[torch.Tensor] = []
        self.rec_mouse: List[torch.Tensor] = []
        self.timings: Dict[str, float] = {}

    # ------------------------------------------------------------------ info
    def info(self) -> Dict[str, Any]:
        with self.cond:
            return {"session": self.id, "node": self.node_id, "mode": self.mode, "keys": list(KEYS[self.mode]),
                    "labels": list(KEY_LABELS[self.mode]), "mouse": self.mode in MOUSE_MODES,
                    "state": self.state, "reason": self.end_reason, "block": self.blocks, "frames": self.frames,
                    "max_blocks": self.max_blocks, "wait_for_input": self.wait_for_input,
                    "idle_timeout": self.idle_timeout, "fps": self.fps, "inputs": self.inputs,
                    "clients": len(self.subscribers), "frame_size": self.frame_size, "created": self.created}

    # ------------------------------------------------------------------ client side (routes)
    def apply(self, msg: Dict[str, Any]) -> None:
        """Apply one parsed client message (:func:`parse_message`)."""
        with self.cond:
            if msg["type"] == "stop":
                if self.stop_reason is None:
                    self.stop_reason = "stopped"
            elif msg["type"] == "input":
                if msg.get("keys") is not None:
                    self.keys = list(msg["keys"])
                if msg.get("look") is not None:
                    self.look = tuple(msg["look"])
                if msg.get("mouse") is not None:
                    self.mouse_sum[0] += msg["mouse"][0]
                    self.mouse_sum[1] += msg["mouse"][1]
                if msg.get("id") is not None:
                    self.last_id = msg["id"]
                if msg.get("t") is not None:
                    self.last_t = msg["t"]
                self.inputs += 1
                self.last_input = time.monotonic()
            self.cond.notify_all()

    def request_stop(self, reason: str = "stopped") -> None:
        with self.cond:
            if self.stop_reason is None:
                self.stop_reason = reason
            self.cond.notify_all()

    def add_subscriber(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> int:
        with self.cond:
            self._next_sub += 1
            self.subscribers[self._next_sub] = (loop, queue)
            self.had_subscriber = True
            self.no_subscriber_since = None
            self.cond.notify_all()
            return self._next_sub

    def remove_subscriber(self, token: int) -> None:
        with self.cond:
            self.subscribers.pop(token, None)
            if not self.subscribers:
                self.no_subscriber_since = time.monotonic()
            self.cond.notify_all()

    # ------------------------------------------------------------------ server side (play)
    def publish(self, msg, droppable: bool = False) -> None:
        """Send a message (dict -> JSON text, bytes -> binary, None -> close) to every subscriber."""
        data = json.dumps(msg) if isinstance(msg, dict) else msg
        with self.cond:
            subs = list(self.subscribers.values())
        for loop, queue in subs:
            if droppable and queue.qsize() > MAX_QUEUED:
                continue
            try:
                loop.call_soon_threadsafe(queue.put_nowait, data)
            except RuntimeError:  # that client's loop is gone
                pass

    def end_condition(self) -> Optional[str]:
        """Why the session must end now (``stopped`` / ``idle`` / ``disconnected`` / ...), or None."""
        with self.cond:
            return self._end_condition_locked()

    def _end_condition_locked(self) -> Optional[str]:
        if self.stop_reason is not None:
            return self.stop_reason
        now = time.monotonic()
        if now - self.last_input > self.idle_timeout:
            return "idle"
        if (self.had_subscriber and not self.subscribers and self.no_subscriber_since is not None
                and now - self.no_subscriber_since > self.manager.disconnect_grace):
            return "disconnected"
        return None

    def wait(self, predicate: Callable[[], bool], timeout: Optional[float],
             check_interrupt: Optional[Callable[[], None]] = None) -> bool:
        """Wait until ``predicate()`` (called with the lock held) or an end condition holds, or
        ``timeout`` passes; ``check_interrupt`` is called every :data:`POLL_S`. Returns predicate()."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.cond:
                if predicate():
                    return True
                if self._end_condition_locked() is not None:
                    return False
                left = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
                if left <= 0:
                    return False
                self.cond.wait(left)
            if check_interrupt is not None:
                check_interrupt()

    def take_action(self, rows: int) -> Tuple[torch.Tensor, Optional[torch.Tensor], Dict[str, Any]]:
        """The next block's action rows: keys = latest state, mouse = summed deltas + look rate
        (clamped to +-MOUSE_LIMIT), every one of ``rows`` frames alike. Resets the mouse sum."""
        with self.cond:
            kb = torch.tensor(self.keys, dtype=torch.float32).view(1, -1).repeat(rows, 1)
            ms = None
            mouse = (0.0, 0.0)
            if self.mode in MOUSE_MODES:
                mouse = tuple(max(-MOUSE_LIMIT, min(MOUSE_LIMIT, self.mouse_sum[i] + self.look[i])) for i in range(2))
                ms = torch.tensor(mouse, dtype=torch.float32).view(1, 2).repeat(rows, 1)
            self.mouse_sum = [0.0, 0.0]
            self.inputs_taken = self.inputs
            act = {"action_id": self.last_id, "client_t": self.last_t, "keys": list(self.keys),
                   "mouse": [float(ms[0, 0]), float(ms[0, 1])] if ms is not None else None}
            return kb, ms, act

    def record(self, kb: torch.Tensor, ms: Optional[torch.Tensor], n_frames: int, size) -> None:
        with self.cond:
            self.rec_keyboard.append(kb.float().cpu())
            if ms is not None:
                self.rec_mouse.append(ms.float().cpu())
            self.blocks += 1
            self.frames += n_frames
            self.frame_size = size

    def recorded_track(self) -> Optional[ActionTrack]:
        """The actions every generated block used (``T = 1 + 4n`` rows), or None before block 0."""
        with self.cond:
            if not self.rec_keyboard:
                return None
            kb = torch.cat(self.rec_keyboard, 0)
            ms = torch.cat(self.rec_mouse, 0) if self.rec_mouse else None
        meta = {"source": "ComfyUI-MatrixGame live session", "seed": self.seed}
        return ActionTrack(self.mode, kb, ms, self.fps, meta).validate()


# ================================================================================================ manager
class SessionManager:
    """The open live sessions (at most ``max_sessions``) and the final info of recently ended ones."""

    def __init__(self, max_sessions: Optional[int] = None, max_input_bytes: int = MAX_INPUT_BYTES,
                 disconnect_grace: float = DISCONNECT_GRACE_S, keep_ended: int = 16):
        self.max_sessions = max_sessions if max_sessions is not None else _env_int("MATRIX_GAME_MAX_SESSIONS", 1)
        self.max_input_bytes = int(max_input_bytes)
        self.disconnect_grace = float(disconnect_grace)
        self._lock = threading.Lock()
        self._sessions: Dict[str, LiveSession] = {}
        self._ended: "collections.OrderedDict[str, Dict[str, Any]]" = collections.OrderedDict()
        self._keep_ended = keep_ended

    def open(self, mode: str, **kw) -> LiveSession:
        """A new session (``LiveSession`` keyword arguments); raises :class:`SessionLimitError` at the cap."""
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                busy = ", ".join(f"{s.id} (node {s.node_id}, {s.state})" for s in self._sessions.values())
                raise SessionLimitError(
                    f"{len(self._sessions)} live session(s) already running ({busy}); at most {self.max_sessions} "
                    f"at a time. Stop the other session (its Stop button, or POST {PREFIX}/session/<id>/stop), or "
                    f"raise the cap with the environment variable MATRIX_GAME_MAX_SESSIONS.")
            sid = secrets.token_hex(8)
            s = LiveSession(self, sid, mode, **kw)
            self._sessions[sid] = s
            return s

    def get(self, sid: str) -> Optional[LiveSession]:
        with self._lock:
            return self._sessions.get(sid)

    def ended(self, sid: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            return self._ended.get(sid)

    def list(self) -> List[Dict[str, Any]]:
        with self._lock:
            sessions = list(self._sessions.values())
        return [s.info() for s in sessions]

    def close(self, session: LiveSession, reason: str, track: Optional[ActionTrack] = None) -> Dict[str, Any]:
        """End a session: tell its clients (``ended`` with the recorded track), close their sockets,
        forget it (its final info stays readable for a while)."""
        with session.cond:
            session.state = "ended"
            session.end_reason = reason
            session.cond.notify_all()
        info = session.info()
        info["track"] = track.to_json() if track is not None else None
        session.publish({"type": "ended", **info})
        session.publish(None)
        with self._lock:
            self._sessions.pop(session.id, None)
            self._ended[session.id] = info
            while len(self._ended) > self._keep_ended:
                self._ended.popitem(last=False)
        with session.cond:
            session.rec_keyboard, session.rec_mouse = [], []
            session.subscribers.clear()
        return info

    def stop_all(self, reason: str = "stopped") -> None:
        with self._lock:
            sessions = list(self._sessions.values())
        for s in sessions:
            s.request_stop(reason)


#: The server's session manager (routes registered with ComfyUI use this one).
MANAGER = SessionManager()


# ================================================================================================ block loop
def _is_interrupt(e: BaseException) -> bool:
    return type(e).__name__ in ("InterruptProcessingException", "MatrixGameInterrupted") or isinstance(e, KeyboardInterrupt)


def frames_u8(frames: torch.Tensor) -> torch.Tensor:
    """Decoded ``[B, 3, T, H, W]`` in [-1, 1] -> ``[T, H, W, 3]`` uint8 (first batch item)."""
    x = ((frames[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).contiguous().cpu()


def play(session: LiveSession, world, *, jpeg_quality: int = 85,
         check_interrupt: Optional[Callable[[], None]] = None,
         progress: Optional[Callable[[int], None]] = None,
         keep_frames: bool = True) -> Tuple[Optional[torch.Tensor], Optional[ActionTrack], Dict[str, Any]]:
    """Run a live session to its end (always closes it).

    Block 0 waits for the first input (up to ``idle_timeout``); then each block takes the latest
    action (after waiting up to ``wait_for_input`` seconds for a new input when that is > 0), steps
    ``world`` (a :class:`~matrix_game_core.sampling.WorldSession` with a decoder), and streams every
    decoded frame as JPEG. Ends on stop, idle timeout, disconnect, ``max_blocks`` or an exception
    (a ComfyUI interrupt is re-raised after closing the session).

    Returns:
        ``(frames [T,H,W,3] uint8 or None, recorded ActionTrack or None, final info)``.
    """
    reason = "error"
    frames: List[torch.Tensor] = []
    track = None
    info: Dict[str, Any] = {}
    try:
        session.publish({"type": "state", "state": "waiting"})
        if not session.wait(lambda: session.inputs > 0, None, check_interrupt):
            reason = session.end_condition() or "idle"
        else:
            with session.cond:
                session.state = "running"
            reason = "max_blocks"
            while session.blocks < session.max_blocks:
                why = session.end_condition()
                if why:
                    reason = why
                    break
                if check_interrupt is not None:
                    check_interrupt()
                if session.wait_for_input > 0 and session.blocks > 0:
                    session.wait(lambda: session.inputs > session.inputs_taken, session.wait_for_input,
                                 check_interrupt)
                    why = session.end_condition()
                    if why:
                        reason = why
                        break
                rows = world.rows_for_block(world.block)
                kb, ms, act = session.take_action(rows)
                t0 = time.perf_counter()
                res = world.step(kb, ms)
                gen_s = time.perf_counter() - t0
                if res.frames is None:
                    raise MatrixGameError("the live session needs a VAE decoder to stream frames.")
                vid = frames_u8(res.frames)                                  # [T,H,W,3] uint8
                first = session.frames
                session.record(kb, ms, vid.shape[0], [int(vid.shape[1]), int(vid.shape[2])])
                if keep_frames:
                    frames.append(vid)
                now = time.time()
                session.publish({"type": "block", "session": session.id, "block": res.block, "first_frame": first,
                                 "frames": int(vid.shape[0]), "gen_s": round(gen_s, 4),
                                 "timings": {k: round(v, 4) for k, v in res.timings.items()},
                                 "server_time": now, **act})
                for i in range(vid.shape[0]):
                    hdr = {"block": res.block, "index": i, "count": int(vid.shape[0]), "frame": first + i,
                           "action_id": act["action_id"], "t": now}
                    session.publish(frame_message(hdr, encode_jpeg(vid[i], jpeg_quality)), droppable=True)
                if progress is not None:
                    progress(session.blocks)
    except BaseException as e:
        reason = "interrupted" if _is_interrupt(e) else "error"
        if reason == "error":
            session.publish({"type": "error", "message": f"{type(e).__name__}: {e}"})
        raise
    finally:
        try:
            track = session.recorded_track()
        except Exception as e:  # never mask the real error
            log.warning("MatrixGame: could not build the recorded track: %s", e)
        info = session.manager.close(session, reason, track)
    video = torch.cat(frames, 0) if frames else None
    return video, track, info


# ================================================================================================ routes
def _json(data: Any, status: int = 200):
    from aiohttp import web
    return web.json_response(data, status=status)


def _error(status: int, message: str):
    return _json({"error": message}, status)


def make_handlers(manager: SessionManager) -> List[Tuple[str, str, Callable]]:
    """``(method, path, handler)`` of every route, bound to ``manager``."""
    from aiohttp import WSMsgType, web

    def lookup(request):
        sid = request.match_info.get("sid", "")
        if not _SID_RE.match(sid):
            return None, None, _error(404, f"no live session {sid[:40]!r} (session ids are 16 hex digits).")
        s = manager.get(sid)
        if s is not None:
            return sid, s, None
        ended = manager.ended(sid)
        if ended is not None:
            return sid, None, _json({"error": f"live session {sid} has ended ({ended.get('reason')}).", **ended}, 410)
        return sid, None, _error(404, f"no live session {sid}; it may have ended long ago or never existed "
                                      f"(GET {PREFIX}/sessions lists the open ones).")

    async def read_body(request) -> Tuple[Any, Optional[web.Response]]:
        limit = manager.max_input_bytes
        if request.content_length is not None and request.content_length > limit:
            return None, _error(413, f"payload of {request.content_length} bytes is larger than {limit} bytes.")
        raw = await request.content.read(limit + 1)
        if len(raw) > limit:
            return None, _error(413, f"payload is larger than {limit} bytes.")
        try:
            return json.loads(raw.decode("utf-8")), None
        except (UnicodeDecodeError, ValueError) as e:
            return None, _error(400, f"payload is not valid JSON: {e}.")

    async def list_sessions(request):
        return _json({"sessions": manager.list(), "max_sessions": manager.max_sessions})

    async def get_session(request):
        sid, s, resp = lookup(request)
        if s is None:
            if resp.status == 410:   # an ended session's final info (and track) stays readable
                return _json(manager.ended(sid))
            return resp
        return _json(s.info())

    async def post_input(request):
        sid, s, resp = lookup(request)
        if s is None:
            return resp
        body, err = await read_body(request)
        if err is not None:
            return err
        try:
            msg = parse_message(body, s.mode)
        except InputError as e:
            return _error(400, str(e))
        if msg["type"] == "ping":
            return _json({"type": "pong", "t": msg.get("t"), "server_time": time.time()})
        s.apply(msg)
        return _json({"ok": True, "state": s.state, "block": s.blocks})

    async def post_stop(request):
        sid, s, resp = lookup(request)
        if s is None:
            return resp
        s.request_stop("stopped")
        return _json({"ok": True, "state": s.state})

    async def get_track(request):
        sid, s, resp = lookup(request)
        if s is None:
            if resp.status == 410:
                ended = manager.ended(sid)
                if ended.get("track"):
                    return web.Response(text=ended["track"], content_type="application/json")
                return _error(404, f"live session {sid} ended before its first block; no track was recorded.")
            return resp
        tr = s.recorded_track()
        if tr is None:
            return _error(404, f"live session {sid} has no block yet; no track recorded so far.")
        return web.Response(text=tr.to_json(), content_type="application/json")

    async def websocket(request):
        sid, s, resp = lookup(request)
        if s is None:
            return resp
        ws = web.WebSocketResponse(max_msg_size=manager.max_input_bytes, heartbeat=30.0)
        await ws.prepare(request)
        queue: asyncio.Queue = asyncio.Queue()
        queue.put_nowait(json.dumps({"type": "session", **s.info()}))
        token = s.add_subscriber(asyncio.get_running_loop(), queue)
        if s.state == "ended":   # ended between lookup and subscribe
            queue.put_nowait(None)

        async def pump():
            try:
                while True:
                    item = await queue.get()
                    if item is None:
                        break
                    if isinstance(item, (bytes, bytearray)):
                        await ws.send_bytes(bytes(item))
                    else:
                        await ws.send_str(item)
            except (ConnectionError, RuntimeError):
                pass
            finally:
                if not ws.closed:
                    await ws.close(code=1000, message=b"session ended")

        sender = asyncio.create_task(pump())
        try:
            async for m in ws:
                if m.type == WSMsgType.TEXT:
                    try:
                        msg = parse_message(json.loads(m.data), s.mode)
                    except (InputError, ValueError) as e:
                        queue.put_nowait(json.dumps({"type": "error", "message": str(e)}))
                        continue
                    if msg["type"] == "ping":
                        queue.put_nowait(json.dumps({"type": "pong", "t": msg.get("t"), "server_time": time.time()}))
                    else:
                        s.apply(msg)
                elif m.type == WSMsgType.BINARY:
                    queue.put_nowait(json.dumps({"type": "error", "message": "send JSON text messages."}))
                elif m.type == WSMsgType.ERROR:
                    break
        finally:
            s.remove_subscriber(token)
            if not sender.done():
                queue.put_nowait(None)
                try:
                    await asyncio.wait_for(sender, 5)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    sender.cancel()
        return ws

    p = PREFIX + "/session/{sid}"
    return [("GET", PREFIX + "/sessions", list_sessions), ("GET", p, get_session), ("POST", p + "/input", post_input),
            ("POST", p + "/stop", post_stop), ("GET", p + "/track", get_track), ("GET", p + "/ws", websocket)]


def make_app(manager: Optional[SessionManager] = None):
    """A plain aiohttp application with the routes (tests, or a server without ComfyUI)."""
    from aiohttp import web
    app = web.Application()
    for method, path, handler in make_handlers(manager or MANAGER):
        app.router.add_route(method, path, handler)
    return app


_REGISTERED = False


def register_comfy_routes() -> bool:
    """Add the routes to ComfyUI's ``PromptServer.instance.routes`` (once; ComfyUI mirrors them under
    ``/api``). Returns False outside ComfyUI."""
    global _REGISTERED
    if _REGISTERED:
        return True
    try:
        from server import PromptServer
    except Exception:
        return False
    inst = getattr(PromptServer, "instance", None)
    if inst is None:
        return False
    for method, path, handler in make_handlers(MANAGER):
        inst.routes.route(method, path)(handler)
    _REGISTERED = True
    return True


def send_event(data: Dict[str, Any]) -> None:
    """Tell the browser that queued the prompt about a session (ComfyUI websocket, event :data:`EVENT`)."""
    try:
        from server import PromptServer
    except Exception:
        return
    inst = getattr(PromptServer, "instance", None)
    if inst is not None:
        inst.send_sync(EVENT, data, getattr(inst, "client_id", None))


# ================================================================================================ node logic
def run_live_session(model, conditioning, vae, seed: int = 0, max_blocks: int = 20, wait_for_input: float = 0.0,
                     idle_timeout: float = 60.0, jpeg_quality: int = 85, node_id: Optional[str] = None,
                     manager: Optional[SessionManager] = None,
                     notify: Optional[Callable[[Dict[str, Any]], None]] = None):
    """The *Live Session* node: open a session, play it with the browser, return
    ``(IMAGE [T,H,W,3] float 0..1, recorded ActionTrack)``.

    Raises:
        MatrixGameError: bad inputs; the session cap is reached; the session ended before its
            first block (nobody played: the message says how to start).
    """
    from matrix_game_core.sampling import Conditioning, WorldSession
    from matrix_game_core.vae import StreamingDecoder

    from . import host, logic

    manager = manager or MANAGER
    notify = notify or send_event
    if not isinstance(model, logic.MatrixGameModel):
        raise MatrixGameError("model must come from the Matrix-Game model loader.")
    if not isinstance(conditioning, Conditioning):
        raise MatrixGameError("conditioning must come from the Matrix-Game start-image encode node.")
    if vae is None:
        raise MatrixGameError("Connect a Wan 2.1 VAE: the live session decodes every block to show it.")
    if int(max_blocks) < 1:
        raise MatrixGameError(f"max blocks must be at least 1 (got {max_blocks}).")
    if float(idle_timeout) <= 0 or float(wait_for_input) < 0:
        raise MatrixGameError("idle timeout must be > 0 s and wait for input >= 0 s.")
    model.ensure_loaded()
    cfg = model.module.cfg
    vis = conditioning.visual_context
    if vis.shape[-1] != cfg.img_dim:
        raise MatrixGameError(f"The start-image features have width {vis.shape[-1]} but this model expects "
                              f"{cfg.img_dim}: " + ("the random-tiny model needs the random-tiny VAE and image encoder."
                                                    if model.is_tiny or cfg.img_dim != 1280 else
                                                    "use clip_vision_h (ViT-H/14, 1280) for the image encoder."))
    vae_part = logic.engine_vae(vae)
    h, w = conditioning.cond_concat.shape[-2:]
    tokens = (h // cfg.patch_size[1]) * (w // cfg.patch_size[2])
    host.load_models([model.patcher, vae_part.patcher],
                     memory_required=logic._cache_bytes(cfg, tokens, model.module.window_frames, model.dtype, 1))
    session = manager.open(model.mode, node_id=None if node_id is None else str(node_id),
                           idle_timeout=float(idle_timeout), wait_for_input=float(wait_for_input),
                           max_blocks=int(max_blocks), seed=int(seed), fps=float(logic.FPS))
    world = None
    try:
        world = WorldSession(model.module, conditioning, decoder=StreamingDecoder(vae_part.module), seed=int(seed),
                             interrupt=host.interrupt_hook())
        notify({**session.info(), "event": "started"})
        bar = host.Progress(int(max_blocks), "live")
        video, track, info = play(session, world, jpeg_quality=int(jpeg_quality), check_interrupt=host.check_interrupt,
                                  progress=lambda b: bar.update(b))
    except BaseException:
        info = manager.ended(session.id) or {**session.info(), "state": "ended", "reason": "error", "track": None}
        if manager.get(session.id) is not None:      # failed before play() could close it
            info = manager.close(session, "error")
        notify({**info, "event": "ended"})
        raise
    finally:
        del world
        host.free_memory(0)
    notify({**info, "event": "ended"})
    if track is None or video is None:
        raise MatrixGameError(f"The live session ended ({info.get('reason')}) before its first block. Click the "
                              f"node's live view and press a key (W/A/S/D...) or move the mouse within "
                              f"{idle_timeout:g} s to start playing.")
    images = video.float().div_(255.0)
    return images.to(host.intermediate_device()), track
