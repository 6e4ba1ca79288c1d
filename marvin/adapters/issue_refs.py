"""Issue references as people paste them: `#123`, `123`, `group/project#123`, or the issue's
URL (`https://gitlab.example.com/group/project/-/issues/123`), as GitLab's ChatOps takes them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_SHORT = re.compile(r"^(?:(?P<path>[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)+)?#)?(?P<iid>\d{1,9})$")
# GitLab's issue pages; incidents open under /-/issues/ and newer ones under /-/work_items/.
_URL_PATH = re.compile(
    r"^/(?P<path>[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)+?)/(?:-/)?"
    r"(?:issues|work_items)(?:/incident)?/(?P<iid>\d{1,9})/?$"
)


@dataclass(frozen=True)
class IssueRef:
    # None when the reference names no project (`#123`): the configured tracker's.
    project: str | None
    iid: int

    def in_project(self, project: str | None) -> bool:
        """Whether this names an issue of `project` (paths compare as GitLab's do: without
        regard to case)."""
        if self.project is None:
            return True
        return project is not None and self.project.lower() == project.strip("/").lower()


def parse_issue_ref(ref: str) -> IssueRef | None:
    """The reference, or None when `ref` is not one."""
    text = ref.strip()
    if text.startswith(("https://", "http://")):
        parts = urlsplit(text)
        match = _URL_PATH.match(parts.path)
        if match is None or parts.query or not parts.netloc:
            return None
        return IssueRef(match.group("path"), int(match.group("iid")))
    match = _SHORT.match(text)
    if match is None:
        return None
    return IssueRef(match.group("path"), int(match.group("iid")))
