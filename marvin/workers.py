"""A fixed number of workers for acknowledged work, and an honest "no" when it is too much.

Every acknowledged delivery used to become a task of its own: under load they all ran at
once, fought for the database, and memory grew with the backlog. Here a fixed number of
workers take jobs in order; what waits is a small entry in a queue. When the queue is so
long that a new command would be answered later than `max_answer_seconds`, the transport
refuses it at once instead of accepting it and answering minutes later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

Job = Callable[[], Awaitable[None]]


class WorkPool:
    def __init__(self, size: int, max_answer_seconds: float, max_queue: int = 10_000) -> None:
        self.size = size
        self.max_answer_seconds = max_answer_seconds
        self.max_queue = max_queue
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._busy = 0
        # When each running job started: a job stuck on a slow service counts before it ends.
        self._started: dict[int, float] = {}
        # How long one job takes, smoothed; a guess until the first ones are measured.
        self._seconds = 0.05

    def expected_wait(self) -> float:
        """When a job submitted now would be done, from the backlog and the pace: the
        smoothed time of finished jobs, or the time running ones have taken so far, if
        that is longer (a slow dependency shows before any job finishes)."""
        now = time.perf_counter()
        running = [now - t for t in self._started.values()]
        seconds = max(self._seconds, sum(running) / len(running) if running else 0.0)
        ahead = self._queue.qsize() + self._busy
        return (ahead // self.size + 1) * seconds

    def overloaded(self) -> bool:
        return (
            self._queue.qsize() >= self.max_queue or self.expected_wait() > self.max_answer_seconds
        )

    def submit(self, job: Job) -> None:
        if not self._workers:
            self._workers = [asyncio.create_task(self._work()) for _ in range(self.size)]
        self._queue.put_nowait(job)

    @property
    def idle(self) -> bool:
        return self._queue.empty() and self._busy == 0

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            self._busy += 1
            started = time.perf_counter()
            self._started[id(job)] = started
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A job answers its own failures; this is the transport's, kept visible.
                log.exception("work.failed")
            finally:
                self._started.pop(id(job), None)
                self._busy -= 1
                self._queue.task_done()
                took = time.perf_counter() - started
                self._seconds = 0.9 * self._seconds + 0.1 * took

    async def join(self, grace: float) -> bool:
        """Wait, up to `grace` seconds, until everything submitted is done."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout=grace)
        except TimeoutError:
            log.warning("work.join_timeout", waiting=self._queue.qsize(), busy=self._busy)
            return False
        return True

    async def stop(self, grace: float) -> None:
        """Finish what was accepted, for up to `grace` seconds; then stop the workers, which
        gives what they were doing back (each job releases its own work when cancelled)."""
        await self.join(grace)
        for worker in self._workers:
            worker.cancel()
        if self._workers:
            await asyncio.wait(self._workers, timeout=5)
        self._workers = []
        # What never started stays in the inbox, to be taken up again.
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
