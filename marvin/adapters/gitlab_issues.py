"""Issues in a GitLab project (`issues.backend: gitlab`), through python-gitlab.

The `IssueTracker` of `marvin.adapters.issues` (reading a deviation issue, opening one) and
what an incident needs of a tracker (`IncidentTracker`): an issue of type `incident` with
its labels, owner, confidentiality and a hidden marker; notes that add timeline events;
label changes and closing; the project's description template.

Every call runs in a thread under GitLabClient's deadline, its errors typed. Two rules keep
a retried delivery from doubling what an unanswered one may have done:

- Each issue carries a hidden marker in its description, each note one in its body, so the
  caller can look for them (`find_marked`, `has_note`) before it writes again after an
  outcome it didn't learn.
- python-gitlab's own retries are off for every call (`obey_rate_limit=False`): on a 429 it
  would sleep out Retry-After in its thread and then send the same POST again, after the
  deadline had already reported the call as unanswered and the caller may have written again.
  A 429 is reported at once (`Unavailable`) and the outbox backs off instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

import requests
import structlog

from marvin.adapters.errors import NotFound, Refused
from marvin.adapters.gitlab import ONCE, SERVICE, GitLabClient
from marvin.adapters.issue_refs import parse_issue_ref
from marvin.adapters.issues import Issue

log = structlog.get_logger(__name__)

# "#12", "12", or "group/project#12" (the configured project's only).
TEMPLATES = ".gitlab/issue_templates"


@dataclass(frozen=True)
class NewIssue:
    title: str
    description: str
    labels: tuple[str, ...]
    issue_type: str = "issue"  # issue, incident, test_case, task
    confidential: bool = False
    assignee: str | None = None  # a GitLab username: who owns it
    author: str | None = None  # who asked for it (a handle), where the tracker keeps that


@dataclass(frozen=True)
class TimelineEvent:
    """An incident timeline event: GitLab adds one for a note's `/timeline` quick action."""

    text: str  # one line, at most 280 characters
    at: datetime  # UTC


@runtime_checkable
class IncidentTracker(Protocol):
    """What an incident's issue needs of a tracker, beyond `IssueTracker`. (To join that
    Protocol in `marvin.adapters.issues` once the embedded tracker implements it itself.)"""

    name: str

    async def open_issue(self, new: NewIssue) -> Issue:
        """Open the issue; `OutcomeUnknown` when it was sent but no answer came."""
        ...

    async def find_marked(self, marker: str) -> Issue | None:
        """The issue whose description carries `marker`, if one was opened."""
        ...

    async def add_note(
        self, ref: str, body: str, *, marker: str, timeline: TimelineEvent | None = None
    ) -> None: ...

    async def has_note(self, ref: str, marker: str) -> bool:
        """Whether a note carrying `marker` is on the issue."""
        ...

    async def update(
        self, ref: str, *, add_labels: list[str], remove_labels: list[str], close: bool
    ) -> Issue: ...

    async def template(self, name: str) -> str | None:
        """The tracker's own description template called `name`, if it has one."""
        ...


def marker_comment(marker: str) -> str:
    """Hidden in the rendered Markdown, found by GitLab's search."""
    return f"<!-- {marker} -->"


def _issue(entity: dict[str, Any]) -> Issue:
    return Issue(
        ref=f"#{entity['iid']}",
        title=str(entity.get("title") or ""),
        state=str(entity.get("state") or "opened"),
        labels=tuple(str(label) for label in entity.get("labels") or ()),
        url=entity.get("web_url"),
    )


def _timestamp(raw: Any) -> datetime | None:
    """GitLab's ISO 8601 time ("2026-03-02T10:00:00.000Z"); None for what isn't one."""
    if not isinstance(raw, str):
        return None
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class GitLabIssueTracker:
    name = "gitlab"

    def __init__(self, client: GitLabClient, project: str | int, *, page_size: int = 100) -> None:
        self.client = client
        self.project = str(project)
        self._base = f"/projects/{quote(self.project, safe='')}"
        self._page_size = page_size

    # --- IssueTracker ----------------------------------------------------------------------

    async def get(self, ref: str) -> Issue:
        entity = await self._call(self.client.gl.http_get, self._issue_path(self._iid(ref)))
        return _issue(entity)

    async def create(
        self, *, title: str, description: str, labels: list[str], author: str
    ) -> Issue:
        return await self.open_issue(
            NewIssue(title=title, description=description, labels=tuple(labels), author=author)
        )

    async def labelled_at(self, ref: str, labels: Sequence[str]) -> datetime | None:
        events = await self._call(
            self.client.gl.http_list,
            f"{self._issue_path(self._iid(ref))}/resource_label_events",
            get_all=True,
            per_page=self._page_size,
        )
        latest: datetime | None = None
        for event in events:
            if not isinstance(event, dict) or event.get("action") != "add":
                continue
            label = event.get("label")
            name = label.get("name") if isinstance(label, dict) else None
            if name not in labels:
                continue
            when = _timestamp(event.get("created_at"))
            if when is not None and (latest is None or when > latest):
                latest = when
        return latest

    async def open_labelled(self, label: str, search: str) -> list[Issue]:
        found = await self._call(
            self.client.gl.http_list,
            f"{self._base}/issues",
            query_data={"labels": label, "state": "opened", "search": search, "in": "title"},
            get_all=True,
            per_page=self._page_size,
        )
        wanted = search.lower()
        return [
            _issue(entity)
            for entity in found
            if isinstance(entity, dict) and wanted in str(entity.get("title") or "").lower()
        ]

    # --- IncidentTracker -------------------------------------------------------------------

    async def open_issue(self, new: NewIssue) -> Issue:
        data: dict[str, Any] = {
            "title": new.title,
            "description": new.description,
            "labels": ",".join(new.labels),
            "issue_type": new.issue_type,
            "confidential": new.confidential,
        }
        if new.assignee:
            # A read of its own: its timeout is no change of unknown outcome.
            assignee = await self.client.user(new.assignee)
            if assignee is not None:
                data["assignee_ids"] = [assignee.id]
            else:
                log.warning("gitlab.assignee_unknown", username=new.assignee)
        entity = await self._call(
            self.client.gl.http_post, f"{self._base}/issues", post_data=data, changes=True
        )
        return _issue(entity)

    async def find_marked(self, marker: str) -> Issue | None:
        found = await self._call(
            self.client.gl.http_list,
            f"{self._base}/issues",
            query_data={"search": marker, "state": "all"},
            get_all=True,
            per_page=self._page_size,
        )
        for entity in found:
            if isinstance(entity, dict) and marker in str(entity.get("description") or ""):
                return _issue(entity)
        return None

    async def add_note(
        self, ref: str, body: str, *, marker: str, timeline: TimelineEvent | None = None
    ) -> None:
        parts = [body]
        if timeline is not None:
            # GitLab reads a quick action on a line of its own, and takes one per note.
            parts.append(f"/timeline {timeline.text} | {timeline.at:%Y-%m-%d %H:%M}")
        parts.append(marker_comment(marker))
        await self._call(
            self.client.gl.http_post,
            f"{self._issue_path(self._iid(ref))}/notes",
            post_data={"body": "\n\n".join(parts)},
            changes=True,
        )

    async def has_note(self, ref: str, marker: str) -> bool:
        notes = await self._call(
            self.client.gl.http_list,
            f"{self._issue_path(self._iid(ref))}/notes",
            get_all=True,
            per_page=self._page_size,
        )
        return any(isinstance(n, dict) and marker in str(n.get("body") or "") for n in notes)

    async def update(
        self, ref: str, *, add_labels: list[str], remove_labels: list[str], close: bool
    ) -> Issue:
        data: dict[str, Any] = {}
        if add_labels:
            data["add_labels"] = ",".join(add_labels)
        if remove_labels:
            data["remove_labels"] = ",".join(remove_labels)
        if close:
            data["state_event"] = "close"
        path = self._issue_path(self._iid(ref))
        if not data:
            return _issue(await self._call(self.client.gl.http_get, path))
        entity = await self._call(self.client.gl.http_put, path, post_data=data, changes=True)
        return _issue(entity)

    async def template(self, name: str) -> str | None:
        path = quote(f"{TEMPLATES}/{name}.md", safe="")
        try:
            response = await self._call(
                self.client.gl.http_get, f"{self._base}/repository/files/{path}/raw", raw=True
            )
        except NotFound:
            return None
        except Refused as exc:
            # Not allowed to read the repository: the bundled template rather than no issue.
            log.warning("gitlab.template_refused", error=exc.shown())
            return None
        assert isinstance(response, requests.Response)
        return response.content.decode("utf-8", errors="replace")

    # --- GitLab ----------------------------------------------------------------------------

    def _iid(self, ref: str) -> int:
        parsed = parse_issue_ref(ref)
        if parsed is None or not parsed.in_project(self.project):
            raise Refused(
                SERVICE,
                f"can't read {ref[:60]!r}: it is not an issue reference in {self.project} "
                "(use #123)",
            )
        return parsed.iid

    def _issue_path(self, iid: int) -> str:
        return f"{self._base}/issues/{iid}"

    async def _call(
        self, fn: Callable[..., Any], *args: Any, changes: bool = False, **kw: Any
    ) -> Any:
        try:
            return await self.client.call(fn, *args, changes=changes, **ONCE, **kw)
        except NotFound as exc:
            if "project" in exc.message.lower():
                raise NotFound(
                    SERVICE,
                    f"has no project {self.project} that Marvin's token can see (404): check "
                    "issues.project and that the token's user is a Reporter there",
                ) from exc
            raise
