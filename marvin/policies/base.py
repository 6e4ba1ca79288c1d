"""A policy judges one thing and says why. The first deny wins; a policy that raises denies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from marvin.commands.base import Context, Plan
from marvin.commands.spec import CommandModel, CommandSpec


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
class Request:
    spec: CommandSpec
    command: CommandModel
    plan: Plan
    ctx: Context


class Policy(Protocol):
    name: str

    async def check(self, req: Request) -> Decision: ...
