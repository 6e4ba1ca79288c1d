"""Engine, transactions and row locks.

Write transactions are short and hold no outside call (`write_open()` tells, for the tests'
tripwire). On SQLite a write transaction starts with `BEGIN IMMEDIATE`, which takes the
database's write lock up front: it blocks every other writer, the inbox write of each ack
included, for as long as it is open. A flag change reserves its ledger rows with
`SELECT ... FOR UPDATE` (PostgreSQL) and checks the versions its plan was decided on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, event, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from marvin.adapters.errors import Unavailable
from marvin.flags import Environment
from marvin.store.tables import FlagLedger

_WRITE_OPTION = "marvin_write"
# How many write transactions the current task (and what it awaits) holds open.
_WRITES_OPEN: ContextVar[int] = ContextVar("marvin_writes_open", default=0)


def write_open() -> bool:
    """True while this task holds a write transaction: no outside call may be made now."""
    return _WRITES_OPEN.get() > 0


# How long an ack may wait for the database before it says it can't take the command.
ACK_SECONDS = 1.5


def _sqlite_hooks(engine: AsyncEngine, busy_ms: int = 15000) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves; pysqlite's implicit transactions cannot be IMMEDIATE.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        # The wait first: switching a database to WAL (one made before `db upgrade` did so)
        # must wait for other connections, not fail.
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def database_answers() -> Iterator[None]:
    """For adapters kept in the database: a database that fails is `Unavailable`."""
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        raise Unavailable("The database", f"did not answer ({type(exc).__name__})") from exc


def insert_ignoring_conflicts(session: AsyncSession, table: type[Any] | Table) -> Any:
    """An INSERT that skips rows whose key exists (ON CONFLICT DO NOTHING), in the session's
    dialect: how first contact, idempotency keys and lock rows stay single under races."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(table)


class WriterLock:
    """SQLite's one writer, taken in turn inside the process, urgent turns first.

    Without it, writers that find the database locked sleep in SQLite's busy handler (in
    steps of up to 100 ms) however soon the lock frees; with it they wait on an asyncio
    future and go the moment it does. Urgent writers (the inbox write each Slack ack waits
    for) go before everything else that is waiting.
    """

    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    @asynccontextmanager
    async def hold(self, urgent: bool = False) -> AsyncIterator[None]:
        if self._held or self._urgent or self._normal:
            waiter = asyncio.get_running_loop().create_future()
            (self._urgent if urgent else self._normal).append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # handed the lock just as we gave up: pass it on
                else:
                    with contextlib.suppress(ValueError):
                        (self._urgent if urgent else self._normal).remove(waiter)
                raise
        else:
            self._held = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        for queue in (self._urgent, self._normal):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # the lock passes to it, still held
                    return
        self._held = False


class Store:
    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 5) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # Every transaction ends in a commit or a rollback of its own, so a connection goes
        # back to the pool clean: no second rollback on the way (a round trip saved).
        options: dict[str, Any] = {"echo": echo, "pool_reset_on_return": None}
        work: dict[str, Any] = {}
        ack: dict[str, Any] = {"pool_timeout": ACK_SECONDS}
        if not self.is_sqlite:
            # A database that doesn't answer (down, or its packets dropped) must not hold an
            # ack past Slack's 3 s: connecting and each statement have deadlines.
            work["connect_args"] = {"timeout": 5}
            ack["connect_args"] = {"timeout": ACK_SECONDS, "command_timeout": ACK_SECONDS}
        self.engine = create_async_engine(url, pool_size=pool_size, **options, **work)
        # The acks' own connections: an ack never waits for the pool the work uses.
        self.ack_engine = create_async_engine(url, pool_size=2, max_overflow=2, **options, **ack)
        self.writer = WriterLock() if self.is_sqlite else None
        if self.is_sqlite:
            _sqlite_hooks(self.engine)
            _sqlite_hooks(self.ack_engine, busy_ms=int(ACK_SECONDS * 1000))

    @asynccontextmanager
    async def transaction(
        self, *, write: bool = False, urgent: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """One unit of work: committed when the block ends, rolled back if it raises.

        `urgent`: a write that someone is waiting for right now (an ack) goes first.
        """
        engine = self.ack_engine if urgent else self.engine
        if write and self.writer is not None:
            if write_open():
                # This task already holds the one writer: waiting for it again never ends.
                raise RuntimeError("a write transaction inside a write transaction")
            async with self.writer.hold(urgent):
                async with self._transaction(engine, write=True) as session:
                    yield session
        else:
            async with self._transaction(engine, write=write) as session:
                yield session

    @asynccontextmanager
    async def _transaction(
        self, engine: AsyncEngine, *, write: bool
    ) -> AsyncIterator[AsyncSession]:
        token = _WRITES_OPEN.set(_WRITES_OPEN.get() + 1) if write else None
        try:
            async with engine.connect() as conn:
                if write:
                    await conn.execution_options(**{_WRITE_OPTION: True})
                session = AsyncSession(bind=conn, expire_on_commit=False)
                try:
                    yield session
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
                finally:
                    await session.close()
        finally:
            if token is not None:
                _WRITES_OPEN.reset(token)

    async def ping(self) -> bool:
        """Whether the database answers, within the acks' deadline."""
        try:
            async with asyncio.timeout(ACK_SECONDS):
                async with self.ack_engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()
        await self.ack_engine.dispose()


@dataclass(frozen=True)
class LedgerEntry:
    version: int
    exposed_since: datetime | None


async def read_ledger(session: AsyncSession, name: str) -> dict[Environment, LedgerEntry]:
    """The flag's ledger as it stands (a plain read; reserving re-checks the versions)."""
    rows = await session.scalars(select(FlagLedger).where(FlagLedger.name == name))
    return {Environment(r.environment): LedgerEntry(r.version, r.exposed_since) for r in rows}


async def lock_flag(
    session: AsyncSession, name: str, envs: Iterable[Environment]
) -> dict[Environment, FlagLedger]:
    """Hold the flag's ledger rows in `envs` (the one changed and those it is judged
    against) until the transaction ends.

    The rows are created first if missing (at version 0), so a brand-new flag is reserved as
    firmly as an old one; a rolled-back change takes its new rows with it. Environments are
    locked in one fixed order so two changes never deadlock.
    """
    names = sorted({env.value for env in envs})
    rows = [{"name": name, "environment": env, "version": 0} for env in names]
    await session.execute(
        insert_ignoring_conflicts(session, FlagLedger).values(rows).on_conflict_do_nothing()
    )
    result = await session.scalars(
        select(FlagLedger)
        .where(FlagLedger.name == name, FlagLedger.environment.in_(names))
        .order_by(FlagLedger.environment)
        .with_for_update()
    )
    return {Environment(row.environment): row for row in result}
