"""A loopback fake of GitLab's REST API v4, driven by the real python-gitlab client.

Marvin talks to GitLab through python-gitlab (synchronous, called via ``asyncio.to_thread``),
so this server answers with GitLab's wire format rather than with whatever is convenient:
status codes, ``{"message": ...}`` bodies from GitLab's own helpers and ``{"error": ...}``
bodies from Grape's parameter validation, offset-pagination headers (``X-Total``,
``X-Total-Pages``, ``X-Page``, ``X-Per-Page``, ``X-Next-Page``, ``X-Prev-Page`` and a
``Link`` header) and ``Retry-After`` on 429.

Sources read when this file was written (GitLab's own code and docs, mirrored at
github.com/gitlabhq/gitlabhq, plus python-gitlab 6.5.0 as installed):

* Errors: ``lib/api/api.rb`` (``ActiveRecord::RecordNotFound`` -> ``404 Not found``; the
  catch-all route -> ``{"error": "404 Not Found"}``; anything unexpected -> ``500 Internal
  Server Error``), ``lib/api/helpers.rb`` (``not_found!`` -> ``404 <Thing> Not Found``,
  ``bad_request!`` -> ``400 Bad request - <reason>``, ``forbidden!``, ``unauthorized!``,
  ``render_validation_error!`` -> ``{"message": {attribute: [errors]}}``).
* Instance features: ``lib/api/features.rb`` (admin only; ``key`` is mutually exclusive
  with every actor parameter; 201 on POST, 204 on DELETE), ``app/services/admin/
  set_feature_flag_service.rb`` (``100``/``true`` enable, ``0``/``false`` disable, numbers
  are percentages, ``Not a percentage``, ``Cannot set 'x' to "y"``), ``lib/feature.rb``
  (``Feature::Target``: ``<path> is not found!``; percentages refused on a fully-enabled
  flag), ``lib/api/entities/feature.rb`` (gates with zero/empty values hidden, the
  boolean gate always shown), ``spec/requests/api/features_spec.rb`` (exact answers),
  Flipper 0.26 (``Feature#state``, gate order, the boolean gate clearing every other gate,
  ``Types::Percentage`` raising ``ArgumentError`` outside 0..100 -- which GitLab does not
  rescue, so the API answers 500).
* Project feature flags: ``lib/api/feature_flags.rb``, ``app/models/operations/
  feature_flag.rb`` and ``feature_flags/strategy.rb`` (parameter rules and messages),
  ``app/validators/feature_flag_user_xids_validator.rb``, ``app/services/feature_flags/
  create_service.rb`` (errors are ``full_messages`` arrays, ``Version is invalid``),
  ``spec/requests/api/feature_flags_spec.rb`` (reporters get 403, DELETE answers 200 with
  the flag, lists are ordered by name). docs.gitlab.com/api/feature_flags.
* Issues, notes, labels, files: ``lib/api/issues.rb`` (params, ``at_least_one_of`` on PUT,
  default ``state=all``, ``order_by=created_at``, ``sort=desc``), ``lib/api/notes.rb`` and
  ``lib/api/helpers/notes_helpers.rb`` (202 with ``NoteCommands`` for command-only notes,
  ``Note {...}`` errors), doc/api/notes.md (1,000,000 characters, ``internal``),
  docs.gitlab.com/api/issues (1,048,576 characters), docs.gitlab.com/api/labels,
  docs.gitlab.com/api/repository_files.
* Users and members: docs.gitlab.com/api/users and /api/members (a member's ``email`` only
  for a group's owners, of its enterprise users: never here); ``lib/api/entities/
  user_safe.rb`` (``public_email`` on every user entity).
* Pipelines: docs.gitlab.com/api/pipelines; freeze periods: ``lib/api/freeze_periods.rb``
  (reporter reads, maintainer writes; ``app/policies/project_policy.rb``),
  ``app/validators/cron_validator.rb`` (``" is invalid syntax"``).
* python-gitlab: ``client.py`` (``http_request`` turns ``message``/``error`` into the
  exception text, 401 -> ``GitlabAuthenticationError``, 429 retried when
  ``obey_rate_limit`` with ``int(Retry-After)`` seconds; ``GitlabList`` follows
  ``Link: rel="next"`` and reads the ``X-*`` headers), ``utils.py`` (``Retry``).

Where GitLab's behaviour could not be confirmed from its source, the choice is marked
"guess" next to the code.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import fnmatch
import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

JSONDict = dict[str, Any]

# ---------------------------------------------------------------------------- constants

GUEST, PLANNER, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 15, 20, 30, 40, 50
ROLES: dict[str, int] = {
    "guest": GUEST,
    "planner": PLANNER,
    "reporter": REPORTER,
    "developer": DEVELOPER,
    "maintainer": MAINTAINER,
    "owner": OWNER,
}
_ADMIN_LEVEL = 100  # administrators pass every project and group check

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100  # Kaminari's max_per_page in GitLab

ISSUE_DESCRIPTION_MAX = 1_048_576
ISSUE_TITLE_MAX = 255
NOTE_BODY_MAX = 1_000_000
ISSUE_TYPES = ("issue", "incident", "test_case", "task")
LABEL_DEFAULT_COLOR = "#6699cc"  # Label::DEFAULT_COLOR

# Operations::FeatureFlags::Strategy
STRATEGY_PARAMETERS: dict[str, tuple[str, ...]] = {
    "default": (),
    "gitlabUserList": (),
    "gradualRolloutUserId": ("groupId", "percentage"),
    "flexibleRollout": ("groupId", "rollout", "stickiness"),
    "userWithId": ("userIds",),
}
STICKINESS = ("default", "userId", "sessionId", "random")
USER_XID_MAX = 256
FLAG_NAME_RE = re.compile(r"\A[a-z]([-_a-z0-9]*[a-z0-9])?\Z")
FLAG_NAME_MESSAGE = (
    "can contain only lowercase letters, digits, '_' and '-'. "
    "Must start with a letter, and cannot end with '-' or '_'"
)
PROJECT_FEATURE_FLAGS_LIMIT = 200  # plan_limits.project_feature_flags default

# Gitlab::QuickActions::Extractor: the command at a line's start, its argument after a space.
_QUICK_ACTION = re.compile(r"/(label|close|timeline)(?: (.*?))?\s*", re.IGNORECASE)
# Issues::UpdateService: the parameters PUT needs at least one of (CE list, in GitLab's order).
ISSUE_UPDATE_ONE_OF = (
    "assignee_id",
    "assignee_ids",
    "confidential",
    "created_at",
    "description",
    "discussion_locked",
    "due_date",
    "labels",
    "add_labels",
    "remove_labels",
    "milestone_id",
    "state_event",
    "title",
    "issue_type",
)

PIPELINE_STATUSES = (
    "created",
    "waiting_for_resource",
    "preparing",
    "pending",
    "running",
    "success",
    "failed",
    "canceled",
    "skipped",
    "manual",
    "scheduled",
)
_FINISHED = ("success", "failed", "canceled", "skipped")

_REASONS = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _now() -> str:
    """A timestamp as GitLab renders it: ISO 8601, milliseconds, ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


# ---------------------------------------------------------------------------- state


@dataclass(frozen=True)
class RecordedCall:
    """One request the fake received, as a test wants to assert on it."""

    method: str
    path: str  # below /api/v4, as sent (URL-encoded segments kept), without the query
    query: dict[str, Any]
    body: Any
    headers: dict[str, str]
    token: str | None
    username: str | None
    status: int
    at: float
    injected: bool = False  # answered by fail_next/down rather than by the API

    @property
    def params(self) -> dict[str, Any]:
        """Query and body merged, as GitLab's Grape layer sees them."""
        merged = dict(self.query)
        if isinstance(self.body, dict):
            merged.update(self.body)
        return merged


@dataclass
class GitLabUser:
    id: int
    username: str
    name: str
    email: str
    public_email: str
    state: str  # active | blocked
    admin: bool
    namespace_id: int
    created_at: str
    bot: bool = False


@dataclass
class GitLabGroup:
    id: int  # also its namespace id
    path: str
    name: str
    full_path: str
    parent_id: int | None
    visibility: str
    description: str
    created_at: str
    members: dict[int, int] = field(default_factory=dict)  # user id -> access level


@dataclass
class InstanceFeature:
    """A Flipper feature: its gate values."""

    name: str
    boolean: bool = False
    actors: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    percentage_of_actors: float = 0
    percentage_of_time: float = 0

    @property
    def state(self) -> str:
        # Flipper::Feature#state
        if self.boolean or self.percentage_of_time == 100:
            return "on"
        if self.actors or self.groups or self.percentage_of_actors or self.percentage_of_time:
            return "conditional"
        return "off"

    def clear(self) -> None:
        self.boolean = False
        self.actors.clear()
        self.groups.clear()
        self.percentage_of_actors = 0
        self.percentage_of_time = 0


@dataclass
class FlagScope:
    id: int
    environment_scope: str


@dataclass
class FlagStrategy:
    id: int
    name: str | None
    parameters: Any
    scopes: list[FlagScope] = field(default_factory=list)
    user_list_id: int | None = None


@dataclass
class UserList:
    id: int
    iid: int
    project_id: int
    name: str
    user_xids: str
    created_at: str


@dataclass
class ProjectFlag:
    name: str
    description: str | None
    active: bool
    created_at: str
    updated_at: str
    iid: int
    strategies: list[FlagStrategy] = field(default_factory=list)
    version: str = "new_version_flag"


@dataclass
class Label:
    id: int
    name: str
    color: str
    description: str | None
    priority: int | None = None


@dataclass
class Note:
    id: int
    body: str
    author_id: int
    internal: bool
    created_at: str
    updated_at: str
    system: bool = False


@dataclass
class TimelineEvent:
    note: str
    occurred_at: str
    author_id: int


@dataclass
class Issue:
    id: int
    iid: int
    project_id: int
    title: str
    description: str | None
    state: str  # opened | closed
    labels: list[str]
    confidential: bool
    issue_type: str
    assignee_ids: list[int]
    author_id: int
    created_at: str
    updated_at: str
    closed_at: str | None = None
    closed_by_id: int | None = None
    discussion_locked: bool | None = None
    due_date: str | None = None
    notes: list[Note] = field(default_factory=list)
    timeline_events: list[TimelineEvent] = field(default_factory=list)
    # ResourceLabelEvent: (id, label name, "add" | "remove", created_at, user id).
    label_events: list[tuple[int, str, str, str, int]] = field(default_factory=list)


@dataclass
class Pipeline:
    id: int
    iid: int
    project_id: int
    ref: str
    sha: str
    status: str
    source: str
    user_id: int
    variables: list[JSONDict]
    created_at: str
    updated_at: str
    started_at: str | None = None
    finished_at: str | None = None


@dataclass
class FreezePeriod:
    id: int
    freeze_start: str
    freeze_end: str
    cron_timezone: str
    created_at: str
    updated_at: str


@dataclass
class GitLabProject:
    id: int
    name: str
    path: str
    full_path: str
    namespace_id: int
    namespace_kind: str  # group | user
    visibility: str
    description: str | None
    default_branch: str
    branches: list[str]
    created_at: str
    pipeline_variables_minimum_role: str = "developer"
    members: dict[int, int] = field(default_factory=dict)
    labels: dict[str, Label] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)
    flags: dict[str, ProjectFlag] = field(default_factory=dict)
    user_lists: dict[int, UserList] = field(default_factory=dict)
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    pipelines: dict[int, Pipeline] = field(default_factory=dict)
    freeze_periods: dict[int, FreezePeriod] = field(default_factory=dict)
    next_issue_iid: int = 1
    next_pipeline_iid: int = 1
    next_flag_iid: int = 1
    next_user_list_iid: int = 1


@dataclass
class _Failure:
    method: str | None
    pattern: str
    status: int
    remaining: int
    retry_after: int | None
    body: Any


@dataclass
class _Hold:
    method: str | None
    pattern: str
    seconds: float
    remaining: int | None  # None: every matching call


class _ApiError(Exception):
    """An answer other than success; ``body`` is JSON unless it is a ``str``."""

    def __init__(self, status: int, body: Any, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {body!r}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def _message(status: int, text: str) -> _ApiError:
    return _ApiError(status, {"message": text})


def _not_found(thing: str | None = None) -> _ApiError:
    # not_found!(thing): "404 Project Not Found"; ActiveRecord::RecordNotFound: "404 Not found"
    return _message(404, f"404 {thing} Not Found" if thing else "404 Not found")


def _bad_request(reason: str) -> _ApiError:
    return _message(400, f"400 Bad request - {reason}")


def _forbidden() -> _ApiError:
    return _message(403, "403 Forbidden")


def _unauthorized() -> _ApiError:
    return _message(401, "401 Unauthorized")


def _grape(*errors: str) -> _ApiError:
    """A Grape parameter validation failure: 400 with ``{"error": ...}``."""
    return _ApiError(400, {"error": ", ".join(errors)})


def _validation(errors: dict[str, list[str]]) -> _ApiError:
    return _ApiError(400, {"message": errors})


@dataclass
class _Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"


@dataclass
class _Ctx:
    request: web.Request
    method: str
    args: dict[str, str]
    params: JSONDict
    user: GitLabUser | None
    base: str  # scheme://host as the client addressed it
    path: str  # raw path below /api/v4

    @property
    def admin(self) -> bool:
        return self.user is not None and self.user.admin


# ---------------------------------------------------------------------------- coercion

_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


def _has(params: Mapping[str, Any], key: str) -> bool:
    return key in params


def _str(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise _grape(f"{key} is invalid")


def _bool(params: Mapping[str, Any], key: str) -> bool | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _grape(f"{key} is invalid")


def _int(params: Mapping[str, Any], key: str) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise _grape(f"{key} is invalid")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    raise _grape(f"{key} is invalid")


def _csv(params: Mapping[str, Any], key: str) -> list[str] | None:
    """Grape's CommaSeparatedToArray: a string is split on commas, a list is flattened."""
    value = params.get(key)
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        out += [part.strip() for part in str(item).split(",")]
    return [part for part in out if part]


def _int_list(params: Mapping[str, Any], key: str) -> list[int] | None:
    values = _csv(params, key)
    if values is None:
        return None
    try:
        return [int(v) for v in values]
    except ValueError as exc:
        raise _grape(f"{key} is invalid") from exc


def _require(params: Mapping[str, Any], *keys: str) -> None:
    missing = [f"{key} is missing" for key in keys if params.get(key) is None]
    if missing:
        raise _grape(*missing)


def _percentage_json(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


# ---------------------------------------------------------------------------- cron

_CRON_FIELDS = (  # (low, high, names)
    (0, 59, ()),
    (0, 23, ()),
    (1, 31, ()),
    (1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    (0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def _cron_value(token: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    token = token.lower()
    if token in names:
        return True
    return token.isdigit() and low <= int(token) <= high


def _cron_field_valid(text: str, low: int, high: int, names: tuple[str, ...], pos: int) -> bool:
    for part in text.split(","):
        if not part:
            return False
        base, _, step = part.partition("/")
        if step and not (step.isdigit() and int(step) > 0):
            return False
        if pos == 4 and "#" in base:  # day of week "mon#2"
            day, _, nth = base.partition("#")
            if not (_cron_value(day, low, high, names) and nth in {"1", "2", "3", "4", "5"}):
                return False
            continue
        if base == "*" or (pos == 2 and base.upper() == "L"):
            continue
        start, dash, end = base.partition("-")
        if not _cron_value(start, low, high, names):
            return False
        if dash and not _cron_value(end, low, high, names):
            return False
    return True


def cron_valid(expression: str) -> bool:
    """Roughly Fugit::Cron.parse as Gitlab::Ci::CronParser uses it: 5 fields (6 with seconds)."""
    text = expression.strip()
    if text.lower() in _CRON_MACROS:
        return True
    fields = text.split()
    if len(fields) == 6:  # leading seconds
        if not _cron_field_valid(fields[0], 0, 59, (), 0):
            return False
        fields = fields[1:]
    if len(fields) != 5:
        return False
    return all(
        _cron_field_valid(f, low, high, names, pos)
        for pos, (f, (low, high, names)) in enumerate(zip(fields, _CRON_FIELDS, strict=True))
    )


def timezone_valid(name: str) -> bool:
    if not name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------- the server


_Handler = Callable[["FakeGitLab", _Ctx], _Answer]
_ROUTES: list[tuple[str, tuple[str, ...], _Handler]] = []


def _route(method: str, pattern: str) -> Callable[[_Handler], _Handler]:
    def register(handler: _Handler) -> _Handler:
        _ROUTES.append((method, tuple(pattern.strip("/").split("/")), handler))
        return handler

    return register


class FakeGitLab(LoopbackServer):
    """GitLab's REST API v4 on ``127.0.0.1``: state a test seeds, calls it records.

    Point python-gitlab at :attr:`url`. Tokens are per user (:meth:`add_user`); roles are
    per project or group (:meth:`add_member`, :meth:`set_role`), inherited down the group
    tree as in GitLab.
    """

    def __init__(self, *, external_url: str | None = None, gitlab_version: str = "17.11.0") -> None:
        self._external_url = external_url
        self.gitlab_version = gitlab_version
        # Names GitLab EE refuses as instance flags (licensed feature names) unless force=true.
        self.licensed_feature_names: set[str] = set()
        self.feature_flags_limit = PROJECT_FEATURE_FLAGS_LIMIT

        self._users: dict[int, GitLabUser] = {}
        self._tokens: dict[str, int] = {}
        self._groups: dict[int, GitLabGroup] = {}
        self._projects: dict[int, GitLabProject] = {}
        self._features: dict[str, InstanceFeature] = {}
        self._definitions: dict[str, JSONDict] = {}
        self._seq: dict[str, int] = {}

        self._calls: list[RecordedCall] = []
        self._failures: list[_Failure] = []
        self._delays: list[_Hold] = []
        self._hangs: list[_Hold] = []
        self._down: str | None = None
        # Exceptions a handler raised (answered as GitLab's generic 500): a fake bug, not
        # GitLab behaviour, so tests can assert this stays empty.
        self.internal_errors: list[BaseException] = []
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        # When label events happen, for tests that move a bot's clock (None: wall time).
        self.clock: Callable[[], datetime] | None = None

        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            return
        self._closing = asyncio.Event()
        self._changed = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port or 0)
        await site.start()
        self._runner, self._site = runner, site
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is None:
            return
        runner, self._runner, self._site = self._runner, None, None
        self._closing.set()
        await runner.cleanup()

    @property
    def url(self) -> str:
        """What to pass as python-gitlab's ``url`` (it appends ``/api/v4``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def external_url(self) -> str:
        """The host in ``web_url`` fields (GitLab's ``external_url``); the fake by default."""
        return self._external_url or self.url

    async def down(self, mode: str = "refuse") -> None:
        """Take GitLab away: ``refuse`` closes the port (connection refused, open keep-alive
        connections dropped); ``503`` keeps it open and answers every request 503."""
        if mode not in ("refuse", "503"):
            raise ValueError("mode is 'refuse' or '503'")
        self._down = mode
        if mode == "refuse" and self._runner is not None and self._site is not None:
            site, self._site = self._site, None
            await site.stop()
            server = self._runner.server
            if server is not None:
                for connection in server.connections:
                    connection.force_close()

    async def up(self) -> None:
        """Bring GitLab back on the same port."""
        self._down = None
        if self._runner is not None and self._site is None:
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            await site.start()
            self._site = site

    # ------------------------------------------------------------------ seeding

    def _next(self, kind: str) -> int:
        self._seq[kind] = self._seq.get(kind, 0) + 1
        return self._seq[kind]

    def add_user(
        self,
        username: str,
        *,
        name: str | None = None,
        email: str | None = None,
        public_email: str = "",
        token: str | None = None,
        admin: bool = False,
        state: str = "active",
        bot: bool = False,
    ) -> GitLabUser:
        """A user with an optional personal access token (sent as PRIVATE-TOKEN or Bearer)."""
        if state not in ("active", "blocked"):
            raise ValueError("state is 'active' or 'blocked'")
        if any(u.username.lower() == username.lower() for u in self._users.values()):
            raise ValueError(f"username {username!r} is taken")
        user = GitLabUser(
            id=self._next("user"),
            username=username,
            name=name or username.replace(".", " ").title(),
            email=email or f"{username}@example.com",
            public_email=public_email,
            state=state,
            admin=admin,
            namespace_id=self._next("namespace"),
            created_at=_now(),
            bot=bot,
        )
        self._users[user.id] = user
        if token is not None:
            self.add_token(user, token)
        return user

    def add_token(self, user: GitLabUser | int, token: str) -> None:
        """Another personal access token for a user."""
        self._tokens[token] = self._user_obj(user).id

    def revoke_token(self, token: str) -> None:
        self._tokens.pop(token, None)

    def add_group(
        self,
        path: str,
        *,
        name: str | None = None,
        parent: GitLabGroup | int | str | None = None,
        visibility: str = "private",
        description: str = "",
    ) -> GitLabGroup:
        """A group, optionally a subgroup of ``parent`` (object, id or full path)."""
        parent_group = self._group_obj(parent) if parent is not None else None
        full_path = f"{parent_group.full_path}/{path}" if parent_group else path
        if self._find_group(full_path) or self._find_project_by_path(full_path):
            raise ValueError(f"{full_path!r} is taken")
        group = GitLabGroup(
            id=self._next("namespace"),
            path=path,
            name=name or path,
            full_path=full_path,
            parent_id=parent_group.id if parent_group else None,
            visibility=visibility,
            description=description,
            created_at=_now(),
        )
        self._groups[group.id] = group
        return group

    def add_project(
        self,
        full_path: str,
        *,
        name: str | None = None,
        visibility: str = "private",
        default_branch: str = "main",
        branches: Iterable[str] = (),
        description: str | None = None,
        pipeline_variables_minimum_role: str = "developer",
    ) -> GitLabProject:
        """A project at ``namespace/path``; the namespace is a group's full path or a username."""
        namespace_path, _, path = full_path.rpartition("/")
        if not namespace_path:
            raise ValueError("full_path is 'namespace/project'")
        group = self._find_group(namespace_path)
        owner = self._find_user(namespace_path)
        if group is not None:
            namespace_id, kind = group.id, "group"
        elif owner is not None:
            namespace_id, kind = owner.namespace_id, "user"
        else:
            raise ValueError(f"no group or user {namespace_path!r}; add it first")
        if self._find_project_by_path(full_path):
            raise ValueError(f"{full_path!r} is taken")
        project = GitLabProject(
            id=self._next("project"),
            name=name or path,
            path=path,
            full_path=full_path,
            namespace_id=namespace_id,
            namespace_kind=kind,
            visibility=visibility,
            description=description,
            default_branch=default_branch,
            branches=list(dict.fromkeys([default_branch, *branches])),
            created_at=_now(),
            pipeline_variables_minimum_role=pipeline_variables_minimum_role,
        )
        if owner is not None and group is None:
            project.members[owner.id] = OWNER
        self._projects[project.id] = project
        return project

    def add_member(
        self,
        target: GitLabGroup | GitLabProject,
        user: GitLabUser | int | str,
        role: str | int = "developer",
    ) -> None:
        """Make ``user`` a direct member of a group or project with ``role``."""
        level = ROLES[role] if isinstance(role, str) else role
        target.members[self._user_obj(user).id] = level

    def set_role(
        self,
        target: GitLabGroup | GitLabProject,
        user: GitLabUser | int | str,
        role: str | int | None,
    ) -> None:
        """Change (or with ``None`` remove) a direct membership."""
        uid = self._user_obj(user).id
        if role is None:
            target.members.pop(uid, None)
        else:
            self.add_member(target, uid, role)

    def block_user(self, user: GitLabUser | int | str, blocked: bool = True) -> None:
        self._user_obj(user).state = "blocked" if blocked else "active"

    def add_label(
        self,
        project: GitLabProject | int | str,
        name: str,
        *,
        color: str = LABEL_DEFAULT_COLOR,
        description: str | None = None,
    ) -> Label:
        proj = self.project(project)
        label = Label(self._next("label"), name, color, description)
        proj.labels[name] = label
        return label

    def add_issue(
        self,
        project: GitLabProject | int | str,
        title: str,
        *,
        author: GitLabUser | int | str,
        labels: list[str] | None = None,
        description: str | None = None,
    ) -> Issue:
        """An issue someone opened (a flag's rollout issue, a deviation)."""
        proj = self.project(project)
        now = _now()
        issue = Issue(
            id=self._next("issue"),
            iid=proj.next_issue_iid,
            project_id=proj.id,
            title=title,
            description=description,
            state="opened",
            labels=self._ensure_labels(proj, labels or []),
            confidential=False,
            issue_type="issue",
            assignee_ids=[],
            author_id=self._user_obj(author).id,
            created_at=now,
            updated_at=now,
        )
        proj.next_issue_iid += 1
        proj.issues[issue.iid] = issue
        return issue

    def add_file(
        self,
        project: GitLabProject | int | str,
        path: str,
        content: str | bytes,
        *,
        ref: str | None = None,
    ) -> None:
        """A file in the repository at ``ref`` (default branch by default), e.g.
        ``.gitlab/issue_templates/incident.md``."""
        proj = self.project(project)
        ref = ref or proj.default_branch
        if ref not in proj.branches:
            proj.branches.append(ref)
        data = content.encode() if isinstance(content, str) else content
        proj.files[(ref, path)] = data

    def add_user_list(
        self, project: GitLabProject | int | str, name: str, user_xids: str = ""
    ) -> UserList:
        """A feature flag user list, for ``gitlabUserList`` strategies."""
        proj = self.project(project)
        ul = UserList(
            id=self._next("user_list"),
            iid=proj.next_user_list_iid,
            project_id=proj.id,
            name=name,
            user_xids=user_xids,
            created_at=_now(),
        )
        proj.next_user_list_iid += 1
        proj.user_lists[ul.id] = ul
        return ul

    def add_feature_definition(
        self, name: str, *, type: str = "development", default_enabled: bool = False, **extra: Any
    ) -> None:
        """A YAML feature flag definition, shown as ``definition`` in feature answers."""
        self._definitions[name] = {
            "name": name,
            "feature_issue_url": extra.get("feature_issue_url"),
            "introduced_by_url": extra.get("introduced_by_url"),
            "rollout_issue_url": extra.get("rollout_issue_url"),
            "milestone": extra.get("milestone"),
            "log_state_changes": extra.get("log_state_changes"),
            "type": type,
            "group": extra.get("group"),
            "default_enabled": default_enabled,
        }

    def set_feature(self, name: str, **gates: Any) -> InstanceFeature:
        """Seed an instance feature directly (``boolean``, ``actors``, ``groups``, percentages)."""
        feature = self._features.setdefault(name, InstanceFeature(name))
        for key, value in gates.items():
            if not hasattr(feature, key):
                raise ValueError(f"no gate {key!r}")
            setattr(feature, key, list(value) if isinstance(value, list | tuple) else value)
        return feature

    def add_freeze_period(
        self,
        project: GitLabProject | int | str,
        freeze_start: str,
        freeze_end: str,
        cron_timezone: str = "UTC",
    ) -> FreezePeriod:
        """A freeze period, as a maintainer would set it (the crons are not checked here)."""
        now = _now()
        fp = FreezePeriod(
            id=self._next("freeze_period"),
            freeze_start=freeze_start,
            freeze_end=freeze_end,
            cron_timezone=cron_timezone,
            created_at=now,
            updated_at=now,
        )
        self.project(project).freeze_periods[fp.id] = fp
        return fp

    def set_pipeline_status(
        self, project: GitLabProject | int | str, pipeline_id: int, status: str
    ) -> Pipeline:
        """Move a pipeline along (``running``, ``success``, ``failed``, ...)."""
        if status not in PIPELINE_STATUSES:
            raise ValueError(f"status is one of {PIPELINE_STATUSES}")
        pipeline = self.project(project).pipelines[pipeline_id]
        now = _now()
        pipeline.status = status
        pipeline.updated_at = now
        if status in ("running", *_FINISHED) and pipeline.started_at is None:
            pipeline.started_at = now
        pipeline.finished_at = now if status in _FINISHED else None
        return pipeline

    # ------------------------------------------------------------------ fault injection

    @staticmethod
    def _split_pattern(pattern: str) -> tuple[str | None, str]:
        method, sep, path = pattern.partition(" ")
        if sep and method.isupper():
            return method, path.strip()
        return None, pattern.strip()

    def fail_next(
        self,
        pattern: str,
        status: int,
        *,
        times: int = 1,
        retry_after: int | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` before any other check.

        ``pattern`` is ``"METHOD /path-glob"`` or ``"/path-glob"`` below ``/api/v4``, matched
        with fnmatch against the path as sent (``*`` also crosses ``/``), e.g.
        ``"POST /projects/*/issues"``. The body is GitLab's for that status
        (``{"message": "409 Conflict"}``; 429 is Rack::Attack's ``Retry later``; 502/503/504
        are HTML pages as a proxy sends them) unless ``body`` (a dict or text) replaces it.
        ``retry_after`` sets ``Retry-After`` (whole seconds, as python-gitlab parses it).
        """
        method, path = self._split_pattern(pattern)
        self._failures.append(_Failure(method, path, status, times, retry_after, body))

    def delay(self, pattern: str, seconds: float) -> None:
        """Hold matching requests ``seconds`` before handling them (0 removes the delay)."""
        method, path = self._split_pattern(pattern)
        self._delays = [d for d in self._delays if (d.method, d.pattern) != (method, path)]
        if seconds > 0:
            self._delays.append(_Hold(method, path, seconds, None))

    def hang_after_apply(self, pattern: str, seconds: float, *, times: int | None = 1) -> None:
        """Apply matching requests, then hold the answer ``seconds``: a client with a shorter
        timeout sees a timeout although the change happened. ``times=None``: every match."""
        method, path = self._split_pattern(pattern)
        self._hangs.append(_Hold(method, path, seconds, times))

    def clear_faults(self) -> None:
        self._failures.clear()
        self._delays.clear()
        self._hangs.clear()

    @staticmethod
    def _matches(method: str | None, pattern: str, req_method: str, path: str) -> bool:
        if method is not None and method != req_method:
            return False
        return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(unquote(path), pattern)

    def _take_failure(self, method: str, path: str) -> _Failure | None:
        for failure in self._failures:
            if self._matches(failure.method, failure.pattern, method, path):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    def _find_hold(self, holds: list[_Hold], method: str, path: str) -> float:
        for hold in holds:
            if self._matches(hold.method, hold.pattern, method, path):
                if hold.remaining is not None:
                    hold.remaining -= 1
                    if hold.remaining <= 0:
                        holds.remove(hold)
                return hold.seconds
        return 0.0

    async def _sleep(self, seconds: float) -> None:
        # aiohttp keeps running a handler after its client gave up, and cleanup waits for
        # it: waking on stop() keeps a test's teardown from paying the whole hold.
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), seconds)

    # ------------------------------------------------------------------ introspection

    def calls(self, pattern: str | None = None) -> list[RecordedCall]:
        """Recorded calls, optionally only those matching a ``fail_next``-style pattern."""
        if pattern is None:
            return list(self._calls)
        method, path = self._split_pattern(pattern)
        return [c for c in self._calls if self._matches(method, path, c.method, c.path)]

    def reset_calls(self) -> None:
        self._calls.clear()

    async def wait_for(
        self,
        pattern: str,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[RecordedCall]:
        """Wait until ``count`` calls matched ``pattern``; return them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = self.calls(pattern)
            if len(found) >= count:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = [f"{c.method} {c.path}" for c in self._calls]
                raise TimeoutError(f"{pattern}: {len(found)} call(s), wanted {count}; saw {seen}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def _record(self, call: RecordedCall) -> None:
        self._calls.append(call)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    @property
    def features(self) -> dict[str, InstanceFeature]:
        """Persisted instance features by name (live objects)."""
        return self._features

    def feature(self, name: str) -> InstanceFeature | None:
        return self._features.get(name)

    def feature_json(self, name: str) -> JSONDict:
        """The feature as ``GET /features`` renders it."""
        return self._feature_entity(self._features.get(name) or InstanceFeature(name))

    def user(self, ref: int | str) -> GitLabUser:
        return self._user_obj(ref)

    def group(self, ref: int | str) -> GitLabGroup:
        return self._group_obj(ref)

    def project(self, ref: GitLabProject | int | str) -> GitLabProject:
        if isinstance(ref, GitLabProject):
            return ref
        found = self._projects.get(ref) if isinstance(ref, int) else self._find_project_by_path(ref)
        if found is None:
            raise KeyError(f"no project {ref!r}")
        return found

    def project_flags(self, project: GitLabProject | int | str) -> dict[str, ProjectFlag]:
        return self.project(project).flags

    def issues(self, project: GitLabProject | int | str) -> list[Issue]:
        return list(self.project(project).issues.values())

    def issue(self, project: GitLabProject | int | str, iid: int) -> Issue:
        return self.project(project).issues[iid]

    def pipelines(self, project: GitLabProject | int | str) -> list[Pipeline]:
        return list(self.project(project).pipelines.values())

    def freeze_periods(self, project: GitLabProject | int | str) -> list[FreezePeriod]:
        return list(self.project(project).freeze_periods.values())

    def labels(self, project: GitLabProject | int | str) -> dict[str, Label]:
        return self.project(project).labels

    # ------------------------------------------------------------------ lookups

    def _user_obj(self, ref: GitLabUser | int | str) -> GitLabUser:
        if isinstance(ref, GitLabUser):
            return ref
        found = self._users.get(ref) if isinstance(ref, int) else self._find_user(ref)
        if found is None:
            raise KeyError(f"no user {ref!r}")
        return found

    def _group_obj(self, ref: GitLabGroup | int | str) -> GitLabGroup:
        if isinstance(ref, GitLabGroup):
            return ref
        found = self._groups.get(ref) if isinstance(ref, int) else self._find_group(ref)
        if found is None:
            raise KeyError(f"no group {ref!r}")
        return found

    def _find_user(self, username: str) -> GitLabUser | None:
        name = username.lower()
        return next((u for u in self._users.values() if u.username.lower() == name), None)

    def _find_group(self, full_path: str) -> GitLabGroup | None:
        path = full_path.lower()
        return next((g for g in self._groups.values() if g.full_path.lower() == path), None)

    def _find_project_by_path(self, full_path: str) -> GitLabProject | None:
        path = full_path.lower()
        return next((p for p in self._projects.values() if p.full_path.lower() == path), None)

    def _ancestors(self, group: GitLabGroup | None) -> list[GitLabGroup]:
        chain: list[GitLabGroup] = []
        while group is not None:
            chain.append(group)
            group = self._groups.get(group.parent_id) if group.parent_id else None
        return chain

    def _group_level(self, user: GitLabUser | None, group: GitLabGroup) -> int:
        if user is None:
            return 0
        if user.admin:
            return _ADMIN_LEVEL
        return max((g.members.get(user.id, 0) for g in self._ancestors(group)), default=0)

    def _project_level(self, user: GitLabUser | None, project: GitLabProject) -> int:
        """The user's effective role: direct membership or inherited from the group chain."""
        if user is None:
            return 0
        if user.admin:
            return _ADMIN_LEVEL
        level = project.members.get(user.id, 0)
        if project.namespace_kind == "group":
            level = max(level, self._group_level(user, self._groups[project.namespace_id]))
        return level

    def _can_read_project(self, user: GitLabUser | None, project: GitLabProject) -> bool:
        if project.visibility == "public":
            return True
        if user is None:
            return False
        return project.visibility == "internal" or self._project_level(user, project) >= GUEST

    def _can_read_group(self, user: GitLabUser | None, group: GitLabGroup) -> bool:
        if group.visibility == "public":
            return True
        if user is None:
            return False
        if group.visibility == "internal" or self._group_level(user, group) >= GUEST:
            return True
        # Members of a subgroup or of a project inside can see the group too.
        return any(
            group in self._ancestors(self._groups[p.namespace_id])
            and self._project_level(user, p) >= GUEST
            for p in self._projects.values()
            if p.namespace_kind == "group"
        ) or any(
            group in self._ancestors(g) and g.members.get(user.id, 0) >= GUEST
            for g in self._groups.values()
        )

    def _user_project(self, ctx: _Ctx) -> GitLabProject:
        """``user_project`` in GitLab: by id or URL-encoded path; 404 when not visible."""
        ref = ctx.args["id"]
        project = self._projects.get(int(ref)) if ref.isdigit() else self._find_project_by_path(ref)
        if project is None or not self._can_read_project(ctx.user, project):
            raise _not_found("Project")
        return project

    def _user_group(self, ctx: _Ctx) -> GitLabGroup:
        ref = ctx.args["id"]
        group = self._groups.get(int(ref)) if ref.isdigit() else self._find_group(ref)
        if group is None or not self._can_read_group(ctx.user, group):
            raise _not_found("Group")
        return group

    def _authorize(self, ctx: _Ctx, project: GitLabProject, level: int) -> None:
        if self._project_level(ctx.user, project) < level:
            raise _forbidden()

    @staticmethod
    def _authenticate(ctx: _Ctx) -> GitLabUser:
        if ctx.user is None:
            raise _unauthorized()
        return ctx.user

    def _namespace_path(self, project: GitLabProject) -> str:
        return project.full_path.rpartition("/")[0]

    # ------------------------------------------------------------------ HTTP plumbing

    async def _read_body(self, request: web.Request) -> tuple[Any, JSONDict]:
        """The body as recorded, and its fields to merge into the params."""
        if not request.can_read_body:
            return None, {}
        if request.content_type == "application/json":
            raw = await request.read()
            if not raw:
                return None, {}
            try:
                decoded = json.loads(raw)
            except ValueError as exc:
                # Grape: malformed JSON bodies are a 400 with its own message.
                raise _grape(
                    "The provided content-type 'application/json' is not supported."
                ) from exc
            return decoded, decoded if isinstance(decoded, dict) else {}
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            fields: JSONDict = {}
            for key, value in form.items():
                _put_param(fields, key, value if isinstance(value, str) else str(value))
            return fields, fields
        raw = await request.read()
        return raw.decode(errors="replace"), {}

    def _token(self, request: web.Request, query: Mapping[str, Any]) -> str | None:
        token = request.headers.get("PRIVATE-TOKEN")
        if token:
            return token
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        for key in ("private_token", "access_token"):
            given = query.get(key)
            if isinstance(given, str) and given:
                return given
        return None

    def _failure_answer(self, failure: _Failure) -> _Answer:
        headers: dict[str, str] = {}
        if failure.retry_after is not None:
            headers["Retry-After"] = str(failure.retry_after)
        status = failure.status
        if failure.body is not None:
            if isinstance(failure.body, str):
                return _Answer(status, None, headers, failure.body.encode(), "text/plain")
            return _Answer(status, failure.body, headers)
        if status == 429:
            reset = int(time.time()) + (failure.retry_after or 60)
            headers |= {
                "RateLimit-Name": "throttle_authenticated_api",
                "RateLimit-Limit": "2000",
                "RateLimit-Observed": "2001",
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(reset),
            }
            return _Answer(429, None, headers, b"Retry later\n", "text/plain")
        if status in (502, 503, 504):
            page = f"<html><body><h1>{status}</h1>GitLab is not responding.</body></html>"
            return _Answer(status, None, headers, page.encode(), "text/html")
        return _Answer(status, {"message": f"{status} {_REASONS.get(status, 'Error')}"}, headers)

    def _render(self, answer: _Answer, request_id: str) -> web.Response:
        headers = {
            "X-Request-Id": request_id,
            "X-Gitlab-Meta": json.dumps({"correlation_id": request_id, "version": "1"}),
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "SAMEORIGIN",
            "Cache-Control": "max-age=0, private, must-revalidate",
            **answer.headers,
        }
        if answer.raw is not None:
            return web.Response(
                status=answer.status,
                body=answer.raw,
                content_type=answer.content_type,
                headers=headers,
            )
        if answer.status == 204:
            return web.Response(status=204, headers=headers)
        return web.Response(
            status=answer.status,
            text=json.dumps(answer.body),
            content_type="application/json",
            headers=headers,
        )

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        request_id = uuid.uuid4().hex[:26].upper()
        raw_path, _, raw_query = request.raw_path.partition("?")
        # Rails' router squeezes repeated slashes; python-gitlab's FeatureManager sends
        # "/features//<name>" and real GitLab answers it.
        raw_path = re.sub(r"/{2,}", "/", raw_path)
        if self._down == "refuse":
            # A request on a connection opened before down(): drop it as a dead host would.
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)
        if not raw_path.startswith("/api/v4/"):
            return web.Response(status=404, text="<html><body>Not Found</body></html>")
        path = raw_path[len("/api/v4") :]
        method = request.method.upper()
        query: JSONDict = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            _put_param(query, key, value)
        headers = {k: v for k, v in request.headers.items()}
        token = self._token(request, query)
        user_id = self._tokens.get(token) if token else None
        username = self._users[user_id].username if user_id else None

        def record(status: int, body: Any, injected: bool = False) -> None:
            self._record(
                RecordedCall(
                    method, path, query, body, headers, token, username, status, at, injected
                )
            )

        if self._down == "503":
            record(503, None, injected=True)
            outage = _Failure(None, "", 503, 1, None, None)
            return self._render(self._failure_answer(outage), request_id)
        failure = self._take_failure(method, path)
        if failure is not None:
            with contextlib.suppress(_ApiError):
                await self._read_body(request)
            record(failure.status, None, injected=True)
            return self._render(self._failure_answer(failure), request_id)

        await self._sleep(self._find_hold(self._delays, method, path))
        body: Any = None
        try:
            body, fields = await self._read_body(request)
            answer = self._handle(request, method, path, query, fields, token)
        except _ApiError as err:
            answer = _Answer(err.status, err.body, err.headers)
            if isinstance(err.body, str):
                answer = _Answer(err.status, None, err.headers, err.body.encode(), "text/plain")
        except Exception as exc:  # GitLab's rescue_from :all
            self.internal_errors.append(exc)
            answer = _Answer(500, {"message": "500 Internal Server Error"})
        record(answer.status, body)
        await self._sleep(self._find_hold(self._hangs, method, path))
        return self._render(answer, request_id)

    def _handle(
        self,
        request: web.Request,
        method: str,
        path: str,
        query: JSONDict,
        fields: JSONDict,
        token: str | None,
    ) -> _Answer:
        user: GitLabUser | None = None
        if token is not None:
            uid = self._tokens.get(token)
            if uid is None or self._users[uid].state != "active":
                raise _unauthorized()
            user = self._users[uid]
        segments = [unquote(s) for s in path.strip("/").split("/")]
        matched_path = False
        for route_method, pattern, handler in _ROUTES:
            if len(pattern) != len(segments):
                continue
            args: dict[str, str] = {}
            for want, got in zip(pattern, segments, strict=True):
                if want.startswith(":"):
                    if not got:
                        break
                    args[want[1:]] = got
                elif want != got:
                    break
            else:
                matched_path = True
                if route_method != method:
                    continue
                params = {**query, **fields}
                base = f"{request.scheme}://{request.host}"
                ctx = _Ctx(request, method, args, params, user, base, path)
                return handler(self, ctx)
        if matched_path:
            raise _ApiError(405, {"error": "405 Not Allowed"})
        raise _ApiError(404, {"error": "404 Not Found"})

    def _paginate(self, ctx: _Ctx, items: list[JSONDict]) -> _Answer:
        """GitLab's offset pagination: a page of ``items`` and the headers describing it."""
        page = _int(ctx.params, "page") or 1
        per_page = _int(ctx.params, "per_page") or DEFAULT_PER_PAGE
        page = max(page, 1)
        per_page = min(max(per_page, 1), MAX_PER_PAGE)
        total = len(items)
        total_pages = max(1, -(-total // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Total": str(total),
            "X-Total-Pages": str(total_pages),
            "X-Next-Page": str(page + 1) if page < total_pages else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
        }
        # GitLab rebuilds the links from the request's own query parameters.
        skip = ("page", "per_page", "private_token", "access_token")
        keep = {k: v for k, v in ctx.params.items() if k in ctx.request.query and k not in skip}

        def link(target: int) -> str:
            query = {**keep, "page": target, "per_page": per_page}
            pairs: list[tuple[str, Any]] = []
            for key in sorted(query):
                value = query[key]
                if isinstance(value, list):
                    pairs += [(key, v) for v in value]
                else:
                    pairs.append((key, value))
            return f"{ctx.base}/api/v4{ctx.path}?{urlencode(pairs)}"

        links = []
        if page > 1:
            links.append(f'<{link(page - 1)}>; rel="prev"')
        if page < total_pages:
            links.append(f'<{link(page + 1)}>; rel="next"')
        links.append(f'<{link(1)}>; rel="first"')
        links.append(f'<{link(total_pages)}>; rel="last"')
        headers["Link"] = ", ".join(links)
        return _Answer(200, chunk, headers)

    # ------------------------------------------------------------------ entities

    def _web(self, *parts: str) -> str:
        return "/".join([self.external_url.rstrip("/"), *parts])

    def _user_basic(self, user: GitLabUser) -> JSONDict:
        digest = hashlib.md5(user.email.lower().encode(), usedforsecurity=False).hexdigest()
        return {
            "id": user.id,
            "username": user.username,
            "public_email": user.public_email or None,
            "name": user.name,
            "state": user.state,
            "locked": False,
            "avatar_url": f"https://www.gravatar.com/avatar/{digest}?s=80&d=identicon",
            "web_url": self._web(user.username),
        }

    def _user_entity(self, user: GitLabUser, viewer: GitLabUser | None) -> JSONDict:
        """``Entities::User`` for others; ``UserDetailsWithAdmin`` for administrators."""
        entity = self._user_basic(user) | {
            "created_at": user.created_at,
            "bio": "",
            "location": "",
            "skype": "",
            "linkedin": "",
            "twitter": "",
            "discord": "",
            "website_url": "",
            "organization": "",
            "job_title": "",
            "pronouns": None,
            "bot": user.bot,
            "work_information": None,
            "followers": 0,
            "following": 0,
            "local_time": None,
        }
        if viewer is not None and (viewer.admin or viewer.id == user.id):
            entity |= {
                "email": user.email,
                "commit_email": user.email,
                "is_admin": user.admin,
                "two_factor_enabled": False,
                "external": False,
                "private_profile": False,
                "last_sign_in_at": None,
                "confirmed_at": user.created_at,
                "last_activity_on": None,
            }
        return entity

    def _feature_entity(self, feature: InstanceFeature) -> JSONDict:
        gates: list[JSONDict] = [{"key": "boolean", "value": feature.boolean}]
        if feature.actors:
            gates.append({"key": "actors", "value": list(feature.actors)})
        if feature.percentage_of_actors:
            gates.append(
                {
                    "key": "percentage_of_actors",
                    "value": _percentage_json(feature.percentage_of_actors),
                }
            )
        if feature.percentage_of_time:
            gates.append(
                {"key": "percentage_of_time", "value": _percentage_json(feature.percentage_of_time)}
            )
        if feature.groups:
            gates.append({"key": "groups", "value": list(feature.groups)})
        return {
            "name": feature.name,
            "state": feature.state,
            "gates": gates,
            "definition": copy.deepcopy(self._definitions.get(feature.name)),
        }

    def _flag_entity(self, project: GitLabProject, flag: ProjectFlag) -> JSONDict:
        strategies = []
        for s in flag.strategies:
            user_list = project.user_lists.get(s.user_list_id) if s.user_list_id else None
            strategies.append(
                {
                    "id": s.id,
                    "name": s.name,
                    "parameters": copy.deepcopy(s.parameters),
                    "scopes": [
                        {"id": sc.id, "environment_scope": sc.environment_scope} for sc in s.scopes
                    ],
                    "user_list": (
                        {
                            "id": user_list.id,
                            "iid": user_list.iid,
                            "name": user_list.name,
                            "user_xids": user_list.user_xids,
                        }
                        if user_list
                        else None
                    ),
                }
            )
        return {
            "name": flag.name,
            "description": flag.description,
            "active": flag.active,
            "version": flag.version,
            "created_at": flag.created_at,
            "updated_at": flag.updated_at,
            "scopes": [],
            "strategies": strategies,
        }

    def _issue_entity(self, project: GitLabProject, issue: Issue) -> JSONDict:
        assignees = [self._user_basic(self._users[uid]) for uid in issue.assignee_ids]
        closed_by = self._users.get(issue.closed_by_id) if issue.closed_by_id else None
        kind = "incident/" if issue.issue_type == "incident" else ""
        web_url = self._web(project.full_path, "-", "issues", f"{kind}{issue.iid}")
        api = f"{self.url}/api/v4/projects/{project.id}"
        return {
            "id": issue.id,
            "iid": issue.iid,
            "project_id": project.id,
            "title": issue.title,
            "description": issue.description,
            "state": issue.state,
            "created_at": issue.created_at,
            "updated_at": issue.updated_at,
            "closed_at": issue.closed_at,
            "closed_by": self._user_basic(closed_by) if closed_by else None,
            "labels": sorted(issue.labels),
            "milestone": None,
            "assignees": assignees,
            "author": self._user_basic(self._users[issue.author_id]),
            "type": issue.issue_type.upper(),
            "assignee": assignees[0] if assignees else None,
            "user_notes_count": sum(1 for n in issue.notes if not n.system),
            "merge_requests_count": 0,
            "upvotes": 0,
            "downvotes": 0,
            "due_date": issue.due_date,
            "confidential": issue.confidential,
            "discussion_locked": issue.discussion_locked,
            "issue_type": issue.issue_type,
            "web_url": web_url,
            "time_stats": {
                "time_estimate": 0,
                "total_time_spent": 0,
                "human_time_estimate": None,
                "human_total_time_spent": None,
            },
            "task_completion_status": {"count": 0, "completed_count": 0},
            "blocking_issues_count": 0,
            "has_tasks": False,
            "_links": {
                "self": f"{api}/issues/{issue.iid}",
                "notes": f"{api}/issues/{issue.iid}/notes",
                "award_emoji": f"{api}/issues/{issue.iid}/award_emoji",
                "project": api,
                "closed_as_duplicate_of": None,
            },
            "references": {
                "short": f"#{issue.iid}",
                "relative": f"#{issue.iid}",
                "full": f"{project.full_path}#{issue.iid}",
            },
            "severity": "UNKNOWN",
            "moved_to_id": None,
            "imported": False,
            "imported_from": "none",
            "service_desk_reply_to": None,
        }

    def _note_entity(self, project: GitLabProject, issue: Issue, note: Note) -> JSONDict:
        return {
            "id": note.id,
            "type": None,
            "body": note.body,
            "attachment": None,
            "author": self._user_basic(self._users[note.author_id]),
            "created_at": note.created_at,
            "updated_at": note.updated_at,
            "system": note.system,
            "noteable_id": issue.id,
            "noteable_type": "Issue",
            "project_id": project.id,
            "resolvable": False,
            "confidential": note.internal,
            "internal": note.internal,
            "imported": False,
            "imported_from": "none",
            "noteable_iid": issue.iid,
            "commands_changes": {},
        }

    def _label_entity(self, project: GitLabProject, label: Label) -> JSONDict:
        opened = sum(
            1 for i in project.issues.values() if label.name in i.labels and i.state == "opened"
        )
        closed = sum(
            1 for i in project.issues.values() if label.name in i.labels and i.state == "closed"
        )
        return {
            "id": label.id,
            "name": label.name,
            "description": label.description,
            "description_html": label.description or "",
            "text_color": _text_color(label.color),
            "color": label.color,
            "subscribed": False,
            "priority": label.priority,
            "is_project_label": True,
            "archived": False,
            "open_issues_count": opened,
            "closed_issues_count": closed,
            "open_merge_requests_count": 0,
        }

    def _project_entity(self, project: GitLabProject, viewer: GitLabUser | None) -> JSONDict:
        if project.namespace_kind == "group":
            group = self._groups[project.namespace_id]
            namespace: JSONDict = {
                "id": group.id,
                "name": group.name,
                "path": group.path,
                "kind": "group",
                "full_path": group.full_path,
                "parent_id": group.parent_id,
                "web_url": self._web("groups", group.full_path),
            }
        else:
            owner = next(u for u in self._users.values() if u.namespace_id == project.namespace_id)
            namespace = {
                "id": owner.namespace_id,
                "name": owner.name,
                "path": owner.username,
                "kind": "user",
                "full_path": owner.username,
                "parent_id": None,
                "web_url": self._web(owner.username),
            }
        level = self._project_level(viewer, project)
        direct = project.members.get(viewer.id) if viewer else None
        return {
            "id": project.id,
            "description": project.description,
            "name": project.name,
            "name_with_namespace": f"{namespace['name']} / {project.name}",
            "path": project.path,
            "path_with_namespace": project.full_path,
            "created_at": project.created_at,
            "default_branch": project.default_branch,
            "tag_list": [],
            "topics": [],
            "ssh_url_to_repo": f"git@example.com:{project.full_path}.git",
            "http_url_to_repo": self._web(f"{project.full_path}.git"),
            "web_url": self._web(project.full_path),
            "readme_url": None,
            "forks_count": 0,
            "avatar_url": None,
            "star_count": 0,
            "last_activity_at": project.created_at,
            "namespace": namespace,
            "visibility": project.visibility,
            "archived": False,
            "issues_enabled": True,
            "jobs_enabled": True,
            "_links": {"self": f"{self.url}/api/v4/projects/{project.id}"},
            "permissions": {
                "project_access": (
                    {"access_level": direct, "notification_level": 3} if direct else None
                ),
                "group_access": (
                    {"access_level": level, "notification_level": 3}
                    if level and not direct and level != _ADMIN_LEVEL
                    else None
                ),
            },
        }

    def _group_entity(self, group: GitLabGroup) -> JSONDict:
        return {
            "id": group.id,
            "web_url": self._web("groups", group.full_path),
            "name": group.name,
            "path": group.path,
            "description": group.description,
            "visibility": group.visibility,
            "full_name": " / ".join(g.name for g in reversed(self._ancestors(group))),
            "full_path": group.full_path,
            "created_at": group.created_at,
            "parent_id": group.parent_id,
            "avatar_url": None,
            "projects": [],
            "shared_projects": [],
        }

    def _pipeline_entity(self, project: GitLabProject, pipeline: Pipeline) -> JSONDict:
        web_url = self._web(project.full_path, "-", "pipelines", str(pipeline.id))
        duration = None
        if pipeline.started_at and pipeline.finished_at:
            start = datetime.fromisoformat(pipeline.started_at.replace("Z", "+00:00"))
            end = datetime.fromisoformat(pipeline.finished_at.replace("Z", "+00:00"))
            duration = int((end - start).total_seconds())
        return {
            "id": pipeline.id,
            "iid": pipeline.iid,
            "project_id": project.id,
            "sha": pipeline.sha,
            "ref": pipeline.ref,
            "status": pipeline.status,
            "source": pipeline.source,
            "created_at": pipeline.created_at,
            "updated_at": pipeline.updated_at,
            "web_url": web_url,
            "before_sha": "0" * 40,
            "tag": False,
            "yaml_errors": None,
            "user": self._user_basic(self._users[pipeline.user_id]),
            "started_at": pipeline.started_at,
            "finished_at": pipeline.finished_at,
            "committed_at": None,
            "duration": duration,
            "queued_duration": None,
            "coverage": None,
            "archived": False,
            "name": None,
            "detailed_status": {
                "icon": f"status_{pipeline.status}",
                "text": pipeline.status.replace("_", " ").capitalize(),
                "label": pipeline.status.replace("_", " "),
                "group": pipeline.status,
                "tooltip": pipeline.status.replace("_", " "),
                "has_details": True,
                "details_path": f"/{project.full_path}/-/pipelines/{pipeline.id}",
                "illustration": None,
                "favicon": f"/assets/ci_favicons/favicon_status_{pipeline.status}.png",
            },
        }

    @staticmethod
    def _freeze_entity(fp: FreezePeriod) -> JSONDict:
        return {
            "id": fp.id,
            "freeze_start": fp.freeze_start,
            "freeze_end": fp.freeze_end,
            "cron_timezone": fp.cron_timezone,
            "created_at": fp.created_at,
            "updated_at": fp.updated_at,
        }

    # ================================================================== endpoints

    # ------------------------------------------------------------------ meta

    @_route("GET", "/user")
    def _get_current_user(self, ctx: _Ctx) -> _Answer:
        user = self._authenticate(ctx)
        return _Answer(200, self._user_entity(user, user))

    @_route("GET", "/version")
    def _get_version(self, ctx: _Ctx) -> _Answer:
        self._authenticate(ctx)
        return _Answer(200, {"version": self.gitlab_version, "revision": "0" * 11})

    # ------------------------------------------------------------------ instance features

    def _admin(self, ctx: _Ctx) -> GitLabUser:
        user = self._authenticate(ctx)
        if not user.admin:
            raise _forbidden()
        return user

    @_route("GET", "/features")
    def _list_features(self, ctx: _Ctx) -> _Answer:
        self._admin(ctx)
        return _Answer(200, [self._feature_entity(f) for f in self._features.values()])

    @_route("DELETE", "/features/:name")
    def _delete_feature(self, ctx: _Ctx) -> _Answer:
        self._admin(ctx)
        self._features.pop(ctx.args["name"], None)
        return _Answer(204, None)

    @_route("POST", "/features/:name")
    def _set_feature(self, ctx: _Ctx) -> _Answer:
        self._admin(ctx)
        name, params = ctx.args["name"], ctx.params
        _require(params, "value")
        actor_keys = ("feature_group", "user", "group", "namespace", "project", "repository")
        if _has(params, "key"):
            clashes = [f"key, {k} are mutually exclusive" for k in actor_keys if _has(params, k)]
            if clashes:
                raise _grape(*clashes)
        value = _str(params, "value") or ""
        key = _str(params, "key")
        force = _bool(params, "force")
        if not force and name in self.licensed_feature_names:
            raise _bad_request(
                f"The '{name}' is a licensed feature name, and thus it cannot be used as a "
                "feature flag name. Use `rails console` to set this feature flag state."
            )
        numeric = re.fullmatch(r"\d+(\.\d+)?", value) is not None
        if any(_has(params, k) for k in actor_keys):
            targets = self._feature_targets(params)  # resolved before any change
            for kind, target in targets:
                self._set_feature_target(name, value, kind, target)
        elif value in ("100", "100.0", "true"):
            feature = self._persist_feature(name)
            feature.clear()
            feature.boolean = True
        elif value in ("0", "0.0", "false"):
            self._persist_feature(name).clear()
        elif key == "percentage_of_actors" or (
            key == "percentage_of_time" or (key is None and numeric)
        ):
            if not numeric:
                raise _bad_request("Not a percentage")
            percentage = float(value)
            of_actors = key == "percentage_of_actors"
            current = self._features.get(name)
            if current is not None and current.state == "on":
                what = "actors" if of_actors else "time"
                raise _bad_request(f"Cannot enable percentage of {what} for a fully-enabled flag")
            if percentage > 100:
                # Flipper::Types::Percentage raises ArgumentError, which GitLab does not
                # rescue: the API answers with its generic 500.
                raise _message(500, "500 Internal Server Error")
            feature = self._persist_feature(name)
            if of_actors:
                feature.percentage_of_actors = percentage
            else:
                feature.percentage_of_time = percentage
        else:
            shown = json.dumps(value)
            if key is not None:
                raise _bad_request(f"Cannot set '{name}' ({json.dumps(key)}) to {shown}")
            raise _bad_request(f"Cannot set '{name}' to {shown}")
        return _Answer(201, self.feature_json(name))

    def _persist_feature(self, name: str) -> InstanceFeature:
        return self._features.setdefault(name, InstanceFeature(name))

    def _feature_targets(self, params: JSONDict) -> list[tuple[str, str]]:
        """``Feature::Target#targets``: (kind, flipper id or group name), in GitLab's order."""
        targets: list[tuple[str, str]] = []
        if _has(params, "feature_group"):
            targets.append(("group", _str(params, "feature_group") or ""))

        def each(key: str) -> list[str]:
            raw = _str(params, key)
            return [part for part in (raw or "").split(",") if part]

        for arg in each("user"):
            user = self._find_user(arg)
            if user is None:
                raise _bad_request(f"{arg} is not found!")
            targets.append(("actor", f"User:{user.id}"))
        for arg in each("project"):
            project = self._find_project_by_path(arg)
            if project is None:
                raise _bad_request(f"{arg} is not found!")
            targets.append(("actor", f"Project:{project.id}"))
        for arg in each("group"):
            group = self._find_group(arg)
            if group is None:
                raise _bad_request(f"{arg} is not found!")
            targets.append(("actor", f"Group:{group.id}"))
        for arg in each("namespace"):
            group = self._find_group(arg)
            owner = self._find_user(arg)
            if group is not None:
                targets.append(("actor", f"Group:{group.id}"))
            elif owner is not None:
                # FeatureGate#flipper_id is "#{self.class.name}:#{id}".
                targets.append(("actor", f"Namespaces::UserNamespace:{owner.namespace_id}"))
            else:
                raise _bad_request(f"{arg} is not found!")
        for arg in each("repository"):
            targets.append(("actor", self._repository_actor(arg)))
        return targets

    def _repository_actor(self, arg: str) -> str:
        """Gitlab::RepoPath.parse, then the repository's flipper id (guess: its hashed
        storage path, ``Repository:@hashed/ab/cd/<sha256>.git``)."""
        path = arg.removesuffix(".git")
        wiki = path.endswith(".wiki")
        project = self._find_project_by_path(path.removesuffix(".wiki"))
        if project is None:
            raise _bad_request(f"{arg} is not found!")
        digest = hashlib.sha256(str(project.id).encode()).hexdigest()
        suffix = ".wiki.git" if wiki else ".git"
        return f"Repository:@hashed/{digest[:2]}/{digest[2:4]}/{digest}{suffix}"

    def _set_feature_target(self, name: str, value: str, kind: str, target: str) -> None:
        feature = self._features.get(name)
        gate = "groups" if kind == "group" else "actors"
        opt_out = f"{target}:opt_out"
        if value in ("100", "100.0", "true"):
            if kind == "actor" and feature is not None and opt_out in feature.actors:
                raise _bad_request(f"Opt-out exists for {target} - remove opt-out before enabling")
            values: list[str] = getattr(self._persist_feature(name), gate)
            if target not in values:
                values.append(target)
        elif value in ("0", "0.0", "false"):
            values = getattr(self._persist_feature(name), gate)
            if target in values:
                values.remove(target)
        elif value == "opt_out" and kind == "actor":
            actors = self._persist_feature(name).actors
            if opt_out not in actors:
                actors.append(opt_out)
        elif value == "remove_opt_out" and kind == "actor":
            if feature is None or opt_out not in feature.actors:
                raise _bad_request(f"No opt-out exists for {target}")
            feature.actors.remove(opt_out)
        else:
            raise _bad_request(f"Cannot set '{name}' to {json.dumps(value)} for {target}")

    # ------------------------------------------------------------------ projects

    @_route("GET", "/projects/:id")
    def _get_project(self, ctx: _Ctx) -> _Answer:
        project = self._user_project(ctx)
        return _Answer(200, self._project_entity(project, ctx.user))

    # ------------------------------------------------------------------ project feature flags

    def _flag_project(self, ctx: _Ctx) -> GitLabProject:
        if ctx.method != "GET":
            self._authenticate(ctx)
        project = self._user_project(ctx)
        self._authorize(ctx, project, DEVELOPER)  # read/create/update/destroy_feature_flag
        return project

    def _flag(self, ctx: _Ctx, project: GitLabProject) -> ProjectFlag:
        flag = project.flags.get(ctx.args["name"])
        if flag is None:
            raise _not_found()  # find_by_name! -> "404 Not found"
        return flag

    @_route("GET", "/projects/:id/feature_flags")
    def _list_project_flags(self, ctx: _Ctx) -> _Answer:
        project = self._flag_project(ctx)
        scope = _str(ctx.params, "scope")
        if scope is not None and scope not in ("enabled", "disabled"):
            raise _grape("scope does not have a valid value")
        flags = sorted(project.flags.values(), key=lambda f: f.name)
        if scope is not None:
            flags = [f for f in flags if f.active == (scope == "enabled")]
        return self._paginate(ctx, [self._flag_entity(project, f) for f in flags])

    @_route("GET", "/projects/:id/feature_flags/:name")
    def _get_project_flag(self, ctx: _Ctx) -> _Answer:
        project = self._flag_project(ctx)
        return _Answer(200, self._flag_entity(project, self._flag(ctx, project)))

    @_route("DELETE", "/projects/:id/feature_flags/:name")
    def _delete_project_flag(self, ctx: _Ctx) -> _Answer:
        project = self._flag_project(ctx)
        flag = self._flag(ctx, project)
        del project.flags[flag.name]
        return _Answer(200, self._flag_entity(project, flag))

    @_route("POST", "/projects/:id/feature_flags")
    def _create_project_flag(self, ctx: _Ctx) -> _Answer:
        project = self._flag_project(ctx)
        params = ctx.params
        _require(params, "name")
        strategies_in = self._strategies_param(params, creating=True)
        version = _str(params, "version")
        if version is not None and version != "new_version_flag":
            raise _message(400, "Version is invalid")
        now = _now()
        flag = ProjectFlag(
            name=_str(params, "name") or "",
            description=_str(params, "description"),
            active=_bool(params, "active") is not False,
            created_at=now,
            updated_at=now,
            iid=project.next_flag_iid,
        )
        for raw in strategies_in:
            flag.strategies.append(self._new_strategy(project, raw))
        errors = self._flag_errors(project, flag, original_name=None)
        if errors:
            raise _ApiError(400, {"message": errors})
        project.next_flag_iid += 1
        project.flags[flag.name] = flag
        return _Answer(201, self._flag_entity(project, flag))

    @_route("PUT", "/projects/:id/feature_flags/:name")
    def _update_project_flag(self, ctx: _Ctx) -> _Answer:
        project = self._flag_project(ctx)
        original = self._flag(ctx, project)
        params = ctx.params
        flag = copy.deepcopy(original)  # changes land only if the whole flag validates
        if _has(params, "name"):
            flag.name = _str(params, "name") or ""
        if _has(params, "description"):
            flag.description = _str(params, "description")
        if _has(params, "active"):
            flag.active = bool(_bool(params, "active"))
        for raw in self._strategies_param(params, creating=False):
            self._apply_strategy_change(project, flag, raw)
        errors = self._flag_errors(project, flag, original_name=original.name)
        if errors:
            raise _ApiError(400, {"message": errors})
        flag.updated_at = _now()
        del project.flags[original.name]
        project.flags[flag.name] = flag
        return _Answer(200, self._flag_entity(project, flag))

    @staticmethod
    def _strategies_param(params: JSONDict, *, creating: bool) -> list[JSONDict]:
        raw = params.get("strategies")
        if raw is None:
            return []
        if isinstance(raw, dict):  # form encoding: strategies[0][name]=...
            raw = [raw[k] for k in sorted(raw, key=lambda k: int(k) if k.isdigit() else 0)]
        if not isinstance(raw, list) or not all(isinstance(s, dict) for s in raw):
            raise _grape("strategies is invalid")
        out: list[JSONDict] = []
        for i, strategy in enumerate(raw):
            s = dict(strategy)
            if creating and s.get("name") is None:
                raise _grape(f"strategies[{i}][name] is missing")
            if "parameters" in s and isinstance(s["parameters"], str):
                try:
                    s["parameters"] = json.loads(s["parameters"])
                except ValueError as exc:
                    raise _grape(f"strategies[{i}][parameters] is invalid") from exc
            scopes = s.get("scopes")
            if scopes is not None and (
                not isinstance(scopes, list) or not all(isinstance(x, dict) for x in scopes)
            ):
                raise _grape(f"strategies[{i}][scopes] is invalid")
            if creating:
                for j, scope in enumerate(scopes or []):
                    if scope.get("environment_scope") is None:
                        raise _grape(f"strategies[{i}][scopes][{j}][environment_scope] is missing")
            out.append(s)
        return out

    def _user_list_for(self, project: GitLabProject, raw: JSONDict) -> int | None:
        user_list_id = _int(raw, "user_list_id")
        if user_list_id is None:
            return None
        for proj in self._projects.values():
            if user_list_id in proj.user_lists:
                return user_list_id
        raise _not_found()  # UserList.find -> RecordNotFound

    def _new_strategy(self, project: GitLabProject, raw: JSONDict) -> FlagStrategy:
        strategy = FlagStrategy(
            id=self._next("strategy"),
            name=_str(raw, "name"),
            parameters=copy.deepcopy(raw.get("parameters", {})),
            user_list_id=self._user_list_for(project, raw),
        )
        for scope in raw.get("scopes") or []:
            env = _str(scope, "environment_scope") or ""
            strategy.scopes.append(FlagScope(self._next("scope"), env))
        return strategy

    def _apply_strategy_change(
        self, project: GitLabProject, flag: ProjectFlag, raw: JSONDict
    ) -> None:
        """accepts_nested_attributes_for :strategies (and their :scopes), allow_destroy."""
        strategy_id = _int(raw, "id")
        if strategy_id is None:
            flag.strategies.append(self._new_strategy(project, raw))
            return
        strategy = next((s for s in flag.strategies if s.id == strategy_id), None)
        if strategy is None:
            raise _not_found()
        if _bool(raw, "_destroy"):
            flag.strategies.remove(strategy)
            return
        if _has(raw, "name"):
            new_name = _str(raw, "name")
            if new_name != strategy.name and new_name != "gitlabUserList":
                strategy.user_list_id = None  # UpdateService drops a list the new name can't use
            strategy.name = new_name
        if _has(raw, "parameters"):
            strategy.parameters = copy.deepcopy(raw["parameters"])
        if _has(raw, "user_list_id"):
            strategy.user_list_id = self._user_list_for(project, raw)
        for scope_raw in raw.get("scopes") or []:
            scope_id = _int(scope_raw, "id")
            if scope_id is None:
                env = _str(scope_raw, "environment_scope") or ""
                strategy.scopes.append(FlagScope(self._next("scope"), env))
                continue
            scope = next((sc for sc in strategy.scopes if sc.id == scope_id), None)
            if scope is None:
                raise _not_found()
            if _bool(scope_raw, "_destroy"):
                strategy.scopes.remove(scope)
            elif _has(scope_raw, "environment_scope"):
                scope.environment_scope = _str(scope_raw, "environment_scope") or ""

    def _flag_errors(
        self, project: GitLabProject, flag: ProjectFlag, *, original_name: str | None
    ) -> list[str]:
        """``feature_flag.errors.full_messages`` in the order the validations run."""
        errors: list[str] = []
        if original_name is None and len(project.flags) >= self.feature_flags_limit:
            errors.append(
                f"Maximum number of project feature flags ({self.feature_flags_limit}) exceeded"
            )
        name = flag.name
        if not name:
            errors.append("Name can't be blank")
        if not 2 <= len(name) <= 63:
            if len(name) < 2:
                errors.append("Name is too short (minimum is 2 characters)")
            else:
                errors.append("Name is too long (maximum is 63 characters)")
        if not FLAG_NAME_RE.match(name):
            errors.append(f"Name {FLAG_NAME_MESSAGE}")
        if name in project.flags and name != original_name:
            errors.append("Name has already been taken")
        if flag.description and len(flag.description) > 255:
            errors.append("Description is too long (maximum is 255 characters)")
        for strategy in flag.strategies:
            errors += self._strategy_errors(project, strategy)
        return errors

    def _strategy_errors(self, project: GitLabProject, s: FlagStrategy) -> list[str]:
        errors: list[str] = []

        def param_error(message: str) -> None:
            errors.append(f"Strategies parameters {message}")

        if s.name not in STRATEGY_PARAMETERS:
            errors.append("Strategies name strategy name is invalid")
        else:
            params = s.parameters
            if not isinstance(params, dict) or sorted(params) != sorted(
                STRATEGY_PARAMETERS[s.name]
            ):
                param_error("are invalid")
            elif s.name == "gradualRolloutUserId":
                if not _percent_string(params["percentage"]):
                    param_error("percentage must be a string between 0 and 100 inclusive")
                if not _group_id(params["groupId"]):
                    param_error("groupId parameter is invalid")
            elif s.name == "flexibleRollout":
                if params["stickiness"] not in STICKINESS:
                    param_error(
                        "stickiness parameter must be default, userId, sessionId, or random"
                    )
                if not _group_id(params["groupId"]):
                    param_error("groupId parameter is invalid")
                if not _percent_string(params["rollout"]):
                    param_error("rollout must be a string between 0 and 100 inclusive")
            elif s.name == "userWithId" and not _user_xids_valid(params["userIds"]):
                param_error(
                    f"userIds must be a string of unique comma separated values each "
                    f"{USER_XID_MAX} characters or less"
                )
        if s.name == "gitlabUserList" and s.user_list_id is None:
            errors.append("Strategies user list can't be blank")
        if s.name != "gitlabUserList" and s.user_list_id is not None:
            errors.append("Strategies user list must be blank")
        if s.user_list_id is not None and s.user_list_id not in project.user_lists:
            errors.append("Strategies user list must belong to the same project")
        for scope in s.scopes:
            if not scope.environment_scope:
                errors.append("Strategies scopes environment scope can't be blank")
        return errors

    # ------------------------------------------------------------------ issues

    def _issue(self, project: GitLabProject, ctx: _Ctx) -> Issue:
        iid = _int(ctx.args, "issue_iid")
        issue = project.issues.get(iid) if iid is not None else None
        if issue is None or not self._can_read_issue(ctx.user, project, issue):
            raise _not_found()  # IssuesFinder#find_by! -> "404 Not found"
        return issue

    def _can_read_issue(
        self, user: GitLabUser | None, project: GitLabProject, issue: Issue
    ) -> bool:
        if not issue.confidential:
            return True
        if user is None:
            return False
        return (
            self._project_level(user, project) >= REPORTER
            or user.id == issue.author_id
            or user.id in issue.assignee_ids
        )

    def _can_admin_issue(self, user: GitLabUser | None, project: GitLabProject) -> bool:
        # Labels, assignees and milestones need admin_issue (Planner/Reporter and up);
        # IssuableBaseService#filter_params drops them silently for others.
        return self._project_level(user, project) >= PLANNER

    def _ensure_labels(self, project: GitLabProject, names: list[str]) -> list[str]:
        """Labels::FindOrCreateService: unknown labels are created."""
        out: list[str] = []
        for name in names:
            existing = next((n for n in project.labels if n == name), None)
            if existing is None:
                project.labels[name] = Label(self._next("label"), name, LABEL_DEFAULT_COLOR, None)
            if name not in out:
                out.append(name)
        return out

    def _assignees(self, project: GitLabProject, ids: list[int]) -> list[int]:
        # Unknown users and users who cannot read the project are dropped, 0 unassigns.
        return [
            uid
            for uid in dict.fromkeys(ids)
            if uid in self._users and self._can_read_project(self._users[uid], project)
        ]

    def _issue_field_errors(
        self, title: str | None, description: str | None
    ) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        if title is not None and not title.strip():
            errors["title"] = ["can't be blank"]
        elif title is not None and len(title) > ISSUE_TITLE_MAX:
            errors["title"] = [f"is too long (maximum is {ISSUE_TITLE_MAX} characters)"]
        if description is not None and len(description) > ISSUE_DESCRIPTION_MAX:
            errors["description"] = [f"is too long (maximum is {ISSUE_DESCRIPTION_MAX} characters)"]
        return errors

    @_route("POST", "/projects/:id/issues")
    def _create_issue(self, ctx: _Ctx) -> _Answer:
        user = self._authenticate(ctx)
        project = self._user_project(ctx)
        if project.visibility == "private" and self._project_level(user, project) < GUEST:
            raise _forbidden()
        params = ctx.params
        _require(params, "title")
        issue_type = _str(params, "issue_type") or "issue"
        if issue_type not in ISSUE_TYPES:
            raise _grape("issue_type does not have a valid value")
        title = _str(params, "title") or ""
        description = _str(params, "description")
        errors = self._issue_field_errors(title, description)
        if errors:
            raise _validation(errors)
        if issue_type == "incident" and self._project_level(user, project) < REPORTER:
            issue_type = "issue"  # guess: create_incident needs Reporter; BuildService falls back
        admin_issue = self._can_admin_issue(user, project)
        labels = (_csv(params, "labels") or []) if admin_issue else []
        assignee_ids = _int_list(params, "assignee_ids") or []
        if _int(params, "assignee_id"):
            assignee_ids.append(_int(params, "assignee_id") or 0)
        now = _now()
        issue = Issue(
            id=self._next("issue"),
            iid=project.next_issue_iid,
            project_id=project.id,
            title=title,
            description=description,
            state="opened",
            labels=self._ensure_labels(project, labels),
            confidential=bool(_bool(params, "confidential")),
            issue_type=issue_type,
            assignee_ids=self._assignees(project, assignee_ids) if admin_issue else [],
            author_id=user.id,
            created_at=now,
            updated_at=now,
            discussion_locked=_bool(params, "discussion_locked"),
            due_date=_str(params, "due_date"),
        )
        project.next_issue_iid += 1
        project.issues[issue.iid] = issue
        self._label_events(issue, user, issue.labels, "add")
        # Issues::CreateService runs the description's quick actions, and stores it without them.
        if description:
            text, done = self._quick_actions(project, issue, user, description, creating=True)
            if done:
                issue.description = text.rstrip()
        return _Answer(201, self._issue_entity(project, issue))

    @_route("GET", "/projects/:id/issues/:issue_iid")
    def _get_issue(self, ctx: _Ctx) -> _Answer:
        project = self._user_project(ctx)
        return _Answer(200, self._issue_entity(project, self._issue(project, ctx)))

    @_route("PUT", "/projects/:id/issues/:issue_iid")
    def _update_issue(self, ctx: _Ctx) -> _Answer:
        user = self._authenticate(ctx)
        project = self._user_project(ctx)
        params = ctx.params
        if not any(_has(params, key) for key in ISSUE_UPDATE_ONE_OF):
            raise _grape(
                f"{', '.join(ISSUE_UPDATE_ONE_OF)} are missing, "
                "at least one parameter must be provided"
            )
        state_event = _str(params, "state_event")
        if state_event is not None and state_event not in ("close", "reopen"):
            raise _grape("state_event does not have a valid value")
        issue_type = _str(params, "issue_type")
        if issue_type is not None and issue_type not in ISSUE_TYPES:
            raise _grape("issue_type does not have a valid value")
        issue = self._issue(project, ctx)
        level = self._project_level(user, project)
        if level < REPORTER and user.id != issue.author_id and user.id not in issue.assignee_ids:
            raise _forbidden()
        title = _str(params, "title")
        description = _str(params, "description")
        errors = self._issue_field_errors(title, description)
        if errors:
            raise _validation(errors)
        if title is not None:
            issue.title = title
        if _has(params, "description"):
            issue.description = description
        if _has(params, "confidential"):
            issue.confidential = bool(_bool(params, "confidential"))
        if _has(params, "discussion_locked"):
            issue.discussion_locked = _bool(params, "discussion_locked")
        if _has(params, "due_date"):
            issue.due_date = _str(params, "due_date") or None
        if issue_type is not None:
            issue.issue_type = issue_type
        if self._can_admin_issue(user, project):
            had = list(issue.labels)
            if _has(params, "labels"):
                issue.labels = self._ensure_labels(project, _csv(params, "labels") or [])
            for name in self._ensure_labels(project, _csv(params, "add_labels") or []):
                if name not in issue.labels:
                    issue.labels.append(name)
            for name in _csv(params, "remove_labels") or []:
                if name in issue.labels:
                    issue.labels.remove(name)
            self._label_events(issue, user, [n for n in issue.labels if n not in had], "add")
            self._label_events(issue, user, [n for n in had if n not in issue.labels], "remove")
            if _has(params, "assignee_ids") or _has(params, "assignee_id"):
                ids = _int_list(params, "assignee_ids") or []
                single = _int(params, "assignee_id")
                issue.assignee_ids = self._assignees(project, ids + ([single] if single else []))
        # Issues::UpdateService runs a new description's quick actions too (GitLab 13.2 on).
        if _has(params, "description") and description:
            text, done = self._quick_actions(project, issue, user, description)
            if done:
                issue.description = text.rstrip()
        now = _now()
        if state_event == "close" and issue.state == "opened":
            issue.state, issue.closed_at, issue.closed_by_id = "closed", now, user.id
        elif state_event == "reopen" and issue.state == "closed":
            issue.state, issue.closed_at, issue.closed_by_id = "opened", None, None
        issue.updated_at = now
        return _Answer(200, self._issue_entity(project, issue))

    @_route("GET", "/projects/:id/issues")
    def _list_issues(self, ctx: _Ctx) -> _Answer:
        project = self._user_project(ctx)
        params = ctx.params
        state = _str(params, "state") or "all"
        if state not in ("opened", "closed", "all"):
            raise _grape("state does not have a valid value")
        order_by = _str(params, "order_by") or "created_at"
        if order_by not in ("created_at", "updated_at", "title"):
            raise _grape("order_by does not have a valid value")
        sort = _str(params, "sort") or "desc"
        if sort not in ("asc", "desc"):
            raise _grape("sort does not have a valid value")
        issue_type = _str(params, "issue_type")
        if issue_type is not None and issue_type not in ISSUE_TYPES:
            raise _grape("issue_type does not have a valid value")
        labels = _csv(params, "labels")
        search = (_str(params, "search") or "").lower()
        iids = _int_list(params, "iids[]") or _int_list(params, "iids")
        confidential = _bool(params, "confidential")
        found = []
        for issue in project.issues.values():
            if not self._can_read_issue(ctx.user, project, issue):
                continue
            if state != "all" and issue.state != state:
                continue
            if issue_type is not None and issue.issue_type != issue_type:
                continue
            if confidential is not None and issue.confidential != confidential:
                continue
            if iids and issue.iid not in iids:
                continue
            if labels and not _labels_match(issue.labels, labels):
                continue
            if search and search not in f"{issue.title}\n{issue.description or ''}".lower():
                continue
            found.append(issue)
        found.sort(key=lambda i: (getattr(i, order_by), i.id), reverse=sort == "desc")
        return self._paginate(ctx, [self._issue_entity(project, i) for i in found])

    # ------------------------------------------------------------------ notes

    def _label_events(self, issue: Issue, user: GitLabUser, names: list[str], action: str) -> None:
        """ResourceEvents::ChangeLabelsService: one event per label put on or taken off."""
        when = (
            self.clock().astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            if self.clock is not None
            else _now()
        )
        for name in names:
            issue.label_events.append((self._next("label_event"), name, action, when, user.id))

    @_route("GET", "/projects/:id/issues/:issue_iid/resource_label_events")
    def _list_label_events(self, ctx: _Ctx) -> _Answer:
        project = self._user_project(ctx)
        issue = self._issue(project, ctx)
        entities: list[JSONDict] = []
        for event_id, name, action, when, user_id in issue.label_events:
            label = project.labels.get(name)
            entities.append(
                {
                    "id": event_id,
                    "user": self._user_basic(self._users[user_id]),
                    "created_at": when,
                    "resource_type": "Issue",
                    "resource_id": issue.id,
                    # A deleted label leaves its events with a null label, as in GitLab.
                    "label": {
                        "id": label.id,
                        "name": label.name,
                        "color": label.color,
                        "description": label.description,
                    }
                    if label is not None
                    else None,
                    "action": action,
                }
            )
        return self._paginate(ctx, entities)

    @_route("GET", "/projects/:id/issues/:issue_iid/notes")
    def _list_notes(self, ctx: _Ctx) -> _Answer:
        project = self._user_project(ctx)
        issue = self._issue(project, ctx)
        sort = _str(ctx.params, "sort") or "desc"
        if sort not in ("asc", "desc"):
            raise _grape("sort does not have a valid value")
        order_by = _str(ctx.params, "order_by") or "created_at"
        if order_by not in ("created_at", "updated_at"):
            raise _grape("order_by does not have a valid value")
        can_internal = self._project_level(ctx.user, project) >= REPORTER
        notes = [n for n in issue.notes if can_internal or not n.internal]
        notes.sort(key=lambda n: (getattr(n, order_by), n.id), reverse=sort == "desc")
        return self._paginate(ctx, [self._note_entity(project, issue, n) for n in notes])

    @_route("POST", "/projects/:id/issues/:issue_iid/notes")
    def _create_note(self, ctx: _Ctx) -> _Answer:
        user = self._authenticate(ctx)
        project = self._user_project(ctx)
        _require(ctx.params, "body")
        issue = self._issue(project, ctx)
        if project.visibility == "private" and self._project_level(user, project) < GUEST:
            raise _forbidden()
        if issue.discussion_locked and self._project_level(user, project) < REPORTER:
            raise _forbidden()
        body = _str(ctx.params, "body") or ""
        internal = bool(_bool(ctx.params, "internal") or _bool(ctx.params, "confidential"))
        text, summary = self._quick_actions(project, issue, user, body)
        if summary and not text.strip():
            # Command-only note: nothing is stored; the API answers 202 with NoteCommands.
            return _Answer(202, {"commands_changes": {}, "summary": summary})
        if not text.strip():
            raise _bad_request('Note {:note=>["can\'t be blank"]}')
        if len(text) > NOTE_BODY_MAX:
            raise _bad_request(
                f'Note {{:note=>["is too long (maximum is {NOTE_BODY_MAX} characters)"]}}'
            )
        now = _now()
        note = Note(self._next("note"), text, user.id, internal, now, now)
        issue.notes.append(note)
        issue.updated_at = now
        return _Answer(201, self._note_entity(project, issue, note))

    def _quick_actions(
        self,
        project: GitLabProject,
        issue: Issue,
        user: GitLabUser,
        body: str,
        *,
        creating: bool = False,
    ) -> tuple[str, list[str]]:
        """The quick actions the fake understands, in a note or an issue's description, found
        as Gitlab::QuickActions::Extractor finds them (a line that starts with `/` and the
        command's name, in any case, outside a ``` block; carriage returns dropped first):

        - ``/label ~name ~"two words"``: the named labels that exist (admin_issue);
        - ``/close``: on an open issue its user may update, not one being created;
        - ``/timeline <text> | YYYY-MM-DD HH:MM``: on an incident (Developer and up), not one
          being created.

        A command its user may not run there stays in the text, as in GitLab. Returns the text
        left and the summary messages."""
        kept: list[str] = []
        summary: list[str] = []
        fenced = False
        for line in body.replace("\r", "").split("\n"):
            if line.startswith("```"):
                fenced = not fenced
            match = None if fenced else _QUICK_ACTION.fullmatch(line)
            done = None
            if match is not None:
                command, arg = match.group(1).lower(), match.group(2) or ""
                done = self._quick_action(project, issue, user, command, arg, creating)
            if done is None:
                kept.append(line)
            else:
                summary.append(done)
        return "\n".join(kept), summary

    def _quick_action(
        self,
        project: GitLabProject,
        issue: Issue,
        user: GitLabUser,
        command: str,
        arg: str,
        creating: bool,
    ) -> str | None:
        """Run one quick action: its summary message, or None when it isn't available."""
        level = self._project_level(user, project)
        if command == "label":
            # Available with labels to find; names that aren't labels are passed over.
            if not self._can_admin_issue(user, project) or not project.labels:
                return None
            names = [a or b for a, b in re.findall(r'~"([^"]+)"|~([^\s~"]+)', arg)]
            found = [n for n in dict.fromkeys(names) if n in project.labels]
            added = [n for n in found if n not in issue.labels]
            issue.labels.extend(added)
            self._label_events(issue, user, added, "add")
            shown = [f"~{n}" if re.fullmatch(r"\w+", n) else f'~"{n}"' for n in found]
            return f"Added {' '.join(shown)} label{'s' if len(found) != 1 else ''}."
        if command == "close":
            may_update = (
                level >= REPORTER or user.id == issue.author_id or user.id in issue.assignee_ids
            )
            if creating or issue.state != "opened" or not may_update:
                return None
            issue.state, issue.closed_at, issue.closed_by_id = "closed", _now(), user.id
            return "Closed this issue."
        # timeline
        if creating or issue.issue_type != "incident" or level < DEVELOPER:
            return None
        text, sep, when = arg.rpartition("|")
        if not sep:
            text, when = arg, ""
        occurred = _timeline_time(when.strip())
        if not text.strip() or occurred is None:
            return "Failed to apply timeline quick action: provide a valid timeline event and date."
        issue.timeline_events.append(TimelineEvent(text.strip(), occurred, user.id))
        return "Timeline event added successfully."

    # ------------------------------------------------------------------ labels

    @_route("GET", "/projects/:id/labels")
    def _list_labels(self, ctx: _Ctx) -> _Answer:
        project = self._user_project(ctx)
        labels = sorted(project.labels.values(), key=lambda label: label.name.lower())
        search = (_str(ctx.params, "search") or "").lower()
        labels = [label for label in labels if search in label.name.lower()]
        return self._paginate(ctx, [self._label_entity(project, lbl) for lbl in labels])

    @_route("POST", "/projects/:id/labels")
    def _create_label(self, ctx: _Ctx) -> _Answer:
        self._authenticate(ctx)
        project = self._user_project(ctx)
        self._authorize(ctx, project, PLANNER)  # admin_label
        _require(ctx.params, "name", "color")
        name = (_str(ctx.params, "name") or "").strip()
        color = _str(ctx.params, "color") or ""
        errors: dict[str, list[str]] = {}
        if not name:
            errors["title"] = ["can't be blank"]
        elif "," in name:
            errors["title"] = ["is invalid"]
        if not re.fullmatch(r"#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}|[a-zA-Z]+", color):
            errors["color"] = ["must be a valid color code"]
        if errors:
            raise _validation(errors)
        if name in project.labels:
            raise _message(409, "Label already exists")
        label = Label(
            self._next("label"),
            name,
            color,
            _str(ctx.params, "description"),
            _int(ctx.params, "priority"),
        )
        project.labels[name] = label
        return _Answer(201, self._label_entity(project, label))

    # ------------------------------------------------------------------ repository files

    def _file(self, ctx: _Ctx, *, ref_required: bool) -> tuple[GitLabProject, str, str, bytes]:
        project = self._user_project(ctx)
        if project.visibility == "private" and self._project_level(ctx.user, project) < REPORTER:
            raise _forbidden()  # download_code
        if ref_required:
            _require(ctx.params, "ref")
        ref = _str(ctx.params, "ref") or project.default_branch
        if ref == "HEAD":
            ref = project.default_branch
        if ref not in project.branches:
            raise _not_found("Commit")
        path = ctx.args["file_path"]
        content = project.files.get((ref, path))
        if content is None:
            raise _not_found("File")
        return project, ref, path, content

    def _file_headers(
        self, project: GitLabProject, ref: str, path: str, data: bytes
    ) -> dict[str, str]:
        commit = _sha1(f"{project.id}:{ref}")
        return {
            "X-Gitlab-Blob-Id": _sha1_bytes(b"blob %d\0" % len(data) + data),
            "X-Gitlab-Commit-Id": commit,
            "X-Gitlab-Content-Sha256": hashlib.sha256(data).hexdigest(),
            "X-Gitlab-Encoding": "base64",
            "X-Gitlab-File-Name": path.rpartition("/")[2],
            "X-Gitlab-File-Path": path,
            "X-Gitlab-Last-Commit-Id": commit,
            "X-Gitlab-Ref": ref,
            "X-Gitlab-Size": str(len(data)),
            "X-Gitlab-Execute-Filemode": "false",
        }

    @_route("GET", "/projects/:id/repository/files/:file_path")
    def _get_file(self, ctx: _Ctx) -> _Answer:
        project, ref, path, data = self._file(ctx, ref_required=True)
        headers = self._file_headers(project, ref, path, data)
        body = {
            "file_name": headers["X-Gitlab-File-Name"],
            "file_path": path,
            "size": len(data),
            "encoding": "base64",
            "content_sha256": headers["X-Gitlab-Content-Sha256"],
            "ref": ref,
            "blob_id": headers["X-Gitlab-Blob-Id"],
            "commit_id": headers["X-Gitlab-Commit-Id"],
            "last_commit_id": headers["X-Gitlab-Last-Commit-Id"],
            "execute_filemode": False,
            "content": base64.b64encode(data).decode(),
        }
        return _Answer(200, body, headers)

    @_route("GET", "/projects/:id/repository/files/:file_path/raw")
    def _get_file_raw(self, ctx: _Ctx) -> _Answer:
        project, ref, path, data = self._file(ctx, ref_required=False)
        headers = self._file_headers(project, ref, path, data)
        return _Answer(200, None, headers, data, "text/plain")

    # ------------------------------------------------------------------ users and groups

    @_route("GET", "/users")
    def _list_users(self, ctx: _Ctx) -> _Answer:
        viewer = ctx.user
        admin = viewer is not None and viewer.admin
        users = sorted(self._users.values(), key=lambda u: u.id, reverse=True)
        if not admin:
            users = [u for u in users if u.state != "blocked"]  # User.without_forbidden_states
        username = _str(ctx.params, "username")
        search = _str(ctx.params, "search")
        if username is not None:
            users = [u for u in users if u.username.lower() == username.lower()]
        elif search is not None:
            users = _user_search(users, search, with_private_emails=admin)
        if _bool(ctx.params, "blocked"):
            users = [u for u in users if u.state == "blocked"]
        if _bool(ctx.params, "active"):
            users = [u for u in users if u.state == "active"]
        if admin:
            entities = [self._user_entity(u, viewer) for u in users]
        else:
            entities = [self._user_basic(u) for u in users]
        return self._paginate(ctx, entities)

    @_route("GET", "/users/:id")
    def _get_user(self, ctx: _Ctx) -> _Answer:
        user_id = _int(ctx.args, "id")
        user = self._users.get(user_id) if user_id is not None else None
        if user is None:
            raise _not_found("User")
        return _Answer(200, self._user_entity(user, ctx.user))

    @_route("GET", "/groups/:id")
    def _get_group(self, ctx: _Ctx) -> _Answer:
        return _Answer(200, self._group_entity(self._user_group(ctx)))

    @_route("GET", "/groups/:id/members")
    def _list_group_members(self, ctx: _Ctx) -> _Answer:
        """Direct members only (docs.gitlab.com/api/members: "excludes inherited members")."""
        group = self._user_group(ctx)
        best = {uid: (level, group) for uid, level in group.members.items()}
        return self._members_answer(ctx, best)

    @_route("GET", "/groups/:id/members/all")
    def _list_group_members_all(self, ctx: _Ctx) -> _Answer:
        group = self._user_group(ctx)
        best: dict[int, tuple[int, GitLabGroup]] = {}
        for source in self._ancestors(group):
            for uid, level in source.members.items():
                if uid not in best or level > best[uid][0]:
                    best[uid] = (level, source)
        return self._members_answer(ctx, best)

    def _members_answer(self, ctx: _Ctx, best: dict[int, tuple[int, GitLabGroup]]) -> _Answer:
        """Members as ``Entities::Member``: the user (with ``state``, so blocked users can be
        told apart, and only the public e-mail), the access level, paginated like every list.
        No ``email``: GitLab documents it only for a group's owners, of the group's enterprise
        users (docs.gitlab.com/api/members, "Known issues"); the FOSS entity never has it
        (some EE versions show it to an administrator in admin mode), so a client can't count
        on it. An administrator's token sees it on ``/users`` and ``/users/:id``."""
        query = (_str(ctx.params, "query") or "").lower()
        user_ids = _int_list(ctx.params, "user_ids[]") or _int_list(ctx.params, "user_ids")
        members: list[JSONDict] = []
        for uid in sorted(best):
            user = self._users[uid]
            if query and query not in user.username.lower() and query not in user.name.lower():
                continue
            if user_ids and uid not in user_ids:
                continue
            entry = self._user_basic(user) | {
                "access_level": best[uid][0],
                "created_at": best[uid][1].created_at,
                "created_by": None,
                "expires_at": None,
                "membership_state": "active",
            }
            members.append(entry)
        return self._paginate(ctx, members)

    # ------------------------------------------------------------------ pipelines

    @_route("POST", "/projects/:id/pipeline")
    def _create_pipeline(self, ctx: _Ctx) -> _Answer:
        user = self._authenticate(ctx)
        project = self._user_project(ctx)
        self._authorize(ctx, project, DEVELOPER)  # create_pipeline
        _require(ctx.params, "ref")
        ref = _str(ctx.params, "ref") or ""
        variables = ctx.params.get("variables") or []
        if not isinstance(variables, list) or not all(isinstance(v, dict) for v in variables):
            raise _grape("variables is invalid")
        clean: list[JSONDict] = []
        for i, var in enumerate(variables):
            kind = _str(var, "variable_type") or "env_var"
            if kind not in ("env_var", "file"):
                raise _grape(f"variables[{i}][variable_type] does not have a valid value")
            clean.append(
                {"key": _str(var, "key"), "value": _str(var, "value"), "variable_type": kind}
            )
        if ref not in project.branches:
            raise _validation({"base": ["Reference not found"]})
        if clean:
            role = project.pipeline_variables_minimum_role
            needed = ROLES.get(role, _ADMIN_LEVEL + 1)  # "no_one_allowed"
            if self._project_level(user, project) < needed:
                raise _validation({"base": ["Insufficient permissions to set pipeline variables"]})
        now = _now()
        pipeline = Pipeline(
            id=self._next("pipeline"),
            iid=project.next_pipeline_iid,
            project_id=project.id,
            ref=ref,
            sha=_sha1(f"{project.id}:{ref}"),
            status="pending",
            source="api",
            user_id=user.id,
            variables=clean,
            created_at=now,
            updated_at=now,
        )
        project.next_pipeline_iid += 1
        project.pipelines[pipeline.id] = pipeline
        return _Answer(201, self._pipeline_entity(project, pipeline))

    @_route("GET", "/projects/:id/pipelines/:pipeline_id")
    def _get_pipeline(self, ctx: _Ctx) -> _Answer:
        project = self._user_project(ctx)
        if project.visibility != "public":
            self._authorize(ctx, project, REPORTER)  # read_pipeline
        pipeline_id = _int(ctx.args, "pipeline_id")
        pipeline = project.pipelines.get(pipeline_id) if pipeline_id is not None else None
        if pipeline is None:
            raise _not_found()
        return _Answer(200, self._pipeline_entity(project, pipeline))

    @_route("GET", "/projects/:id/pipelines")
    def _list_pipelines(self, ctx: _Ctx) -> _Answer:
        """``lib/api/ci/pipelines.rb``: filtered by ref, source, status; newest first (order_by
        id, sort desc by default); the basic entity, without the user or detailed status."""
        project = self._user_project(ctx)
        if project.visibility != "public":
            self._authorize(ctx, project, REPORTER)  # read_pipeline
        rows = sorted(project.pipelines.values(), key=lambda p: p.id)
        if (_str(ctx.params, "sort") or "desc") == "desc":
            rows.reverse()
        for name in ("ref", "source", "status"):
            wanted = _str(ctx.params, name)
            if wanted:
                rows = [p for p in rows if getattr(p, name) == wanted]
        basic = []
        for p in rows:
            entity = self._pipeline_entity(project, p)
            basic.append(
                {
                    k: entity[k]
                    for k in (
                        "id",
                        "iid",
                        "project_id",
                        "sha",
                        "ref",
                        "status",
                        "source",
                        "created_at",
                        "updated_at",
                        "web_url",
                    )
                }
            )
        return self._paginate(ctx, basic)

    @_route("GET", "/projects/:id/pipelines/:pipeline_id/variables")
    def _pipeline_variables(self, ctx: _Ctx) -> _Answer:
        """Only those who may read a pipeline's variables (developers: guess from
        ``read_pipeline_variable`` in ``app/policies/ci/pipeline_policy.rb``)."""
        self._authenticate(ctx)
        project = self._user_project(ctx)
        self._authorize(ctx, project, DEVELOPER)
        pipeline_id = _int(ctx.args, "pipeline_id")
        pipeline = project.pipelines.get(pipeline_id) if pipeline_id is not None else None
        if pipeline is None:
            raise _not_found()
        return _Answer(200, [dict(v) for v in pipeline.variables])

    # ------------------------------------------------------------------ freeze periods

    def _freeze_project(self, ctx: _Ctx, level: int) -> GitLabProject:
        self._authenticate(ctx)  # before { authenticate! }
        project = self._user_project(ctx)
        self._authorize(ctx, project, level)
        return project

    def _freeze_period(self, ctx: _Ctx, project: GitLabProject) -> FreezePeriod:
        fid = _int(ctx.args, "freeze_period_id")
        fp = project.freeze_periods.get(fid) if fid is not None else None
        if fp is None:
            raise _not_found()
        return fp

    @staticmethod
    def _freeze_errors(fp: FreezePeriod) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        tz_ok = timezone_valid(fp.cron_timezone)
        for attr in ("freeze_start", "freeze_end"):
            value: str = getattr(fp, attr)
            problems = []
            if not (tz_ok and cron_valid(value)):  # CronParser parses cron and zone together
                problems.append(" is invalid syntax")
            if not value.strip():
                problems.append("can't be blank")
            if problems:
                errors[attr] = problems
        tz_problems = [] if tz_ok else [" is invalid syntax"]
        if not fp.cron_timezone.strip():
            tz_problems.append("can't be blank")
        if tz_problems:
            errors["cron_timezone"] = tz_problems
        return errors

    @_route("GET", "/projects/:id/freeze_periods")
    def _list_freeze_periods(self, ctx: _Ctx) -> _Answer:
        project = self._freeze_project(ctx, REPORTER)
        periods = sorted(project.freeze_periods.values(), key=lambda f: (f.created_at, f.id))
        return self._paginate(ctx, [self._freeze_entity(f) for f in periods])

    @_route("GET", "/projects/:id/freeze_periods/:freeze_period_id")
    def _get_freeze_period(self, ctx: _Ctx) -> _Answer:
        project = self._freeze_project(ctx, REPORTER)
        return _Answer(200, self._freeze_entity(self._freeze_period(ctx, project)))

    @_route("POST", "/projects/:id/freeze_periods")
    def _create_freeze_period(self, ctx: _Ctx) -> _Answer:
        project = self._freeze_project(ctx, MAINTAINER)
        _require(ctx.params, "freeze_start", "freeze_end")
        now = _now()
        fp = FreezePeriod(
            id=self._next("freeze_period"),
            freeze_start=_str(ctx.params, "freeze_start") or "",
            freeze_end=_str(ctx.params, "freeze_end") or "",
            cron_timezone=_str(ctx.params, "cron_timezone") or "UTC",
            created_at=now,
            updated_at=now,
        )
        errors = self._freeze_errors(fp)
        if errors:
            raise _validation(errors)
        project.freeze_periods[fp.id] = fp
        return _Answer(201, self._freeze_entity(fp))

    @_route("PUT", "/projects/:id/freeze_periods/:freeze_period_id")
    def _update_freeze_period(self, ctx: _Ctx) -> _Answer:
        project = self._freeze_project(ctx, MAINTAINER)
        current = self._freeze_period(ctx, project)
        fp = copy.deepcopy(current)
        for attr in ("freeze_start", "freeze_end", "cron_timezone"):
            if _has(ctx.params, attr):
                setattr(fp, attr, _str(ctx.params, attr) or "")
        errors = self._freeze_errors(fp)
        if errors:
            raise _validation(errors)
        fp.updated_at = _now()
        project.freeze_periods[fp.id] = fp
        return _Answer(200, self._freeze_entity(fp))

    @_route("DELETE", "/projects/:id/freeze_periods/:freeze_period_id")
    def _delete_freeze_period(self, ctx: _Ctx) -> _Answer:
        project = self._freeze_project(ctx, MAINTAINER)
        fp = self._freeze_period(ctx, project)
        del project.freeze_periods[fp.id]
        return _Answer(204, None)


# ---------------------------------------------------------------------------- helpers


def _put_param(target: JSONDict, key: str, value: str) -> None:
    """Rack's nested parameter parsing, enough for ``a[]=1`` and ``a[0][b]=2``."""
    if key.endswith("[]") and "[" not in key[:-2]:
        target.setdefault(key, []).append(value)
        target.setdefault(key[:-2], []).append(value)
        return
    match = re.fullmatch(r"([^\[]+)((?:\[[^\]]*\])+)", key)
    if not match:
        target[key] = value
        return
    parts = [match.group(1), *re.findall(r"\[([^\]]*)\]", match.group(2))]
    node: JSONDict = target
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _sha1_bytes(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def _text_color(color: str) -> str:
    """Gitlab::Color#contrast, roughly: dark text on light colours."""
    hexes = color.lstrip("#")
    if len(hexes) == 3:
        hexes = "".join(c * 2 for c in hexes)
    try:
        r, g, b = (int(hexes[i : i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        return "#FFFFFF"
    return "#1F1E24" if (r * 299 + g * 587 + b * 114) / 1000 > 160 else "#FFFFFF"


def _percent_string(value: Any) -> bool:
    # Strategy#within_range?: a String of digits, 0..100 once converted.
    return (
        isinstance(value, str) and re.fullmatch(r"[0-9]+", value) is not None and int(value) <= 100
    )


def _group_id(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[a-z]{1,32}", value) is not None


def _user_xids_valid(value: Any) -> bool:
    # FeatureFlagUserXidsValidator
    if not isinstance(value, str) or re.search(r"[\n\r\t]|,,", value):
        return False
    xids = value.split(",")
    return len(set(xids)) == len(xids) and all(
        xid and xid.strip() == xid and len(xid) <= USER_XID_MAX for xid in xids
    )


def _labels_match(have: list[str], wanted: list[str]) -> bool:
    lowered = [w.lower() for w in wanted]
    if lowered in (["none"], ["no label"], ["no+label"]):
        return not have
    if lowered == ["any"]:
        return bool(have)
    return all(w in have for w in wanted)


def _user_search(
    users: list[GitLabUser], query: str, *, with_private_emails: bool
) -> list[GitLabUser]:
    """User.search: name and username by substring (exact below 3 characters), e-mail only
    exactly -- the primary e-mail for administrators, the public e-mail for everyone else.
    Exact matches come first."""
    q = query.strip().lower()
    if not q:
        return []
    hits: list[tuple[int, str, GitLabUser]] = []
    for user in users:
        emails = {user.public_email.lower()} - {""}
        if with_private_emails:
            emails.add(user.email.lower())
        exact = q in (user.username.lower(), user.name.lower()) or q in emails
        fuzzy = len(q) >= 3 and (q in user.username.lower() or q in user.name.lower())
        if exact or fuzzy:
            hits.append((0 if exact else 1, user.name.lower(), user))
    hits.sort(key=lambda h: (h[0], h[1]))
    return [h[2] for h in hits]


def _timeline_time(text: str) -> str | None:
    """Gitlab::QuickActions::TimelineTextAndDateTimeSeparator: ``YYYY-MM-DD HH:MM``, or a bare
    ``HH:MM`` today, or now when absent."""
    if not text:
        return _now()
    for fmt in ("%Y-%m-%d %H:%M", "%H:%M"):
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if fmt == "%H:%M":
            today = datetime.now(UTC)
            parsed = parsed.replace(year=today.year, month=today.month, day=today.day)
        stamp = parsed.replace(tzinfo=UTC).isoformat(timespec="milliseconds")
        return stamp.replace("+00:00", "Z")
    return None


def new_token() -> str:
    """A token shaped like a GitLab personal access token."""
    return "glpat-" + secrets.token_urlsafe(15)[:20]
