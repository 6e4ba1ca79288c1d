"""The shell as a complete way to use Marvin: what its commands put in the outbox (the
incident's issue, its notes) is delivered while it runs and, within a bounded wait, before it
exits; what GitLab could not take by then stays pending for `marvin serve`, and says so.

`marvin shell` runs as a subprocess, as a person runs it, against the loopback GitLab."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator

import pytest

from tests.fakes.gitlab import FakeGitLab
from tests.harness import EXAMPLE, ROOT
from tests.test_shell import fresh_sqlite  # noqa: F401 - the fixture

TOKEN = "glpat-marvin-bot"
PROJECT = "infra/production"


@pytest.fixture
async def gitlab() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab() as fake:
        marvin = fake.add_user("marvin", token=TOKEN, bot=True)
        for name in ("alice", "bob"):
            fake.add_user(name)
        fake.add_group("infra", visibility="public")
        project = fake.add_project(PROJECT, visibility="public")
        fake.add_member(project, marvin, "developer")
        yield fake


async def shell(
    url: str, gitlab: FakeGitLab, lines: list[str], *, drain: float = 10
) -> tuple[str, float]:
    """Run `marvin shell` as bob on piped lines (without blocking the fake's event loop);
    its output, and how long it took to exit after its last line."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MARVIN_", "SLACK_", "GITLAB_"))
    }
    env.update(
        MARVIN_DATABASE__URL=url,
        MARVIN_LOGGING__FORMAT="json",
        MARVIN_LOGGING__LEVEL="error",
        MARVIN_ISSUES__BACKEND="gitlab",
        MARVIN_ISSUES__PROJECT=PROJECT,
        MARVIN_GITLAB__URL=gitlab.url,
        MARVIN_GITLAB__TIMEOUT_SECONDS="1",
        MARVIN_SHELL__DRAIN_SECONDS=str(drain),
        GITLAB_TOKEN=TOKEN,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "marvin.cli",
        "--config",
        str(EXAMPLE),
        "shell",
        "--user",
        "bob",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    started = time.monotonic()
    out, err = await asyncio.wait_for(proc.communicate(("\n".join(lines) + "\n").encode()), 120)
    took = time.monotonic() - started
    text = out.decode() + err.decode()
    assert "Traceback" not in text, text
    assert proc.returncode == 0, text
    return out.decode(), took


DECLARE = 'incident declare "Checkout returns 500s" --severity 2 --service web'


async def test_the_issue_and_its_notes_are_delivered_before_the_shell_exits(
    fresh_sqlite: str,  # noqa: F811
    gitlab: FakeGitLab,
) -> None:
    out, _ = await shell(fresh_sqlite, gitlab, [DECLARE, 'incident update 1 "Rolled back web"'])
    assert "Recorded incident 1 (severity 2): Checkout returns 500s." in out
    [issue] = gitlab.issues(PROJECT)
    assert f"📎 Incident 1 has its issue: {gitlab.external_url}" in out
    assert issue.title.endswith(": Checkout returns 500s") and issue.issue_type == "incident"
    assert any("Rolled back web" in note.body for note in issue.notes)
    assert any("Incident declared by @bob" in event.note for event in issue.timeline_events)
    assert "still pending" not in out

    # Nothing is left for `marvin serve`: a later shell sees the link and nothing waiting.
    out, _ = await shell(fresh_sqlite, gitlab, ["incident list"])
    assert f"Issue: {gitlab.external_url}" in out and "waiting" not in out


async def test_with_gitlab_down_the_shell_exits_in_bounded_time_and_leaves_them_pending(
    fresh_sqlite: str,  # noqa: F811
    gitlab: FakeGitLab,
) -> None:
    await gitlab.down()
    out, took = await shell(
        fresh_sqlite, gitlab, [DECLARE, 'incident update 1 "Rolled back web"'], drain=1
    )
    assert "Recorded incident 1" in out  # the record, at once, whatever GitLab is doing
    assert "deliveries are still pending; `marvin serve` will deliver them" in out
    assert took < 15
    assert gitlab.issues(PROJECT) == []

    out, _ = await shell(fresh_sqlite, gitlab, ["incident list"], drain=0)
    assert "Issue: not opened in GitLab yet (the issue and" in out and "waiting" in out

    # GitLab is back: the next shell delivers what was left while it runs, exactly once
    # (its own note waits for the issue and the earlier notes, so it waits for them too).
    await gitlab.up()
    out, _ = await shell(fresh_sqlite, gitlab, ['incident update 1 "GitLab is back"'], drain=60)
    assert "still pending" not in out
    [issue] = gitlab.issues(PROJECT)
    notes = [note.body for note in issue.notes if not note.system]
    rolled = [n for n in notes if "Rolled back web" in n]
    back = [n for n in notes if "GitLab is back" in n]
    assert len(rolled) == 1 and len(back) == 1
    assert notes.index(rolled[0]) < notes.index(back[0])
    out, _ = await shell(fresh_sqlite, gitlab, ["incident show 1"], drain=0)
    assert f"Issue: {gitlab.external_url}" in out and "waiting" not in out


async def test_a_deviation_issue_is_opened_by_the_same_loop_and_waits_with_the_rest(
    fresh_sqlite: str,  # noqa: F811
    gitlab: FakeGitLab,
) -> None:
    deviate = 'feature deviate new_nav 50 "launch day needs half"'
    out, _ = await shell(fresh_sqlite, gitlab, [deviate])
    [issue] = gitlab.issues(PROJECT)
    assert f"📋 Deviation issue #1 for `new_nav` is open: {gitlab.external_url}" in out
    assert issue.title.startswith("Deviation: new_nav to 50%")
    assert "still pending" not in out

    await gitlab.down()
    out, _ = await shell(fresh_sqlite, gitlab, [deviate], drain=1)
    assert "opening a deviation issue" in out
    assert "1 delivery is still pending; `marvin serve` will deliver them" in out
