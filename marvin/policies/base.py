"""A policy judges one thing and says why. The first deny wins; a policy that raises denies.

Gates run before anything is gathered, on what Marvin knows itself (who, where, which
command). Policies run after, as pure functions of the plan and the gathered facts: no
database, no network, so a decision can't wait on anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from marvin.accounts import Caller
from marvin.commands.base import Change
from marvin.config import Settings
from marvin.facts import Facts
from marvin.models import Invocation

if TYPE_CHECKING:
    from marvin.spec import CommandModel, CommandSpec


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""
    # Shown in the announcement when the change goes ahead (an override, who is on call).
    note: str | None = None

    @classmethod
    def allow(cls, note: str | None = None) -> Decision:
        return cls(True, note=note)

    @classmethod
    def deny(cls, reason: str) -> Decision:
        return cls(False, reason=reason)


@dataclass(frozen=True)
class GateRequest:
    spec: CommandSpec
    command: CommandModel
    caller: Caller
    invocation: Invocation
    settings: Settings


@dataclass(frozen=True)
class Request:
    spec: CommandSpec
    command: CommandModel
    caller: Caller
    invocation: Invocation
    settings: Settings
    now: datetime
    plan: Change
    facts: Facts


class Gate(Protocol):
    name: str

    def check(self, req: GateRequest) -> Decision: ...


class Policy(Protocol):
    name: str
    # Mandatory: judges every production change, and denies one it can't judge. Otherwise
    # it judges only the plans in `judges` (a flag's ceiling) and leaves others alone.
    mandatory: bool
    judges: tuple[type[Change], ...]

    def check(self, req: Request) -> Decision: ...
