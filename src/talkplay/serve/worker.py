"""Recommender calls off the event loop: one worker thread, a bounded number of waiting jobs.

The model is not thread-safe, so every ``recommend`` call runs on one dedicated thread, one at a
time, in arrival order. **Dynamic batching** (``recommend`` with ``max_batch`` > 1, for a
recommender with ``recommend_batch``): turns that arrive while the worker is busy wait
together, and the worker takes up to ``max_batch`` of them at once (no added wait: a turn that
finds the worker idle starts at once). Each is ranked as alone; their replies are written in
one batch, where a reply token reads the weights once for all of them. The event loop only awaits the result, so health checks, static files
and audio keep answering while a turn is being generated. When ``max_pending`` jobs are already
queued or running, a new one is refused at once (the caller answers 503) rather than letting
latency grow without bound. ``close`` waits for queued and running jobs: in-flight requests
finish during a graceful shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class QueueFull(RuntimeError):
    """Too many recommender jobs are waiting; try again later."""


class GenerationQueue:
    """A single-thread executor with a bound on jobs queued or running."""

    def __init__(self, max_pending: int, max_batch: int = 1):
        """Args:
            max_pending: most jobs queued or running at once (at least 1).
            max_batch: most turns answered together by ``recommend`` (1: one at a time).
        """
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.pending = 0
        self.done = 0
        self.rejected = 0
        self.batches: dict[int, int] = {}
        """How many batches of each size the worker answered (``recommend``)."""
        self._waiting: list[tuple[Any, tuple, Future]] = []
        self._draining = False
        self._lock = threading.Lock()
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
        self._admit()
        return await self._await(self._executor.submit(fn, *args))

    def _admit(self) -> None:
        """Count one more job, or refuse it (QueueFull) when ``max_pending`` are already queued
        or running or the queue is closed. Only the event loop thread touches the counters."""
        if self._closed or self.pending >= self.max_pending:
            self.rejected += 1
            raise QueueFull(f"{self.pending} requests are already waiting for the recommender")
        self.pending += 1

    async def _await(self, future: Future):
        """Await an admitted job's ``future``. It counts as pending until the thread is really
        done with it, even when the awaiting request is cancelled (client gone) while it runs."""
        loop = asyncio.get_running_loop()
        future.add_done_callback(lambda _: _call_soon(loop, self._finished))
        return await asyncio.wrap_future(future)

    async def recommend(self, recommender, pending, k: int):
        """``session.run_pending(recommender, pending, k)`` on the worker thread, batched with
        other waiting turns when the recommender has ``recommend_batch`` and ``max_batch`` > 1.

        Raises:
            QueueFull: as ``run``.
        """
        from talkplay.serve.session import run_pending

        if self.max_batch == 1 or not callable(getattr(recommender, "recommend_batch", None)):
            return await self.run(run_pending, recommender, pending, k)
        self._admit()
        future: Future = Future()
        with self._lock:
            self._waiting.append((recommender, (pending, k), future))
            start = not self._draining
            self._draining = True
        if start:
            self._executor.submit(self._drain)
        return await self._await(future)

    def _drain(self) -> None:
        """Worker thread: answer waiting turns, up to ``max_batch`` of one recommender at a
        time, until none is left."""
        from talkplay.serve.session import request, run_pending, trim

        while True:
            with self._lock:
                if not self._waiting:
                    self._draining = False
                    return
                rec = self._waiting[0][0]
                batch = [w for w in self._waiting if w[0] is rec][:self.max_batch]
                self._waiting = [w for w in self._waiting if all(w is not b for b in batch)]
            live = [w for w in batch if w[2].set_running_or_notify_cancel()]
            if not live:
                continue
            with self._lock:  # stats() reads it from the event loop
                self.batches[len(live)] = self.batches.get(len(live), 0) + 1
            try:
                answers = rec.recommend_batch([request(p, k) for _, (p, k), _ in live])
                for (_, (p, k), future), answer in zip(live, answers, strict=True):
                    future.set_result(trim(answer, p, k))
            except Exception:  # one bad turn must not fail the others: answer each alone
                log.warning("a batch of %d turns failed; answering them one by one", len(live),
                            exc_info=True)
                for _, (p, k), future in live:
                    try:
                        future.set_result(run_pending(rec, p, k))
                    except Exception as e:
                        future.set_exception(e)

    def _finished(self) -> None:
        self.pending -= 1
        self.done += 1

    def stats(self) -> dict:
        """Counters for the health endpoint."""
        with self._lock:
            batches = {str(n): c for n, c in sorted(self.batches.items())}
        return {"pending": self.pending, "max_pending": self.max_pending, "done": self.done,
                "rejected": self.rejected, "max_batch": self.max_batch, "batches": batches}

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
