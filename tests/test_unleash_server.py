"""The real Unleash server (tests/servers/unleash.py) answers as Marvin's adapter will expect.

Admin API through plain `requests`; evaluation through the official Python SDK (UnleashClient),
sync and async. Skips when tests/servers/install-unleash has not been run (fails instead with
MARVIN_REQUIRE_UNLEASH=1).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import UnleashClient
from UnleashClient.events import BaseEvent, UnleashEventType
from UnleashClient.utils import InstanceAllowType

from tests.servers import unleash as servers
from tests.servers.unleash import Unleash, UnleashServer

USERS = [f"user-{i}" for i in range(100_000)]


# --- helpers -----------------------------------------------------------------------------


class Admin:
    """The few Admin API calls the tests make, each asserting its documented status."""

    def __init__(self, unleash: Unleash) -> None:
        self.u = unleash
        self.http = requests.Session()
        self.http.headers.update(unleash.admin_headers)

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        response = self.http.request(method, self.u.url + path, json=body, timeout=10)
        assert response.status_code == expect, (method, path, response.text)
        return response.json() if response.content else None

    def features(self, flag: str = "") -> str:
        base = f"/api/admin/projects/{self.u.project}/features"
        return f"{base}/{flag}" if flag else base

    def create(self, flag: str) -> Any:
        return self.call(
            "POST",
            self.features(),
            {"name": flag, "type": "release", "description": "made by Marvin's tests"},
            expect=201,
        )

    def add_rollout(self, flag: str, env: str, rollout: str) -> Any:
        return self.call(
            "POST",
            f"{self.features(flag)}/environments/{env}/strategies",
            {
                "name": "flexibleRollout",
                "parameters": {"rollout": rollout, "stickiness": "default", "groupId": flag},
                "constraints": [],
            },
        )

    def switch(self, flag: str, env: str, on: bool) -> None:
        self.call("POST", f"{self.features(flag)}/environments/{env}/{'on' if on else 'off'}")

    def strategies(self, flag: str, env: str) -> list[dict[str, Any]]:
        feature = self.call("GET", self.features(flag))
        (environment,) = [e for e in feature["environments"] if e["name"] == env]
        return list(environment["strategies"])


def new_flag() -> str:
    return f"marvin-{uuid.uuid4().hex[:10]}"


class Client:
    """A started UnleashClient that records whether it really fetched flags."""

    def __init__(self, unleash: Unleash, env: str, cache: Path, token: str | None = None):
        self.fetched: list[BaseEvent] = []
        self.sdk = UnleashClient.UnleashClient(
            url=unleash.api_url,
            app_name="marvin-tests",
            instance_id=f"marvin-tests-{uuid.uuid4().hex[:8]}",
            custom_headers={"Authorization": token or unleash.client_tokens[env]},
            refresh_interval=1,
            disable_metrics=True,
            cache_directory=str(cache),
            event_callback=self._on_event,
            multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
        )

    def _on_event(self, event: BaseEvent) -> None:
        # Delivered on the SDK's own thread, after the fetched state is loaded.
        if event.event_type == UnleashEventType.FETCHED:
            self.fetched.append(event)

    def __enter__(self) -> Client:
        self.sdk.initialize_client()  # fetches once, synchronously, before returning
        return self

    def wait_for(self, flag: str, check: Any = lambda f: True, timeout: float = 10.0) -> None:
        """Wait until the SDK has fetched a definition of `flag` that passes `check`.

        FETCHED comes only for a 200 (not a 304, not a 401), so a bad token never gets here.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in reversed(self.fetched):
                feature = [f for f in event.features if f["name"] == flag]  # type: ignore[attr-defined]
                if feature and check(feature[0]):
                    return
                break  # only the newest state counts
            time.sleep(0.02)
        raise AssertionError(f"the SDK did not fetch the expected {flag} within {timeout} s")

    def __exit__(self, *exc: object) -> None:
        self.sdk.destroy()

    def on_for(self, flag: str, users: list[str] = USERS) -> set[str]:
        is_enabled = self.sdk.is_enabled
        return {user for user in users if is_enabled(flag, {"userId": user})}


@pytest.fixture
def admin(unleash_server: Unleash) -> Admin:
    return Admin(unleash_server)


@pytest.fixture
def sdk_cache(tmp_path: Path) -> Path:
    return tmp_path / "unleash-cache"


@pytest.fixture
def client(unleash_server: Unleash, tmp_path: Path) -> Iterator[Client]:
    with Client(unleash_server, "production", tmp_path / "cache") as made:
        yield made


# --- the server --------------------------------------------------------------------------


def test_the_server_is_the_pinned_open_source_unleash(unleash_server: Unleash) -> None:
    assert unleash_server.version == "8.2.0"
    assert requests.get(unleash_server.url + "/health", timeout=5).json() == {"health": "GOOD"}
    print(f"Unleash {unleash_server.version} started in {unleash_server.start_seconds:.1f} s")


def test_development_and_production_are_enabled_for_the_default_project(admin: Admin) -> None:
    body = admin.call("GET", "/api/admin/environments/project/default")
    assert {e["name"]: e["enabled"] for e in body["environments"]} == {
        "development": True,
        "production": True,
    }


def test_open_source_unleash_cannot_create_a_staging_environment(admin: Admin) -> None:
    # Creating environments is an Enterprise feature: OSS has no POST /api/admin/environments,
    # and a project can only be given an environment that exists.
    admin.call("POST", "/api/admin/environments", {"name": "staging", "type": "test"}, 404)
    refused = admin.call(
        "POST", "/api/admin/projects/default/environments", {"environment": "staging"}, 400
    )
    assert "staging does not exist" in refused["message"]


def test_tokens_are_checked(unleash_server: Unleash) -> None:
    url = unleash_server.url
    assert requests.get(url + "/api/admin/projects", timeout=5).status_code == 401
    bad = {"Authorization": "*:*.not-a-token"}
    assert requests.get(url + "/api/admin/projects", headers=bad, timeout=5).status_code == 401
    client_token = {"Authorization": unleash_server.client_tokens["production"]}
    # A backend (client) token reads /api/client but is refused by the Admin API.
    assert requests.get(url + "/api/client/features", headers=client_token, timeout=5).ok
    denied = requests.get(url + "/api/admin/projects", headers=client_token, timeout=5)
    assert denied.status_code == 403


def test_a_second_server_runs_beside_the_first(unleash_server: Unleash) -> None:
    with UnleashServer() as other:
        assert other.url != unleash_server.url
        assert other.database != unleash_server.database
        assert requests.get(other.url + "/health", timeout=5).ok
        # Each server has its own tokens and data.
        theirs = requests.get(
            other.url + "/api/admin/projects", headers=unleash_server.admin_headers, timeout=5
        )
        assert theirs.status_code == 401
    assert requests.get(unleash_server.url + "/health", timeout=5).ok


# --- flags, strategies and the SDK ---------------------------------------------------------


async def test_one_percent_rollout_is_about_one_percent_and_sticky(
    unleash_server: Unleash, admin: Admin, tmp_path: Path
) -> None:
    flag, everyone = new_flag(), new_flag()
    created = admin.create(flag)
    assert created["name"] == flag and created["project"] == "default"
    # The same name again: 409.
    admin.call("POST", admin.features(), {"name": flag, "type": "release"}, expect=409)
    strategy = admin.add_rollout(flag, "production", "1")
    assert strategy["id"] and strategy["parameters"] == {
        "rollout": "1",
        "stickiness": "default",
        "groupId": flag,
    }
    admin.switch(flag, "production", on=True)
    admin.create(everyone)
    admin.add_rollout(everyone, "production", "100")
    admin.switch(everyone, "production", on=True)

    with Client(unleash_server, "production", tmp_path / "first") as first:
        # Proof that it fetched (a 401 gives no FETCHED event and an empty flag list).
        first.wait_for(flag)
        assert {flag, everyone} <= set(first.sdk.feature_definitions())
        assert first.on_for(everyone, USERS[:1000]) == set(USERS[:1000])
        on = first.on_for(flag)
    assert 700 <= len(on) <= 1300, len(on)

    # The same users on a second, independent client (the asyncio one): same buckets.
    from UnleashClient import AsyncUnleashClient

    async with AsyncUnleashClient(
        url=unleash_server.api_url,
        app_name="marvin-tests-async",
        instance_id=f"marvin-tests-{uuid.uuid4().hex[:8]}",
        custom_headers={"Authorization": unleash_server.client_tokens["production"]},
        refresh_interval=1,
        disable_metrics=True,
        cache_directory=str(tmp_path / "second"),
        multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
    ) as second:
        for _ in range(200):  # the server may answer from its cache for ~1 s
            if flag in second.feature_definitions():
                break
            await asyncio.sleep(0.05)
        assert flag in second.feature_definitions()
        assert {u for u in USERS if second.is_enabled(flag, {"userId": u})} == on

    # Development was never switched on: off there for everyone.
    with Client(unleash_server, "development", tmp_path / "dev") as dev:
        dev.wait_for(flag, lambda f: not f["enabled"])
        assert dev.on_for(flag, USERS[:1000]) == set()


def test_a_bad_token_makes_the_sdk_answer_false_silently(
    unleash_server: Unleash, admin: Admin, tmp_path: Path
) -> None:
    flag = new_flag()
    admin.create(flag)
    admin.switch(flag, "production", on=True)
    bad = "*:production.not-a-real-token"
    with Client(unleash_server, "production", tmp_path / "bad", token=bad) as blind:
        assert blind.sdk.is_enabled(flag, {"userId": "u"}) is False  # no error raised...
        assert blind.sdk.feature_definitions() == {}  # ...because nothing was fetched
        time.sleep(0.2)
        assert not blind.fetched


def test_enabling_a_flag_without_a_strategy_turns_it_on_for_everyone(
    admin: Admin, client: Client
) -> None:
    flag = new_flag()
    admin.create(flag)
    assert admin.strategies(flag, "production") == []
    admin.switch(flag, "production", on=True)
    # Unleash 8 adds its default strategy on the way: flexibleRollout at "100".
    (added,) = admin.strategies(flag, "production")
    assert added["name"] == "flexibleRollout"
    assert added["parameters"] == {"rollout": "100", "stickiness": "default", "groupId": flag}
    client.wait_for(flag, lambda f: f["enabled"])
    assert client.on_for(flag, USERS[:2000]) == set(USERS[:2000])

    # Deleting the last strategy switches the environment off again (not "on, no strategy").
    admin.call("DELETE", f"{admin.features(flag)}/environments/production/strategies/{added['id']}")
    feature = admin.call("GET", admin.features(flag))
    (production,) = [e for e in feature["environments"] if e["name"] == "production"]
    assert production["enabled"] is False and production["strategies"] == []
    client.wait_for(flag, lambda f: not f["enabled"])
    assert client.on_for(flag, USERS[:2000]) == set()


def rollout_is(value: str) -> Any:
    return lambda f: [s["parameters"]["rollout"] for s in f["strategies"]] == [value]


def test_unleash_stores_any_rollout_string(admin: Admin, client: Client) -> None:
    flag = new_flag()
    admin.create(flag)
    strategy = admin.add_rollout(flag, "production", "150")
    assert strategy["parameters"]["rollout"] == "150"  # 200, no 400: Marvin must validate
    admin.switch(flag, "production", on=True)
    path = f"{admin.features(flag)}/environments/production/strategies/{strategy['id']}"
    assert admin.call("GET", path)["parameters"]["rollout"] == "150"
    # The SDK (its Yggdrasil engine) treats a rollout it cannot read as 0 %: "150" is on for
    # NOBODY, not everybody, and no error is raised anywhere.
    client.wait_for(flag, rollout_is("150"))
    assert client.on_for(flag, USERS[:2000]) == set()

    patched = admin.call(
        "PATCH", path, [{"op": "replace", "path": "/parameters/rollout", "value": "abc"}]
    )
    assert patched["parameters"]["rollout"] == "abc"
    replaced = admin.call(
        "PUT",
        path,
        {
            "name": "flexibleRollout",
            "parameters": {"rollout": "1.5", "stickiness": "default", "groupId": flag},
            "constraints": [],
        },
    )
    assert replaced["parameters"]["rollout"] == "1.5"
    client.wait_for(flag, rollout_is("1.5"))
    assert client.on_for(flag, USERS[:2000]) == set()  # a fraction is 0 % too


# --- archive and events ------------------------------------------------------------------


def test_archive_and_the_events_of_a_flag(admin: Admin) -> None:
    flag = new_flag()
    admin.create(flag)
    admin.add_rollout(flag, "production", "1")
    admin.switch(flag, "production", on=True)
    admin.call("DELETE", admin.features(flag), expect=202)
    admin.call("GET", admin.features(flag), expect=404)
    refused = admin.call("POST", f"{admin.features(flag)}/environments/production/on", None, 400)
    assert refused["name"] == "ArchivedFeatureError"

    # Deprecated in 8.2 (the OpenAPI marks it so) but still served, newest first.
    old = admin.call("GET", f"/api/admin/events/{flag}")
    assert old["toggleName"] == flag
    types = [e["type"] for e in old["events"]]
    assert types == [
        "feature-archived",
        "feature-environment-enabled",
        "feature-strategy-add",
        "feature-created",
    ]
    assert {e["createdBy"] for e in old["events"]} == {"marvin-admin"}  # the token's name
    assert old["events"][1]["environment"] == "production"

    # Its successor: GET /api/admin/search/events with operator filters.
    found = admin.call("GET", f"/api/admin/search/events?feature=IS:{flag}")
    assert found["total"] == 4
    assert [e["type"] for e in found["events"]] == types

    archived = admin.call(
        "GET", f"/api/admin/search/features?project=IS:default&lifecycle=IS:archived&query={flag}"
    )
    assert [f["name"] for f in archived["features"]] == [flag]

    admin.call("POST", "/api/admin/projects/default/revive", {"features": [flag]})
    assert admin.call("GET", admin.features(flag))["name"] == flag


# --- skipping ----------------------------------------------------------------------------


def test_a_missing_install_skips_or_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(servers, "HOME", tmp_path)
    monkeypatch.setattr(servers, "STAMP", tmp_path / ".installed")
    monkeypatch.setattr(servers, "NODE", tmp_path / "node")
    monkeypatch.setattr(servers, "REQUIRE", False)
    with pytest.raises(pytest.skip.Exception, match="install-unleash"):
        with servers.unleash_or_skip():
            pass
    monkeypatch.setattr(servers, "REQUIRE", True)
    with pytest.raises(pytest.fail.Exception, match="MARVIN_REQUIRE_UNLEASH=1"):
        with servers.unleash_or_skip():
            pass
