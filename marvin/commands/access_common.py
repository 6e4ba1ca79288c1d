"""What the `access` commands share: naming a person, finding them in the registry, and
saying how old an answer is."""

from __future__ import annotations

from marvin.adapters.directory import DirectoryPerson, Freshness
from marvin.commands.base import Context
from marvin.policies.roles import PRODUCTION_ROLE
from marvin.spec import Needs

PRODUCTION_ONLY = Needs("role", PRODUCTION_ROLE)


def username(value: str) -> str:
    name = value.strip().removeprefix("@")
    if not name or len(name) > 255 or not all(c.isalnum() or c in "._-" for c in name):
        raise ValueError("name a person by their handle or GitLab username, like @alice")
    return name


async def find_person(ctx: Context, name: str) -> DirectoryPerson | None:
    """Someone named by their handle or GitLab username."""
    return await ctx.services.directory.named(name)


def with_age(lines: list[str], freshness: Freshness, ctx: Context) -> str:
    age = freshness.shown(ctx.now)
    return "\n".join([*lines, age] if age else lines)
