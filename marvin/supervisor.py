"""Background jobs, each on one replica at a time.

Every replica runs the same supervisor. A job runs only where its lease (a row in
`job_leases`) is held; the holder renews it while it lives, and another replica takes it
over once it has run out. Each job has its own loop, so a slow one (GitLab down, Slack
rate-limiting) never holds up another.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import or_, update

from marvin.clock import Clock, as_utc
from marvin.store.db import Store, insert_ignoring_conflicts
from marvin.store.tables import JobLease

log = structlog.get_logger(__name__)

# How long a job's run in progress at shutdown may take to end on its own.
STOP_GRACE_SECONDS = 3.0


def replica_id() -> str:
    """This process's name among the replicas: host, pid, and a nonce against pid reuse."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Job:
    name: str
    every: float  # seconds between runs (at most; `wake` brings the next run forward)
    run: Callable[[], Awaitable[Any]]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Called at shutdown when a run had to be cancelled: give back what it held.
    stopped: Callable[[], Awaitable[Any]] | None = None


class Leases:
    """Acquire, renew and give back job leases for one replica."""

    def __init__(self, store: Store, clock: Clock, owner: str, lease: timedelta) -> None:
        self.store = store
        self.clock = clock
        self.owner = owner
        self.lease = lease
        self._until: dict[str, datetime] = {}

    def held(self, name: str) -> bool:
        until = self._until.get(name)
        return until is not None and self.clock.now() < until

    async def hold(self, name: str) -> bool:
        """True when this replica holds `name`'s lease now (renewed when a third is gone)."""
        now = self.clock.now()
        until = self._until.get(name)
        if until is not None and now < until - self.lease * 2 / 3:
            return True
        async with self.store.transaction(write=True) as session:
            await session.execute(
                insert_ignoring_conflicts(session, JobLease)
                .values(name=name, owner=None, lease_until=None, fence=0)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            result = await session.execute(
                update(JobLease)
                .where(
                    JobLease.name == name,
                    or_(
                        JobLease.owner == self.owner,
                        JobLease.owner.is_(None),
                        JobLease.lease_until < now,
                    ),
                )
                .values(owner=self.owner, lease_until=now + self.lease, fence=JobLease.fence + 1)
                .returning(JobLease.lease_until)
            )
            granted = result.scalar_one_or_none()
        if granted is None:
            self._until.pop(name, None)
            return False
        if until is None:
            log.info("job.lease_taken", job=name, owner=self.owner)
        self._until[name] = as_utc(granted)
        return True

    async def release_all(self) -> None:
        if not self._until:
            return
        async with self.store.transaction(write=True) as session:
            await session.execute(
                update(JobLease)
                .where(JobLease.owner == self.owner)
                .values(owner=None, lease_until=None)
            )
        self._until.clear()


class Supervisor:
    def __init__(self, leases: Leases, jobs: list[Job]) -> None:
        self.leases = leases
        self.jobs = {job.name: job for job in jobs}

    def wake(self, name: str) -> None:
        job = self.jobs.get(name)
        if job is not None:
            job.wake.set()

    async def run(self, stop: asyncio.Event, grace: float = STOP_GRACE_SECONDS) -> None:
        """Run every job until `stop`; a run still going `grace` seconds later is cancelled.

        A job's run is a delivery round or a sweep that can be repeated (its rows stay
        pending until done), while a round waiting on a service that does not answer would
        hold a SIGTERM for that call's whole timeout: past Docker's ten seconds, the
        process is killed mid-write instead."""
        loops = [
            asyncio.create_task(self._loop(job, stop), name=job.name) for job in self.jobs.values()
        ]
        try:
            await stop.wait()
            _, late = await asyncio.wait(loops, timeout=grace)
            if late:
                log.warning("job.stopped_mid_run", jobs=sorted(task.get_name() for task in late))
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            for job in self.jobs.values():
                if job.stopped is not None:
                    try:
                        await job.stopped()
                    except Exception:
                        log.exception("job.give_back_failed", job=job.name)
            try:
                await self.leases.release_all()
            except Exception:
                log.exception("job.release_failed")

    async def _loop(self, job: Job, stop: asyncio.Event) -> None:
        # Not holding the lease, a replica looks again after a third of it.
        idle = max(1.0, self.leases.lease.total_seconds() / 3)
        while not stop.is_set():
            wait = idle
            try:
                if await self.leases.hold(job.name):
                    await job.run()
                    wait = job.every
            except Exception:
                log.exception("job.failed", job=job.name)
                wait = min(job.every, idle)
            await _sleep(wait, stop, job.wake)
            job.wake.clear()


async def _sleep(seconds: float, stop: asyncio.Event, wake: asyncio.Event) -> None:
    stopping = asyncio.ensure_future(stop.wait())
    woken = asyncio.ensure_future(wake.wait())
    try:
        await asyncio.wait({stopping, woken}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        woken.cancel()
