"""The inbox keeps what was acknowledged until it is done, once per delivery, and the
replica that accepted it keeps it until its lease runs out."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from marvin import inbox
from marvin.store.tables import InboxItem
from tests.harness import Bot

LEASE = timedelta(seconds=60)


async def accept(
    bot: Bot, key: str, *, owner: str = "a", ago: timedelta = timedelta(0), transport: str = "slack"
) -> int:
    item = await inbox.accept(
        bot.services.store,
        key=key,
        transport=transport,
        kind="command",
        payload={"text": "whoami"},
        now=bot.clock.now() - ago,
        owner=owner,
        lease=LEASE,
    )
    assert item is not None
    return item


async def test_a_delivery_is_accepted_once_and_claimed_once(any_bot: Bot) -> None:
    store, now = any_bot.services.store, any_bot.clock.now()
    first = await accept(any_bot, "slack:Ev1")
    kwargs: dict[str, Any] = {
        "key": "slack:Ev1",
        "transport": "slack",
        "kind": "event",
        "payload": {},
        "now": now,
        "owner": "b",
        "lease": LEASE,
    }
    assert await inbox.accept(store, **kwargs) is None
    await inbox.finish(store, first, now)
    any_bot.clock.advance(minutes=5)
    redo, _ = await inbox.take_over(
        store,
        "slack",
        owner="b",
        now=any_bot.clock.now(),
        lease=LEASE,
        max_age=timedelta(minutes=25),
        everything=True,
    )
    assert redo == []  # done: nothing to take up again
    [row] = await any_bot.rows(InboxItem)
    assert (row.status, row.attempts) == ("done", 1)


async def test_deliveries_written_together_get_their_own_answers(any_bot: Bot) -> None:
    acceptor = inbox.Acceptor(any_bot.services.store)
    now = any_bot.clock.now()

    def deliver(key: str) -> Any:
        return acceptor.accept(
            key=key,
            transport="slack",
            kind="command",
            payload={},
            now=now,
            owner="a",
            lease=LEASE,
        )

    ids = await asyncio.gather(*(deliver(k) for k in ["k1", "k2", "k1", "k3", "k2"]))
    assert ids[0] is not None and ids[1] is not None and ids[3] is not None
    assert ids[2] is None and ids[4] is None  # the same delivery twice: accepted once
    assert len(set(ids[:2] + ids[3:4])) == 3
    assert len(await any_bot.rows(InboxItem)) == 3


async def test_another_replica_cannot_take_what_a_live_one_holds(any_bot: Bot) -> None:
    bot = any_bot
    store = bot.services.store
    item = await accept(bot, "k")
    now = bot.clock.now()
    redo, expired = await inbox.take_over(
        store, "slack", owner="b", now=now, lease=LEASE, max_age=timedelta(minutes=25)
    )
    assert (redo, expired) == ([], [])
    # The owner renews while it lives: still not b's after the first lease would have ended.
    bot.clock.advance(seconds=50)
    assert await inbox.renew(store, "a", bot.clock.now(), LEASE) == 1
    bot.clock.advance(seconds=50)
    redo, _ = await inbox.take_over(
        store, "slack", owner="b", now=bot.clock.now(), lease=LEASE, max_age=timedelta(minutes=25)
    )
    assert redo == []
    # It stops renewing (it died): after the lease, b takes it over.
    bot.clock.advance(seconds=61)
    redo, _ = await inbox.take_over(
        store, "slack", owner="b", now=bot.clock.now(), lease=LEASE, max_age=timedelta(minutes=25)
    )
    assert [r.id for r in redo] == [item]
    [row] = await bot.rows(InboxItem)
    assert (row.owner, row.attempts) == ("b", 2)


async def test_a_stopping_replica_gives_its_work_back_at_once(any_bot: Bot) -> None:
    bot = any_bot
    item = await accept(bot, "k")
    assert await inbox.release(bot.services.store, "a", bot.clock.now()) == 1
    bot.clock.advance(seconds=1)
    redo, _ = await inbox.take_over(
        bot.services.store,
        "slack",
        owner="b",
        now=bot.clock.now(),
        lease=LEASE,
        max_age=timedelta(minutes=25),
    )
    assert [r.id for r in redo] == [item]


async def test_pending_work_is_taken_up_again_while_it_can_still_be_answered(bot: Bot) -> None:
    store = bot.services.store
    fresh = await accept(bot, "a", ago=timedelta(minutes=5))
    stale = await accept(bot, "b", ago=timedelta(minutes=40))
    tried = await accept(bot, "c")
    await accept(bot, "d", transport="shell")
    now = bot.clock.now()
    async with store.transaction(write=True) as session:
        await session.execute(
            update(InboxItem).where(InboxItem.id == tried).values(attempts=inbox.MAX_ATTEMPTS)
        )
    redo, expired = await inbox.take_over(
        store,
        "slack",
        owner="z",
        now=now,
        lease=LEASE,
        max_age=timedelta(minutes=30),
        everything=True,
    )
    assert [r.id for r in redo] == [fresh]
    assert sorted(r.id for r in expired) == sorted([stale, tried])
    statuses = {r.key: r.status for r in await bot.rows(InboxItem)}
    assert statuses == {"a": "pending", "b": "abandoned", "c": "abandoned", "d": "pending"}
