"""GitLab through python-gitlab: off the event loop, under a deadline, with typed errors.

python-gitlab is synchronous, so each call runs in a thread (`asyncio.to_thread`), with
requests' own timeout set to the deadline so the thread ends too. What GitLab answers is
turned into the adapters' typed errors; what it means for a *change* matters most: a write
that may have reached GitLab but whose answer never came is `OutcomeUnknown`, never "failed".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import gitlab
import requests
from gitlab import exceptions as gle

from marvin.adapters.errors import (
    AdapterError,
    Conflict,
    NotFound,
    OutcomeUnknown,
    Refused,
    Unavailable,
)

SERVICE = "GitLab"
T = TypeVar("T")
# Passed with every call: python-gitlab's own retries are off. On a 429 it would sleep out
# Retry-After in its thread and send the request again after the deadline had already
# reported it unanswered, when the caller may have written again; a 429 is reported at once
# (`Unavailable`) and the caller's own backoff decides.
ONCE: dict[str, Any] = {"obey_rate_limit": False, "max_retries": 0}


@dataclass(frozen=True)
class GitLabUser:
    """A user as GitLab's user and member entities show them."""

    id: int
    username: str
    name: str
    state: str  # active, blocked, deactivated, banned, ...
    # The primary e-mail (`email`, shown to administrators' tokens on `/users`) or else the
    # public one; a member entity carries only the public one.
    email: str | None

    @classmethod
    def of(cls, entity: dict[str, Any]) -> GitLabUser:
        username = str(entity["username"])
        return cls(
            id=int(entity["id"]),
            username=username,
            name=str(entity.get("name") or username),
            state=str(entity.get("state") or "active"),
            email=str(entity.get("email") or entity.get("public_email") or "") or None,
        )


def _message(exc: gle.GitlabError) -> str:
    text = exc.error_message
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text)[:300]


def translate(exc: Exception, *, changes: bool, service: str = SERVICE) -> AdapterError:
    """The typed error for what python-gitlab (or requests under it) raised."""
    if isinstance(exc, gle.GitlabAuthenticationError):
        return Refused(service, "refused Marvin's token (401): check GITLAB_TOKEN")
    if isinstance(exc, gle.GitlabError):
        code = exc.response_code or 0
        said = _message(exc)
        if code == 403:
            return Refused(service, f"does not allow Marvin to do that (403: {said})")
        if code == 404:
            return NotFound(service, f"has no such thing (404: {said})")
        if code == 409:
            return Conflict(service, f"answered with a conflict (409: {said})")
        if code in (400, 422):
            return Refused(service, f"refused the request ({code}: {said})")
        if code == 429:
            return Unavailable(service, "is rate-limiting Marvin (429); try again shortly")
        if changes and code >= 500:
            return OutcomeUnknown(service, f"failed while making the change ({code})")
        return Unavailable(service, f"answered with an error ({code or 'no status'})")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Unavailable(service, "could not be reached (connect timeout)")
    if isinstance(exc, requests.exceptions.Timeout):
        # The request was sent; the answer did not come.
        if changes:
            return OutcomeUnknown(service, "did not answer in time")
        return Unavailable(service, "did not answer in time")
    if isinstance(exc, requests.exceptions.ConnectionError):
        refused = "NewConnectionError" in repr(exc) or "Connection refused" in str(exc)
        if changes and not refused:
            return OutcomeUnknown(service, "dropped the connection during the change")
        return Unavailable(service, "could not be reached")
    return Unavailable(service, f"failed ({type(exc).__name__})")


class GitLabClient:
    """One GitLab instance: its URL, Marvin's token there, and the deadline of a call."""

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        # python-gitlab waits out a 429's Retry-After itself; the deadline still holds.
        self.gl = gitlab.Gitlab(
            url=url, private_token=token, timeout=timeout, retry_transient_errors=False
        )

    async def call(self, fn: Callable[..., T], *args: Any, changes: bool = False, **kw: Any) -> T:
        """`fn(*args, **kw)` in a thread, under the deadline, its errors typed."""
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(fn, *args, **kw), timeout=self.timeout * 2 + 1
            )
        except TimeoutError:
            error = OutcomeUnknown if changes else Unavailable
            raise error(SERVICE, f"did not answer within {self.timeout:g} s") from None
        except (gle.GitlabError, requests.exceptions.RequestException) as exc:
            raise translate(exc, changes=changes) from exc

    async def entries(
        self,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        every_page: bool = True,
        per_page: int = 100,
    ) -> list[dict[str, Any]]:
        """A list endpoint's entries: every page (python-gitlab follows `Link: rel="next"`),
        or only the first."""
        entries = await self.call(
            self.gl.http_list,
            path,
            query_data=query or {},
            get_all=every_page,
            per_page=per_page,
            **ONCE,
        )
        return [e for e in entries if isinstance(e, dict)]

    async def user(self, username: str) -> GitLabUser | None:
        """The user with this username, in any case (`GET /users?username=`), or None. A
        blocked user is listed only to an administrator's token: to any other, None."""
        found = await self.entries(
            "/users", query={"username": username.strip()}, every_page=False, per_page=20
        )
        for entry in found:
            if str(entry.get("username", "")).lower() == username.strip().lower():
                return GitLabUser.of(entry)
        return None
