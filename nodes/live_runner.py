"""The session runner: :func:`play` (the block loop: take the latest input, step the world, stream
every decoded frame) and :func:`run_live_session` (the *Live Session* node's logic). Runs on
ComfyUI's executor thread; no ComfyUI import at module level (see :mod:`.host`).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from matrix_game_core.actions import ActionTrack
from matrix_game_core.errors import MatrixGameError

from .live_protocol import encode_jpeg, frame_message
from .live_session import MANAGER, LiveSession, SessionManager
from .overlap import OneAhead

log = logging.getLogger("MatrixGame")
#: Name of the ComfyUI websocket event that announces sessions to the browser.
EVENT = "matrix_game.session"


def _is_interrupt(e: BaseException) -> bool:
    return type(e).__name__ in ("InterruptProcessingException", "MatrixGameInterrupted") or isinstance(e, KeyboardInterrupt)


def _u8_on_device(frames: torch.Tensor) -> torch.Tensor:
    x = ((frames[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).contiguous()


def frames_u8(frames: torch.Tensor) -> torch.Tensor:
    """Decoded ``[B, 3, T, H, W]`` in [-1, 1] -> ``[T, H, W, 3]`` uint8 (first batch item)."""
    return _u8_on_device(frames).cpu()


def start_host_copy(frames: torch.Tensor):
    """:func:`frames_u8` without waiting: the uint8 conversion is queued on the device right after
    the block and, on CUDA, copied into page-locked memory asynchronously.

    Returns:
        ``(uint8 [T, H, W, 3] host tensor, CUDA event to wait on before reading it, or None)``.
    """
    x = _u8_on_device(frames)
    if not x.is_cuda:
        return x.cpu(), None
    host = torch.empty(x.shape, dtype=torch.uint8, pin_memory=True)
    host.copy_(x, non_blocking=True)
    ev = torch.cuda.Event()
    ev.record()
    return host, ev


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
    shipper = OneAhead("live")
    started = 0          # blocks stepped (the shipper records them one block later)

    def ship(*args):
        _ship_block(session, frames, keep_frames, jpeg_quality, progress, *args)

    try:
        session.publish({"type": "state", "state": "waiting"})
        if not session.wait(lambda: session.inputs > 0, None, check_interrupt):
            reason = session.end_condition() or "idle"
        else:
            with session.cond:
                session.state = "running"
            reason = "max_blocks"
            while started < session.max_blocks:
                why = session.end_condition()
                if why:
                    reason = why
                    break
                if check_interrupt is not None:
                    check_interrupt()
                if session.wait_for_input > 0 and started > 0:
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
                if res.frames is None:
                    raise MatrixGameError("the live session needs a VAE decoder to stream frames.")
                started += 1
                # the host copy, recording and JPEG encoding of this block overlap the next block
                shipper.submit(ship, res, kb, ms, act, *start_host_copy(res.frames), t0)
            shipper.wait()
    except BaseException as e:
        reason = "interrupted" if _is_interrupt(e) else "error"
        if reason == "error":
            session.publish({"type": "error", "message": f"{type(e).__name__}: {e}"})
        raise
    finally:
        try:
            shipper.close()
        except BaseException as e:  # the loop's own error (if any) is the one to report
            log.warning("MatrixGame: shipping the last block failed: %s", e)
        try:
            track = session.recorded_track()
        except Exception as e:  # never mask the real error
            log.warning("MatrixGame: could not build the recorded track: %s", e)
        info = session.manager.close(session, reason, track)
    video = torch.cat(frames, 0) if frames else None
    return video, track, info


def _ship_block(session: LiveSession, frames: List[torch.Tensor], keep_frames: bool, jpeg_quality: int,
                progress, res, kb, ms, act, vid: torch.Tensor, ready, t0: float) -> None:
    """Worker side of :func:`play` for one block: ``vid`` is the uint8 ``[T,H,W,3]`` host copy,
    ``ready`` its CUDA event (None on the CPU)."""
    if ready is not None:
        ready.synchronize()
    gen_s = time.perf_counter() - t0                                 # key latched -> frames on the host
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


def send_event(data: Dict[str, Any]) -> None:
    """Tell the browser that queued the prompt about a session (ComfyUI websocket, event :data:`EVENT`)."""
    try:
        from server import PromptServer
    except Exception:
        return
    inst = getattr(PromptServer, "instance", None)
    if inst is not None:
        inst.send_sync(EVENT, data, getattr(inst, "client_id", None))


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
    from matrix_game_core.sampling import WorldSession
    from matrix_game_core.vae import StreamingDecoder

    from . import host, logic

    manager = manager or MANAGER
    notify = notify or send_event
    if not isinstance(model, logic.MatrixGameModel):
        raise MatrixGameError("model must come from the Matrix-Game model loader.")
    if vae is None:
        raise MatrixGameError("Connect a Wan 2.1 VAE: the live session decodes every block to show it.")
    if int(max_blocks) < 1:
        raise MatrixGameError(f"max blocks must be at least 1 (got {max_blocks}).")
    if float(idle_timeout) <= 0 or float(wait_for_input) < 0:
        raise MatrixGameError("idle timeout must be > 0 s and wait for input >= 0 s.")
    model.ensure_loaded()
    cfg = model.module.cfg
    logic.check_conditioning(model, conditioning)
    logic.check_vae(model, vae)
    vae_part = logic.engine_vae(vae)
    h, w = conditioning.cond_concat.shape[-2:]
    tokens = (h // cfg.patch_size[1]) * (w // cfg.patch_size[2])
    host.load_models([model.patcher, vae_part.patcher],
                     memory_required=logic._cache_bytes(cfg, tokens, model.module.window_frames, model.dtype, 1))
    session = manager.open(model.mode, node_id=None if node_id is None else str(node_id),
                           idle_timeout=float(idle_timeout), wait_for_input=float(wait_for_input),
                           max_blocks=int(max_blocks), seed=int(seed), fps=model.fps)
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
