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
    assert "Traceback" not in result.stdout + result.stderr
    replies = [json.loads(line) for line in result.stdout.splitlines()]
    # A piped shell's exit status: 1 when any command was refused or failed, else 0.
    assert result.returncode == (0 if all(r["ok"] for r in replies) else 1), result.stderr
    return replies


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
    # (`feature get` with no environment shows each one: production is 1% whatever the shape)
    assert "production: 1% of actors" in get["text"]
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
        ("feature set x 5", "Say what the percentage is of"),
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
    # An issue anyone could open approves nothing: the deviation is asked of Marvin.
    opened = marvin(["issue", "open", "Roll new_nav out fast", "--label", "rollout"], fresh_sqlite)
    assert opened.returncode == 0 and opened.stdout.startswith("#1 [opened]")
    marvin(["issue", "label", "#1", "deviation::approved"], fresh_sqlite)
    converse(fresh_sqlite, "bob", ["feature set new_nav true --staging"])
    [refused] = converse(fresh_sqlite, "bob", ["feature set new_nav 50 --actors --issue #1"])
    assert refused["denied_by"] == "ceiling" and "isn't a deviation I opened" in refused["text"]

    asked = marvin(
        ["shell", "--user", "bob"], fresh_sqlite, 'feature deviate new_nav 50 "launch day"\n'
    )
    assert "📋 Deviation issue #2 for `new_nav` is open" in asked.stdout, asked.stdout
    [unapproved] = converse(fresh_sqlite, "bob", ["feature set new_nav 50 --actors --issue #2"])
    assert unapproved["denied_by"] == "ceiling" and "isn't approved" in unapproved["text"]

    labelled = marvin(["issue", "label", "#2", "deviation::approved"], fresh_sqlite)
    assert "(deviation, feature::new_nav, deviation::approved)" in labelled.stdout
    [asked] = converse(fresh_sqlite, "bob", ["feature set new_nav 50 --actors --issue #2"])
    assert asked["kind"] == "confirm" and asked["confirm"]
    [done] = converse(fresh_sqlite, "bob", [f"confirm {asked['confirm']}"])
    assert done["ok"] and "approved deviation #2" in done["announcement"]

    closed = marvin(["issue", "close", "#2"], fresh_sqlite)
    assert closed.stdout.startswith("#2 [closed]")
    listing = marvin(["issue", "list"], fresh_sqlite)
    assert listing.stdout.splitlines() == [
        "#1 [opened] Roll new_nav out fast (rollout, deviation::approved)",
        "#2 [closed] Deviation: new_nav to 50% in production "
        "(deviation, feature::new_nav, deviation::approved)",
    ]
    missing = marvin(["issue", "label", "#9", "x"], fresh_sqlite)
    assert missing.returncode == 1 and "has no issue #9" in missing.stderr


# --- a piped shell's exit status: scripts can tell -------------------------------------------


@pytest.mark.parametrize(
    ("lines", "as_json", "status"),
    [
        (["whoami", "# a comment", "", "feature set x true --staging"], False, 0),
        (["whoami", "feature list --staging"], True, 0),
        (["whoami", "feature lst", "whoami"], False, 1),  # usage, then fine
        (["feature set x 50 --actors", "whoami"], True, 1),  # refused by a policy
        (["feature get nope --staging"], False, 1),  # not found
    ],
)
def test_a_piped_shell_exits_non_zero_when_a_command_was_refused_or_failed(
    fresh_sqlite: str, lines: list[str], as_json: bool, status: int
) -> None:
    args = ["shell", "--user", "bob", *(["--json"] if as_json else [])]
    result = marvin(args, fresh_sqlite, "\n".join(lines) + "\n")
    assert result.returncode == status, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    if as_json:
        # every line ran, the refused one included
        assert len(result.stdout.splitlines()) == len(lines)


def test_the_exit_codes_are_documented() -> None:
    result = marvin(["shell", "--help"], "sqlite+aiosqlite:///:memory:")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "exit status 0 when every command went through, 1 when any was refused or failed" in text


# --- errors for people, as the shell shows them ----------------------------------------------


def test_a_usage_error_is_short_not_the_groups_help(fresh_sqlite: str) -> None:
    converse(fresh_sqlite, "bob", ["whoami"])  # the welcome, out of the way
    result = marvin(["shell", "--user", "bob"], fresh_sqlite, "feature lst\n")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "⚠ `feature` has no subcommand `lst`. Did you mean `feature list`?"
    assert len(lines) == 2 and "`help feature`" in lines[1]


SENTENCES = {
    "feature delete x --ignore-production-check ok": (
        "`--ignore-production-check` needs a reason of at least 3 characters."
    ),
    "feature history x --limit 0": "`--limit` takes a number from 1 to 100; `0` is out of range.",
    "feature set x true --user ''": "`--user` needs a value: `--user <users>`.",
    "feature set x 1 --ignore-production-check=no": (
        "`--ignore-production-check` needs a reason of at least 3 characters."
    ),
}


def test_refusals_are_sentences_without_field_names(fresh_sqlite: str) -> None:
    _, *replies = converse(fresh_sqlite, "bob", ["whoami", *SENTENCES])
    for reply, sentence in zip(replies, SENTENCES.values(), strict=True):
        assert reply["kind"] == "usage" and reply["text"].startswith(sentence), reply["text"]
        for leak in ("ignore_production_check", "limit:", "Input should"):
            assert leak not in reply["text"]


PASTED = [
    '"feature list --staging"',
    "run feature list --staging",
    "/chatops run feature list --staging",
    "feature list —staging",
    "feature list –staging",
]


def test_what_people_paste_is_understood(fresh_sqlite: str) -> None:
    _, *replies = converse(fresh_sqlite, "alice", ["feature set pasted true --staging", *PASTED])
    for line, reply in zip(PASTED, replies, strict=True):
        assert reply["ok"] and "`pasted`: on for everyone" in reply["text"], line


# --- who you are: handles are case-insensitive, never empty ----------------------------------


def test_a_handle_in_capitals_is_the_same_person(fresh_sqlite: str) -> None:
    [first] = converse(fresh_sqlite, "Bob", ["whoami"])
    [second] = converse(fresh_sqlite, "@BOB", ["whoami"])
    assert "You are bob" in first["text"] and "You are bob" in second["text"]
    # one account: the welcome came once, on the first meeting
    assert "Welcome" in first["text"] and "Welcome" not in second["text"]


def test_an_empty_user_is_refused_not_the_default_person(fresh_sqlite: str) -> None:
    result = marvin(["shell", "--user", "", "--json"], fresh_sqlite, "whoami\n")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "argument --user: is empty" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["issue", "open", ""], "argument title: is empty"),
        (["issue", "open", "   ", "--label", "x"], "argument title: is empty"),
        (["issue", "label", "#1", ""], "argument label: is empty"),
    ],
)
def test_empty_issue_values_are_refused(fresh_sqlite: str, args: list[str], says: str) -> None:
    result = marvin(args, fresh_sqlite)
    assert result.returncode == 2
    assert says in result.stderr and "Traceback" not in result.stderr
    assert marvin(["issue", "list"], fresh_sqlite).stdout == ""
