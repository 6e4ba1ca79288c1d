"""The flag backends against the systems behind them, beyond what the contract can see.

- unleash: Marvin's adapter writes to the real Unleash 8.2.0 server (tests/servers/unleash.py)
  and the official Python SDK (UnleashClient) evaluates what it wrote; the order of Unleash's
  events shows the strategy is there before the environment is switched on; a stub server
  that never answers shows what an unanswered write is (`OutcomeUnknown`).
- gitlab_project: against the loopback GitLab (tests/fakes/gitlab.py, GitLab's own validation
  of project feature flags): other environments' strategies and scopes stay as they were,
  wildcard scopes and inactive flags are refused with a reason, every page is listed.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from UnleashClient import UnleashClient  # type: ignore[attr-defined]
from UnleashClient.events import BaseEvent, UnleashEventType
from UnleashClient.utils import InstanceAllowType

from marvin.adapters.errors import NotFound, OutcomeUnknown, Refused, Unavailable
from marvin.adapters.gitlab import GitLabClient
from marvin.adapters.gitlab_project_flags import GitLabProjectFlags
from marvin.adapters.unleash_flags import UnleashFlags
from marvin.flags import Environment, FlagState
from tests.fakes.gitlab import FakeGitLab
from tests.servers.unleash import Unleash
from tests.test_contracts import (
    FLAGS_PROJECT,
    GITLAB_DEVELOPER_TOKEN,
    gitlab_world,
    unleash_clean_slate,
)

PRODUCTION, STAGING = Environment.production, Environment.staging
USERS = [f"user-{i}" for i in range(100_000)]


# --- unleash, with the official SDK ------------------------------------------------------------


@pytest.fixture
async def unleash(unleash_server: Unleash) -> AsyncIterator[UnleashFlags]:
    await unleash_clean_slate(unleash_server)
    backend = UnleashFlags(unleash_server.url, unleash_server.admin_token, timeout=5)
    yield backend
    await backend.aclose()


class Sdk:
    """A started UnleashClient for one environment that records what it really fetched: it
    swallows a 401 and answers False, so "off" alone proves nothing."""

    def __init__(self, server: Unleash, env: str, cache: Path) -> None:
        self.fetched: list[BaseEvent] = []
        self.client = UnleashClient(
            url=server.api_url,
            app_name="marvin-tests",
            instance_id=f"marvin-tests-{uuid.uuid4().hex[:8]}",
            custom_headers={"Authorization": server.client_tokens[env]},
            refresh_interval=1,
            disable_metrics=True,
            cache_directory=str(cache),
            event_callback=self._on_event,
            multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
        )

    def _on_event(self, event: BaseEvent) -> None:
        if event.event_type == UnleashEventType.FETCHED:  # only for a 200
            self.fetched.append(event)

    def wait_for(self, flag: str, check: Callable[[dict[str, Any]], bool]) -> None:
        """Until the newest fetched definition of `flag` passes `check` (the server answers
        from a cache it refreshes every second)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.fetched:
                features = self.fetched[-1].features  # type: ignore[attr-defined]
                mine = [f for f in features if f["name"] == flag]
                if mine and check(mine[0]):
                    return
            time.sleep(0.02)
        raise AssertionError(f"the SDK did not fetch the expected {flag} in time")

    def wait_fetched(self) -> None:
        """Until a first 200 came: the SDK's first fetch may still be on its way when
        `initialize_client` returns (its scheduler runs it), the more so on a loaded machine."""
        deadline = time.monotonic() + 10
        while not self.fetched and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.fetched, "the SDK fetched nothing (a 401 is answered with False, silently)"

    def on_for(self, flag: str, users: list[str]) -> set[str]:
        is_enabled = self.client.is_enabled
        return {user for user in users if is_enabled(flag, {"userId": user})}


@contextmanager
def sdk(server: Unleash, env: str, cache: Path) -> Iterator[Sdk]:
    made = Sdk(server, env, cache)
    made.client.initialize_client()  # fetches once before returning
    try:
        yield made
    finally:
        made.client.destroy()


def rollouts(*values: str) -> Callable[[dict[str, Any]], bool]:
    def check(feature: dict[str, Any]) -> bool:
        found = sorted(s["parameters"].get("rollout") for s in feature["strategies"])
        return bool(feature["enabled"]) and found == sorted(values)

    return check


async def admin(server: Unleash, method: str, path: str) -> Any:
    async with aiohttp.ClientSession(headers=server.admin_headers) as http:
        async with http.request(method, server.url + path) as answer:
            raw = await answer.read()
            return answer.status, (json.loads(raw) if raw else None)


async def test_unleash_one_percent_is_one_percent_for_the_sdk_and_sticky(
    unleash: UnleashFlags, unleash_server: Unleash, tmp_path: Path
) -> None:
    # Most of this test's time is the SDK's: ~0.1 ms for each of 210,000 evaluations.
    flag = "new_nav"
    one = FlagState(percentage_of_actors=Decimal(1))
    assert await unleash.put(flag, PRODUCTION, one) == one

    # Marvin's strategy came before the switch: Unleash never added its own "100%" one.
    status, events = await admin(unleash_server, "GET", f"/api/admin/events/{flag}")
    assert status == 200
    assert [e["type"] for e in reversed(events["events"])] == [
        "feature-created",
        "feature-strategy-add",
        "feature-environment-enabled",
    ]

    with sdk(unleash_server, "production", tmp_path / "first") as first:
        first.wait_for(flag, rollouts("1"))
        # Really fetched: an SDK that got a 401 answers False for everyone, silently.
        assert first.fetched and flag in first.client.feature_definitions()
        on = first.on_for(flag, USERS)
        assert 700 <= len(on) <= 1300, len(on)

        # Raising the share keeps who already sees it; a named user is in, whatever the share.
        sample = USERS[:10_000]
        outsider = next(u for u in USERS if u not in on)
        wider = FlagState(percentage_of_actors=Decimal(5), actors=(f"user:{outsider}",))
        assert await unleash.put(flag, PRODUCTION, wider) == wider
        first.wait_for(flag, rollouts("5", "100"))
        more = first.on_for(flag, [*sample, outsider])
        assert on & set(sample) <= more and outsider in more
        assert 350 <= len(more) <= 650, len(more)

    # Back to 1%: a second run, a new SDK instance, sees the very same users.
    assert await unleash.put(flag, PRODUCTION, one) == one
    with sdk(unleash_server, "production", tmp_path / "second") as second:
        second.wait_for(flag, rollouts("1"))
        assert second.fetched
        assert second.on_for(flag, USERS) == on

    # Staging is Unleash's development, which Marvin never switched on.
    with sdk(unleash_server, "development", tmp_path / "dev") as dev:
        dev.wait_fetched()
        assert dev.on_for(flag, USERS[:1000]) == set()
    assert await unleash.get(flag, STAGING) is None


async def test_unleash_archives_a_flag_only_when_no_environment_uses_it(
    unleash: UnleashFlags, unleash_server: Unleash
) -> None:
    flag = "both_envs"
    await unleash.put(flag, PRODUCTION, FlagState(percentage_of_actors=Decimal(1)))
    await unleash.put(flag, STAGING, FlagState(enabled=True))
    await unleash.delete(flag, PRODUCTION)
    assert await unleash.get(flag, PRODUCTION) is None
    assert await unleash.get(flag, STAGING) == FlagState(enabled=True)
    path = f"/api/admin/projects/default/features/{flag}"
    assert (await admin(unleash_server, "GET", path))[0] == 200  # not archived
    await unleash.delete(flag, STAGING)
    assert (await admin(unleash_server, "GET", path))[0] == 404  # archived
    # Setting it again brings the archived flag back.
    assert await unleash.put(flag, STAGING, FlagState(enabled=True)) == FlagState(enabled=True)
    assert await unleash.get(flag, PRODUCTION) is None


async def test_unleash_refuses_what_its_sdks_cannot_evaluate_before_sending_anything(
    unleash: UnleashFlags, unleash_server: Unleash
) -> None:
    with pytest.raises(Refused) as raised:
        await unleash.put("half", PRODUCTION, FlagState(percentage_of_actors=Decimal("0.5")))
    assert "whole percentages only" in raised.value.shown()
    assert "use 0% (off) or 1%" in raised.value.shown()
    path = "/api/admin/projects/default/features/half"
    assert (await admin(unleash_server, "GET", path))[0] == 404  # not even created


async def test_unleash_tokens_it_may_not_use_are_refused_without_being_shown(
    unleash_server: Unleash,
) -> None:
    for token, status in (
        ("*:*.not-the-secret-at-all", "401"),
        (unleash_server.client_tokens["production"], "403"),
    ):
        backend = UnleashFlags(unleash_server.url, token)
        try:
            with pytest.raises(Refused) as raised:
                await backend.get("anything", PRODUCTION)
        finally:
            await backend.aclose()
        shown = raised.value.shown()
        assert status in shown and token not in shown
        assert ("UNLEASH_ADMIN_TOKEN" in shown) == (status == "401")


async def test_unleash_a_project_or_environment_that_is_not_there_is_not_found(
    unleash_server: Unleash,
) -> None:
    for backend, says in (
        (UnleashFlags(unleash_server.url, unleash_server.admin_token, project="nope"), "project"),
        (
            UnleashFlags(
                unleash_server.url, unleash_server.admin_token, environments={"staging": "staging"}
            ),
            "unleash.environments",
        ),
    ):
        try:
            with pytest.raises(NotFound) as raised:
                await backend.put("anything", STAGING, FlagState(enabled=True))
        finally:
            await backend.aclose()
        assert says in raised.value.shown()


# --- unleash, when answers don't come ----------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def stub_unleash(routes: Mapping[tuple[str, str], Handler]) -> AsyncIterator[str]:
    """A stand-in Unleash on loopback: the project and its environments, then `routes`."""

    async def overview(request: web.Request) -> web.Response:
        return web.json_response({"name": "Default"})

    async def environments(request: web.Request) -> web.Response:
        envs = [
            {"name": n, "enabled": True, "visible": True} for n in ("development", "production")
        ]
        return web.json_response({"environments": envs})

    app = web.Application()
    app.router.add_get("/api/admin/projects/default/overview", overview)
    app.router.add_get("/api/admin/environments/project/default", environments)
    for (method, path), handler in routes.items():
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)  # cancels what still hangs
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


FEATURES = "/api/admin/projects/default/features"
FEATURE = FEATURES + "/{name}"


async def hang(request: web.Request) -> web.Response:
    """No answer: until the client has given up and gone (the stub stops quickly)."""
    await asyncio.sleep(10)
    return web.json_response({})


async def missing(request: web.Request) -> web.Response:
    return web.json_response({"message": "no such feature"}, status=404)


async def test_unleash_a_write_that_is_not_answered_is_outcome_unknown() -> None:
    async with stub_unleash({("GET", FEATURE): missing, ("POST", FEATURES): hang}) as url:
        backend = UnleashFlags(url, "*:*.stub", timeout=0.3)
        try:
            with pytest.raises(OutcomeUnknown) as raised:
                await backend.put("slow", PRODUCTION, FlagState(enabled=True))
            assert "did not answer" in raised.value.shown()
        finally:
            await backend.aclose()


async def test_unleash_a_read_that_is_not_answered_is_unavailable_only() -> None:
    async with stub_unleash({("GET", FEATURE): hang}) as url:
        backend = UnleashFlags(url, "*:*.stub", timeout=0.3)
        try:
            with pytest.raises(Unavailable) as raised:
                await backend.get("slow", PRODUCTION)
            assert not isinstance(raised.value, OutcomeUnknown)
            with pytest.raises(Unavailable) as raised:  # read before any write: none was made
                await backend.put("slow", PRODUCTION, FlagState(enabled=True))
            assert not isinstance(raised.value, OutcomeUnknown)
        finally:
            await backend.aclose()


async def test_unleash_a_failure_after_part_of_a_change_is_outcome_unknown() -> None:
    created: list[str] = []

    async def feature(request: web.Request) -> web.Response:
        if not created:
            return await missing(request)
        envs = [{"name": "production", "enabled": False, "strategies": []}]
        return web.json_response({"name": created[0], "environments": envs})

    async def create(request: web.Request) -> web.Response:
        created.append((await request.json())["name"])
        return web.json_response({"name": created[0]}, status=201)

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"message": "no"}, status=400)

    routes = {
        ("GET", FEATURE): feature,
        ("POST", FEATURES): create,
        ("POST", FEATURE + "/environments/production/strategies"): refuse,
    }
    async with stub_unleash(routes) as url:
        backend = UnleashFlags(url, "*:*.stub", timeout=2)
        try:
            with pytest.raises(OutcomeUnknown) as raised:
                await backend.put("halfway", PRODUCTION, FlagState(enabled=True))
        finally:
            await backend.aclose()
    assert created == ["halfway"]
    assert "after part of the change was made" in raised.value.shown()


# --- gitlab_project, against the loopback GitLab ----------------------------------------------


@pytest.fixture
async def gitlab() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab() as fake:
        gitlab_world(fake)
        yield fake


def project_flags(gitlab: FakeGitLab, **options: Any) -> GitLabProjectFlags:
    client = GitLabClient(gitlab.url, GITLAB_DEVELOPER_TOKEN, timeout=2)
    return GitLabProjectFlags(client, FLAGS_PROJECT, **options)


async def seed(
    backend: GitLabProjectFlags, name: str, *strategies: Any, active: bool = True
) -> None:
    """A flag made by someone else, through the API."""
    data = {"name": name, "version": "new_version_flag", "active": active}
    data["strategies"] = [
        {"name": kind, "parameters": params, "scopes": [{"environment_scope": s} for s in scopes]}
        for kind, params, scopes in strategies
    ]
    gl = backend.client.gl
    path = f"/projects/{FLAGS_PROJECT.replace('/', '%2F')}/feature_flags"
    await backend.client.call(gl.http_post, path, post_data=data, changes=True)


def strategies(gitlab: FakeGitLab, flag: str) -> list[tuple[str, dict[str, Any], list[str]]]:
    held = gitlab.project_flags(FLAGS_PROJECT)[flag].strategies
    return [(s.name or "", s.parameters, [sc.environment_scope for sc in s.scopes]) for s in held]


ON: dict[str, Any] = {}
ANN = {"userIds": "ann"}


async def test_gitlab_project_other_environments_stay_as_they_were(gitlab: FakeGitLab) -> None:
    backend = project_flags(gitlab)
    await seed(
        backend,
        "shared_flag",
        ("default", ON, ["production", "staging"]),
        ("userWithId", ANN, ["review/*"]),
    )
    one = FlagState(percentage_of_actors=Decimal(1))
    assert await backend.put("shared_flag", PRODUCTION, one) == one
    assert strategies(gitlab, "shared_flag") == [
        ("default", ON, ["staging"]),  # only production's scope went
        ("userWithId", ANN, ["review/*"]),
        (
            "flexibleRollout",
            {"groupId": "sharedflag", "rollout": "1", "stickiness": "default"},
            ["production"],
        ),
    ]
    assert len(gitlab.calls("PUT /projects/*/feature_flags/*")) == 1  # one change
    assert await backend.get("shared_flag", STAGING) == FlagState(enabled=True)

    await backend.delete("shared_flag", PRODUCTION)
    assert await backend.get("shared_flag", PRODUCTION) is None
    await backend.delete("shared_flag", STAGING)
    # review/* is still there: the flag stays, with only that.
    assert strategies(gitlab, "shared_flag") == [("userWithId", ANN, ["review/*"])]


async def test_gitlab_project_a_flag_only_this_environment_used_goes(gitlab: FakeGitLab) -> None:
    backend = project_flags(gitlab)
    await backend.put("solo", STAGING, FlagState(enabled=True))
    await backend.delete("solo", STAGING)
    assert "solo" not in gitlab.project_flags(FLAGS_PROJECT)


async def test_gitlab_project_a_growing_rollout_keeps_its_group(gitlab: FakeGitLab) -> None:
    backend = project_flags(gitlab)
    legacy = {"groupId": "legacy", "rollout": "1", "stickiness": "default"}
    await seed(backend, "grows", ("flexibleRollout", legacy, ["production"]))
    five = FlagState(percentage_of_actors=Decimal(5))
    assert await backend.put("grows", PRODUCTION, five) == five
    assert strategies(gitlab, "grows") == [
        ("flexibleRollout", {**legacy, "rollout": "5"}, ["production"])
    ]


async def test_gitlab_project_wildcard_scopes_are_read_but_not_changed(gitlab: FakeGitLab) -> None:
    backend = project_flags(gitlab)
    await seed(backend, "everywhere", ("default", ON, ["*"]))
    assert await backend.get("everywhere", PRODUCTION) == FlagState(enabled=True)
    with pytest.raises(Refused) as raised:
        await backend.put("everywhere", PRODUCTION, FlagState())
    assert "scoped *" in raised.value.shown()
    with pytest.raises(Refused):
        await backend.delete("everywhere", PRODUCTION)  # it would still be on after
    assert strategies(gitlab, "everywhere") == [("default", ON, ["*"])]


async def test_gitlab_project_an_inactive_flag_is_off_and_not_switched_on_for_others(
    gitlab: FakeGitLab,
) -> None:
    backend = project_flags(gitlab)
    await seed(
        backend,
        "paused",
        ("default", ON, ["production"]),
        ("default", ON, ["staging"]),
        active=False,
    )
    assert await backend.get("paused", PRODUCTION) == FlagState()
    with pytest.raises(Refused) as raised:
        await backend.put("paused", PRODUCTION, FlagState(enabled=True))
    assert "inactive" in raised.value.shown() and "staging" in raised.value.shown()
    assert not gitlab.project_flags(FLAGS_PROJECT)["paused"].active

    # Alone in production: switching it on is switching production on, and Marvin does.
    await seed(backend, "paused_alone", ("default", ON, ["production"]), active=False)
    one = FlagState(percentage_of_actors=Decimal(1))
    assert await backend.put("paused_alone", PRODUCTION, one) == one
    assert gitlab.project_flags(FLAGS_PROJECT)["paused_alone"].active


async def test_gitlab_project_lists_every_page(gitlab: FakeGitLab) -> None:
    backend = project_flags(gitlab, page_size=20)
    names = [f"flag_{i:02d}" for i in range(45)]
    for name in names:
        await seed(backend, name, ("default", ON, ["production"]))
    await seed(backend, "staging_only", ("default", ON, ["staging"]))
    listed = await backend.list(PRODUCTION, None)
    assert [n for n, _ in listed] == names
    assert len(gitlab.calls("GET /projects/*/feature_flags")) == 3  # 20 + 20 + 5


async def test_gitlab_project_says_what_gitlab_refused(gitlab: FakeGitLab) -> None:
    backend = project_flags(gitlab)
    with pytest.raises(Refused) as raised:  # GitLab's own rule for names
        await backend.put("trailing_", PRODUCTION, FlagState(enabled=True))
    assert "Name can contain only" in raised.value.shown()

    nowhere = GitLabProjectFlags(backend.client, "gitlab-org/nothing")
    with pytest.raises(NotFound) as missing_project:
        await nowhere.list(PRODUCTION, None)
    assert "gitlab.flags_project" in missing_project.value.shown()

    gitlab.add_user("watcher", token="glpat-reporter")
    gitlab.add_member(gitlab.project(FLAGS_PROJECT), "watcher", "reporter")
    reporter = GitLabProjectFlags(GitLabClient(gitlab.url, "glpat-reporter", 2), FLAGS_PROJECT)
    with pytest.raises(Refused) as forbidden:
        await reporter.put("any_flag", PRODUCTION, FlagState(enabled=True))
    assert "403" in forbidden.value.shown()
