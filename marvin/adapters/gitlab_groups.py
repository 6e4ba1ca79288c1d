"""GitLab groups' members, through python-gitlab: what the `gitlab` roles registry mirrors.

`GET /groups/:id/members/all` lists direct and inherited members, a page at a time
(python-gitlab follows the `Link: rel="next"` header). Blocked users, and invitations not
yet accepted, hold nothing. A member entity carries no primary e-mail (GitLab shows it there
only to a group's owners, for its enterprise users): only the public one, if the user set
it. Who has an e-mail is asked of `GET /users?search=`, which an administrator's token
answers for primary e-mails too.
"""

from __future__ import annotations

from urllib.parse import quote

from marvin.adapters.errors import NotFound
from marvin.adapters.gitlab import SERVICE, GitLabClient, GitLabUser


class GitLabGroups:
    """Reads groups' members from one GitLab instance."""

    def __init__(self, client: GitLabClient, *, page_size: int = 100) -> None:
        self.client = client
        self.page_size = page_size

    async def members(self, group: str) -> list[GitLabUser]:
        """Every active member of `group`, direct or inherited; `NotFound` for no such group."""
        path = f"/groups/{quote(group, safe='')}/members/all"
        try:
            entries = await self.client.entries(path, per_page=self.page_size)
        except NotFound as exc:
            raise NotFound(
                SERVICE, f"has no group {group} that Marvin's token can see (404)"
            ) from exc
        return [
            GitLabUser.of(entry)
            for entry in entries
            # Blocked, deactivated, banned: no access through the group; invited: not yet.
            if entry.get("state", "active") == "active"
            and entry.get("membership_state", "active") == "active"
        ]

    async def direct_usernames(self, group: str) -> set[str]:
        """The usernames of the group's own members (the rest are inherited)."""
        path = f"/groups/{quote(group, safe='')}/members"
        entries = await self.client.entries(path, per_page=self.page_size)
        return {str(e["username"]) for e in entries}

    async def user_by_email(self, email: str) -> GitLabUser | None:
        """The active GitLab user with this e-mail (`GET /users?search=`: any e-mail for an
        administrator's token, public ones otherwise), if exactly one has it."""
        wanted = email.strip().lower()
        entries = await self.client.entries(
            "/users", query={"search": wanted}, every_page=False, per_page=20
        )
        found = [
            e
            for e in entries
            if e.get("state", "active") == "active"
            and wanted in {str(e.get(k) or "").lower() for k in ("email", "public_email")}
        ]
        if len(found) != 1:
            return None
        return GitLabUser.of(found[0])

    async def user_state(self, username: str) -> str | None:
        """The GitLab user's state (`active`, `blocked`, `deactivated`, `banned`, ...), or
        None when GitLab has no such user (a blocked user is listed only to an
        administrator's token, and is None to any other)."""
        user = await self.client.user(username)
        return user.state if user else None
