"""The roles registry: who people are, which roles they hold, and what each role gives.

One Protocol, chosen by `directory.backend`:

- `file` reads the roles file (chef-roles style): people, roles, their members;
- `gitlab` (`marvin.access.mirror`) takes each role's members from a GitLab group, through
  a mirror in the database that a background job keeps fresh.

Either way the roles themselves (what each grants, where it gives access) come from config.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from marvin.config import DirectoryConfig, Role

ENVIRONMENTS = ("production", "staging", "runners")
# Staging holds production data: access to one is access to the other.
_SAME_AS = {"production": "staging", "staging": "production"}


def environments_of(access: Iterable[str]) -> tuple[str, ...]:
    """Where a set of roles gives access, staging answered as production is."""
    held = set(access)
    held |= {_SAME_AS[env] for env in held if env in _SAME_AS}
    return tuple(env for env in ENVIRONMENTS if env in held)


class Holding(BaseModel):
    """How someone holds a role: the roles file, or a GitLab group (perhaps inherited)."""

    model_config = ConfigDict(frozen=True)

    role: str
    via: str  # "the roles file", "GitLab group gl-infra/production (inherited from gl-infra)"


class DirectoryPerson(BaseModel):
    model_config = ConfigDict(frozen=True)

    handle: str
    name: str
    email: str | None
    gitlab_username: str | None
    roles: tuple[str, ...]
    grants: tuple[str, ...]  # from the roles and given to the person directly
    chat_id: str | None = None
    environments: tuple[str, ...] = ()
    holdings: tuple[Holding, ...] = ()
    # Grants the registry gives the person directly (not through a role).
    own_grants: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoleInfo:
    name: str
    description: str
    grants: tuple[str, ...]
    environments: tuple[str, ...]
    source: str  # where its members come from, for people


@dataclass(frozen=True)
class Freshness:
    """How current the registry's answer is. A file is read live; a mirror is as old as its
    last successful sync."""

    live: bool
    synced_at: datetime | None = None
    attempted_at: datetime | None = None
    error: str | None = None

    def age_minutes(self, now: datetime) -> float | None:
        if self.live or self.synced_at is None:
            return None
        return max(0.0, (now - self.synced_at).total_seconds() / 60)

    def stale(self, now: datetime, max_minutes: float) -> bool:
        if self.live:
            return False
        age = self.age_minutes(now)
        return age is None or age > max_minutes

    def shown(self, now: datetime) -> str:
        """One sentence on how old the answer is (empty for a file, read live)."""
        if self.live:
            return ""
        if self.synced_at is None:
            why = f" (last try: {self.error})" if self.error else ""
            return f"The GitLab mirror of the roles registry has never synced{why}."
        text = f"As of the GitLab mirror, synced {_ago(self.age_minutes(now) or 0)}."
        if self.error:
            text += f" The last sync failed: {self.error}."
        return text


def _ago(minutes: float) -> str:
    if minutes < 1:
        return "less than a minute ago"
    if minutes < 120:
        return f"{minutes:.0f} minute{'s' if round(minutes) != 1 else ''} ago"
    hours = minutes / 60
    if hours < 48:
        return f"{hours:.0f} hours ago"
    return f"{hours / 24:.0f} days ago"


def shown_age(minutes: float) -> str:
    return _ago(minutes)


class Directory(Protocol):
    name: str

    async def by_email(self, email: str) -> DirectoryPerson | None: ...

    async def by_handle(self, handle: str) -> DirectoryPerson | None: ...

    async def by_gitlab_username(self, username: str) -> DirectoryPerson | None: ...

    async def named(self, name: str) -> DirectoryPerson | None:
        """Someone as people name each other in chat: by handle or by GitLab username."""
        ...

    async def role_members(self, role: str) -> list[DirectoryPerson] | None: ...

    async def people(self) -> list[DirectoryPerson]:
        """Everyone who holds a role (or, for a file, is listed in it)."""
        ...

    def roles(self) -> list[RoleInfo]: ...

    async def freshness(self) -> Freshness: ...


def role_infos(config: DirectoryConfig, source: str | None = None) -> list[RoleInfo]:
    infos = []
    for name, role in config.roles.items():
        group = config.groups.get(name)
        where = source or (f"GitLab group {group}" if group else "no GitLab group")
        infos.append(
            RoleInfo(
                name=name,
                description=role.description,
                grants=tuple(role.grants),
                environments=environments_of(role.access),
                source=where,
            )
        )
    return infos


def person(
    *,
    handle: str,
    name: str,
    email: str | None,
    gitlab_username: str | None,
    holdings: list[Holding],
    roles: dict[str, Role],
    own_grants: Iterable[str] = (),
    chat_id: str | None = None,
) -> DirectoryPerson:
    """A registry entry, its grants and environments derived from its roles."""
    held = tuple(dict.fromkeys(h.role for h in holdings))
    own = tuple(sorted(set(own_grants)))
    grants = {g for r in held if r in roles for g in roles[r].grants} | set(own)
    access = [env for r in held if r in roles for env in roles[r].access]
    return DirectoryPerson(
        handle=handle,
        name=name,
        email=email,
        gitlab_username=gitlab_username,
        roles=held,
        grants=tuple(sorted(grants)),
        chat_id=chat_id,
        environments=environments_of(access),
        holdings=tuple(holdings),
        own_grants=own,
    )


class FileDirectory:
    name = "file"

    def __init__(self, config: DirectoryConfig) -> None:
        holdings: dict[str, list[Holding]] = {}
        for role_name, role in config.roles.items():
            for member in role.members:
                holdings.setdefault(member, []).append(
                    Holding(role=role_name, via="the roles file")
                )
        self._config = config
        self._people: dict[str, DirectoryPerson] = {}
        for entry in config.people:
            self._people[entry.handle] = person(
                handle=entry.handle,
                name=entry.name or entry.handle,
                email=entry.email,
                gitlab_username=entry.gitlab_username or entry.handle,
                holdings=holdings.get(entry.handle, []),
                roles=config.roles,
                own_grants=entry.grants,
                chat_id=entry.chat_id,
            )
        self._by_email = {p.email.lower(): p for p in self._people.values() if p.email}
        self._by_gitlab = {
            p.gitlab_username.lower(): p for p in self._people.values() if p.gitlab_username
        }

    async def by_email(self, email: str) -> DirectoryPerson | None:
        return self._by_email.get(email.strip().lower())

    async def by_handle(self, handle: str) -> DirectoryPerson | None:
        return self._people.get(handle)

    async def by_gitlab_username(self, username: str) -> DirectoryPerson | None:
        return self._by_gitlab.get(username.strip().lower())

    async def named(self, name: str) -> DirectoryPerson | None:
        wanted = name.strip().lower()
        return self._people.get(wanted) or self._by_gitlab.get(wanted)

    async def role_members(self, role: str) -> list[DirectoryPerson] | None:
        if role not in self._config.roles:
            return None
        members = self._config.roles[role].members
        return [self._people[h] for h in members if h in self._people]

    async def people(self) -> list[DirectoryPerson]:
        return sorted(self._people.values(), key=lambda p: p.handle)

    def roles(self) -> list[RoleInfo]:
        return role_infos(self._config, "the roles file")

    async def freshness(self) -> Freshness:
        return Freshness(live=True)
