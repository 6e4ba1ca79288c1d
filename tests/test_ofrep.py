"""OFREP served from the embedded flag store, driven by the real OpenFeature clients.

The OpenFeature SDK with `openfeature-provider-ofrep` (which sends one single-flag request
per evaluation, with `requests`) runs in a worker thread against the aiohttp routes on a
loopback port; the bulk endpoint is polled the way static-context providers poll it
(`If-None-Match`), with aiohttp.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode as SdkErrorCode
from openfeature.flag_evaluation import Reason as SdkReason

from marvin.adapters.errors import Unavailable
from marvin.adapters.flags import LocalFlagBackend
from marvin.clock import Clock, SystemClock
from marvin.evaluation import evaluate
from marvin.flagd import write_flagd_file
from marvin.flags import Environment, FlagState
from marvin.ofrep import FlagSnapshots, add_ofrep_routes, tokens_from_env
from marvin.store.db import Store
from tests.harness import Bot

PROD_TOKEN = "prod-token-0123456789abcdef"
STAGING_TOKEN = "staging-token-0123456789abcdef"
# Keys evaluated through each SDK provider, key by key (OFREP: one HTTP request each).
OFREP_SAMPLE = 200
OFREP_ON_SAMPLE = 100
FLAGD_SAMPLE = 3_000


@pytest.fixture(autouse=True)
def _tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARVIN_OFREP_TOKEN_PRODUCTION", PROD_TOKEN)
    monkeypatch.setenv("MARVIN_OFREP_TOKEN_STAGING", STAGING_TOKEN)


@pytest.fixture(autouse=True)
def _fresh_openfeature() -> Iterator[None]:
    yield
    api.shutdown()
    api.clear_providers()


@dataclass
class Served:
    url: str
    http: aiohttp.ClientSession

    async def post(
        self, path: str, body: Any = None, *, token: str | None = PROD_TOKEN, **headers: str
    ) -> aiohttp.ClientResponse:
        if token is not None:
            headers.setdefault("Authorization", f"Bearer {token}")
        data = body if isinstance(body, bytes) else None
        return await self.http.post(
            self.url + path, json=None if data is not None else body, data=data, headers=headers
        )


@asynccontextmanager
async def serving(store: Store, clock: Clock, **options: Any) -> AsyncIterator[Served]:
    app = web.Application()
    add_ofrep_routes(app, store, clock, tokens_from_env(), **options)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield Served(str(server.make_url("")), http)
    finally:
        await server.close()


@pytest.fixture
async def served(bot: Bot) -> AsyncIterator[Served]:
    async with serving(bot.services.store, bot.clock) as s:
        yield s


def ofrep_client(url: str, token: str | None, domain: str = "ofrep") -> OpenFeatureClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    api.set_provider_and_wait(OFREPProvider(url, headers_factory=lambda: headers), domain)
    return api.get_client(domain)


def flagd_client(path: Path, domain: str = "flagd") -> OpenFeatureClient:
    provider = FlagdProvider(
        resolver_type=ResolverType.FILE, offline_flag_source_path=str(path), deadline_ms=100
    )
    api.set_provider_and_wait(provider, domain)
    return api.get_client(domain)


def values(client: OpenFeatureClient, flag: str, keys: list[str]) -> list[bool]:
    return [client.get_boolean_value(flag, False, EvaluationContext(targeting_key=k)) for k in keys]


async def put(
    bot: Bot, flag: str, state: FlagState, env: Environment = Environment.production
) -> None:
    await LocalFlagBackend(bot.services.store, bot.clock).put(flag, env, state)


# --- the rollout, through the pipeline and both SDK providers ---------------------------------


@pytest.fixture
def _quick_thread_switches() -> Iterator[None]:
    """The SDK's blocking `requests` calls run in a worker thread while the server runs on
    the event loop: a shorter GIL switch interval halves each round trip (about 3 ms to
    1.5 ms) so the sample below stays fast."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("_quick_thread_switches")
async def test_one_percent_of_actors_is_the_same_actors_every_time_and_in_flagd(
    bot: Bot, served: Served, tmp_path: Path
) -> None:
    assert (await bot.say("alice", "feature set new_nav true --staging")).ok
    reply = await bot.say("bob", "feature set new_nav 1 --actors")
    assert reply.ok, reply.text
    state = FlagState(percentage_of_actors=Decimal(1))

    everyone = [f"user-{i}" for i in range(100_000)]
    on = {k for k in everyone if evaluate("new_nav", state, {"targetingKey": k}).value}
    assert 700 <= len(on) <= 1300

    # A sample through the OFREP provider (one HTTP request per key), key by key the same
    # as the pure function that counted the 100,000, and the same again through a second
    # server with its own cache: another replica.
    sample = everyone[:OFREP_SAMPLE] + sorted(on)[:OFREP_ON_SAMPLE]
    expected = [k in on for k in sample]
    client = ofrep_client(served.url, PROD_TOKEN)
    assert await asyncio.to_thread(values, client, "new_nav", sample) == expected
    async with serving(bot.services.store, bot.clock) as replica:
        again = ofrep_client(replica.url, PROD_TOKEN, "replica")
        assert await asyncio.to_thread(values, again, "new_nav", sample) == expected

    # The flagd provider, reading the file Marvin writes, puts the same actors in: a larger
    # sample, and every actor the 100,000 turned on.
    path = tmp_path / "flags.flagd.json"
    assert await write_flagd_file(bot.services.store, path, Environment.production)
    flagd = flagd_client(path)
    sample = everyone[:FLAGD_SAMPLE] + sorted(on)
    expected = [k in on for k in sample]
    assert await asyncio.to_thread(values, flagd, "new_nav", sample) == expected

    details = await asyncio.to_thread(
        client.get_boolean_details, "new_nav", False, EvaluationContext(targeting_key=min(on))
    )
    assert (details.value, details.reason, details.variant) == (True, SdkReason.SPLIT, "on")


async def test_the_token_chooses_the_environment(bot: Bot, served: Served) -> None:
    assert (await bot.say("alice", "feature set new_nav true --staging")).ok
    staging = ofrep_client(served.url, STAGING_TOKEN, "staging")
    details = await asyncio.to_thread(
        staging.get_boolean_details, "new_nav", False, EvaluationContext(targeting_key="x")
    )
    assert (details.value, details.reason, details.variant) == (True, SdkReason.STATIC, "on")
    assert details.flag_metadata == {"environment": "staging"}

    production = ofrep_client(served.url, PROD_TOKEN, "production")
    details = await asyncio.to_thread(
        production.get_boolean_details, "new_nav", True, EvaluationContext(targeting_key="x")
    )
    assert details.error_code == SdkErrorCode.FLAG_NOT_FOUND
    assert details.value is True  # the application's own default


@pytest.mark.parametrize(
    ("context", "value", "reason"),
    [
        ({"user": "bob"}, True, SdkReason.TARGETING_MATCH),
        ({"project": "gitlab-org/gitlab"}, True, SdkReason.TARGETING_MATCH),
        ({"group": "gitlab-com"}, True, SdkReason.TARGETING_MATCH),
        ({"user": "alice"}, False, SdkReason.DEFAULT),
        ({"user": "Bob"}, False, SdkReason.DEFAULT),
        ({"project": "gitlab-org"}, False, SdkReason.DEFAULT),  # a path, not a prefix
        ({"user": ["bob"]}, False, SdkReason.DEFAULT),
        ({}, False, SdkReason.DEFAULT),
    ],
)
async def test_actor_gates_match_the_context(
    bot: Bot,
    served: Served,
    tmp_path: Path,
    context: dict[str, Any],
    value: bool,
    reason: SdkReason,
) -> None:
    state = FlagState(actors=("group:gitlab-com", "project:gitlab-org/gitlab", "user:bob"))
    await put(bot, "beta", state)
    client = ofrep_client(served.url, PROD_TOKEN)
    ctx = EvaluationContext(targeting_key="someone", attributes=context)
    details = await asyncio.to_thread(client.get_boolean_details, "beta", not value, ctx)
    assert (details.value, details.reason) == (value, reason)
    assert details.variant == ("on" if value else "off")

    path = tmp_path / "flags.json"
    await write_flagd_file(bot.services.store, path)
    flagd = flagd_client(path)
    assert await asyncio.to_thread(flagd.get_boolean_value, "beta", not value, ctx) is value


async def test_reasons_for_on_and_off(bot: Bot, served: Served) -> None:
    await put(bot, "everyone", FlagState(enabled=True))
    await put(bot, "nobody", FlagState())
    client = ofrep_client(served.url, PROD_TOKEN)
    ctx = EvaluationContext(targeting_key="k")
    on = await asyncio.to_thread(client.get_boolean_details, "everyone", False, ctx)
    off = await asyncio.to_thread(client.get_boolean_details, "nobody", True, ctx)
    assert (on.value, on.reason, on.variant) == (True, SdkReason.STATIC, "on")
    assert (off.value, off.reason, off.variant) == (False, SdkReason.DISABLED, "off")


async def test_percentage_of_time_is_random_per_call(bot: Bot, served: Served) -> None:
    await put(bot, "dice", FlagState(percentage_of_time=Decimal(50)))
    answers = []
    for _ in range(60):
        response = await served.post("/ofrep/v1/evaluate/flags/dice", {"context": {}})
        body = await response.json()
        assert body["reason"] == "SPLIT"
        answers.append(body["value"])
    assert 10 < sum(answers) < 50  # 60 fair coins: outside this is a 1-in-30,000 event


# --- errors -------------------------------------------------------------------------------


async def test_no_token_or_a_wrong_one_is_401(bot: Bot, served: Served) -> None:
    await put(bot, "f", FlagState(enabled=True))
    for token in (None, "wrong", PROD_TOKEN + "x", PROD_TOKEN[:-1], "Ünïcode"):
        for path in ("/ofrep/v1/evaluate/flags/f", "/ofrep/v1/evaluate/flags"):
            response = await served.post(path, {"context": {}}, token=token)
            assert response.status == 401, (token, path)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert PROD_TOKEN not in await response.text()
    basic = await served.post("/ofrep/v1/evaluate/flags/f", {}, Authorization=f"Basic {PROD_TOKEN}")
    assert basic.status == 401
    api_key = await served.post(
        "/ofrep/v1/evaluate/flags/f", {}, token=None, **{"X-API-Key": PROD_TOKEN}
    )
    assert api_key.status == 200

    client = ofrep_client(served.url, None, "anonymous")
    details = await asyncio.to_thread(client.get_boolean_details, "f", False)
    assert details.error_code == SdkErrorCode.GENERAL and details.value is False
    wrong = ofrep_client(served.url, "wrong", "wrong")
    details = await asyncio.to_thread(wrong.get_boolean_details, "f", False)
    assert details.error_code == SdkErrorCode.GENERAL and details.value is False


async def test_unknown_and_deleted_flags_are_flag_not_found(bot: Bot, served: Served) -> None:
    response = await served.post("/ofrep/v1/evaluate/flags/nope", {"context": {}})
    assert response.status == 404
    assert await response.json() == {
        "key": "nope",
        "errorCode": "FLAG_NOT_FOUND",
        "errorDetails": "flag 'nope' was not found in production",
    }
    client = ofrep_client(served.url, PROD_TOKEN)
    details = await asyncio.to_thread(client.get_boolean_details, "nope", True)
    assert details.error_code == SdkErrorCode.FLAG_NOT_FOUND and details.value is True

    await put(bot, "gone", FlagState(enabled=True))
    bot.clock.advance(seconds=2)
    assert await asyncio.to_thread(client.get_boolean_value, "gone", False) is True
    await LocalFlagBackend(bot.services.store, bot.clock).delete("gone", Environment.production)
    bot.clock.advance(seconds=2)
    details = await asyncio.to_thread(client.get_boolean_details, "gone", False)
    assert details.error_code == SdkErrorCode.FLAG_NOT_FOUND


async def test_a_percentage_of_actors_needs_a_targeting_key(bot: Bot, served: Served) -> None:
    await put(bot, "ramp", FlagState(percentage_of_actors=Decimal(5), actors=("user:bob",)))
    client = ofrep_client(served.url, PROD_TOKEN)
    details = await asyncio.to_thread(client.get_boolean_details, "ramp", False)
    assert details.error_code == SdkErrorCode.TARGETING_KEY_MISSING
    # An actor gate lets its actor in without one.
    bob = EvaluationContext(attributes={"user": "bob"})
    assert await asyncio.to_thread(client.get_boolean_value, "ramp", False, bob) is True

    response = await served.post("/ofrep/v1/evaluate/flags/ramp", {"context": {"targetingKey": ""}})
    assert response.status == 400
    assert (await response.json())["errorCode"] == "TARGETING_KEY_MISSING"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "PARSE_ERROR"),
        (b"", "PARSE_ERROR"),
        (b"\xff\xfe", "PARSE_ERROR"),
        (b"[" * 30_000 + b"]" * 30_000, "PARSE_ERROR"),
        (b"[1, 2]", "PARSE_ERROR"),
        (b'{"context": "bob"}', "INVALID_CONTEXT"),
        (b'{"context": {"targetingKey": 42}}', "INVALID_CONTEXT"),
        (b'{"context": {"targetingKey": "\\ud800"}}', "INVALID_CONTEXT"),
        (b'{"context": {"targetingKey": "' + b"x" * 70_000 + b'"}}', "INVALID_CONTEXT"),
    ],
)
async def test_a_bad_body_is_a_clear_400(bot: Bot, served: Served, body: bytes, code: str) -> None:
    await put(bot, "f", FlagState(enabled=True))
    single = await served.post("/ofrep/v1/evaluate/flags/f", body)
    assert single.status == 400
    answer = await single.json()
    assert answer["key"] == "f" and answer["errorCode"] == code and answer["errorDetails"]
    bulk = await served.post("/ofrep/v1/evaluate/flags", body)
    assert bulk.status == 400
    answer = await bulk.json()
    assert answer["errorCode"] == code and "key" not in answer


@pytest.mark.parametrize("depth", [100, 990, 1_100, 20_000])
async def test_deeply_nested_contexts_never_fail_the_server(
    bot: Bot, served: Served, depth: int
) -> None:
    await put(bot, "f", FlagState(enabled=True))
    body = b'{"context": {"deep": ' + b"[" * depth + b"]" * depth + b"}}"
    for path in ("/ofrep/v1/evaluate/flags/f", "/ofrep/v1/evaluate/flags"):
        response = await served.post(path, body)
        assert response.status in (200, 400), (path, depth, response.status)
        if response.status == 400:
            assert (await response.json())["errorCode"] in ("PARSE_ERROR", "INVALID_CONTEXT")


async def test_a_chunked_body_over_the_limit_is_a_400(bot: Bot, served: Served) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"context": {"targetingKey": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}}'

    response = await served.http.post(
        served.url + "/ofrep/v1/evaluate/flags/f",
        data=chunks(),
        headers={"Authorization": f"Bearer {PROD_TOKEN}"},
    )
    assert response.status == 400
    assert (await response.json())["errorCode"] == "INVALID_CONTEXT"


async def test_a_body_without_context_is_an_empty_context(bot: Bot, served: Served) -> None:
    await put(bot, "f", FlagState(enabled=True))
    response = await served.post("/ofrep/v1/evaluate/flags/f", {})
    assert response.status == 200
    assert await response.json() == {
        "key": "f",
        "value": True,
        "reason": "STATIC",
        "variant": "on",
        "metadata": {"environment": "production"},
    }


# --- bulk, ETag and polling -------------------------------------------------------------------


async def test_bulk_evaluates_every_flag_with_an_etag(bot: Bot, served: Served) -> None:
    await put(bot, "a_on", FlagState(enabled=True))
    await put(bot, "b_ramp", FlagState(percentage_of_actors=Decimal(10)))
    await put(bot, "c_off", FlagState())
    await put(bot, "staging_only", FlagState(enabled=True), Environment.staging)

    response = await served.post("/ofrep/v1/evaluate/flags", {"context": {}})
    assert response.status == 200
    body = await response.json()
    assert body["metadata"] == {"environment": "production"}
    assert [f["key"] for f in body["flags"]] == ["a_on", "b_ramp", "c_off"]
    assert body["flags"][0]["value"] is True
    assert body["flags"][1]["errorCode"] == "TARGETING_KEY_MISSING"
    assert body["flags"][2] == {
        "key": "c_off",
        "value": False,
        "reason": "DISABLED",
        "variant": "off",
        "metadata": {"environment": "production"},
    }
    etag = response.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')

    again = await served.post(
        "/ofrep/v1/evaluate/flags", {"context": {}}, **{"If-None-Match": etag}
    )
    assert again.status == 304
    assert again.headers["ETag"] == etag
    assert await again.read() == b""
    weak = await served.post(
        "/ofrep/v1/evaluate/flags", {"context": {}}, **{"If-None-Match": f'"other", W/{etag}'}
    )
    assert weak.status == 304

    # Another context is another answer, so another tag.
    other = await served.post(
        "/ofrep/v1/evaluate/flags", {"context": {"targetingKey": "k"}}, **{"If-None-Match": etag}
    )
    assert other.status == 200 and other.headers["ETag"] != etag
    # The staging token sees staging's flags under its own tag.
    staging = await served.post(
        "/ofrep/v1/evaluate/flags", {"context": {}}, token=STAGING_TOKEN, **{"If-None-Match": etag}
    )
    assert staging.status == 200
    assert [f["key"] for f in (await staging.json())["flags"]] == ["staging_only"]


async def test_a_change_reaches_a_polling_client_within_a_second(bot: Bot, served: Served) -> None:
    """A static-context client polls the bulk endpoint with If-None-Match; evaluations
    are served from one read a second, so a change shows up within that second."""
    await put(bot, "new_nav", FlagState())
    client = ofrep_client(served.url, PROD_TOKEN)
    ctx = {"context": {"targetingKey": "k"}}
    first = await served.post("/ofrep/v1/evaluate/flags", ctx)
    etag = first.headers["ETag"]
    assert (await first.json())["flags"][0]["value"] is False

    await put(bot, "new_nav", FlagState(enabled=True))
    # Within the second: the flags read at the first poll are served.
    assert (
        await served.post("/ofrep/v1/evaluate/flags", ctx, **{"If-None-Match": etag})
    ).status == 304
    assert await asyncio.to_thread(client.get_boolean_value, "new_nav", False) is False

    bot.clock.advance(seconds=1)
    changed = await served.post("/ofrep/v1/evaluate/flags", ctx, **{"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag
    assert (await changed.json())["flags"][0]["value"] is True
    assert await asyncio.to_thread(client.get_boolean_value, "new_nav", False) is True


async def test_a_change_reaches_a_real_time_poller(bot: Bot) -> None:
    backend = LocalFlagBackend(bot.services.store, SystemClock())
    await backend.put("live", Environment.production, FlagState())
    async with serving(bot.services.store, SystemClock()) as served:
        first = await served.post("/ofrep/v1/evaluate/flags", {"context": {}})
        etag = first.headers["ETag"]
        await backend.put("live", Environment.production, FlagState(enabled=True))
        changed_at = time.monotonic()
        while True:
            poll = await served.post(
                "/ofrep/v1/evaluate/flags", {"context": {}}, **{"If-None-Match": etag}
            )
            if poll.status == 200:
                break
            assert poll.status == 304
            # One second of cache, and room for a loaded machine.
            assert time.monotonic() - changed_at < 2.5, "the change was not seen"
            await asyncio.sleep(0.1)
        assert (await poll.json())["flags"][0]["value"] is True


async def test_evaluation_reads_once_a_second_and_never_writes(
    bot: Bot, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    await put(bot, "f", FlagState(enabled=True))
    store = bot.services.store
    opened: list[bool] = []
    original = store.transaction

    def counting(**kwargs: Any) -> Any:
        opened.append(bool(kwargs.get("write")))
        return original(**kwargs)

    monkeypatch.setattr(store, "transaction", counting)
    for _ in range(20):
        assert (await served.post("/ofrep/v1/evaluate/flags/f", {"context": {}})).status == 200
        assert (await served.post("/ofrep/v1/evaluate/flags", {"context": {}})).status == 200
    assert opened == [False]
    bot.clock.advance(seconds=1)
    assert (await served.post("/ofrep/v1/evaluate/flags/f", {"context": {}})).status == 200
    assert opened == [False, False]


async def test_a_database_that_fails_serves_the_last_flags_read(bot: Bot) -> None:
    await put(bot, "f", FlagState(enabled=True))
    snapshots = FlagSnapshots(bot.services.store, bot.clock, 1.0)
    read = await snapshots.get(Environment.production)

    async def failing(*_: Any) -> Any:
        raise Unavailable("The database", "did not answer (OperationalError)")

    snapshots._backend.list = failing  # type: ignore[method-assign]
    bot.clock.advance(seconds=5)
    assert (await snapshots.get(Environment.production)).flags == read.flags
    with pytest.raises(Unavailable):
        await snapshots.get(Environment.staging)  # nothing read before: 503


def test_tokens_come_from_the_environment_and_must_differ(bot: Bot) -> None:
    tokens = tokens_from_env(
        {"MARVIN_OFREP_TOKEN_PRODUCTION": " s3cr3t ", "MARVIN_OFREP_TOKEN_STAGING": ""}
    )
    assert {env: t.get_secret_value() for env, t in tokens.items()} == {
        Environment.production: "s3cr3t"
    }
    assert "s3cr3t" not in repr(tokens)
    store = bot.services.store
    with pytest.raises(ValueError, match="same OFREP token"):
        add_ofrep_routes(
            web.Application(),
            store,
            bot.clock,
            {Environment.production: "same", Environment.staging: "same"},
        )


async def test_with_no_tokens_every_request_is_401(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MARVIN_OFREP_TOKEN_PRODUCTION")
    monkeypatch.delenv("MARVIN_OFREP_TOKEN_STAGING")
    await put(bot, "f", FlagState(enabled=True))
    async with serving(bot.services.store, bot.clock) as served:
        for token in (None, "", PROD_TOKEN):
            response = await served.post("/ofrep/v1/evaluate/flags/f", {}, token=token)
            assert response.status == 401
