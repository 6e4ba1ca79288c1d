"""Migrate on start: a fresh database is brought to head under a lock, replicas that start
together migrate it once, and a schema newer than the code is refused in one sentence."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command as alembic_command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from marvin.store import migrate
from tests.fakes.slack_api import FakeSlackAPI
from tests.servers.marvin_serve import CHANNEL, ServeProcess, write_config

FUTURE = "9999_from_a_newer_marvin"


def _admin_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture
async def empty_pg_url(pg_template: str) -> AsyncIterator[str]:
    """A PostgreSQL database with nothing in it (not even alembic_version)."""
    base = os.environ.get(
        "MARVIN_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    )
    name = f"marvin_empty_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(_admin_dsn(base), timeout=3)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield base.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(_admin_dsn(base), timeout=3)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database no migration has touched: a SQLite file that does not exist yet, or an
    empty PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'marvin.db'}"
    return str(request.getfixturevalue("empty_pg_url"))


@pytest.fixture
def fresh_dir(fresh_url: str) -> str:
    if fresh_url.startswith("sqlite"):
        Path(fresh_url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    return fresh_url


@pytest.fixture
def upgrades(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Alembic upgrade that actually runs, by target revision."""
    done: list[str] = []
    real = alembic_command.upgrade

    def counting(config: Any, revision: str, **kwargs: Any) -> None:
        done.append(revision)
        real(config, revision, **kwargs)

    monkeypatch.setattr(alembic_command, "upgrade", counting)
    return done


async def _execute(url: str, sql: str) -> list[Any]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(sql))
            return list(result.scalars()) if result.returns_rows else []
    finally:
        await engine.dispose()


# --- in process --------------------------------------------------------------------------------


async def test_a_fresh_database_is_brought_to_head(fresh_dir: str, upgrades: list[str]) -> None:
    assert not (await migrate.schema_state(fresh_dir)).current
    await migrate.prepare(fresh_dir, migrate=True)
    assert await migrate.is_current(fresh_dir)
    await migrate.prepare(fresh_dir, migrate=True)  # at head: nothing to do, no lock taken
    assert upgrades == ["head"]


async def test_without_migrate_a_database_behind_is_refused(fresh_dir: str) -> None:
    with pytest.raises(migrate.SchemaBehind) as refused:
        await migrate.prepare(fresh_dir, migrate=False)
    assert "run `marvin db upgrade` first" in str(refused.value)
    assert not (await migrate.schema_state(fresh_dir)).current  # untouched


async def test_replicas_starting_together_migrate_once(fresh_dir: str, upgrades: list[str]) -> None:
    await asyncio.gather(*(migrate.prepare(fresh_dir, migrate=True) for _ in range(4)))
    assert upgrades == ["head"]
    assert await migrate.is_current(fresh_dir)


async def test_a_replica_waits_for_the_one_migrating(fresh_dir: str, upgrades: list[str]) -> None:
    async with migrate.migration_lock(fresh_dir):
        waiting = asyncio.create_task(migrate.prepare(fresh_dir, migrate=True))
        await asyncio.sleep(0.6)
        assert not waiting.done(), "it went ahead while another held the lock"
        assert upgrades == []
    await asyncio.wait_for(waiting, 30)
    assert upgrades == ["head"]
    assert await migrate.is_current(fresh_dir)


async def test_the_wait_for_the_lock_is_bounded(fresh_dir: str) -> None:
    async with migrate.migration_lock(fresh_dir):
        with pytest.raises(migrate.SchemaError) as stuck:
            async with migrate.migration_lock(fresh_dir, wait_seconds=0.5):
                pass
    assert "held the migration lock" in str(stuck.value)
    async with migrate.migration_lock(fresh_dir, wait_seconds=0.5):
        pass  # and free again once let go


def _one_sentence(message: str) -> bool:
    return message.endswith(".") and ". " not in message and "\n" not in message


@pytest.mark.parametrize("migrate_on_start", [True, False])
async def test_a_schema_newer_than_the_code_is_refused(
    fresh_dir: str, migrate_on_start: bool, upgrades: list[str]
) -> None:
    await migrate.upgrade(fresh_dir)
    await _execute(fresh_dir, f"UPDATE alembic_version SET version_num = '{FUTURE}'")
    upgrades.clear()
    with pytest.raises(migrate.SchemaNewer) as refused:
        await migrate.prepare(fresh_dir, migrate=migrate_on_start)
    message = str(refused.value)
    assert message.startswith("The database schema is newer than this version of Marvin")
    assert FUTURE in message
    assert _one_sentence(message), message
    assert upgrades == []
    assert await _execute(fresh_dir, "SELECT version_num FROM alembic_version") == [FUTURE]


async def test_db_upgrade_refuses_a_newer_schema_too(fresh_dir: str, upgrades: list[str]) -> None:
    await migrate.upgrade(fresh_dir)
    await _execute(fresh_dir, f"UPDATE alembic_version SET version_num = '{FUTURE}'")
    with pytest.raises(migrate.SchemaNewer):
        await migrate.upgrade(fresh_dir)
    assert upgrades == ["head"]  # the first one only


async def test_an_unreachable_database_is_one_sentence_without_its_password() -> None:
    url = "postgresql+asyncpg://marvin:hunter2@127.0.0.1:1/marvin"
    with pytest.raises(migrate.DatabaseUnreachable) as refused:
        await migrate.prepare(url, migrate=True)
    message = str(refused.value)
    assert message.startswith("The database at postgresql+asyncpg://marvin:***@127.0.0.1:1/")
    assert "hunter2" not in message
    assert "\n" not in message


# --- `marvin serve`, as a process ----------------------------------------------------------------


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackAPI]:
    async with FakeSlackAPI(bot_token="xoxb-replicas") as api:
        api.add_channel(CHANNEL, "production")
        yield api


def _serve_config(tmp_path: Path, url: str, api: FakeSlackAPI, *, migrate_on_start: bool) -> Path:
    return write_config(
        tmp_path / "marvin.yaml",
        url,
        api,
        database={"url": url, "migrate_on_start": migrate_on_start},
    )


async def _exit_code(server: ServeProcess, timeout: float = 30) -> int:  # noqa: ASYNC109
    assert server.proc is not None
    return await asyncio.to_thread(server.proc.wait, timeout)


async def test_serve_with_migrate_on_start_serves_a_fresh_database(
    fresh_dir: str, slack: FakeSlackAPI, tmp_path: Path
) -> None:
    server = ServeProcess(_serve_config(tmp_path, fresh_dir, slack, migrate_on_start=True),
                          tmp_path / "serve.log")  # fmt: skip
    server.start()
    try:
        await server.healthy()
    finally:
        assert server.stop() == 0
    assert await migrate.is_current(fresh_dir)
    assert '"migrate.upgraded"' in server.log()


async def test_serve_without_migrate_on_start_refuses_a_fresh_database(
    fresh_dir: str, slack: FakeSlackAPI, tmp_path: Path
) -> None:
    server = ServeProcess(_serve_config(tmp_path, fresh_dir, slack, migrate_on_start=False),
                          tmp_path / "serve.log")  # fmt: skip
    server.start()
    assert await _exit_code(server) == 2
    assert "The database schema is not up to date: run `marvin db upgrade` first" in server.log()
    assert "Traceback" not in server.log()


async def test_serve_refuses_a_newer_schema_in_one_sentence(
    fresh_dir: str, slack: FakeSlackAPI, tmp_path: Path
) -> None:
    await migrate.upgrade(fresh_dir)
    await _execute(fresh_dir, f"UPDATE alembic_version SET version_num = '{FUTURE}'")
    server = ServeProcess(_serve_config(tmp_path, fresh_dir, slack, migrate_on_start=True),
                          tmp_path / "serve.log")  # fmt: skip
    server.start()
    assert await _exit_code(server) == 2
    lines = [line for line in server.log().splitlines() if "newer than this version" in line]
    assert len(lines) == 1 and _one_sentence(lines[0]), server.log()
    assert "Traceback" not in server.log()


async def test_two_replicas_starting_together_on_postgresql_migrate_once(
    empty_pg_url: str, slack: FakeSlackAPI, tmp_path: Path
) -> None:
    config = _serve_config(tmp_path, empty_pg_url, slack, migrate_on_start=True)
    replicas = [ServeProcess(config, tmp_path / f"replica-{i}.log") for i in range(3)]
    for replica in replicas:
        replica.start()
    try:
        for replica in replicas:
            await replica.healthy(timeout=60)
    finally:
        codes = [replica.stop() for replica in replicas]
    assert codes == [0, 0, 0]
    logs = [replica.log() for replica in replicas]
    assert sum(log.count('"migrate.upgrading"') for log in logs) == 1, logs
    assert await migrate.is_current(empty_pg_url)


def test_the_lock_key_fits_a_postgresql_bigint() -> None:
    assert 0 < migrate.LOCK_KEY < 2**63


def test_the_sqlite_lock_sits_next_to_the_database(tmp_path: Path) -> None:
    path: Callable[[str], str | None] = migrate.sqlite_lock_path
    assert path(f"sqlite+aiosqlite:///{tmp_path}/m.db") == f"{tmp_path}/m.db.migrate-lock"
    assert path("sqlite+aiosqlite:///:memory:") is None
    assert path("sqlite+aiosqlite://") is None
