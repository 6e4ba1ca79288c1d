"""What a shell's commands put in the outbox, delivered while the shell runs.

The shell reads its lines with no event loop running (so that Ctrl-C at the prompt is the
terminal's), so its deliveries cannot be tasks of that loop: they run in a thread with an
event loop and database connections of their own. Each kind of delivery has its own loop
there, as in `marvin serve` (a GitLab outage never holds up the chat's announcements).

When the shell exits, the loops' messages are delivered together (`drain`: an issue opened
brings its announcement) for a bounded wait (`shell.drain_seconds`) while anything is still
due within it; what is left then stays in the outbox, where `marvin serve` delivers it, and
the shell says how much.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime

import structlog
from sqlalchemy import func, select

from marvin.adapters.issues import Issue
from marvin.clock import Clock, as_utc
from marvin.config import Settings
from marvin.incidents import shown_ref
from marvin.issue_delivery import KINDS as ISSUE_KINDS
from marvin.issue_delivery import issue_worker
from marvin.outbox import ANNOUNCE, OutboxWorker, Sink
from marvin.services import Services
from marvin.store.db import Store
from marvin.store.tables import Incident, OutboxMessage
from marvin.watches import dm_kind

log = structlog.get_logger(__name__)

# How often a loop looks for due messages when nothing woke it.
POLL_SECONDS = 1.0
# A loop that is stopping finishes the call it is in: at most one outside call's deadline.
STOP_GRACE_SECONDS = 30.0

# The chat's sinks (announcements, direct messages), when the shell can post them itself.
ChatSinks = Callable[[Services], Mapping[str, Sink]]
Notify = Callable[[str], None]


def served_kinds() -> tuple[str, ...]:
    """The kinds `marvin serve` delivers: what is still pending of them is for it."""
    return (*ISSUE_KINDS, ANNOUNCE, dm_kind("slack"))


async def pending(
    store: Store, kinds: Collection[str], *, since: datetime | None = None
) -> tuple[int, datetime | None]:
    """How many messages of `kinds` (written since `since`) are still to be delivered, and
    when the next of them is due."""
    query = select(func.count(), func.min(OutboxMessage.next_attempt_at)).where(
        OutboxMessage.status == "pending", OutboxMessage.kind.in_(list(kinds))
    )
    if since is not None:
        query = query.where(OutboxMessage.created_at >= since)
    async with store.transaction() as session:
        count, due = (await session.execute(query)).one()
    return int(count or 0), (as_utc(due) if due is not None else None)


async def _round(worker: OutboxWorker) -> None:
    try:
        await worker.deliver_due()
    except Exception as exc:
        # The database failing: the messages stay, for the next round or for serve. One
        # line where the person types; the traceback only at debug.
        log.warning("shell.delivery_round_failed", error=f"{type(exc).__name__}: {exc}")
        log.debug("shell.delivery_round_failed_detail", exc_info=True)


async def _wait(worker: OutboxWorker, seconds: float) -> None:
    """Until something is written for `worker` (`wake`), or `seconds` have passed."""
    try:
        await asyncio.wait_for(worker.wakeup.wait(), timeout=seconds)
    except TimeoutError:
        pass
    worker.wakeup.clear()


async def drain(
    workers: Sequence[OutboxWorker],
    store: Store,
    clock: Clock,
    *,
    seconds: float,
    kinds: Collection[str],
    since: datetime | None = None,
) -> int:
    """Deliver the `workers`' messages as they fall due, for at most `seconds` and while any
    of `kinds` (written since `since`) is due within them: what a shell does before it
    exits. Returns how many of `kinds` are still pending (`marvin serve` delivers them)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        # Rounds side by side, and looked at after all of them: one loop's delivery (an
        # issue opened) writes for another (its announcement), and a message in flight
        # looks due only when its claim runs out.
        await asyncio.gather(*(_round(worker) for worker in workers))
        left, due = await pending(store, kinds, since=since)
        remaining = deadline - loop.time()
        if not left or due is None or remaining <= 0:
            return left
        wait = max((due - clock.now()).total_seconds(), 0.05)
        if wait > remaining:
            return left
        await asyncio.sleep(min(wait, POLL_SECONDS))


def pending_text(count: int) -> str | None:
    if not count:
        return None
    what = "delivery is" if count == 1 else "deliveries are"
    return f"{count} {what} still pending; `marvin serve` will deliver them (see `incident list`)."


class ShellDelivery:
    """The delivery loops of one shell, in a thread of their own."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock,
        build: Callable[[Settings, Clock], Services],
        close: Callable[[Services], object],
        notify: Notify,
        chat_sinks: ChatSinks | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.since = clock.now()
        self._build = build
        self._close = close
        self._notify = notify
        self._chat_sinks = chat_sinks
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeups: list[asyncio.Event] = []
        self._deadline: float | None = None
        self._left = 0

    @property
    def posts_chat(self) -> bool:
        """Whether this shell posts the chat's announcements itself."""
        return self._chat_sinks is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="marvin-delivery", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)

    def wake(self) -> None:
        """Something was just written to the outbox: every loop looks now (thread-safe)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            for event in self._wakeups:
                loop.call_soon_threadsafe(event.set)

    def finish(self, seconds: float) -> int:
        """Deliver what is due within `seconds`, then stop; how many deliveries are left."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return self._left
        loop.call_soon_threadsafe(self._begin_finish, seconds)
        thread.join(seconds + STOP_GRACE_SECONDS)
        return self._left

    def _begin_finish(self, seconds: float) -> None:
        assert self._loop is not None
        self._deadline = self._loop.time() + seconds
        for event in self._wakeups:
            event.set()

    # --- in the delivery thread ---------------------------------------------------------

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception:
            log.exception("shell.delivery_failed")
        finally:
            self._ready.set()

    async def _run(self) -> None:
        services = self._build(self.settings, self.clock)
        try:
            workers = self._workers(services)
            self._wakeups = [worker.wakeup for worker in workers]
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            await asyncio.gather(*(self._deliver(worker) for worker in workers))
            assert self._deadline is not None  # (what ends the loops)
            await drain(
                workers,
                services.store,
                self.clock,
                seconds=self._deadline - self._loop.time(),
                kinds=[kind for worker in workers for kind in worker.kinds],
                since=self.since,
            )
            self._left = (await pending(services.store, served_kinds(), since=self.since))[0]
        finally:
            result = self._close(services)
            if asyncio.iscoroutine(result):
                await result

    def _workers(self, services: Services) -> list[OutboxWorker]:
        issues = issue_worker(services, on_linked=self._linked, on_deviation=self._deviation)
        workers = [issues]
        if self._chat_sinks is not None:
            workers.append(OutboxWorker(services.store, self._chat_sinks(services), services.clock))
        return workers

    def _linked(self, incident: Incident, issue: Issue) -> None:
        link = issue.url or issue.ref
        self._notify(f"📎 {shown_ref(incident).capitalize()} has its issue: {link}")

    def _deviation(self, flag: str, issue: Issue) -> None:
        label = self.settings.flags.approval_labels[0]
        self._notify(
            f"📋 Deviation issue {issue.ref} for `{flag}` is open"
            f"{f': {issue.url}' if issue.url else ''}; it approves once labelled `{label}`."
        )

    async def _deliver(self, worker: OutboxWorker) -> None:
        """One kind of delivery's loop while the shell runs (a GitLab outage never holds up
        the chat's): until it finishes, when `drain` takes over every loop's."""
        while self._deadline is None:
            await _round(worker)
            await _wait(worker, POLL_SECONDS)
