"""What a handler sees (Context), what it proposes (a plan) and what it returns (Outcome).

A handler works in two steps so that policies judge facts, not intentions: `plan` gathers
everything the decision needs (under the row locks) without changing anything; the policies
judge the plan; only then `apply` makes the change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from marvin.models import Invocation, Place, ReplyKind

if TYPE_CHECKING:
    from marvin.accounts import Caller
    from marvin.wiring import Services

C = TypeVar("C", contravariant=True)


@dataclass
class Context:
    invocation: Invocation
    caller: Caller
    session: AsyncSession
    services: Services
    now: datetime


@dataclass(frozen=True)
class Done:
    """A final answer that changes nothing: a read, a not-found, an "already so"."""

    text: str
    ok: bool = True
    kind: ReplyKind = "result"


class Change:
    """Base of plans that change something once the policies allow it."""

    def summary(self) -> str:
        raise NotImplementedError

    def confirmation_reason(self) -> str | None:
        """Why the caller must confirm this change first, or None if they needn't."""
        return None


@dataclass(frozen=True)
class Rerun(Change):
    """A confirmed change: run the original command again, now confirmed."""

    token: str
    text: str
    place: Place

    def summary(self) -> str:
        return f"confirm {self.token}"


@dataclass(frozen=True)
class Outcome:
    text: str
    announcement: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    details: dict[str, object] = field(default_factory=dict)


Plan = Done | Change


class Handler(Protocol, Generic[C]):
    async def plan(self, cmd: C, ctx: Context) -> Plan: ...

    async def apply(self, plan: Change, ctx: Context) -> Outcome: ...


class ReadOnly:
    """Mixin for handlers whose plan is always a final answer."""

    async def apply(self, plan: Change, ctx: Context) -> Outcome:
        raise TypeError(f"{type(self).__name__} never plans a change")
