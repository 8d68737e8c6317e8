"""Host-side work that overlaps the next block: one worker thread, one job in flight.

Used by the sampler's per-block preview and the live session's host copy / JPEG encode
(issue 12): the block loop queues the job and goes on with the next block; queueing the next
job first waits for the previous one (so at most one block is in flight and jobs run in order),
and a job's exception is raised in the loop at that point. With ``side_stream`` the jobs' CUDA
work runs on a side stream that first waits for the work queued so far on the loop's stream.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch


class OneAhead:
    def __init__(self, name: str, side_stream: bool = False):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"matrixgame-{name}")
        self._pending = None
        self._stream = torch.cuda.Stream() if side_stream and torch.cuda.is_available() else None

    def submit(self, fn, *args) -> None:
        """Wait for the previous job (raising its error), then run ``fn(*args)`` on the worker."""
        self.wait()
        main = torch.cuda.current_stream() if self._stream is not None else None
        self._pending = self._pool.submit(self._run, main, fn, args)

    def _run(self, main, fn, args):
        if self._stream is None:
            return fn(*args)
        self._stream.wait_stream(main)
        with torch.cuda.stream(self._stream):
            return fn(*args)

    def wait(self) -> None:
        fut, self._pending = self._pending, None
        if fut is not None:
            fut.result()

    def close(self) -> None:
        """Wait for the last job (raising its error) and stop the worker."""
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)
