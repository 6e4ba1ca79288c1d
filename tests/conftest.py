"""Databases for the tests: SQLite files, and real PostgreSQL databases when a server answers.

Each test gets its own freshly migrated database, copied from a template migrated once per
session (a file copy for SQLite, `CREATE DATABASE ... TEMPLATE` for PostgreSQL).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from marvin.store import migrate
from tests import tripwire
from tests.harness import Bot, make_bot

# The real servers some tests need, as session fixtures (`unleash_server`).
pytest_plugins = ["tests.servers.unleash"]

PG_URL = os.environ.get(
    "MARVIN_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("MARVIN_REQUIRE_POSTGRES") == "1"


def _dsn(url: str, database: str | None = None) -> str:
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    if database is not None:
        dsn = dsn.rsplit("/", 1)[0] + "/" + database
    return dsn


def _url_for(database: str) -> str:
    return PG_URL.rsplit("/", 1)[0] + "/" + database


async def _admin() -> asyncpg.Connection:
    return await asyncpg.connect(_dsn(PG_URL), timeout=3)


def _pg_problem() -> str | None:
    async def probe() -> None:
        conn = await _admin()
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"no PostgreSQL at {PG_URL}: {type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    problem = _pg_problem()
    if problem:
        if REQUIRE_PG:
            pytest.fail(f"MARVIN_REQUIRE_POSTGRES=1 but {problem}")
        pytest.skip(problem)
    name = f"marvin_tpl_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await _admin()
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        await migrate.upgrade(_url_for(name))

    async def drop() -> None:
        conn = await _admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    yield name
    asyncio.run(drop())


@pytest.fixture
async def pg_url(pg_template: str) -> AsyncIterator[str]:
    name = f"marvin_t_{uuid.uuid4().hex[:10]}"
    conn = await _admin()
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    finally:
        await conn.close()
    yield _url_for(name)
    conn = await _admin()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tpl") / "template.db"
    asyncio.run(migrate.upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "marvin.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh migrated database of each kind."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
async def bot_factory(sqlite_url: str) -> AsyncIterator[Callable[..., Bot]]:
    """Bots on SQLite with config overrides: `bot_factory(flags={"soak_hours": 1})`."""
    made: list[Bot] = []

    def factory(**sections: Any) -> Bot:
        bot = make_bot(sqlite_url, **sections)
        made.append(bot)
        return bot

    yield factory
    for bot in made:
        await bot.services.store.dispose()


@pytest.fixture
async def bot(bot_factory: Callable[..., Bot]) -> Bot:
    return bot_factory()


@pytest.fixture
async def any_bot(db_url: str) -> AsyncIterator[Bot]:
    """The default bot, on SQLite and on PostgreSQL."""
    bot = make_bot(db_url)
    yield bot
    await bot.services.store.dispose()


@pytest.fixture(autouse=True)
def no_outside_call_under_a_write_transaction() -> Iterator[None]:
    """Every test: an HTTP call made while a write transaction is open fails it."""
    tripwire.install()
    tripwire.take()
    yield
    found = tripwire.take()
    if found:
        pytest.fail("outside call under a write transaction:\n" + "\n".join(found[:3]))
