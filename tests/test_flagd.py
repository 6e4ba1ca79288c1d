"""The flagd file Marvin writes, and the bucketing it shares with OFREP.

Checked against the real things: `mmh3` (the C MurmurHash3 that openfeature-flagd-core
uses), `cbor2` (its CBOR encoder), flagd's own evaluator (`FlagdCore`) and the
`openfeature-provider-flagd` provider in file mode through the OpenFeature SDK.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import stat
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import cbor2
import mmh3
import pytest
from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext

from marvin.adapters.flags import LocalFlagBackend
from marvin.evaluation import (
    EvaluationError,
    bucket,
    bucketing_bytes,
    evaluate,
    murmur3_32,
    weight,
)
from marvin.flagd import FlagdFileWriter, flagd_document, flagd_flag, render, write_flagd_file
from marvin.flags import Environment, FlagState
from tests.harness import Bot


@pytest.fixture(autouse=True)
def _fresh_openfeature() -> Iterator[None]:
    yield
    api.shutdown()
    api.clear_providers()


# --- the hash -------------------------------------------------------------------------------


def test_murmur3_is_the_reference_murmur3() -> None:
    rng = random.Random(7)
    for length in [*range(0, 41), 255, 256, 1000]:
        data = rng.randbytes(length)
        seed = rng.randrange(2**32)
        assert murmur3_32(data) == mmh3.hash(data, signed=False)
        assert murmur3_32(data, seed) == mmh3.hash(data, seed, signed=False)


@pytest.mark.parametrize(
    "key",
    ["", "a", "user-1", "x" * 23, "x" * 24, "x" * 255, "x" * 256, "x" * 65_536, "émoji 😀 漢字"],
)
def test_the_hash_input_is_canonical_cbor_of_flag_and_key(key: str) -> None:
    assert bucketing_bytes("new_nav", key) == cbor2.dumps(["new_nav", key], canonical=True)


@pytest.mark.parametrize(
    ("targeting_key", "v3", "v2"),
    [("jon@company.com", "tails", "heads"), ("jane@company.com", "tails", "tails")],
)
def test_flagd_testbed_shorthand_vectors(targeting_key: str, v3: str, v2: str) -> None:
    """open-feature/flagd-testbed, gherkin/targeting.feature, "Fractional operator
    shorthand": flag `fractional-flag-shorthand`, `[["heads"], ["tails", 1]]`. Marvin
    buckets as `@fractional-v3` (CBOR, flagd-core 2.x); `@fractional-v2` (the string
    flagKey + targetingKey, flagd-core 1.x and flagd's Go evaluator as of mid-2026) differs
    for jon."""
    flag = "fractional-flag-shorthand"
    assert ["heads", "tails"][bucket(flag, targeting_key, total=2)] == v3
    legacy = mmh3.hash(flag + targeting_key, signed=False)
    assert ["heads", "tails"][(legacy * 2) >> 32] == v2


@pytest.mark.parametrize(
    ("percentage", "expected"),
    [
        ("0", 0),
        ("0.0001", 1),
        ("0.5", 5_000),
        ("1", 10_000),
        ("33.3333", 333_333),
        ("100", 1_000_000),
        ("0.00009", 0),  # more than four decimals round down, the same on both sides
    ],
)
def test_weights_keep_four_decimals(percentage: str, expected: int) -> None:
    assert weight(Decimal(percentage)) == expected


def test_raising_the_percentage_only_adds_actors() -> None:
    keys = [f"k{i}" for i in range(5_000)]
    previous: set[str] = set()
    for pct in ("0.5", "1", "5", "25", "100"):
        state = FlagState(percentage_of_actors=Decimal(pct))
        on = {k for k in keys if evaluate("f", state, {"targetingKey": k}).value}
        assert previous <= on
        assert abs(len(on) - len(keys) * float(pct) / 100) < len(keys) * 0.01 + 10
        previous = on
    assert previous == set(keys)


# --- the document ---------------------------------------------------------------------------

VARIANTS = {"on": True, "off": False}


@pytest.mark.parametrize(
    ("state", "default", "targeting"),
    [
        (FlagState(), "off", None),
        (FlagState(enabled=True, actors=("user:bob",)), "on", None),
        (
            FlagState(percentage_of_actors=Decimal("0.5")),
            "off",
            {"fractional": [["on", 5_000], ["off", 995_000]]},
        ),
        (
            FlagState(actors=("user:bob", "user:carol")),
            "off",
            {"if": [{"in": [{"var": "user"}, ["bob", "carol"]]}, "on", None]},
        ),
        (
            FlagState(
                percentage_of_actors=Decimal("12.3456"),
                actors=("group:gitlab-org", "project:gitlab-org/gitlab", "user:bob"),
            ),
            "off",
            {
                "if": [
                    {
                        "or": [
                            {"in": [{"var": "user"}, ["bob"]]},
                            {"in": [{"var": "project"}, ["gitlab-org/gitlab"]]},
                            {"in": [{"var": "group"}, ["gitlab-org"]]},
                        ]
                    },
                    "on",
                    {"fractional": [["on", 123_456], ["off", 876_544]]},
                ]
            },
        ),
        # A percentage of time is not written (see marvin/flagd.py): off, actors still on.
        (FlagState(percentage_of_time=Decimal(50)), "off", None),
        (
            FlagState(percentage_of_time=Decimal(50), actors=("user:bob",)),
            "off",
            {"if": [{"in": [{"var": "user"}, ["bob"]]}, "on", None]},
        ),
    ],
)
def test_each_state_as_a_flagd_flag(
    state: FlagState, default: str, targeting: dict[str, Any] | None
) -> None:
    flag = flagd_flag(state)
    assert flag["state"] == "ENABLED"
    assert flag["variants"] == VARIANTS
    assert flag["defaultVariant"] == default
    assert flag.get("targeting") == targeting
    assert flag["metadata"] == {"marvinState": state.describe()}


STATES = {
    "everyone": FlagState(enabled=True),
    "nobody": FlagState(),
    "half_pct": FlagState(percentage_of_actors=Decimal("0.5")),
    "one_pct": FlagState(percentage_of_actors=Decimal(1)),
    "third": FlagState(percentage_of_actors=Decimal("33.3333")),
    "all_actors": FlagState(percentage_of_actors=Decimal(100)),
    "zero": FlagState(percentage_of_actors=Decimal(0)),
    "targeted": FlagState(actors=("group:gitlab-org", "project:a/b", "user:bob")),
    "mixed": FlagState(percentage_of_actors=Decimal(10), actors=("user:bob", "group:ops")),
}
CONTEXTS: list[dict[str, Any]] = [
    {},
    {"user": "bob"},
    {"user": "alice"},
    {"project": "a/b"},
    {"project": "a"},
    {"group": "gitlab-org"},
    {"group": "ops", "user": "zed"},
    {"user": 7},
]


def _ofrep_value(flag: str, state: FlagState, context: dict[str, Any]) -> bool:
    """OFREP's answer as an application sees it: an error is its code default, false."""
    try:
        return evaluate(flag, state, context).value
    except EvaluationError:
        return False


def test_flagds_evaluator_gives_every_actor_the_ofrep_answer() -> None:
    core = FlagdCore()
    core.set_flags(render(flagd_document(STATES, Environment.production)))
    keys = [None, *(f"actor-{i}" for i in range(120))]
    for name, state in STATES.items():
        for extra in CONTEXTS:
            for key in keys:
                context = dict(extra) if key is None else {**extra, "targetingKey": key}
                ctx = EvaluationContext(targeting_key=key, attributes=extra)
                flagd = core.resolve_boolean_value(name, False, ctx).value
                assert flagd is _ofrep_value(name, state, context), (name, context)


def test_percentage_of_time_is_off_in_the_file() -> None:
    core = FlagdCore()
    states = {"dice": FlagState(percentage_of_time=Decimal(99))}
    core.set_flags(render(flagd_document(states, Environment.production)))
    for i in range(200):
        ctx = EvaluationContext(targeting_key=f"k{i}")
        assert core.resolve_boolean_value("dice", True, ctx).value is False


def test_the_document_is_deterministic() -> None:
    document = flagd_document(STATES, Environment.staging)
    assert document["$schema"] == "https://flagd.dev/schema/v0/flags.json"
    assert document["metadata"] == {"generatedBy": "marvin", "environment": "staging"}
    assert list(document["flags"]) == sorted(STATES)
    reordered = dict(reversed(list(STATES.items())))
    assert render(flagd_document(reordered, Environment.staging)) == render(document)
    assert json.loads(render(document)) == document


# --- the file -------------------------------------------------------------------------------


def _directory(tmp_path: Path) -> Path:
    """A directory of its own: the test's database lives in tmp_path too."""
    directory = tmp_path / "flagd"
    directory.mkdir()
    return directory


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def put(
    bot: Bot, flag: str, state: FlagState, env: Environment = Environment.production
) -> None:
    await LocalFlagBackend(bot.services.store, bot.clock).put(flag, env, state)


async def test_the_file_is_written_atomically_and_only_when_it_changes(
    bot: Bot, tmp_path: Path
) -> None:
    path = _directory(tmp_path) / "flags.json"
    await put(bot, "new_nav", FlagState(enabled=True))
    await put(bot, "staging_thing", FlagState(enabled=True), Environment.staging)
    assert await write_flagd_file(bot.services.store, path, Environment.production) is True
    written = json.loads(path.read_text())
    assert list(written["flags"]) == ["new_nav"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    before = path.stat().st_mtime_ns, path.stat().st_ino

    assert await write_flagd_file(bot.services.store, path) is False
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before

    os.chmod(path, 0o640)
    await put(bot, "new_nav", FlagState())
    assert await write_flagd_file(bot.services.store, path) is True
    assert json.loads(path.read_text())["flags"]["new_nav"]["defaultVariant"] == "off"
    assert path.stat().st_ino != before[1]  # a new file renamed over the old one
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # the operator's mode kept
    assert _names(path.parent) == ["flags.json"]


async def test_a_failed_write_leaves_the_old_file(
    bot: Bot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _directory(tmp_path) / "flags.json"
    await put(bot, "f", FlagState(enabled=True))
    await write_flagd_file(bot.services.store, path)
    old = path.read_text()

    def refuse(*_: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    await put(bot, "f", FlagState())
    with pytest.raises(OSError, match="disk full"):
        await write_flagd_file(bot.services.store, path)
    assert path.read_text() == old
    assert _names(path.parent) == ["flags.json"]


async def test_writes_taken_in_turn_leave_the_latest_flags(bot: Bot, tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    writer = FlagdFileWriter(bot.services.store, path, Environment.production)

    async def change_then_write(i: int) -> None:
        await put(bot, "f", FlagState(percentage_of_actors=Decimal(i + 1)))
        await writer.write()

    await asyncio.gather(*(change_then_write(i) for i in range(8)))
    latest = await LocalFlagBackend(bot.services.store, bot.clock).get("f", Environment.production)
    assert latest is not None
    written = json.loads(path.read_text())["flags"]["f"]
    assert written == flagd_flag(latest)


async def test_the_writer_refuses_to_run_inside_a_write_transaction(
    bot: Bot, tmp_path: Path
) -> None:
    writer = FlagdFileWriter(bot.services.store, tmp_path / "flags.json")
    async with bot.services.store.transaction(write=True):
        with pytest.raises(RuntimeError, match="after the change's transaction commits"):
            await writer.write()


async def test_the_flagd_provider_follows_the_file_as_flags_change(
    bot: Bot, tmp_path: Path
) -> None:
    """The pipeline changes the flag; the writer (called where the record phase will call
    it) rewrites the file; the flagd provider's file watcher picks it up."""
    path = tmp_path / "flags.flagd.json"
    writer = FlagdFileWriter(bot.services.store, path, Environment.production)
    assert (await bot.say("alice", "feature set new_nav true --staging")).ok
    assert (await bot.say("bob", "feature set new_nav 1 --actors")).ok
    await writer.write()

    provider = FlagdProvider(
        resolver_type=ResolverType.FILE, offline_flag_source_path=str(path), deadline_ms=50
    )
    api.set_provider_and_wait(provider, "flagd")
    client = api.get_client("flagd")
    state = FlagState(percentage_of_actors=Decimal(1))
    keys = [f"user-{i}" for i in range(3_000)]

    def answers() -> list[bool]:
        return [
            client.get_boolean_value("new_nav", False, EvaluationContext(targeting_key=k))
            for k in keys
        ]

    assert answers() == [evaluate("new_nav", state, {"targetingKey": k}).value for k in keys]
    bob = EvaluationContext(targeting_key="x", attributes={"user": "bob"})
    assert client.get_boolean_value("new_nav", False, bob) is False

    assert (await bot.say("alice", "feature set new_nav true --user bob")).ok, "gate for bob"
    assert await writer.write()
    deadline = time.monotonic() + 2
    while not client.get_boolean_value("new_nav", False, bob):
        assert time.monotonic() < deadline, "the provider did not reload the file"
        await asyncio.sleep(0.05)
    x = EvaluationContext(targeting_key="x")
    expected = evaluate("new_nav", state, {"targetingKey": "x"}).value
    assert client.get_boolean_value("new_nav", not expected, x) is expected
