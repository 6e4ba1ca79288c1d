"""The access review: `access report`, `access reviewed`, and the monthly reminder."""

from __future__ import annotations

from datetime import timedelta

from marvin.access import notices
from marvin.outbox import ANNOUNCE
from marvin.store.tables import AccessReview, OutboxMessage
from tests.harness import Bot


async def test_the_report_says_who_how_and_when_reviewed(bot: Bot) -> None:
    for who in ("alice", "carol", "dave"):
        await bot.say(who, "whoami")
    ref = await bot.add_issue("Access request", ["access request"])
    assert (
        await bot.say("alice", f"access grant feature_flags @carol --issue {ref} --expires 3d")
    ).ok
    reviewed = await bot.say("alice", 'access reviewed @erin "still on support"')
    assert reviewed.ok and "reviewed @erin's access" in reviewed.text
    (row,) = await bot.rows(AccessReview)
    assert (row.handle, row.reviewed_by, row.note) == ("erin", "alice", "still on support")
    bot.clock.advance(days=91)
    await bot.say("alice", "whoami")
    report = await bot.say("alice", "access report", dm=True)
    assert report.ok
    text = report.text
    assert report.data is not None and report.data["holders"] == ["alice", "dave", "erin"]
    assert "@alice (Alice Anders): production through the roles file; never reviewed" in text
    assert "@erin (Erin Evans): support through the roles file; reviewed 2026-03-02 by @alice" in (
        text
    )
    assert "@carol's `feature_flags` expired 2026-03-05 (#1)" in text
    # Not seen for 90 days: carol and dave (last here on the first day), the rest never;
    # alice spoke just now.
    assert report.data["idle"] == ["bob", "carol", "dave", "erin", "frank"]
    assert "@dave: last seen 2026-03-02" in text and "@frank: never seen" in text


async def test_reviewed_someone_unknown(bot: Bot) -> None:
    reply = await bot.say("alice", "access reviewed @nobody")
    assert "@nobody is not in the roles registry" in reply.text


async def test_a_monthly_reminder_to_the_production_channel(bot: Bot) -> None:
    # The first run starts the count: nothing is posted the moment Marvin starts.
    assert not await notices.remind_review(bot.services)
    assert await bot.rows(OutboxMessage) == []
    bot.clock.advance(days=30, minutes=1)
    assert await notices.remind_review(bot.services)
    assert not await notices.remind_review(bot.services)
    bot.clock.advance(days=29)
    assert not await notices.remind_review(bot.services)
    bot.clock.advance(days=1, minutes=1)
    assert await notices.remind_review(bot.services)
    posted = await bot.rows(OutboxMessage, OutboxMessage.kind == ANNOUNCE)
    assert len(posted) == 2
    assert posted[0].payload["channel_id"] == bot.settings.production_channel.id
    assert (
        posted[0]
        .payload["text"]
        .startswith(
            "Access review: 3 people have production or staging access, 3 of them not reviewed "
            "in the last 30 days"
        )
    )
    bot.clock.advance(timedelta(hours=1))
    assert await notices.run(bot.services) == 0
