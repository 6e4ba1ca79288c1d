"""Who people are and which roles they hold. `file` reads a roles file (chef-roles style)."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict

from marvin.config import DirectoryConfig


class DirectoryPerson(BaseModel):
    model_config = ConfigDict(frozen=True)

    handle: str
    name: str
    email: str | None
    gitlab_username: str | None
    roles: tuple[str, ...]
    grants: tuple[str, ...]  # from the roles and given to the person directly


class Directory(Protocol):
    name: str

    async def by_email(self, email: str) -> DirectoryPerson | None: ...

    async def by_handle(self, handle: str) -> DirectoryPerson | None: ...

    async def role_members(self, role: str) -> list[DirectoryPerson] | None: ...


class FileDirectory:
    name = "file"

    def __init__(self, config: DirectoryConfig) -> None:
        roles_of: dict[str, list[str]] = {}
        for role_name, role in config.roles.items():
            for member in role.members:
                roles_of.setdefault(member, []).append(role_name)
        self._roles = config.roles
        self._people: dict[str, DirectoryPerson] = {}
        for person in config.people:
            roles = tuple(roles_of.get(person.handle, ()))
            grants = {g for r in roles for g in config.roles[r].grants} | set(person.grants)
            self._people[person.handle] = DirectoryPerson(
                handle=person.handle,
                name=person.name or person.handle,
                email=person.email,
                gitlab_username=person.gitlab_username or person.handle,
                roles=roles,
                grants=tuple(sorted(grants)),
            )
        self._by_email = {p.email.lower(): p for p in self._people.values() if p.email}

    async def by_email(self, email: str) -> DirectoryPerson | None:
        return self._by_email.get(email.strip().lower())

    async def by_handle(self, handle: str) -> DirectoryPerson | None:
        return self._people.get(handle)

    async def role_members(self, role: str) -> list[DirectoryPerson] | None:
        if role not in self._roles:
            return None
        return [self._people[h] for h in self._roles[role].members if h in self._people]
