"""One contract per adapter Protocol, run against every implementation of it.

What the core relies on: an answer, or a typed error (`Unavailable`, `NotFound`,
`Refused`, ...) with a message fit to show; never `None` for "could not ask". Adding an
implementation means adding it to the fixture's `params`; the contract then holds it to the
same behaviour.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from marvin.adapters.directory import Directory
from marvin.adapters.errors import AdapterError, NotFound, Refused, Unavailable
from marvin.adapters.flags import FlagBackend
from marvin.adapters.issues import IssueTracker
from marvin.adapters.oncall import Oncall
from marvin.clock import FrozenClock
from marvin.config import SlackConfig
from marvin.flags import Environment, FlagState
from marvin.metrics import Metrics
from marvin.slack.people import SlackPeople, SlackPresence
from marvin.store.db import Store
from marvin.wiring import BACKENDS
from tests.fakes.gitlab import FakeGitLab
from tests.fakes.slack_api import FakeSlackAPI
from tests.harness import START, make_settings
from tests.slack_harness import populate

# A database that is not there: nothing listens on port 1.
UNREACHABLE_DB = "postgresql+asyncpg://nobody@127.0.0.1:1/nothing"

Factory = Callable[[str], Any]


def _builder(section: str, name: str, **sections: Any) -> Factory:
    def build(url: str) -> Any:
        settings = make_settings(url, **sections)
        extra = (Environment.production,) if section == "flags" else ()
        return BACKENDS[section][name](settings, Store(url), FrozenClock(START), *extra)

    return build


async def _dispose(adapter: Any) -> None:
    store = getattr(adapter, "_store", None)
    if isinstance(store, Store):
        await store.dispose()


# --- flags ---------------------------------------------------------------------------------

FLAG_BACKENDS = ["local", "gitlab_instance"]
GITLAB_TOKEN = "glpat-contract-admin"


def gitlab_world(gitlab: FakeGitLab) -> None:
    """The people, groups and projects the flag contract names as actors."""
    gitlab.add_user("marvin", token=GITLAB_TOKEN, admin=True)
    gitlab.add_user("bob")
    gitlab.add_group("gitlab-org")
    gitlab.add_project("gitlab-org/gitlab")


@asynccontextmanager
async def flag_backend(name: str, database: str, reachable: bool = True) -> AsyncIterator[Any]:
    if name != "gitlab_instance":
        backend = _builder("flags", name)(database if reachable else UNREACHABLE_DB)
        try:
            yield backend
        finally:
            await _dispose(backend)
        return
    async with FakeGitLab() as gitlab:
        gitlab_world(gitlab)
        url = gitlab.url if reachable else "http://127.0.0.1:1"
        with pytest.MonkeyPatch.context() as env:
            env.setenv("GITLAB_TOKEN", GITLAB_TOKEN)
            backend = _builder(
                "flags",
                name,
                flags={"backend": name},
                gitlab={"instances": {"production": url}, "timeout_seconds": 2},
            )(database)
        yield backend


@pytest.fixture(params=FLAG_BACKENDS)
async def flags(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[FlagBackend]:
    async with flag_backend(request.param, sqlite_url) as backend:
        yield backend


@pytest.fixture(params=FLAG_BACKENDS)
async def unreachable_flags(
    request: pytest.FixtureRequest, sqlite_url: str
) -> AsyncIterator[FlagBackend]:
    async with flag_backend(request.param, sqlite_url, reachable=False) as backend:
        yield backend


ONE_PERCENT = FlagState(percentage_of_actors=Decimal(1))


async def test_flags_an_unknown_flag_is_none(flags: FlagBackend) -> None:
    assert await flags.get("never_heard_of", Environment.production) is None
    assert await flags.list(Environment.production, None) == []


@pytest.mark.parametrize(
    "state",
    [
        FlagState(enabled=True),
        ONE_PERCENT,
        FlagState(percentage_of_time=Decimal("0.5")),
        FlagState(actors=("group:gitlab-org", "project:gitlab-org/gitlab", "user:bob")),
        FlagState(percentage_of_actors=Decimal(25), actors=("user:bob",)),
        FlagState(),
    ],
    ids=["on", "1% of actors", "0.5% of time", "actors", "25% and an actor", "off"],
)
async def test_flags_what_is_put_is_read_back(flags: FlagBackend, state: FlagState) -> None:
    confirmed = await flags.put("contract_flag", Environment.production, state)
    assert confirmed == state
    assert await flags.get("contract_flag", Environment.production) == state


@pytest.mark.parametrize(
    ("first", "then"),
    [
        (FlagState(enabled=True), ONE_PERCENT),
        (ONE_PERCENT, FlagState(percentage_of_time=Decimal(1))),
        (FlagState(actors=("user:bob",)), FlagState(actors=("group:gitlab-org",))),
        (FlagState(percentage_of_actors=Decimal(5), actors=("user:bob",)), FlagState()),
        (ONE_PERCENT, FlagState(enabled=True)),
    ],
    ids=["on to 1%", "actors to time", "swap actors", "to off", "1% to on"],
)
async def test_flags_any_state_reaches_any_other(
    flags: FlagBackend, first: FlagState, then: FlagState
) -> None:
    await flags.put("moving", Environment.production, first)
    assert await flags.put("moving", Environment.production, then) == then
    assert await flags.get("moving", Environment.production) == then


async def test_flags_list_matches_patterns(flags: FlagBackend) -> None:
    for name in ("ci_one", "ci_two", "other"):
        await flags.put(name, Environment.production, ONE_PERCENT)
    assert [n for n, _ in await flags.list(Environment.production, "ci_*")] == [
        "ci_one",
        "ci_two",
    ]
    assert len(await flags.list(Environment.production, None)) == 3


async def test_flags_delete_is_quiet_about_a_missing_flag(flags: FlagBackend) -> None:
    await flags.put("doomed", Environment.production, ONE_PERCENT)
    await flags.delete("doomed", Environment.production)
    assert await flags.get("doomed", Environment.production) is None
    await flags.delete("doomed", Environment.production)


@pytest.mark.parametrize("call", ["get", "list", "put", "delete"])
async def test_flags_an_unreachable_backend_is_unavailable_not_none(
    unreachable_flags: FlagBackend, call: str
) -> None:
    calls = {
        "get": lambda: unreachable_flags.get("x", Environment.production),
        "list": lambda: unreachable_flags.list(Environment.production, None),
        "put": lambda: unreachable_flags.put("x", Environment.production, ONE_PERCENT),
        "delete": lambda: unreachable_flags.delete("x", Environment.production),
    }
    with pytest.raises(Unavailable) as raised:
        await calls[call]()
    assert raised.value.shown()  # something to tell a person


# --- issues --------------------------------------------------------------------------------

ISSUE_TRACKERS = ["local"]


@pytest.fixture(params=ISSUE_TRACKERS)
async def issues(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[IssueTracker]:
    tracker: IssueTracker = _builder("issues", request.param)(sqlite_url)
    yield tracker
    await _dispose(tracker)


async def test_issues_a_created_issue_is_found_by_its_reference(issues: IssueTracker) -> None:
    made = await issues.create(
        title="Roll new_nav out fast", description="why", labels=["deviation"], author="bob"
    )
    assert made.is_open and made.labels == ("deviation",)
    found = await issues.get(made.ref)
    assert (found.ref, found.title, found.labels) == (made.ref, made.title, made.labels)


async def test_issues_a_missing_issue_is_not_found(issues: IssueTracker) -> None:
    with pytest.raises(NotFound):
        await issues.get("#4242")


async def test_issues_nonsense_is_refused_with_a_reason(issues: IssueTracker) -> None:
    with pytest.raises(Refused) as raised:
        await issues.get("not a reference")
    assert "not an issue reference" in raised.value.shown()


@pytest.mark.parametrize("name", ISSUE_TRACKERS)
async def test_issues_an_unreachable_tracker_is_unavailable(name: str) -> None:
    tracker: IssueTracker = _builder("issues", name)(UNREACHABLE_DB)
    try:
        with pytest.raises(Unavailable):
            await tracker.get("#1")
    finally:
        await _dispose(tracker)


# --- directory -----------------------------------------------------------------------------

DIRECTORIES = ["file"]


@pytest.fixture(params=DIRECTORIES)
def directory(request: pytest.FixtureRequest, sqlite_url: str) -> Directory:
    built: Directory = _builder("directory", request.param)(sqlite_url)
    return built


async def test_directory_finds_people_by_email_in_any_case(directory: Directory) -> None:
    bob = await directory.by_email("Bob@Example.com")
    assert bob is not None and bob.handle == "bob" and "feature_flags" in bob.grants
    assert await directory.by_email("nobody@example.com") is None


async def test_directory_roles_and_their_members(directory: Directory) -> None:
    alice = await directory.by_handle("alice")
    assert alice is not None and "production" in alice.roles
    members = await directory.role_members("production")
    assert members is not None and [p.handle for p in members] == ["alice"]
    assert await directory.role_members("no-such-role") is None


# --- on call -------------------------------------------------------------------------------

ROTATIONS = ["file"]


@pytest.mark.parametrize("name", ROTATIONS)
async def test_oncall_names_who_is_on_call_over_time(name: str, sqlite_url: str) -> None:
    oncall: Oncall = _builder(
        "oncall",
        name,
        oncall={"rotation": {"starts_at": START, "shift_hours": 24, "people": ["alice", "dave"]}},
    )(sqlite_url)
    assert await oncall.on_call(START) == "alice"
    assert await oncall.on_call(START + timedelta(days=1)) == "dave"
    assert await oncall.on_call(START - timedelta(days=1)) is None


# --- presence (what the chat says) ---------------------------------------------------------


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackAPI]:
    async with FakeSlackAPI(bot_token="xoxb-contract") as api:
        populate(api)
        yield api


def _presence(api: FakeSlackAPI, **config: Any) -> SlackPresence:
    from slack_sdk.web.async_client import AsyncWebClient

    settings = SlackConfig(presence_cache_seconds=0, **config)
    client = AsyncWebClient(token="xoxb-contract", base_url=api.base_url)
    metrics = Metrics()
    people = SlackPeople(client, settings, metrics)
    return SlackPresence(client, people, settings, FrozenClock(START), metrics)


async def test_presence_says_who_is_away(slack: FakeSlackAPI) -> None:
    presence = _presence(slack)
    assert await presence.away("UBOB") is None
    slack.user("UBOB").presence = "away"
    assert await presence.away("UBOB") == "Slack shows you as away"


@pytest.mark.parametrize("failure", ["slow", "error"])
async def test_presence_that_cannot_be_had_is_unavailable(
    slack: FakeSlackAPI, failure: str
) -> None:
    presence = _presence(slack, timeout_seconds=0.3)
    if failure == "slow":
        slack.delay("users.getPresence", 2)
    else:
        slack.fail_next("users.getPresence", status=200, error="fatal_error")
    with pytest.raises(Unavailable) as raised:
        await presence.away("UBOB")
    assert raised.value.service == "Slack" and isinstance(raised.value, AdapterError)
