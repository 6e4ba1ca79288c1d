"""GitLab groups' members, through python-gitlab: what the `gitlab` roles registry mirrors.

`GET /groups/:id/members/all` lists direct and inherited members, a page at a time
(python-gitlab follows the `Link: rel="next"` header). Blocked users, and invitations not
yet accepted, hold nothing. E-mail addresses come only with an administrator's token (or
a user's public e-mail).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from marvin.adapters.errors import NotFound
from marvin.adapters.gitlab import SERVICE, GitLabClient

_ONCE: dict[str, Any] = {"obey_rate_limit": False, "max_retries": 0}


@dataclass(frozen=True)
class GroupMember:
    user_id: int
    username: str
    name: str
    email: str | None
    access_level: int
    # The group the membership is in: the group itself, or an ancestor it is inherited from.
    source: str | None = None


class GitLabGroups:
    """Reads groups' members from one GitLab instance."""

    def __init__(self, client: GitLabClient, *, page_size: int = 100) -> None:
        self.client = client
        self.page_size = page_size

    async def members(self, group: str) -> list[GroupMember]:
        """Every active member of `group`, direct or inherited; `NotFound` for no such group."""
        path = f"/groups/{quote(group, safe='')}/members/all"
        try:
            entries = await self.client.call(
                self.client.gl.http_list, path, get_all=True, per_page=self.page_size, **_ONCE
            )
        except NotFound as exc:
            raise NotFound(
                SERVICE, f"has no group {group} that Marvin's token can see (404)"
            ) from exc
        members = []
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            if entry.get("state", "active") != "active":
                continue  # blocked, deactivated, banned: no access through the group
            if entry.get("membership_state", "active") != "active":
                continue  # invited, not yet a member
            members.append(
                GroupMember(
                    user_id=int(entry["id"]),
                    username=str(entry["username"]),
                    name=str(entry.get("name") or entry["username"]),
                    email=(entry.get("email") or entry.get("public_email") or None),
                    access_level=int(entry.get("access_level") or 0),
                )
            )
        return members

    async def direct_usernames(self, group: str) -> set[str]:
        """The usernames of the group's own members (the rest are inherited)."""
        path = f"/groups/{quote(group, safe='')}/members"
        entries = await self.client.call(
            self.client.gl.http_list, path, get_all=True, per_page=self.page_size, **_ONCE
        )
        return {str(e["username"]) for e in entries if isinstance(e, dict)}

    async def user_by_email(self, email: str) -> GroupMember | None:
        """The active GitLab user with this e-mail (`GET /users?search=`: any e-mail for an
        administrator's token, public ones otherwise), if exactly one has it."""
        wanted = email.strip().lower()
        entries = await self.client.call(
            self.client.gl.http_list,
            "/users",
            query_data={"search": wanted},
            get_all=False,
            per_page=20,
            **_ONCE,
        )
        found = [
            e
            for e in entries
            if isinstance(e, dict)
            and e.get("state", "active") == "active"
            and wanted in {str(e.get(k) or "").lower() for k in ("email", "public_email")}
        ]
        if len(found) != 1:
            return None
        entry = found[0]
        return GroupMember(
            user_id=int(entry["id"]),
            username=str(entry["username"]),
            name=str(entry.get("name") or entry["username"]),
            email=wanted,
            access_level=0,
        )

    async def user_state(self, username: str) -> str | None:
        """The GitLab user's state (`active`, `blocked`, `deactivated`, `banned`, ...), or
        None when GitLab has no such user (`GET /users?username=`; a blocked user is listed
        only to an administrator's token, and is None to any other)."""
        entries = await self.client.call(
            self.client.gl.http_list,
            "/users",
            query_data={"username": username},
            get_all=False,
            per_page=20,
            **_ONCE,
        )
        for entry in entries:
            if (
                isinstance(entry, dict)
                and str(entry.get("username", "")).lower() == username.lower()
            ):
                return str(entry.get("state") or "active")
        return None
