"""What a shell's commands put in the outbox, delivered while the shell runs.

The shell reads its lines with no event loop running (so that Ctrl-C at the prompt is the
terminal's), so its deliveries cannot be tasks of that loop: they run in a thread with an
event loop and database connections of their own. Each kind of delivery has its own loop
there, as in `marvin serve` (a GitLab outage never holds up the chat's announcements).

When the shell exits, the loops go on for a bounded wait (`shell.drain_seconds`) while
anything is still due within it; what is left then stays in the outbox, where
`marvin serve` delivers it, and the shell says how much.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Collection, Mapping
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


async def pending_since(
    store: Store, since: datetime, kinds: Collection[str]
) -> tuple[int, datetime | None]:
    """How many messages of `kinds` written since `since` are still to be delivered, and
    when the next of them is due."""
    async with store.transaction() as session:
        count, due = (
            await session.execute(
                select(func.count(), func.min(OutboxMessage.next_attempt_at)).where(
                    OutboxMessage.status == "pending",
                    OutboxMessage.kind.in_(list(kinds)),
                    OutboxMessage.created_at >= since,
                )
            )
        ).one()
    return int(count or 0), (as_utc(due) if due is not None else None)


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
            kinds = [kind for worker in workers for kind in worker.kinds]
            await asyncio.gather(*(self._deliver(services.store, w, kinds) for w in workers))
            self._left = (await pending_since(services.store, self.since, served_kinds()))[0]
        finally:
            result = self._close(services)
            if asyncio.iscoroutine(result):
                await result

    def _workers(self, services: Services) -> list[OutboxWorker]:
        issues = issue_worker(services, on_linked=self._linked)
        workers = [issues]
        if self._chat_sinks is not None:
            workers.append(OutboxWorker(services.store, self._chat_sinks(services), services.clock))
        return workers

    def _linked(self, incident: Incident, issue: Issue) -> None:
        link = issue.url or issue.ref
        self._notify(f"📎 {shown_ref(incident).capitalize()} has its issue: {link}")

    async def _deliver(self, store: Store, worker: OutboxWorker, kinds: list[str]) -> None:
        """One kind of delivery's loop. Finishing, it goes on while anything of the shell's
        (`kinds`: every loop's) is due in time: a delivered issue brings an announcement."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await worker.deliver_due()
            except Exception as exc:
                # The database failing: the messages stay, for the next round or for serve.
                # One line where the person types; the traceback only at debug.
                log.warning("shell.delivery_round_failed", error=f"{type(exc).__name__}: {exc}")
                log.debug("shell.delivery_round_failed_detail", exc_info=True)
            wait = POLL_SECONDS
            if self._deadline is not None:
                remaining = self._deadline - loop.time()
                left, due = await pending_since(store, self.since, kinds)
                if not left or due is None or remaining <= 0:
                    return
                wait = max((due - self.clock.now()).total_seconds(), 0.05)
                if wait > remaining:
                    return
                wait = min(wait, POLL_SECONDS)
            try:
                await asyncio.wait_for(worker.wakeup.wait(), timeout=wait)
            except TimeoutError:
                pass
            worker.wakeup.clear()
