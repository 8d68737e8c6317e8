"""Live session state: :class:`LiveSession` (latest input, subscribers, recorded actions) and
:class:`SessionManager` (the cap on open sessions, the final info of ended ones). No aiohttp and no
world model here; :mod:`.live_runner` plays a session, :mod:`.live_routes` serves it.

Limits: at most ``max_sessions`` sessions at once (env ``MATRIX_GAME_MAX_SESSIONS``, default 1;
opening one more is an error on the node); a session ends after ``idle_timeout`` seconds without
input, or :data:`DISCONNECT_GRACE_S` after its last websocket closed.
"""
from __future__ import annotations

import asyncio
import collections
import json
import os
import secrets
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from matrix_game_core.actions import KEY_LABELS, KEYS, MOUSE_LIMIT, MOUSE_MODES, ActionTrack
from matrix_game_core.errors import MatrixGameError

from .live_protocol import MAX_INPUT_BYTES, PREFIX

#: A session whose last websocket closed ends after this many seconds (unless one reconnects).
DISCONNECT_GRACE_S = 5.0
#: Outgoing messages queued per websocket before frames are dropped for that client.
MAX_QUEUED = 512
#: How often waits poll for stop / interrupt / idle (seconds).
POLL_S = 0.05


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


class SessionLimitError(MatrixGameError):
    """Too many live sessions are open (the cap is ``max_sessions``)."""



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
