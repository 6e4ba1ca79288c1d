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

import aiohttp
import pytest

from marvin.adapters.directory import Directory
from marvin.adapters.errors import AdapterError, NotFound, OutcomeUnknown, Refused, Unavailable
from marvin.adapters.flags import FlagBackend
from marvin.adapters.gitlab import GitLabClient
from marvin.adapters.gitlab_project_flags import GitLabProjectFlags
from marvin.adapters.issues import IssueTracker
from marvin.adapters.oncall import Oncall
from marvin.adapters.unleash_flags import UnleashFlags
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
from tests.servers.unleash import Unleash
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

FLAG_BACKENDS = ["local", "gitlab_instance", "gitlab_project", "unleash"]
GITLAB_TOKEN = "glpat-contract-admin"
GITLAB_DEVELOPER_TOKEN = "glpat-contract-developer"
FLAGS_PROJECT = "gitlab-org/gitlab"
UNREACHABLE_URL = "http://127.0.0.1:1"  # nothing listens on port 1

# What a backend cannot hold, by case id below, and what its refusal says: such a put must
# raise `Refused` with that in its message and leave the flag as it was. A case declared here
# that the backend holds after all fails too.
CANNOT_HOLD: dict[str, dict[str, str]] = {
    "gitlab_project": {
        "0.5% of time": "takes whole percentages only",  # GitLab: rollout is "0".."100"
        "actors": "can only target users",  # GitLab: userWithId only
        "swap actors": "can only target users",
    },
    "unleash": {
        "0.5% of time": "takes whole percentages only",  # the SDKs read whole numbers
        "actors": "can only target users",  # userId is the one standard actor field
        "swap actors": "can only target users",
    },
}
# Backends that hold both environments in one place (gitlab_instance has one instance each).
SHARED_ENVIRONMENTS = ["local", "gitlab_project", "unleash"]


def gitlab_world(gitlab: FakeGitLab) -> None:
    """The people, groups and projects the flag contract names as actors."""
    gitlab.add_user("marvin", token=GITLAB_TOKEN, admin=True)
    gitlab.add_user("bob")
    gitlab.add_group("gitlab-org")
    project = gitlab.add_project(FLAGS_PROJECT)
    # Project feature flags need no admin: a Developer of the project.
    gitlab.add_user("flagger", token=GITLAB_DEVELOPER_TOKEN)
    gitlab.add_member(project, "flagger", "developer")


async def unleash_clean_slate(unleash: Unleash) -> None:
    """Archive and then delete every flag of the shared server's project: a test sees its own
    flags only (the server lives for the whole session)."""
    base = f"{unleash.url}/api/admin/projects/{unleash.project}"
    async with aiohttp.ClientSession(headers=unleash.admin_headers) as http:
        async with http.get(f"{base}/features") as answer:
            names = [f["name"] for f in (await answer.json())["features"]]
        if names:
            for step in ("archive", "delete"):
                async with http.post(f"{base}/{step}", json={"features": names}) as answer:
                    assert answer.status < 300, await answer.text()


@asynccontextmanager
async def flag_backend(
    name: str, database: str, reachable: bool = True, unleash: Unleash | None = None
) -> AsyncIterator[Any]:
    if name == "gitlab_project":
        async with FakeGitLab() as gitlab:
            gitlab_world(gitlab)
            url = gitlab.url if reachable else UNREACHABLE_URL
            client = GitLabClient(url, GITLAB_DEVELOPER_TOKEN, timeout=2)
            yield GitLabProjectFlags(client, FLAGS_PROJECT)
        return
    if name == "unleash":
        if reachable:
            assert unleash is not None
            await unleash_clean_slate(unleash)
        backend = UnleashFlags(
            unleash.url if unleash and reachable else UNREACHABLE_URL,
            unleash.admin_token if unleash else "*:*.unreachable",
            project=unleash.project if unleash else "default",
            timeout=5,
        )
        try:
            yield backend
        finally:
            await backend.aclose()
        return
    if name != "gitlab_instance":
        backend = _builder("flags", name)(database if reachable else UNREACHABLE_DB)
        try:
            yield backend
        finally:
            await _dispose(backend)
        return
    async with FakeGitLab() as gitlab:
        gitlab_world(gitlab)
        url = gitlab.url if reachable else UNREACHABLE_URL
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
    # The real Unleash server only for the backend that needs it (it skips when not installed).
    unleash = request.getfixturevalue("unleash_server") if request.param == "unleash" else None
    async with flag_backend(request.param, sqlite_url, unleash=unleash) as backend:
        yield backend


@pytest.fixture(params=FLAG_BACKENDS)
async def unreachable_flags(
    request: pytest.FixtureRequest, sqlite_url: str
) -> AsyncIterator[FlagBackend]:
    async with flag_backend(request.param, sqlite_url, reachable=False) as backend:
        yield backend


ONE_PERCENT = FlagState(percentage_of_actors=Decimal(1))


def cannot_hold(flags: FlagBackend, case: str) -> str | None:
    return CANNOT_HOLD.get(flags.name, {}).get(case)


async def test_flags_an_unknown_flag_is_none(flags: FlagBackend) -> None:
    assert await flags.get("never_heard_of", Environment.production) is None
    assert await flags.list(Environment.production, None) == []


STATES = {
    "on": FlagState(enabled=True),
    "1% of actors": ONE_PERCENT,
    "0.5% of time": FlagState(percentage_of_time=Decimal("0.5")),
    "actors": FlagState(actors=("group:gitlab-org", "project:gitlab-org/gitlab", "user:bob")),
    "25% and an actor": FlagState(percentage_of_actors=Decimal(25), actors=("user:bob",)),
    "off": FlagState(),
}


@pytest.mark.parametrize("case", list(STATES))
async def test_flags_what_is_put_is_read_back(flags: FlagBackend, case: str) -> None:
    state = STATES[case]
    refusal = cannot_hold(flags, case)
    if refusal is not None:
        with pytest.raises(Refused) as raised:
            await flags.put("contract_flag", Environment.production, state)
        assert refusal in raised.value.shown()
        assert await flags.get("contract_flag", Environment.production) is None  # untouched
        return
    confirmed = await flags.put("contract_flag", Environment.production, state)
    assert confirmed == state
    assert await flags.get("contract_flag", Environment.production) == state


MOVES = {
    "on to 1%": (FlagState(enabled=True), ONE_PERCENT),
    "actors to time": (ONE_PERCENT, FlagState(percentage_of_time=Decimal(1))),
    "swap actors": (FlagState(actors=("user:bob",)), FlagState(actors=("group:gitlab-org",))),
    "to off": (FlagState(percentage_of_actors=Decimal(5), actors=("user:bob",)), FlagState()),
    "1% to on": (ONE_PERCENT, FlagState(enabled=True)),
    "5% to 1% and an actor": (
        FlagState(percentage_of_actors=Decimal(5)),
        FlagState(percentage_of_actors=Decimal(1), actors=("user:bob",)),
    ),
}


@pytest.mark.parametrize("case", list(MOVES))
async def test_flags_any_state_reaches_any_other(flags: FlagBackend, case: str) -> None:
    first, then = MOVES[case]
    refusal = cannot_hold(flags, case)
    held: FlagState | None = None
    for state in (first, then):
        try:
            assert await flags.put("moving", Environment.production, state) == state
        except Refused as refused:
            assert refusal is not None and refusal in refused.shown(), refused
            assert await flags.get("moving", Environment.production) == held  # untouched
            return
        assert await flags.get("moving", Environment.production) == state
        held = state
    assert refusal is None, f"{flags.name} was declared unable to hold {case!r}, but did"


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


@pytest.fixture(params=SHARED_ENVIRONMENTS)
async def shared_flags(
    request: pytest.FixtureRequest, sqlite_url: str
) -> AsyncIterator[FlagBackend]:
    unleash = request.getfixturevalue("unleash_server") if request.param == "unleash" else None
    async with flag_backend(request.param, sqlite_url, unleash=unleash) as backend:
        yield backend


async def test_flags_environments_are_apart(shared_flags: FlagBackend) -> None:
    flags = shared_flags
    staging, production = Environment.staging, Environment.production
    await flags.put("apart", production, ONE_PERCENT)
    assert await flags.get("apart", staging) is None
    await flags.put("apart", staging, FlagState(enabled=True))
    await flags.put("apart", production, FlagState())
    assert await flags.get("apart", staging) == FlagState(enabled=True)
    assert await flags.list(staging, None) == [("apart", FlagState(enabled=True))]
    await flags.delete("apart", production)
    assert await flags.get("apart", production) is None
    assert await flags.list(production, None) == []
    assert await flags.get("apart", staging) == FlagState(enabled=True)
    await flags.delete("apart", staging)
    assert await flags.get("apart", staging) is None


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
    # Nothing was sent, so nothing can have been made: not "outcome unknown".
    assert not isinstance(raised.value, OutcomeUnknown)


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


async def test_issues_open_ones_are_found_by_label_and_title(issues: IssueTracker) -> None:
    wanted = await issues.create(
        title="Change: deploy V1.42.0", description="", labels=["change"], author="dave"
    )
    await issues.create(title="deploy v1.42.0 notes", description="", labels=[], author="dave")
    await issues.create(title="Change: deploy v1.43", description="", labels=["change"], author="x")
    found = await issues.open_labelled("change", "v1.42.0")
    assert [i.ref for i in found] == [wanted.ref]


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
