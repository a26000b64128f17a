"""Recommender calls off the event loop: one worker thread, a bounded number of waiting jobs.

The model is not thread-safe, so every ``recommend`` call runs on one dedicated thread, one at a
time, in arrival order. The event loop only awaits the result, so health checks, static files
and audio keep answering while a turn is being generated. When ``max_pending`` jobs are already
queued or running, a new one is refused at once (the caller answers 503) rather than letting
latency grow without bound. ``close`` waits for queued and running jobs: in-flight requests
finish during a graceful shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class QueueFull(RuntimeError):
    """Too many recommender jobs are waiting; try again later."""


class GenerationQueue:
    """A single-thread executor with a bound on jobs queued or running."""

    def __init__(self, max_pending: int):
        """Args:
            max_pending: most jobs queued or running at once (at least 1).
        """
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.max_pending = max_pending
        self.pending = 0
        self.done = 0
        self.rejected = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="talkplay-recommend")
        self._closed = False

    async def run(self, fn: Callable[..., T], *args) -> T:
        """Run ``fn(*args)`` on the worker thread and await its result.

        Args:
            fn, args: the job (exceptions it raises propagate to the caller).
        Returns:
            What ``fn`` returned.
        Raises:
            QueueFull: ``max_pending`` jobs are already queued or running, or the queue is closed.
        """
        if self._closed or self.pending >= self.max_pending:
            self.rejected += 1
            raise QueueFull(f"{self.pending} requests are already waiting for the recommender")
        loop = asyncio.get_running_loop()
        self.pending += 1  # only the event loop thread touches the counters
        future = self._executor.submit(fn, *args)
        # Count the job as pending until the thread is really done with it, even when the
        # awaiting request is cancelled (client gone) while the job runs.
        future.add_done_callback(lambda _: _call_soon(loop, self._finished))
        return await asyncio.wrap_future(future)

    def _finished(self) -> None:
        self.pending -= 1
        self.done += 1

    def stats(self) -> dict:
        """Counters for the health endpoint."""
        return {"pending": self.pending, "max_pending": self.max_pending, "done": self.done,
                "rejected": self.rejected}

    async def close(self) -> None:
        """Refuse new jobs and wait (without blocking the loop) for queued and running ones."""
        self._closed = True
        if self.pending:
            log.info("waiting for %d recommender job(s) to finish", self.pending)
        await asyncio.to_thread(self._executor.shutdown, wait=True)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    try:
        loop.call_soon_threadsafe(fn)
    except RuntimeError:  # the loop is already closed (process exit): nothing left to count
        pass
