"""What a handler sees (Context), what it proposes (a plan) and what it leaves (Outcome).

A handler works in phases so that policies judge facts and no outside call waits inside a
database transaction:

- `plan` gathers every fact the decision needs, with NO transaction open: short reads
  through `ctx.read()`, outside systems through the adapters (each under its deadline);
- the policies judge the plan;
- `reserve` (a short write transaction) re-checks what may have moved since `plan` and
  raises `Moved` if it did, so the command is planned and judged again;
- `apply` makes the outside call (remote plans only; no transaction open);
- `record` (a short write transaction) writes the change's local effects and history.

For a local plan, `reserve` and `record` share one transaction.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from marvin.facts import Facts
from marvin.models import Invocation, Place, ReplyKind
from marvin.services import Services

if TYPE_CHECKING:
    from marvin.accounts import Caller

C = TypeVar("C", contravariant=True)


@dataclass
class Context:
    invocation: Invocation
    caller: Caller
    services: Services
    now: datetime
    # The production facts the policies judged, once gathered (None for other commands).
    facts: Facts | None = None

    def read(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A short read-only transaction: gather local facts, then let it go."""
        return self.services.store.transaction()


@dataclass(frozen=True)
class Done:
    """A final answer that changes nothing: a read, a not-found, an "already so"."""

    text: str
    ok: bool = True
    kind: ReplyKind = "result"
    # The answer as data, for whoever reads replies as JSON (`marvin shell --json`).
    data: dict[str, Any] | None = None


class Moved(Exception):
    """What the plan was decided on changed before it could be reserved: plan again."""


class Overtaken(Exception):
    """A command taken up again after a crash finds what it would change changed since it
    was asked: doing it now could undo a later change (someone's kill switch)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Change:
    """Base of plans that change something once the policies allow it."""

    # Applied by a call to an outside system between `reserve` and `record`.
    remote: bool = False

    def summary(self) -> str:
        raise NotImplementedError

    def confirmation_reason(self) -> str | None:
        """Why the caller must confirm this change first, or None if they needn't."""
        return None

    def intent(self) -> dict[str, Any]:
        """For a remote change: what settling it needs if its outcome is unknown (JSON)."""
        raise TypeError(f"{type(self).__name__} is not a remote change")


@dataclass(frozen=True)
class Impact:
    """What a production change touches, in the terms every mandatory policy judges."""

    environment: str
    # True when nobody who lacked the feature gets it: the safe direction (a kill switch).
    lowers: bool
    # What kind of change the change locks consider (an incident may block one kind).
    kind: Literal["feature-flags", "deployments", "other"]
    target: str  # what is changed, for people: "feature flag `new_nav`"
    override_reason: str | None = None
    # The written rule the change departs from, by leave (a deviation issue, an override):
    # where four-eyes is asked for, such a change waits for a second person's approval.
    deviation: str | None = None


class ProductionChange(Change):
    """A change to production (or staging, which holds production data): every production
    change says what it touches, so the mandatory policies can judge it."""

    def impact(self) -> Impact:
        raise NotImplementedError


@dataclass(frozen=True)
class Rerun:
    """A confirmed or approved change: run the original command again, through every
    policy, as it stands now. An approval runs it on behalf of its requester."""

    token: str
    text: str
    place: Place
    on_behalf: Invocation | None = None  # the requester's invocation (an approval)
    approved_by: str | None = None


@dataclass(frozen=True)
class Observation:
    """What a backend holds now, against what a change whose outcome was unknown wanted."""

    status: Literal["applied", "not_applied", "diverged"]
    applied: dict[str, Any]  # as `Handler.apply` would have reported it
    seen: str  # the state, for people


@dataclass(frozen=True)
class Outcome:
    text: str
    announcement: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    details: dict[str, object] = field(default_factory=dict)


Plan = Done | Change | Rerun


class Handler(Generic[C]):
    """A command's handler. Read-only handlers implement `plan` alone."""

    async def plan(self, cmd: C, ctx: Context) -> Plan:
        raise NotImplementedError

    async def reserve(self, plan: Change, session: AsyncSession, ctx: Context) -> None:
        """Re-check, in a short write transaction, what may have moved; raise `Moved`."""
        return None

    async def apply(self, plan: Change, ctx: Context) -> dict[str, Any]:
        """The outside call of a remote plan (no transaction open); what it reported."""
        raise TypeError(f"{type(self).__name__} has no remote effect")

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        raise TypeError(f"{type(self).__name__} never plans a change")

    # Settling a remote change whose outcome was unknown (`marvin.intents`).

    def replan(self, intent: dict[str, Any]) -> Change:
        """The plan again, from what `Change.intent` wrote down."""
        raise TypeError(f"{type(self).__name__} plans no remote change")

    async def observe(self, intent: dict[str, Any], services: Services) -> Observation:
        """Read the backend (no transaction open): was the change made?"""
        raise TypeError(f"{type(self).__name__} plans no remote change")
