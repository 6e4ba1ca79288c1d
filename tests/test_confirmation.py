"""Risky changes wait for their author's explicit go-ahead, which acts once."""

from __future__ import annotations

from marvin.store.tables import AuditRecord, Confirmation, LocalFlag
from tests.harness import Bot


async def ask_to_delete(bot: Bot) -> str:
    assert (await bot.say("alice", "feature set doomed true --staging")).ok
    reply = await bot.say("alice", "feature delete doomed --staging")
    assert reply.ok and reply.kind == "confirm" and reply.confirm is not None
    assert "can't be undone" in reply.text and reply.announcement is None
    assert len(await bot.rows(LocalFlag)) == 1  # nothing happened yet
    return reply.confirm.token


async def test_the_author_confirms_and_it_happens_once(any_bot: Bot) -> None:
    token = await ask_to_delete(any_bot)
    first = await any_bot.say("alice", f"confirm {token}")
    assert first.ok and "Deleted `doomed`" in first.text and first.announcement is not None
    second = await any_bot.say("alice", f"confirm {token}")
    assert second.ok and "already confirmed" in second.text and second.announcement is None
    assert await any_bot.rows(LocalFlag) == []
    [row] = await any_bot.rows(Confirmation)
    assert row.used_at is not None
    outcomes = [a.outcome for a in sorted(await any_bot.rows(AuditRecord), key=lambda a: a.id)]
    assert outcomes[-4:] == ["confirm_requested", "allowed", "allowed", "ok"]


async def test_someone_else_cannot_confirm(bot: Bot) -> None:
    token = await ask_to_delete(bot)
    reply = await bot.say("bob", f"confirm {token}")
    assert not reply.ok and "Only the person who asked" in reply.text
    assert len(await bot.rows(LocalFlag)) == 1


async def test_a_confirmation_expires(bot: Bot) -> None:
    token = await ask_to_delete(bot)
    bot.clock.advance(minutes=5)
    reply = await bot.say("alice", f"confirm {token}")
    assert not reply.ok and "expired" in reply.text
    assert len(await bot.rows(LocalFlag)) == 1


async def test_the_policies_are_checked_again_when_confirming(bot: Bot) -> None:
    token = await ask_to_delete(bot)
    await bot.say("alice", "status away", dm=True)
    reply = await bot.say("alice", f"confirm {token}")
    assert reply.denied_by == "availability"
    assert len(await bot.rows(LocalFlag)) == 1


async def test_a_confirmation_runs_where_it_was_asked(bot: Bot) -> None:
    token = await ask_to_delete(bot)
    reply = await bot.say("alice", f"confirm {token}", dm=True)  # the button lives in a DM
    assert reply.ok and "Deleted" in reply.text


async def test_a_made_up_code_is_refused(bot: Bot) -> None:
    reply = await bot.say("alice", "confirm 0123456789abcdef")
    assert reply.kind == "not_found"
    reply = await bot.say("alice", """confirm "x'; drop table accounts; --" """)
    assert reply.kind == "usage" and "not a confirmation code" in reply.text
