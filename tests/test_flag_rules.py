"""Rollback, steps, the watch and four-eyes: the flag rules beyond the ceiling."""

from __future__ import annotations

from collections.abc import Callable

from marvin import watches
from marvin.store.tables import Approval, AuditRecord, LocalFlag, OutboxMessage, Watch
from tests.harness import Bot
from tests.test_policies import at_one_percent, staged

BotFactory = Callable[..., Bot]


# --- rollback -------------------------------------------------------------------------------


async def test_rollback_puts_the_flag_back_before_its_last_change(bot: Bot) -> None:
    await at_one_percent(bot)
    bot.clock.advance(hours=25)
    assert (await bot.say("bob", "feature set new_nav 30 --actors")).ok
    reply = await bot.say("bob", "feature rollback new_nav")
    assert reply.ok, reply.text
    assert "Rolled back `new_nav` in production: now 1% of actors (was 30% of actors)" in reply.text
    assert reply.announcement and "rolled back `new_nav`" in reply.announcement.text


async def test_rollback_is_a_kill_switch_during_a_change_lock_and_while_away(bot: Bot) -> None:
    await at_one_percent(bot)
    await bot.open_incident(1)
    await bot.say("bob", "status away", dm=True)
    reply = await bot.say("bob", "feature rollback new_nav")
    assert reply.ok, reply.text
    assert "now off" in reply.text
    assert reply.announcement and "@bob lowered it while marked away" in reply.announcement.text


async def test_rolling_back_a_switch_off_is_a_raise_and_is_judged_as_one(bot: Bot) -> None:
    await at_one_percent(bot)
    assert (await bot.say("bob", "feature set new_nav false")).ok
    await bot.open_incident(2)
    reply = await bot.say("bob", "feature rollback new_nav")
    assert reply.denied_by == "change_lock"


async def test_rollback_of_a_flag_without_history_says_so(bot: Bot) -> None:
    reply = await bot.say("bob", "feature rollback never_set")
    assert reply.ok and "nothing to undo" in reply.text


# --- steps ----------------------------------------------------------------------------------


async def test_after_the_soak_a_large_step_needs_a_deviation(bot_factory: BotFactory) -> None:
    bot = bot_factory(flags={"max_step_percent": 20})
    await at_one_percent(bot)
    bot.clock.advance(hours=25)
    reply = await bot.say("bob", "feature set new_nav 100 --actors")
    assert reply.denied_by == "ceiling" and "a step is at most 20%" in reply.text
    assert (await bot.say("bob", "feature set new_nav 21 --actors")).ok
    ref = await bot.deviation("bob", 'new_nav 100 "the launch needs everyone"')
    asked = await bot.say("bob", f"feature set new_nav 100 --actors --issue {ref}")
    assert asked.kind == "confirm" and asked.confirm is not None
    done = await bot.say("bob", f"confirm {asked.confirm.token}")
    assert done.ok and "100% of actors" in done.text


# --- the watch ------------------------------------------------------------------------------


async def test_feature_watch_lists_who_watches_what(bot: Bot) -> None:
    await at_one_percent(bot)
    reply = await bot.say("carol", "feature watch new_nav", dm=True)
    assert "@alice: feature new_nav (staging) until 2026-03-02 14:00 UTC" in reply.text
    assert "@bob: feature new_nav (production)" in reply.text
    assert "Nobody is watching `other`" in (await bot.say("carol", "feature watch other")).text


async def test_the_end_of_a_watch_and_going_away_are_told_once(bot: Bot) -> None:
    await staged(bot)
    assert await watches.notify(bot.services) == 0  # on watch, and here
    await bot.say("alice", "status away", dm=True)
    assert await watches.notify(bot.services) == 1
    assert await watches.notify(bot.services) == 0  # reminded once
    bot.clock.advance(hours=5)
    assert await watches.notify(bot.services) == 1
    assert await watches.notify(bot.services) == 0
    dms = [
        m.payload["text"] for m in await bot.rows(OutboxMessage, OutboxMessage.kind == "dm:test")
    ]
    assert any("you seem to be away (marked away in Marvin)" in t for t in dms)
    assert any("Your watch of feature new_nav (staging) has ended" in t for t in dms)
    [watch] = await bot.rows(Watch)
    assert watch.ended_notified_at is not None and watch.reminded_at is not None
    recorded = {a.outcome for a in await bot.rows(AuditRecord)}
    assert {"watch_ended", "watch_reminded"} <= recorded


# --- four eyes ------------------------------------------------------------------------------


async def _ask(bot: Bot) -> str:
    await staged(bot)
    ref = await bot.deviation("bob", 'new_nav 50 "roll new_nav out fast"')
    reply = await bot.say("bob", f"feature set new_nav 50 --actors --issue {ref}")
    assert reply.ok and reply.kind == "confirm", reply.text
    assert "waits for a second production engineer" in reply.text
    assert reply.announcement is not None and reply.announcement.approval is not None
    assert await bot.rows(LocalFlag, LocalFlag.environment == "production") == []
    return reply.announcement.approval.token


async def test_four_eyes_a_second_production_engineer_approves(bot_factory: BotFactory) -> None:
    bot = bot_factory(flags={"four_eyes": ["production"]})
    token = await _ask(bot)
    assert (await bot.say("bob", f"approve {token}")).denied_by == "roles"
    assert (await bot.say("carol", f"approve {token}")).denied_by == "roles"
    reply = await bot.say("alice", f"approve {token}")
    assert reply.ok, reply.text
    assert reply.text.startswith("Approved @bob's change.") and "50% of actors" in reply.text
    announcements = [
        m.payload["text"] for m in await bot.rows(OutboxMessage, OutboxMessage.kind == "announce")
    ]
    assert any(
        "@bob set `new_nav` in production" in t and "Approved by @alice" in t for t in announcements
    ), announcements
    [row] = await bot.rows(Approval)
    assert (row.state, row.decided_by) == ("approved", "alice")
    again = await bot.say("alice", f"approve {token}")
    assert "already approved by @alice" in again.text


async def test_nobody_approves_their_own_change(bot_factory: BotFactory) -> None:
    bot = bot_factory(flags={"four_eyes": ["production"]})
    await staged(bot)
    reply = await bot.say(
        "alice", 'feature set new_nav 1 --actors --ignore-production-check "hotfix for incident"'
    )
    assert reply.announcement is not None and reply.announcement.approval is not None
    mine = await bot.say("alice", f"approve {reply.announcement.approval.token}")
    assert not mine.ok and "someone else must approve" in mine.text


async def test_an_approval_runs_every_check_again_and_stays_usable_if_refused(
    bot_factory: BotFactory,
) -> None:
    bot = bot_factory(flags={"four_eyes": ["production"]})
    token = await _ask(bot)
    await bot.say("bob", "status away", dm=True)
    refused = await bot.say("alice", f"approve {token}")
    assert refused.denied_by == "availability" and "Approved @bob's change." in refused.text
    await bot.say("bob", "status back", dm=True)
    assert (await bot.say("alice", f"approve {token}")).ok


async def test_a_request_can_be_declined_or_expire(bot_factory: BotFactory) -> None:
    bot = bot_factory(flags={"four_eyes": ["production"], "approval_minutes": 30})
    token = await _ask(bot)
    reply = await bot.say("alice", f"decline {token}")
    assert reply.ok and "Declined @bob's request" in reply.text
    assert "already declined" in (await bot.say("alice", f"approve {token}")).text
    second = await _ask_again(bot)
    bot.clock.advance(minutes=31)
    assert "expired" in (await bot.say("alice", f"approve {second}")).text
    assert await bot.rows(LocalFlag, LocalFlag.environment == "production") == []


async def _ask_again(bot: Bot) -> str:
    ref = await bot.deviation("bob", 'new_nav 50 "roll new_nav out fast, again"')
    reply = await bot.say("bob", f"feature set new_nav 50 --actors --issue {ref}")
    assert reply.announcement is not None and reply.announcement.approval is not None
    return reply.announcement.approval.token


async def test_without_four_eyes_the_author_confirms_as_before(bot: Bot) -> None:
    await staged(bot)
    ref = await bot.deviation("bob", 'new_nav 50 "roll new_nav out fast"')
    reply = await bot.say("bob", f"feature set new_nav 50 --actors --issue {ref}")
    assert reply.confirm is not None and await bot.rows(Approval) == []


# --- broad gates ----------------------------------------------------------------------------


async def test_a_whole_group_as_a_gate_needs_a_deviation_in_production(bot: Bot) -> None:
    await staged(bot)
    reply = await bot.say("bob", "feature set new_nav true --group acme-corp")
    assert reply.denied_by == "ceiling" and "`group:acme-corp` reaches a whole group" in reply.text
    # The dogfooders, and a named person, are fine; so is staging.
    assert (await bot.say("bob", "feature set new_nav true --group gitlab-org")).ok
    assert (await bot.say("bob", "feature set new_nav true --user carol")).ok
    assert (await bot.say("bob", "feature set new_nav true --group acme-corp --staging")).ok
    ref = await bot.deviation("bob", 'new_nav true "let acme try it before the rest"')
    asked = await bot.say("bob", f"feature set new_nav true --group acme-corp --issue {ref}")
    assert asked.confirm is not None
    assert (await bot.say("bob", f"confirm {asked.confirm.token}")).ok


# --- secrets typed into a command -----------------------------------------------------------


async def test_a_token_typed_into_a_command_is_never_stored(bot: Bot) -> None:
    await bot.say("bob", "feature get xoxb-123456-abcdef")
    await bot.say("bob", "whoami glpat-AbCdEf1234567890")
    texts = [a.text for a in await bot.rows(AuditRecord)]
    assert texts and not any("123456-abcdef" in t or "AbCdEf1234567890" in t for t in texts)
    assert any("xoxb-[redacted]" in t for t in texts)
