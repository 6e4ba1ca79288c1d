"""Where flags live. `local` keeps them in Marvin's own database (the default)."""

from __future__ import annotations

import fnmatch
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.flags import Environment, FlagState
from marvin.store.tables import LocalFlag


class FlagBackendError(Exception):
    """The backend could not be read or changed; the message is safe to show."""


class FlagBackend(Protocol):
    name: str

    async def get(self, session: AsyncSession, flag: str, env: Environment) -> FlagState | None: ...

    async def list(
        self, session: AsyncSession, env: Environment, pattern: str | None
    ) -> list[tuple[str, FlagState]]: ...

    async def put(
        self, session: AsyncSession, flag: str, env: Environment, state: FlagState, now: datetime
    ) -> None: ...

    async def delete(self, session: AsyncSession, flag: str, env: Environment) -> bool: ...


def _state(row: LocalFlag) -> FlagState:
    return FlagState(
        enabled=row.enabled,
        percentage_of_actors=row.percentage_of_actors,
        percentage_of_time=row.percentage_of_time,
        actors=tuple(row.actors),
    )


class LocalFlagBackend:
    """The embedded store: the change lands in the same transaction as its audit record."""

    name = "local"

    async def get(self, session: AsyncSession, flag: str, env: Environment) -> FlagState | None:
        row = await session.get(LocalFlag, (flag, env.value))
        return _state(row) if row else None

    async def list(
        self, session: AsyncSession, env: Environment, pattern: str | None
    ) -> list[tuple[str, FlagState]]:
        rows = await session.scalars(
            select(LocalFlag).where(LocalFlag.environment == env.value).order_by(LocalFlag.name)
        )
        return [
            (row.name, _state(row))
            for row in rows
            if pattern is None or fnmatch.fnmatchcase(row.name, pattern)
        ]

    async def put(
        self, session: AsyncSession, flag: str, env: Environment, state: FlagState, now: datetime
    ) -> None:
        row = await session.get(LocalFlag, (flag, env.value))
        if row is None:
            row = LocalFlag(name=flag, environment=env.value)
            session.add(row)
        row.enabled = state.enabled
        row.percentage_of_actors = state.percentage_of_actors
        row.percentage_of_time = state.percentage_of_time
        row.actors = list(state.actors)
        row.updated_at = now
        await session.flush()

    async def delete(self, session: AsyncSession, flag: str, env: Environment) -> bool:
        result = await session.execute(
            delete(LocalFlag).where(LocalFlag.name == flag, LocalFlag.environment == env.value)
        )
        return bool(getattr(result, "rowcount", 0))
