"""Deploy slots from chat: booking, conflicts, locks, freezes, the queue, moves and
cancellations, through the whole pipeline on a real database with the clock controlled."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select

from marvin.models import Reply
from marvin.store.tables import (
    AuditRecord,
    DeployFreeze,
    DeployLock,
    DeployQueueEntry,
    DeploySlot,
    OutboxMessage,
)
from tests.harness import Bot

# dave is a release manager, alice a production engineer, bob and carol developers.


async def say_in(bot: Bot, who: str, text: str, tz: str) -> Reply:
    inv = bot.invocation(who, text).model_copy(update={"timezone": tz})
    return await bot.pipeline.handle(inv)


async def announcements(bot: Bot) -> list[str]:
    rows = await bot.rows(OutboxMessage)
    return [r.payload["text"] for r in sorted(rows, key=lambda r: r.id)]


async def test_a_release_manager_books_production_and_everyone_sees_it(bot: Bot) -> None:
    reply = await bot.say("dave", "deploy schedule production v1.42.0 at 14:30 --note 'RC 2'")
    assert reply.ok, reply.text
    assert "Booked slot #1: v1.42.0 to production, 2026-03-02 14:30–15:00 UTC" in reply.text
    [slot] = await bot.rows(DeploySlot)
    assert (slot.environment, slot.version, slot.booked_by, slot.state) == (
        "production",
        "v1.42.0",
        "dave",
        "scheduled",
    )
    assert slot.note == "RC 2"
    assert any("@dave booked deploy slot #1" in text for text in await announcements(bot))
    listed = await bot.say("bob", "deploy list")
    assert "#1 production v1.42.0 · 2026-03-02 14:30–15:00 UTC · @dave · scheduled" in listed.text
    shown = await bot.say("bob", "deploy show 1")
    assert "“RC 2”" in shown.text


async def test_times_are_read_and_shown_in_the_persons_zone(bot: Bot) -> None:
    reply = await say_in(
        bot, "bob", "deploy schedule staging abc123 at tomorrow 09:00", "Europe/Berlin"
    )
    assert reply.ok, reply.text
    # 09:00 in Berlin (CET, UTC+1) is 08:00 UTC.
    assert "2026-03-03 08:00–08:30 UTC (Tue 09:00–09:30 CET)" in reply.text
    [slot] = await bot.rows(DeploySlot)
    assert slot.starts_at.replace(tzinfo=UTC) == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    listed = await say_in(bot, "bob", "deploy list", "America/New_York")
    assert "(Tue 03:00–03:30 EST)" in listed.text


async def test_production_and_canary_are_for_release_managers(bot: Bot) -> None:
    for env in ("production", "canary"):
        reply = await bot.say("bob", f"deploy schedule {env} v1 at 14:30")
        assert not reply.ok and reply.denied_by == "deploys"
        assert "release managers (the `release-manager` role) only" in reply.text
    assert (await bot.say("bob", "deploy schedule staging v1 at 14:30")).ok
    assert [s.environment for s in await bot.rows(DeploySlot)] == ["staging"]


async def test_two_slots_may_not_overlap_in_one_environment(bot: Bot) -> None:
    assert (await bot.say("bob", "deploy schedule staging v1 at 14:30 --duration 1h")).ok
    clash = await bot.say("carol", "deploy schedule staging v2 at 15:00")
    assert not clash.ok and clash.denied_by == "deploys"
    assert "collides with another staging slot: #1 v1 by @bob" in clash.text
    # Another environment, or right after, is fine.
    assert (await bot.say("dave", "deploy schedule production v2 at 15:00")).ok
    assert (await bot.say("carol", "deploy schedule staging v2 at 15:30")).ok
    assert len(await bot.rows(DeploySlot)) == 3


async def test_bad_input_gets_a_sentence(bot: Bot) -> None:
    cases = {
        "deploy schedule staging v1 at soon": "I can't read “soon” as a time",
        "deploy schedule staging v1 14:30": "Say when with `at`",
        "deploy schedule moon v1 at 14:30": "There's no environment “moon”",
        "deploy schedule staging v1 at 14:30 --duration 3y": "is not a length of time",
        "deploy schedule staging v1 at 14:30 --duration 13h": "A slot lasts at most 12 hours",
        "deploy schedule staging v1 at 2026-03-01T10:00Z": "is in the past",
        "deploy show 99": "There is no deploy slot #99",
    }
    for text, expected in cases.items():
        reply = await bot.say("bob", text)
        assert not reply.ok, text
        assert expected in reply.text, (text, reply.text)
        assert "Traceback" not in reply.text


async def test_a_lock_stops_deploys_with_its_reason_until_unlocked(bot: Bot) -> None:
    denied = await bot.say("bob", "deploy lock staging db migration running")
    assert not denied.ok and "release managers" in denied.text
    assert (await bot.say("dave", "deploy lock staging db migration running")).ok
    [lock] = await bot.rows(DeployLock)
    assert (lock.environment, lock.locked_by) == ("staging", "dave")
    refused = await bot.say("bob", "deploy schedule staging v1 at 14:30")
    assert not refused.ok
    assert "it is locked by @dave: db migration running" in refused.text
    listed = await bot.say("carol", "deploy list")
    assert "🔒 staging is locked by @dave: db migration running" in listed.text
    assert (await bot.say("alice", "deploy unlock staging")).ok
    assert (await bot.say("bob", "deploy schedule staging v1 at 14:30")).ok


async def test_a_production_engineer_overrides_a_lock_with_a_reason_audited(bot: Bot) -> None:
    assert (await bot.say("dave", "deploy lock production release train paused")).ok
    not_allowed = await bot.say(
        "dave", 'deploy schedule production v9 at 14:30 --ignore-production-check "hotfix"'
    )
    assert not not_allowed.ok and not_allowed.denied_by == "roles"
    # alice is a production engineer but not a release manager: she may not book production.
    assert not (
        await bot.say(
            "alice", 'deploy schedule production v9 at 14:30 --ignore-production-check "hotfix"'
        )
    ).ok
    reply = await bot.say(
        "alice", 'deploy schedule staging v9 at 14:30 --ignore-production-check "hotfix"'
    )
    assert reply.ok, reply.text  # staging isn't locked: nothing to override, still fine
    assert (await bot.say("dave", "deploy lock staging paused too")).ok
    reply = await bot.say(
        "alice", 'deploy schedule staging v10 at 16:00 --ignore-production-check "security fix"'
    )
    assert reply.ok, reply.text
    records = await bot.rows(AuditRecord, AuditRecord.command == "deploy schedule")
    notes = [n for r in records if r.outcome == "allowed" for n in r.details.get("notes", [])]
    assert any("Deploy check overridden" in n and "security fix" in n for n in notes)
    assert any("security fix" in text for text in await announcements(bot))


async def test_freezes_refuse_slots_inside_them(bot: Bot) -> None:
    denied = await bot.say("bob", 'freeze add staging 14:00 18:00 "demo day"')
    assert not denied.ok
    added = await bot.say("dave", 'freeze add staging 14:00 18:00 "demo day"')
    assert added.ok, added.text
    assert "Added freeze #1 of staging, 2026-03-02 14:00–18:00 UTC: demo day" in added.text
    refused = await bot.say("bob", "deploy schedule staging v1 at 17:45")
    assert not refused.ok
    assert "the freeze #1 “demo day” lasts 2026-03-02 14:00 UTC to 2026-03-02 18:00 UTC" in (
        refused.text
    )
    assert (await bot.say("bob", "deploy schedule staging v1 at 18:00")).ok
    listed = await bot.say("bob", "freeze list")
    assert "#1 staging · 2026-03-02 14:00–18:00 UTC · demo day · by @dave" in listed.text
    assert (await bot.say("dave", "freeze remove 1")).ok
    [row] = await bot.rows(DeployFreeze)
    assert row.removed_at is not None
    assert (await bot.say("bob", "deploy schedule staging v2 at 15:00")).ok


async def test_an_incident_that_locks_changes_blocks_production_slots(bot: Bot) -> None:
    await bot.open_incident(1, "Checkout down")
    refused = await bot.say("dave", "deploy schedule production v1 at 14:30")
    assert not refused.ok
    assert "“Checkout down” blocks deployments" in refused.text
    # Staging is not held by production incidents.
    assert (await bot.say("bob", "deploy schedule staging v1 at 14:30")).ok


async def test_move_and_cancel(bot: Bot) -> None:
    assert (await bot.say("bob", "deploy schedule staging v1 at 14:30 --duration 1h")).ok
    assert (await bot.say("carol", "deploy schedule staging v2 at 16:00")).ok
    clash = await bot.say("bob", "deploy move 1 15:45")
    assert not clash.ok and "#2 v2 by @carol" in clash.text
    moved = await bot.say("bob", "deploy move 1 tomorrow 10:00")
    assert moved.ok, moved.text
    assert "2026-03-03 10:00–11:00 UTC" in moved.text
    assert not (await bot.say("carol", "deploy cancel 1")).ok  # bob's slot
    assert (await bot.say("bob", "deploy cancel 1")).ok
    slot = (await bot.rows(DeploySlot, DeploySlot.id == 1))[0]
    assert slot.state == "cancelled"
    assert "#1" not in (await bot.say("bob", "deploy list")).text


async def test_the_queue_tells_the_head_when_it_is_their_turn(bot: Bot) -> None:
    first = await bot.say("bob", "deploy queue staging v1")
    assert first.ok and "You're #1 in the staging queue. You're first" in first.text
    second = await bot.say("carol", "deploy queue staging")
    assert "You're #2 in the staging queue. I'll tell you when it's your turn" in second.text
    assert "already #2" in (await bot.say("carol", "deploy queue staging")).text
    shown = await bot.say("dave", "deploy queue")
    assert "staging: 1. @bob (v1), 2. @carol" in shown.text
    left = await bot.say("bob", "deploy unqueue staging")
    assert "@carol is next, and told" in left.text
    texts = await announcements(bot)
    assert sum("@carol, it's your turn at staging" in t for t in texts) == 1
    async with bot.services.store.transaction() as session:
        waiting = list(
            await session.scalars(
                select(DeployQueueEntry).where(DeployQueueEntry.left_at.is_(None))
            )
        )
    assert [w.handle for w in waiting] == ["carol"]


async def test_production_needs_an_open_change_request_when_required(
    bot_factory: Callable[..., Bot],
) -> None:
    bot = bot_factory(deploys={"require_change_request": True})
    refused = await bot.say("dave", "deploy schedule production v1.42.0 at 14:30")
    assert not refused.ok and refused.denied_by == "deploys"
    assert "an open issue labelled `change` with v1.42.0 in its title. I found none" in (
        refused.text
    )
    await bot.add_issue("Change: deploy v1.42.0", ["change"], state="closed")
    await bot.add_issue("Deploy v1.42.0", ["deploy"])
    assert not (await bot.say("dave", "deploy schedule production v1.42.0 at 14:30")).ok
    ref = await bot.add_issue("Change: deploy v1.42.0 to production", ["change"])
    booked = await bot.say("dave", "deploy schedule production v1.42.0 at 14:30")
    assert booked.ok, booked.text
    records = await bot.rows(AuditRecord, AuditRecord.outcome == "allowed")
    assert any(f"Change request {ref}" in n for r in records for n in r.details["notes"])
    # Staging needs none.
    assert (await bot.say("bob", "deploy schedule staging v9 at 14:30")).ok


async def test_a_finished_deploy_hands_the_environment_to_the_next_in_line(bot: Bot) -> None:
    assert (await bot.say("bob", "deploy queue staging v1")).ok
    assert (await bot.say("carol", "deploy queue staging v2")).ok
    assert (await bot.say("bob", "deploy schedule staging v1 at now")).ok
    assert (await bot.say("bob", "deploy start 1")).ok
    assert sum("@carol, it's your turn" in t for t in await announcements(bot)) == 0
    done = await bot.say("bob", "deploy done 1")
    assert done.ok and "is out" in done.text
    assert sum("@carol, it's your turn at staging (v2)" in t for t in await announcements(bot)) == 1
    assert "staging: 1. @carol (v2)" in (await bot.say("dave", "deploy queue")).text


async def test_a_slot_being_started_still_holds_its_window(bot: Bot) -> None:
    assert (await bot.say("bob", "deploy schedule staging v1 at now")).ok
    assert (await bot.say("bob", "deploy start 1")).ok
    [started] = await bot.rows(DeploySlot)
    assert started.state == "starting"  # until the scheduler triggers its pipeline
    clash = await bot.say("carol", "deploy schedule staging v2 at now")
    assert not clash.ok and clash.denied_by == "deploys"
    assert "collides with another staging slot: #1 v1 by @bob" in clash.text
