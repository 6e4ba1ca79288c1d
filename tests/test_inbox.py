"""The inbox keeps what was acknowledged until it is done, once per delivery."""

from __future__ import annotations

from datetime import timedelta

from marvin import inbox
from marvin.store.tables import InboxItem
from tests.harness import Bot


async def test_a_delivery_is_accepted_once_and_claimed_once(any_bot: Bot) -> None:
    store, now = any_bot.services.store, any_bot.clock.now()
    first = await inbox.accept(
        store, key="slack:Ev1", transport="slack", kind="event", payload={"text": "whoami"}, now=now
    )
    again = await inbox.accept(
        store, key="slack:Ev1", transport="slack", kind="event", payload={"text": "whoami"}, now=now
    )
    assert first is not None and again is None
    assert await inbox.start(store, first)
    await inbox.finish(store, first, now)
    assert not await inbox.start(store, first)  # done: a replay does nothing
    [row] = await any_bot.rows(InboxItem)
    assert (row.status, row.attempts) == ("done", 1)


async def test_pending_work_is_taken_up_again_while_it_can_still_be_answered(bot: Bot) -> None:
    store, now = bot.services.store, bot.clock.now()
    fresh = await inbox.accept(
        store,
        key="a",
        transport="slack",
        kind="command",
        payload={},
        now=now - timedelta(minutes=5),
    )
    stale = await inbox.accept(
        store,
        key="b",
        transport="slack",
        kind="command",
        payload={},
        now=now - timedelta(minutes=40),
    )
    tried = await inbox.accept(
        store, key="c", transport="slack", kind="command", payload={}, now=now
    )
    other = await inbox.accept(
        store, key="d", transport="shell", kind="command", payload={}, now=now
    )
    assert None not in (fresh, stale, tried, other)
    for _ in range(3):
        assert tried is not None and await inbox.start(store, tried)
    redo, expired = await inbox.pending(store, "slack", now, timedelta(minutes=30))
    assert [r.id for r in redo] == [fresh]
    assert sorted(r.id for r in expired) == sorted([stale, tried])
    statuses = {r.key: r.status for r in await bot.rows(InboxItem)}
    assert statuses == {"a": "pending", "b": "abandoned", "c": "abandoned", "d": "pending"}
