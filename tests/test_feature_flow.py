"""Feature flags end to end through the pipeline, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from marvin.store.tables import AuditRecord, FlagChange, FlagLedger, LocalFlag, OutboxMessage, Watch
from tests.harness import Bot


async def test_a_flag_goes_staging_then_one_percent_then_soaks_then_up(any_bot: Bot) -> None:
    bot = any_bot
    reply = await bot.say("bob", "feature set new_nav true --staging")
    assert reply.ok, reply.text
    assert "new_nav" in reply.text and "on for everyone" in reply.text
    assert reply.announcement is not None
    assert "@bob set `new_nav` in staging" in reply.announcement.text
    assert "On call: @alice" in reply.announcement.text

    reply = await bot.say("bob", "feature set new_nav 1 --actors")
    assert reply.ok, reply.text
    assert "1% of actors" in reply.text

    reply = await bot.say("bob", "feature set new_nav 50 --actors")
    assert not reply.ok
    assert reply.denied_by == "ceiling"
    assert "above the 1% ceiling" in reply.text

    bot.clock.advance(hours=24)
    reply = await bot.say("bob", "feature set new_nav 50 --actors")
    assert reply.ok, reply.text

    flags = await bot.rows(LocalFlag, LocalFlag.name == "new_nav")
    by_env = {f.environment: f for f in flags}
    assert by_env["production"].percentage_of_actors == Decimal("50")
    assert by_env["staging"].enabled is True
    changes = sorted(await bot.rows(FlagChange, FlagChange.name == "new_nav"), key=lambda c: c.id)
    assert [c.exposure_after for c in changes] == [Decimal(100), Decimal(1), Decimal(50)]
    ledger = await bot.rows(
        FlagLedger, FlagLedger.name == "new_nav", FlagLedger.environment == "production"
    )
    assert ledger[0].exposed_since is not None
    watches = await bot.rows(Watch)
    assert len(watches) == 3
    assert all(w.ends_at - w.starts_at == timedelta(hours=4) for w in watches)
    outbox = await bot.rows(OutboxMessage)
    assert len(outbox) == 3 and {o.status for o in outbox} == {"pending"}
    audit = await bot.rows(AuditRecord, AuditRecord.outcome == "denied")
    assert [(a.policy, a.command) for a in audit] == [("ceiling", "feature set")]


async def test_another_change_extends_the_watch_instead_of_adding_one(any_bot: Bot) -> None:
    bot = any_bot
    assert (await bot.say("alice", "feature set w true --staging")).ok
    bot.clock.advance(hours=1)
    assert (await bot.say("alice", "feature set w false --staging")).ok
    [watch] = await bot.rows(Watch)
    assert watch.ends_at.replace(tzinfo=None) == (bot.clock.now() + timedelta(hours=4)).replace(
        tzinfo=None
    )
    reply = await bot.say("alice", "status")
    assert reply.text.count("feature w (staging)") == 1


async def test_the_welcome_tells_only_those_without_the_grant_how_to_get_it(bot: Bot) -> None:
    carol = await bot.say("carol", "help", dm=True)
    assert "request with an issue labelled `access request`" in carol.text
    bob = await bot.say("bob", "help", dm=True)
    # (`help` itself lists the `access request` command, so look for the welcome's hint.)
    assert "Welcome!" in bob.text and "request with an issue labelled" not in bob.text
