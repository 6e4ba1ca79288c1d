"""Finished bookkeeping goes after the retention time; the record and failures stay."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from marvin import inbox
from marvin.outbox import ANNOUNCE, DeliveryError, OutboxWorker
from marvin.retention import prune
from marvin.store.tables import AuditRecord, Confirmation, FlagChange, InboxItem, OutboxMessage
from tests.harness import EXAMPLE, ROOT, Bot
from tests.test_outbox import FlakySink

KEEP = timedelta(days=30)


async def test_old_finished_work_is_pruned_and_the_record_kept(any_bot: Bot) -> None:
    bot = any_bot
    store = bot.services.store
    # Delivered, done and spent, a long time ago:
    await bot.say("alice", "feature set old true --staging")
    await bot.say("alice", "feature delete old --staging")  # leaves a confirmation
    item = await inbox.accept(
        store,
        key="old",
        transport="slack",
        kind="event",
        payload={},
        now=bot.clock.now(),
        owner="me",
        lease=timedelta(seconds=60),
    )
    assert item is not None
    await inbox.finish(store, item, bot.clock.now())
    worker = OutboxWorker(store, {ANNOUNCE: FlakySink([])}, bot.clock)
    assert await worker.deliver_due() == 1
    # One announcement that failed for good, which a person must still be able to see:
    await bot.say("alice", "feature set kept true --staging")
    failing = FlakySink([DeliveryError("channel_not_found", retry=False)])
    await OutboxWorker(store, {ANNOUNCE: failing}, bot.clock).deliver_due()

    bot.clock.advance(KEEP + timedelta(days=1))
    # ... and recent work that must stay:
    await bot.say("alice", "feature set recent true --staging")
    counts = await prune(store, bot.clock.now(), KEEP)

    assert counts == {"inbox": 1, "outbox": 1, "confirmations": 1}
    assert await bot.rows(InboxItem) == [] and await bot.rows(Confirmation) == []
    assert sorted(o.status for o in await bot.rows(OutboxMessage)) == ["failed", "pending"]
    assert len(await bot.rows(FlagChange)) == 3
    assert len(await bot.rows(AuditRecord)) >= 5


def test_db_prune_from_the_command_line(sqlite_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "marvin.cli", "--config", str(EXAMPLE), "db", "prune"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "MARVIN_DATABASE__URL": sqlite_url},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Pruned 0 inbox, 0 outbox, 0 confirmations."
