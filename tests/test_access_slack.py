"""From Slack, through the rig: who has production access, asked in a DM and with a slash
command naming someone by their Slack mention; a request's announcement reaches the
production channel."""

from __future__ import annotations

from marvin.store.tables import LocalIssue
from tests.slack_harness import (
    PRODUCTION,
    SlackRig,
    dm_id,
    message_event,
    rig_factory_fixture,  # noqa: F401
    rig_fixture,  # noqa: F401
    user_id,
)


async def test_who_has_production_access_in_a_dm(rig: SlackRig) -> None:
    event = message_event("carol", "access who --env production")
    await rig.event(event)
    said = await rig.said(dm_id("carol"), event["ts"])
    assert "@alice (Alice Anders), through the roles file" in said["text"]
    assert "@erin (Erin Evans), through the roles file" in said["text"]
    assert "@carol" not in said["text"]


async def test_check_someone_by_their_mention(rig: SlackRig) -> None:
    reply = await rig.run("bob", f"access check <@{user_id('erin')}>", channel="random")
    assert "support, through the roles file" in reply["text"]
    assert "staging, from the support role" in reply["text"]


async def test_a_request_is_announced_in_production(rig: SlackRig) -> None:
    reply = await rig.run(
        "carol", 'access request feature_flags "to roll out new_nav"', channel="dm"
    )
    assert "I opened #1 for your `feature_flags` request" in reply["text"]
    assert [i.labels for i in await rig.rows(LocalIssue)] == [["access request"]]
    await rig.announce()
    assert any("requested `feature_flags`" in p["text"] for p in rig.posts(PRODUCTION))


async def test_the_access_jobs_run_under_the_supervisor(rig: SlackRig) -> None:
    jobs = rig.bot.supervisor.jobs
    assert {"directory:sync", "access:notices"} <= set(jobs)
    assert jobs["directory:sync"].every == 15 * 60
    await jobs["access:notices"].run()  # the first run starts the month
    await rig.announce()
    assert not any(p["text"].startswith("Access review: ") for p in rig.posts(PRODUCTION))
    rig.clock.advance(days=31)
    await jobs["access:notices"].run()
    await rig.announce()
    assert any(p["text"].startswith("Access review: ") for p in rig.posts(PRODUCTION))
