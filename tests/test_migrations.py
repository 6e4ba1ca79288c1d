"""The schema only through Alembic: up, down and up again, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from marvin.store import migrate
from marvin.store.tables import Base

TABLES = {
    "accounts",
    "grants",
    "audit_log",
    "local_flags",
    "flag_ledger",
    "flag_changes",
    "watches",
    "incidents",
    "incident_pins",
    "change_requests",
    "local_issues",
    "outbox",
    "confirmations",
    "inbox",
    "deviations",
    "local_issue_label_events",
    "deploy_slots",
    "deploy_freezes",
    "deploy_locks",
    "deploy_queue",
    "directory_members",
    "directory_syncs",
    "access_reviews",
    "access_reminders",
    "account_links",
}


async def tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def drift(url: str) -> list[object]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return list(
                await conn.run_sync(
                    lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
                )
            )
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    url = str(request.getfixturevalue("pg_url"))
    return url


async def test_up_down_up(empty_url: str) -> None:
    await migrate.downgrade(empty_url, "base")  # the PostgreSQL copy starts migrated
    assert await tables(empty_url) <= {"alembic_version"}
    assert not await migrate.is_current(empty_url)
    await migrate.upgrade(empty_url)
    assert TABLES <= await tables(empty_url)
    assert await migrate.is_current(empty_url)
    await migrate.downgrade(empty_url, "base")
    assert await tables(empty_url) <= {"alembic_version"}
    await migrate.upgrade(empty_url)
    assert TABLES <= await tables(empty_url)


async def test_the_migrations_match_the_models(empty_url: str) -> None:
    await migrate.upgrade(empty_url)
    assert await drift(empty_url) == []


async def test_a_fresh_sqlite_database_leaves_the_upgrade_in_wal_mode(tmp_path: Path) -> None:
    """Left in rollback-journal mode, the first two connections of a shell (its command and
    its delivery thread) would both switch it, and SQLite fails one with "database is
    locked" at once."""
    import sqlite3

    path = tmp_path / "fresh.db"
    await migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
