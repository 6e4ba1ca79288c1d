"""The deploy scheduler: due slots announced and started exactly once, on SQLite and
PostgreSQL, across replicas racing for a slot and a restart between due time and delivery;
the pipeline triggered and followed, and GitLab's freeze periods read, through python-gitlab
against the loopback GitLab."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from marvin.adapters.gitlab_deploys import KEY_VARIABLE
from marvin.deploys.scheduler import DeployScheduler
from marvin.store.tables import DeploySlot, OutboxMessage
from marvin.wiring import backend_problems, close
from tests.fakes.gitlab import FakeGitLab
from tests.harness import Bot, make_bot, make_settings

TOKEN = "glpat-marvin-deployer"
PROJECT = "web/app"
DUE = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


@pytest.fixture
async def gitlab() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab() as fake:
        marvin = fake.add_user("marvin", token=TOKEN, bot=True)
        fake.add_group("web")
        fake.add_member(fake.add_project(PROJECT), marvin, "developer")
        yield fake


@pytest.fixture
async def replicas(
    db_url: str, gitlab: FakeGitLab, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Bot]]:
    """Bots on one database, each with its own services: replicas of Marvin."""
    monkeypatch.setenv("GITLAB_TOKEN", TOKEN)
    made: list[Bot] = []

    def factory(*, sections: dict[str, Any] | None = None, **deploys: Any) -> Bot:
        bot = make_bot(
            db_url,
            gitlab={"url": gitlab.url, "timeout_seconds": 1},
            deploys={"gitlab_project": PROJECT, **deploys},
            **(sections or {}),
        )
        made.append(bot)
        return bot

    yield factory
    for bot in made:
        await close(bot.services)


def scheduler(bot: Bot, name: str) -> DeployScheduler:
    return DeployScheduler(bot.services, owner=name, lease=timedelta(minutes=2))


async def said(bot: Bot, prefix: str = "deploy-") -> list[str]:
    rows = await bot.rows(OutboxMessage)
    return [
        r.payload["text"]
        for r in sorted(rows, key=lambda r: r.id)
        if r.idempotency_key.startswith(prefix)
    ]


async def book(bot: Bot, text: str = "deploy schedule production v1.42.0 at 14:30") -> None:
    reply = await bot.say("dave", text)
    assert reply.ok, reply.text


async def slot(bot: Bot, slot_id: int = 1) -> DeploySlot:
    return (await bot.rows(DeploySlot, DeploySlot.id == slot_id))[0]


async def test_a_due_slot_is_announced_once_started_by_hand_and_followed(
    replicas: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = replicas()
    await book(bot)
    run = scheduler(bot, "a")
    await run.tick()
    assert await said(bot, "deploy-due") == []  # not due yet
    bot.clock.set(DUE)
    await run.tick()
    await run.tick()
    [due] = await said(bot, "deploy-due")
    assert due.startswith("⏰ Due: deploy slot #1: v1.42.0 to production")
    assert "booked by @dave (release-manager). On call: @alice." in due
    assert "`deploy start 1` starts it" in due
    assert (await slot(bot)).state == "announced"
    assert gitlab.pipelines(PROJECT) == []  # auto_start is off

    started = await bot.say("dave", "deploy start 1")
    assert started.ok, started.text
    assert "link follows" in started.text
    await run.tick()
    [pipeline] = gitlab.pipelines(PROJECT)
    variables = {v["key"]: v["value"] for v in pipeline.variables}
    stored = await slot(bot)
    assert variables["DEPLOY_VERSION"] == "v1.42.0"
    assert variables[KEY_VARIABLE] == stored.key
    assert pipeline.ref == "main"
    assert stored.state == "started" and stored.pipeline_id == pipeline.id
    [link] = await said(bot, "deploy-pipeline")
    assert f"pipelines/{pipeline.id}" in link and "started by @dave" in link

    await run.tick()  # still running: nothing more said
    assert await said(bot, "deploy-outcome") == []
    gitlab.set_pipeline_status(PROJECT, pipeline.id, "success")
    await run.tick()
    await run.tick()
    [outcome] = await said(bot, "deploy-outcome")
    assert "✅ Deploy slot #1 (v1.42.0 to production): pipeline success" in outcome
    assert (await slot(bot)).state == "succeeded"
    assert "Pipeline:" in (await bot.say("dave", "deploy show 1")).text


async def test_a_slot_never_started_lets_its_window_go_once(
    replicas: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = replicas()
    await book(bot)  # 14:30, 30 minutes
    run = scheduler(bot, "a")
    bot.clock.set(DUE)
    await run.tick()
    assert (await slot(bot)).state == "announced"
    bot.clock.set(DUE + timedelta(minutes=29))
    await run.tick()
    assert await said(bot, "deploy-missed") == []  # still in its window
    bot.clock.set(DUE + timedelta(minutes=31))
    await run.tick()
    await scheduler(bot, "b").tick()
    [missed] = await said(bot, "deploy-missed")
    assert missed.startswith("⌛ Deploy slot #1 (v1.42.0 to production) was never started")
    assert (await slot(bot)).state == "missed"
    assert "never started" in (await bot.say("dave", "deploy show 1")).text
    assert gitlab.pipelines(PROJECT) == []
    late = await bot.say("dave", "deploy start 1")
    assert not late.ok


async def test_two_replicas_race_for_one_due_slot(
    replicas: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    one, two = replicas(auto_start=True), replicas(auto_start=True)
    await book(one)
    for bot in (one, two):
        bot.clock.set(DUE)
    a, b = scheduler(one, "replica-a"), scheduler(two, "replica-b")
    for _ in range(3):
        await asyncio.gather(a.tick(), b.tick())
    assert len(await said(one, "deploy-due")) == 1
    assert "Starting its pipeline now" in (await said(one, "deploy-due"))[0]
    assert len(gitlab.pipelines(PROJECT)) == 1
    assert len(await said(one, "deploy-pipeline")) == 1
    gitlab.set_pipeline_status(PROJECT, gitlab.pipelines(PROJECT)[0].id, "failed")
    for _ in range(2):
        await asyncio.gather(a.tick(), b.tick())
    [outcome] = await said(one, "deploy-outcome")
    assert "❌" in outcome and "pipeline failed" in outcome
    assert (await slot(one)).state == "failed"


async def test_after_a_restart_an_overdue_slot_is_announced_once_as_overdue(
    replicas: Callable[..., Bot],
) -> None:
    first = replicas()
    await book(first)
    # The replica that claimed the slot at its time dies before it says anything.
    first.clock.set(DUE)
    dying = scheduler(first, "dying")
    claimed = await dying._claim(1, "scheduled")
    assert claimed is not None
    # Restarted 40 minutes later: the claim has run out, and the slot is overdue.
    later = DUE + timedelta(minutes=40)
    restarted = replicas()
    restarted.clock.set(later)
    fresh = scheduler(restarted, "restarted")
    await fresh.tick()
    [due] = await said(restarted, "deploy-due")
    assert due.startswith("⏰ Overdue deploy slot #1") and "was due 14:30 UTC" in due
    assert (await slot(restarted)).overdue
    # The dead replica's late word is fenced out, and nothing is said twice.
    assert not await dying._settle(claimed[0], state="announced")
    again = replicas()
    again.clock.set(later + timedelta(minutes=5))
    await scheduler(again, "again").tick()
    await fresh.tick()
    assert len(await said(restarted, "deploy-due")) == 1


async def test_a_claim_in_force_keeps_others_off(replicas: Callable[..., Bot]) -> None:
    bot = replicas()
    await book(bot)
    bot.clock.set(DUE)
    holder = scheduler(bot, "holder")
    assert await holder._claim(1, "scheduled") is not None
    await scheduler(bot, "other").tick()
    assert await said(bot, "deploy-due") == []
    assert (await slot(bot)).state == "scheduled"


async def test_the_policies_are_judged_again_when_the_slot_fires(
    replicas: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = replicas(auto_start=True)
    await book(bot)
    assert (await bot.say("alice", "deploy lock production database failover")).ok
    bot.clock.set(DUE)
    await scheduler(bot, "a").tick()
    [due] = await said(bot, "deploy-due")
    assert "It won't start" in due and "locked by @alice: database failover" in due
    stored = await slot(bot)
    assert stored.state == "refused"
    assert gitlab.pipelines(PROJECT) == []


async def test_a_trigger_whose_answer_was_lost_is_not_sent_twice(
    replicas: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = replicas(auto_start=True)
    await book(bot)
    bot.clock.set(DUE)
    gitlab.hang_after_apply("POST /projects/*/pipeline", 4)
    run = scheduler(bot, "a")
    await run.tick()
    assert len(gitlab.pipelines(PROJECT)) == 1  # made, but Marvin never heard
    assert (await slot(bot)).state == "starting"
    await run.tick()  # found by its key, not created again
    assert len(gitlab.pipelines(PROJECT)) == 1
    stored = await slot(bot)
    assert stored.state == "started" and stored.pipeline_id == gitlab.pipelines(PROJECT)[0].id
    assert len(await said(bot, "deploy-pipeline")) == 1


async def test_gitlab_freeze_periods_are_freezes(
    replicas: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = replicas()
    # Every day 14:00 to 16:00 in Berlin: 13:00 to 15:00 UTC in March.
    gitlab.add_freeze_period(PROJECT, "0 14 * * *", "0 16 * * *", "Europe/Berlin")
    refused = await bot.say("dave", "deploy schedule production v1 at 14:30")
    assert not refused.ok
    assert (
        "GitLab freeze period 1 (0 14 * * * to 0 16 * * *, Europe/Berlin) lasts "
        "2026-03-02 13:00 UTC to 2026-03-02 15:00 UTC" in refused.text
    )
    assert (await bot.say("dave", "deploy schedule production v1 at 15:00")).ok
    # Staging is not held by the project's freeze periods.
    assert (await bot.say("bob", "deploy schedule staging v1 at 14:30")).ok
    listed = await bot.say("bob", "freeze list")
    assert "GitLab · production, canary · 2026-03-02 13:00–15:00 UTC" in listed.text
    # A Friday-night-to-Monday freeze, across the weekend.
    gitlab.add_freeze_period(PROJECT, "0 23 * * 5", "0 7 * * 1", "UTC")
    weekend = await bot.say("dave", "deploy schedule production v2 at sun 12:00")
    assert not weekend.ok
    assert "lasts 2026-03-06 23:00 UTC to 2026-03-09 07:00 UTC" in weekend.text


async def test_unknown_freeze_periods_fail_closed(
    replicas: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = replicas()
    await gitlab.down()
    refused = await bot.say("dave", "deploy schedule production v1 at 16:00")
    assert not refused.ok
    assert "I couldn't read GitLab's freeze periods" in refused.text
    await gitlab.up()
    assert (await bot.say("dave", "deploy schedule production v1 at 16:00")).ok


async def test_a_cancel_after_a_claim_is_not_written_over_by_it(
    replicas: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = replicas(auto_start=True)
    await book(bot)
    bot.clock.set(DUE)
    run = scheduler(bot, "a")
    claimed = await run._claim(1, "scheduled")
    assert claimed is not None
    # dave cancels while the replica judges the slot it claimed.
    assert (await bot.say("dave", "deploy cancel 1")).ok
    await run._fire(*claimed)
    stored = await slot(bot)
    assert stored.state == "cancelled"
    assert stored.claimed_by is None  # let go by the cancel
    assert await said(bot, "deploy-due") == []
    await run.tick()
    assert gitlab.pipelines(PROJECT) == []


async def test_a_deploy_done_by_hand_is_not_written_over_by_the_pipelines_outcome(
    replicas: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = replicas(auto_start=True)
    await book(bot)
    bot.clock.set(DUE)
    run = scheduler(bot, "a")
    await run.tick()
    [pipeline] = gitlab.pipelines(PROJECT)
    assert (await slot(bot)).state == "started"
    claimed = await run._claim(1, "started")
    assert claimed is not None
    assert (await bot.say("dave", 'deploy done 1 --failed "rolled back by hand"')).ok
    gitlab.set_pipeline_status(PROJECT, pipeline.id, "success")
    await run._follow(*claimed)
    stored = await slot(bot)
    assert (stored.state, stored.outcome_reason) == ("failed", "rolled back by hand")
    assert await said(bot, "deploy-outcome") == []


async def test_a_pipeline_gitlab_refuses_to_start_hands_the_environment_on(
    replicas: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = replicas(auto_start=True)
    assert (await bot.say("dave", "deploy queue production v1.42.0")).ok
    assert (await bot.say("carol", "deploy queue production v1.43.0")).ok
    await book(bot)
    bot.clock.set(DUE)
    gitlab.fail_next("POST /projects/*/pipeline", 400)
    await scheduler(bot, "a").tick()
    stored = await slot(bot)
    assert stored.state == "failed" and stored.finished_at is not None
    [failed] = await said(bot, "deploy-pipeline")
    assert "GitLab didn't start its pipeline" in failed
    assert len(await said(bot, "deploy-queue-turn")) == 2  # dave when he joined, then carol
    # The channel reads how dave's turn ended, then whose it is.
    assert (await said(bot))[-2:] == [
        failed,
        "@carol, it's your turn at production (v1.43.0): book your slot with `deploy schedule "
        "production <version> at <time>`, and `deploy unqueue production` when you're done.",
    ]
    assert "production: 1. @carol (v1.43.0)" in (await bot.say("dave", "deploy queue")).text


async def test_a_due_slot_is_judged_by_every_policy_deploy_start_is(
    replicas: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    freeze = {
        "name": "Board meeting",
        "starts_at": "2026-03-02T14:00:00Z",
        "ends_at": "2026-03-02T16:00:00Z",
        "environments": ["production"],
    }
    bot = replicas(auto_start=True, sections={"change_lock": {"freezes": [freeze]}})
    await book(bot)  # booking lowers nothing: the change lock lets it through
    bot.clock.set(DUE)
    by_hand = await bot.say("dave", "deploy start 1")
    assert not by_hand.ok and by_hand.denied_by == "change_lock"
    await scheduler(bot, "a").tick()
    [due] = await said(bot, "deploy-due")
    assert "It won't start: Changes to production are locked" in due
    assert "the change freeze “Board meeting” lasts until 2026-03-02 16:00 UTC" in due
    assert (await slot(bot)).state == "refused"
    assert gitlab.pipelines(PROJECT) == []


async def test_a_due_slot_is_refused_during_a_blocking_incident(
    replicas: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = replicas(auto_start=True)
    await book(bot)
    await bot.open_incident(1, "Checkout down")
    bot.clock.set(DUE)
    await scheduler(bot, "a").tick()
    [due] = await said(bot, "deploy-due")
    assert "It won't start: Production takes no deploys then" in due
    assert "“Checkout down” blocks deployments" in due
    assert gitlab.pipelines(PROJECT) == []


async def test_a_due_slot_whose_booker_is_away_does_not_start(
    replicas: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = replicas(auto_start=True)
    await book(bot)
    assert (await bot.say("dave", "status away lunch", dm=True)).ok
    bot.clock.set(DUE)
    await scheduler(bot, "a").tick()
    [due] = await said(bot, "deploy-due")
    assert "It won't start: You're marked away" in due
    assert gitlab.pipelines(PROJECT) == []


async def test_a_freeze_period_croniter_cannot_read_fails_closed_without_stopping_the_round(
    replicas: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = replicas(auto_start=True)
    await book(bot)
    assert (await bot.say("bob", "deploy schedule staging v9 at 14:30")).ok
    # GitLab took it (its cron dialect is not croniter's); Marvin can't evaluate it.
    gitlab.add_freeze_period(PROJECT, "0 9 31 2 *", "0 17 31 2 *", "Europe/Berlin")
    refused = await bot.say("dave", "deploy schedule production v2 at 16:00")
    assert not refused.ok and refused.denied_by == "deploys"
    assert "I can't evaluate GitLab freeze period 1 (0 9 31 2 * to 0 17 31 2 *, Europe/" in (
        refused.text
    )
    listed = await bot.say("bob", "freeze list")
    assert listed.ok and "matches no date" in listed.text
    bot.clock.set(DUE)
    await scheduler(bot, "a").tick()  # doesn't raise
    production, staging = await slot(bot, 1), await slot(bot, 2)
    assert production.state == "refused"
    assert "I can't evaluate GitLab freeze period 1" in (production.outcome_reason or "")
    # Staging isn't held by GitLab's freeze periods: the same round starts it.
    assert staging.state == "started"


def test_a_gitlab_project_for_deploys_needs_gitlab_url() -> None:
    settings = make_settings("sqlite+aiosqlite://", deploys={"gitlab_project": PROJECT})
    assert any(
        p.startswith("gitlab.url: deploys.gitlab_project") for p in backend_problems(settings)
    )
    with_url = make_settings(
        "sqlite+aiosqlite://",
        deploys={"gitlab_project": PROJECT},
        gitlab={"url": "https://gitlab.example.com"},
    )
    assert not any("deploys.gitlab_project" in p for p in backend_problems(with_url))
