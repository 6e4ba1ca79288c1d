"""Run the Alembic migrations in `migrations/` from code (`marvin db upgrade`, `marvin serve`
with `database.migrate_on_start`, tests).

Migrations run under a lock, so that several replicas starting together on one database
migrate it once: on PostgreSQL a session-level advisory lock on its own connection (the
others wait for it, then find the schema at head), on SQLite an exclusive lock on a file next
to the database. A database whose schema is newer than this code (a revision it does not
know) is never touched: serving it could lose what the newer code relies on.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

log = structlog.get_logger(__name__)

MIGRATIONS_ENV = "MARVIN_MIGRATIONS_DIR"
# The advisory lock's key on PostgreSQL: "marvin" in ASCII (advisory locks are per database).
LOCK_KEY = int.from_bytes(b"marvin", "big")
# How long a replica waits for another one's migration before it gives up.
LOCK_WAIT_SECONDS = 600.0


class SchemaError(Exception):
    """The schema is not one this code can serve; the message is one sentence to show."""


class SchemaBehind(SchemaError):
    pass


class SchemaNewer(SchemaError):
    pass


class DatabaseUnreachable(SchemaError):
    pass


def migrations_dir() -> Path:
    configured = os.environ.get(MIGRATIONS_ENV)
    candidates = [Path(configured)] if configured else []
    candidates += [Path(__file__).resolve().parents[2] / "migrations", Path.cwd() / "migrations"]
    for candidate in candidates:
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError(f"no Alembic migrations found; set {MIGRATIONS_ENV}")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # Passed as an attribute, not an option: ini interpolation would mangle a '%' in a URL.
    cfg.attributes["database_url"] = url
    return cfg


def _shown(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def _unreachable(url: str, exc: BaseException) -> DatabaseUnreachable:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return DatabaseUnreachable(
        f"The database at {_shown(url)} did not answer ({type(exc).__name__}"
        + (f": {detail[0].rstrip('.')}" if detail else "")
        + ")."
    )


@dataclass(frozen=True)
class SchemaState:
    """Where the database is (`current`) and where this code's migrations end (`heads`)."""

    current: frozenset[str]
    heads: frozenset[str]
    unknown: frozenset[str]  # revisions in the database that this code does not know

    @property
    def is_current(self) -> bool:
        return self.current == self.heads

    @property
    def is_empty(self) -> bool:
        return not self.current

    def newer_sentence(self) -> str:
        return (
            "The database schema is newer than this version of Marvin (the database is at "
            f"{', '.join(sorted(self.unknown))}, this code knows up to "
            f"{', '.join(sorted(self.heads))}): run the Marvin that upgraded it, or downgrade "
            "the schema with that version first."
        )


async def _current_heads(conn: AsyncConnection) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    def read(sync: object) -> set[str]:
        return set(MigrationContext.configure(sync).get_current_heads())  # type: ignore[arg-type]

    return await conn.run_sync(read)


async def schema_state(url: str) -> SchemaState:
    """Read the database's revisions and compare them with the migrations' heads."""
    script = ScriptDirectory.from_config(alembic_config(url))
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            current = await _current_heads(conn)
    except (OSError, SQLAlchemyError, TimeoutError) as exc:
        raise _unreachable(url, exc) from exc
    finally:
        await engine.dispose()
    known = {rev.revision for rev in script.walk_revisions()}
    return SchemaState(
        current=frozenset(current),
        heads=frozenset(script.get_heads()),
        unknown=frozenset(current - known),
    )


async def is_current(url: str) -> bool:
    """True when the database is at the newest migration."""
    return (await schema_state(url)).is_current


# --- the lock ----------------------------------------------------------------------------------


def sqlite_lock_path(url: str) -> str | None:
    """The file whose lock is the migration lock of a SQLite database (None in memory)."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return f"{os.path.abspath(database)}.migrate-lock"


@asynccontextmanager
async def _sqlite_lock(url: str, wait_seconds: float) -> AsyncIterator[None]:
    path = sqlite_lock_path(url)
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if loop.time() >= deadline:
                    raise TimeoutError(path) from None
                if not waiting:
                    log.info("migrate.waiting", lock=path)
                    waiting = True
                await asyncio.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing the descriptor lets the lock go


@asynccontextmanager
async def _postgres_lock(url: str, wait_seconds: float) -> AsyncIterator[None]:
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            got = (
                await conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY})
            ).scalar_one()
            if not got:
                log.info("migrate.waiting", lock=f"pg_advisory_lock({LOCK_KEY})")
                # Waits in the server's lock queue; lock_timeout bounds the wait.
                await conn.execute(text(f"SET lock_timeout = {int(wait_seconds * 1000)}"))
                await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
                await conn.execute(text("SET lock_timeout = 0"))
            try:
                yield
            finally:
                try:
                    await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                except SQLAlchemyError:  # the connection's end lets the lock go anyway
                    log.warning("migrate.unlock_failed", exc_info=True)
    finally:
        await engine.dispose()


@asynccontextmanager
async def migration_lock(url: str, wait_seconds: float = LOCK_WAIT_SECONDS) -> AsyncIterator[None]:
    """Held while the schema is read and changed: one migrator at a time per database."""
    lock = (
        _postgres_lock(url, wait_seconds)
        if make_url(url).get_backend_name() == "postgresql"
        else _sqlite_lock(url, wait_seconds)
    )
    try:
        await lock.__aenter__()
    except (OSError, SQLAlchemyError, TimeoutError) as exc:
        if isinstance(exc, TimeoutError) or "lock timeout" in str(exc):
            raise SchemaError(
                f"Another process held the migration lock of {_shown(url)} for over "
                f"{wait_seconds:.0f} s: look for a stuck `marvin serve` or `marvin db upgrade`."
            ) from exc
        raise _unreachable(url, exc) from exc
    try:
        yield
    except BaseException as exc:
        if not await lock.__aexit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        await lock.__aexit__(None, None, None)


# --- upgrade, downgrade, and the check before serving ------------------------------------------


async def upgrade(url: str, revision: str = "head") -> None:
    async with migration_lock(url):
        state = await schema_state(url)
        if state.unknown:
            raise SchemaNewer(state.newer_sentence())
        await asyncio.to_thread(command.upgrade, alembic_config(url), revision)
        await _write_ahead_log(url)


async def _write_ahead_log(url: str) -> None:
    """A SQLite database leaves here in WAL mode, while nothing else has it open. Left in
    its default (rollback journal) mode, the first connections of the bot (a shell's command
    and its delivery thread, say) would each switch it, and SQLite refuses one of two
    connections escalating their locks at once with "database is locked" at once, waiting
    for nothing."""
    if not url.startswith("sqlite"):
        return
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA busy_timeout=15000")
            await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    finally:
        await engine.dispose()


async def downgrade(url: str, revision: str = "base") -> None:
    async with migration_lock(url):
        await asyncio.to_thread(command.downgrade, alembic_config(url), revision)


async def prepare(url: str, *, migrate: bool) -> None:
    """Before serving: the schema is at head, or this raises `SchemaError` with one sentence.

    With `migrate`, a database that is behind (a fresh one too) is brought to head under the
    migration lock; replicas that wait for the lock find it at head and go on. Without it, a
    database that is behind is refused. A schema newer than this code is always refused.
    """
    state = await schema_state(url)
    if state.unknown:
        raise SchemaNewer(state.newer_sentence())
    if state.is_current:
        return
    if not migrate:
        raise SchemaBehind(
            "The database schema is not up to date: run `marvin db upgrade` first "
            "(or set database.migrate_on_start)."
        )
    async with migration_lock(url):
        state = await schema_state(url)  # another replica may have migrated meanwhile
        if state.unknown:
            raise SchemaNewer(state.newer_sentence())
        if state.is_current:
            log.info("migrate.already_done", revision=sorted(state.current))
            return
        log.info(
            "migrate.upgrading",
            database=_shown(url),
            current=sorted(state.current) or None,
            head=sorted(state.heads),
        )
        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
        await _write_ahead_log(url)
        log.info("migrate.upgraded", revision=sorted(state.heads))
