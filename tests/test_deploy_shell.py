"""Deploys from `marvin shell` as a release manager runs it: book, see it due, start it and
finish it, with times read in `shell.timezone`."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from marvin.shell import Shell
from tests.harness import EXAMPLE, ROOT, Bot


def shell(url: str, user: str, lines: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "marvin.cli", "--config", str(EXAMPLE), "shell", "--user", user],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
        env={
            **os.environ,
            "MARVIN_DATABASE__URL": url,
            "MARVIN_LOGGING__FORMAT": "json",
            "MARVIN_PRODUCTION_CHANNEL__CHAT": "none",
            **env,
        },
    )


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'deploys.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "marvin.cli", "--config", str(EXAMPLE), "db", "upgrade"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "MARVIN_DATABASE__URL": url},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return url


def test_a_slot_booked_now_is_announced_started_and_done_in_the_shell(url: str) -> None:
    result = shell(
        url,
        "dave",
        [
            "deploy schedule staging v7 at now --duration 15m",
            "deploy start 1",
            "deploy done 1",
            "deploy show 1",
        ],
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in out + result.stderr
    assert "Booked slot #1: v7 to staging" in out
    assert out.count("⏰ Due: deploy slot #1: v7 to staging") == 1
    assert "Starting slot #1" in out
    assert "no pipeline is configured" in out
    assert "Recorded: slot #1 (v7 to staging) is out." in out
    assert "deployed" in out.splitlines()[-1] or "Finished" in out


def test_times_are_read_in_the_shells_zone(url: str) -> None:
    result = shell(
        url,
        "bob",
        ["deploy schedule staging v1 at tomorrow 09:00", "deploy list"],
        MARVIN_SHELL__TIMEZONE="Asia/Tokyo",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # 09:00 in Tokyo (UTC+9) is 00:00 UTC.
    assert re.search(r"\d{4}-\d\d-\d\d 00:00–00:30 UTC \(\w{3} 09:00–09:30 JST\)", result.stdout)


def test_a_refusal_in_the_shell_is_a_sentence_and_exit_status_1(url: str) -> None:
    result = shell(url, "bob", ["deploy schedule production v1 at tomorrow 10:00"])
    assert result.returncode == 1
    assert "release managers (the `release-manager` role) only" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


async def test_a_command_runs_a_scheduler_round_only_when_a_slot_needs_one(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    shell = Shell(bot.services, user="dave", out=out)
    rounds: list[list[str]] = []
    tick = shell.scheduler.tick

    async def counted() -> list[str]:
        rounds.append(await tick())
        return rounds[-1]

    monkeypatch.setattr(shell.scheduler, "tick", counted)
    await shell.run_line("help")
    assert (await shell.run_line("deploy schedule staging v7 at 14:30")).ok
    await shell.run_line("deploy list")
    assert rounds == []  # nothing due: no round, so no GitLab call either
    bot.clock.set(datetime(2026, 3, 2, 14, 30, tzinfo=UTC))
    await shell.run_line("help")
    assert len(rounds) == 1
    assert "⏰ Due: deploy slot #1: v7 to staging" in out.getvalue()
    await shell.run_line("help")  # announced, its window not over: nothing to do
    assert len(rounds) == 1
