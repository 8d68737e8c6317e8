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

The code is split by responsibility; every name stays importable from here:

- :mod:`.live_protocol`: the wire format (:func:`parse_message`, :func:`frame_message`, JPEG)
- :mod:`.live_session`: :class:`LiveSession` and :class:`SessionManager` (state, limits)
- :mod:`.live_runner`: the block loop :func:`play` and the node's :func:`run_live_session`
- :mod:`.live_routes`: the aiohttp routes (:func:`make_handlers`, :func:`make_app`, ComfyUI registration)
"""
from __future__ import annotations

from .live_protocol import (MAX_INPUT_BYTES, MAX_MOUSE_DELTA, PREFIX, InputError, encode_jpeg, frame_message,
                            parse_frame_message, parse_message)
from .live_routes import make_app, make_handlers, register_comfy_routes
from .live_runner import EVENT, frames_u8, play, run_live_session, send_event
from .live_session import (DISCONNECT_GRACE_S, MANAGER, MAX_QUEUED, POLL_S, LiveSession, SessionLimitError,
                           SessionManager)

__all__ = ["DISCONNECT_GRACE_S", "EVENT", "MANAGER", "MAX_INPUT_BYTES", "MAX_MOUSE_DELTA", "MAX_QUEUED", "POLL_S",
           "PREFIX", "InputError", "LiveSession", "SessionLimitError", "SessionManager", "encode_jpeg",
           "frame_message", "frames_u8", "make_app", "make_handlers", "parse_frame_message", "parse_message",
           "play", "register_comfy_routes", "run_live_session", "send_event"]
