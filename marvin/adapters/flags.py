"""Where flags live. `local` keeps them in Marvin's own database (the default).

Every backend is session-free: it is asked with no database transaction open and answers or
raises a typed error (`marvin.adapters.errors`). The embedded store is also `Embedded`: its
change is written inside the transaction that records it, so the change and its record are
one commit.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.clock import Clock
from marvin.flags import Environment, FlagState, percent
from marvin.store.db import Store, database_answers, insert_ignoring_conflicts
from marvin.store.tables import LocalFlag


class FlagBackend(Protocol):
    name: str  # the config name: local, gitlab_instance, ...
    label: str  # what a person is told: "the embedded flag store", "GitLab"

    async def get(self, flag: str, env: Environment) -> FlagState | None:
        """The flag's state now, or None when the backend has no such flag."""
        ...

    async def list(self, env: Environment, pattern: str | None) -> list[tuple[str, FlagState]]: ...

    async def put(self, flag: str, env: Environment, state: FlagState) -> FlagState:
        """Make the flag `state`; returns the state read back from the backend."""
        ...

    async def delete(self, flag: str, env: Environment) -> None: ...


@runtime_checkable
class Closable(Protocol):
    """A backend holding a connection of its own (an HTTP session) to give back at the end."""

    async def aclose(self) -> None: ...


@runtime_checkable
class Embedded(Protocol):
    """A backend in Marvin's own database: read inside the planning read, changed inside
    the recording transaction."""

    async def get_in(
        self, session: AsyncSession, flag: str, env: Environment
    ) -> FlagState | None: ...

    async def put_in(
        self, session: AsyncSession, flag: str, env: Environment, state: FlagState, now: datetime
    ) -> None: ...

    async def delete_in(self, session: AsyncSession, flag: str, env: Environment) -> None: ...


def _state(row: LocalFlag) -> FlagState:
    def share(value: Decimal | None) -> Decimal | None:
        # The column keeps four decimals (1.0000): one spelling for one percentage.
        return percent(value) if value is not None else None

    return FlagState(
        enabled=row.enabled,
        percentage_of_actors=share(row.percentage_of_actors),
        percentage_of_time=share(row.percentage_of_time),
        actors=tuple(row.actors),
    )


class LocalFlagBackend:
    """The embedded store, in the `local_flags` table."""

    name = "local"
    label = "the embedded flag store"

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def get(self, flag: str, env: Environment) -> FlagState | None:
        with database_answers():
            async with self._store.transaction() as session:
                return await self.get_in(session, flag, env)

    async def get_in(self, session: AsyncSession, flag: str, env: Environment) -> FlagState | None:
        row = await session.get(LocalFlag, (flag, env.value))
        return _state(row) if row else None

    async def list(self, env: Environment, pattern: str | None) -> list[tuple[str, FlagState]]:
        with database_answers():
            async with self._store.transaction() as session:
                rows = await session.scalars(
                    select(LocalFlag)
                    .where(LocalFlag.environment == env.value)
                    .order_by(LocalFlag.name)
                )
                return [
                    (row.name, _state(row))
                    for row in rows
                    if pattern is None or fnmatch.fnmatchcase(row.name, pattern)
                ]

    async def put(self, flag: str, env: Environment, state: FlagState) -> FlagState:
        with database_answers():
            async with self._store.transaction(write=True) as session:
                await self.put_in(session, flag, env, state, self._clock.now())
        return state

    async def delete(self, flag: str, env: Environment) -> None:
        with database_answers():
            async with self._store.transaction(write=True) as session:
                await self.delete_in(session, flag, env)

    async def put_in(
        self, session: AsyncSession, flag: str, env: Environment, state: FlagState, now: datetime
    ) -> None:
        values = {
            "enabled": state.enabled,
            "percentage_of_actors": state.percentage_of_actors,
            "percentage_of_time": state.percentage_of_time,
            "actors": list(state.actors),
            "updated_at": now,
        }
        # One statement, whether the flag is new or not.
        await session.execute(
            insert_ignoring_conflicts(session, LocalFlag)
            .values(name=flag, environment=env.value, **values)
            .on_conflict_do_update(index_elements=["name", "environment"], set_=values)
        )

    async def delete_in(self, session: AsyncSession, flag: str, env: Environment) -> None:
        await session.execute(
            delete(LocalFlag).where(LocalFlag.name == flag, LocalFlag.environment == env.value)
        )
