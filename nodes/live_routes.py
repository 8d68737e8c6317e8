"""The live session's aiohttp routes (also under ``/api/...`` inside ComfyUI): ``GET /matrix_game/sessions``,
``GET /matrix_game/session/{id}``, ``POST /matrix_game/session/{id}/input``,
``POST /matrix_game/session/{id}/stop``, ``GET /matrix_game/session/{id}/track``,
``GET /matrix_game/session/{id}/ws``. Unknown id -> 404, ended session -> 410 (its final info and
track stay readable with GET), malformed payload -> 400, too large -> 413.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any, Callable, List, Optional, Tuple

from .live_protocol import PREFIX, InputError, decode_message, parse_message
from .live_session import MANAGER, SessionManager

_SID_RE = re.compile(r"^[0-9a-f]{16}$")


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
            return decode_message(raw), None
        except InputError as e:
            return None, _error(400, str(e))

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
                        msg = parse_message(decode_message(m.data), s.mode)
                    except InputError as e:
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
