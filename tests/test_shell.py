"""The shell as a person runs it: `marvin shell` as a subprocess on a fresh database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import EXAMPLE, ROOT


def marvin(
    args: list[str], env_url: str, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MARVIN_DATABASE__URL": env_url, "MARVIN_LOGGING__FORMAT": "json"}
    return subprocess.run(
        [sys.executable, "-m", "marvin.cli", "--config", str(EXAMPLE), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


def converse(url: str, user: str, lines: list[str], *extra: str) -> list[dict[str, Any]]:
    result = marvin(["shell", "--user", user, "--json", *extra], url, "\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def fresh_sqlite(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    result = marvin(["db", "upgrade"], url)
    assert result.returncode == 0, result.stderr
    assert "upgraded" in result.stdout
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def shell_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("fresh_sqlite" if request.param == "sqlite" else "pg_url"))


def test_a_rollout_conversation(shell_url: str) -> None:
    replies = converse(
        shell_url,
        "bob",
        [
            "# bob rolls out new_nav",
            "feature set new_nav true --staging",
            "",
            "feature set new_nav 1 --actors",
            "feature set new_nav 50 --actors",
            "feature get new_nav",
            "feature history new_nav",
        ],
    )
    assert len(replies) == 5
    staging, one, fifty, get, history = replies
    assert staging["ok"] and staging["announcement"].startswith("@bob set `new_nav` in staging")
    assert one["ok"] and "1% of actors" in one["text"] and "On call: @alice" in one["announcement"]
    assert not fifty["ok"] and fifty["denied_by"] == "ceiling" and fifty["announcement"] is None
    assert get["text"] == "`new_nav` in production: 1% of actors"
    assert (
        "@bob set: off" not in history["text"] and "@bob set: new → 1% of actors" in history["text"]
    )


def test_state_persists_between_sessions_and_people(shell_url: str) -> None:
    converse(shell_url, "alice", ["feature set persisted true --staging"])
    [listing] = converse(shell_url, "carol", ["feature list --staging"], "--dm")
    assert "`persisted`: on for everyone" in listing["text"]


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("frobnicate", "I don't know the command `frobnicate`"),
        ("feature set x 1000 --actors", "over 100%"),
        ("feature set x NaN --actors", "is not a value"),
        ("feature set x 5", "say what the percentage is of"),
        ("feature set X true", "lowercase letters"),
        ('feature set x true --ignore-production-check "oops', "Unbalanced quote"),
        ("feature get " + "a" * 5000, "limit is 4000"),
    ],
)
def test_bad_input_gets_a_clear_answer(fresh_sqlite: str, line: str, needle: str) -> None:
    [reply] = converse(fresh_sqlite, "bob", [line])
    assert not reply["ok"] and reply["kind"] == "usage"
    assert needle in reply["text"]


def test_where_you_stand_matters(fresh_sqlite: str) -> None:
    [reply] = converse(fresh_sqlite, "bob", ["feature set x true --staging"], "--channel", "random")
    assert reply["denied_by"] == "channel" and "#random" in reply["text"]


def test_plain_output_shows_the_announcement(fresh_sqlite: str) -> None:
    result = marvin(["shell", "--user", "alice"], fresh_sqlite, "feature set x true --staging\n")
    assert result.returncode == 0, result.stderr
    assert "📣 #production: @alice set `x` in staging: new → on for everyone" in result.stdout


def test_an_unmigrated_database_is_explained(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    result = marvin(["shell", "--user", "bob", "--json"], url, "whoami\n")
    assert result.returncode == 2
    assert "marvin db upgrade" in result.stderr and "Traceback" not in result.stderr


def test_an_operator_approves_a_deviation_that_a_developer_then_uses(fresh_sqlite: str) -> None:
    opened = marvin(["issue", "open", "Roll new_nav out fast", "--label", "rollout"], fresh_sqlite)
    assert opened.returncode == 0 and opened.stdout.startswith("#1 [opened]")
    converse(fresh_sqlite, "bob", ["feature set new_nav true --staging"])
    [refused] = converse(fresh_sqlite, "bob", ["feature set new_nav 50 --actors --issue #1"])
    assert refused["denied_by"] == "ceiling" and "isn't approved" in refused["text"]

    labelled = marvin(["issue", "label", "#1", "deviation::approved"], fresh_sqlite)
    assert "(rollout, deviation::approved)" in labelled.stdout
    [asked] = converse(fresh_sqlite, "bob", ["feature set new_nav 50 --actors --issue #1"])
    assert asked["kind"] == "confirm" and asked["confirm"]
    [done] = converse(fresh_sqlite, "bob", [f"confirm {asked['confirm']}"])
    assert done["ok"] and "approved deviation #1" in done["announcement"]

    closed = marvin(["issue", "close", "#1"], fresh_sqlite)
    assert closed.stdout.startswith("#1 [closed]")
    listing = marvin(["issue", "list"], fresh_sqlite)
    assert listing.stdout.splitlines() == [
        "#1 [closed] Roll new_nav out fast (rollout, deviation::approved)"
    ]
    missing = marvin(["issue", "label", "#9", "x"], fresh_sqlite)
    assert missing.returncode == 1 and "has no issue #9" in missing.stderr
