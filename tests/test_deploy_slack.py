"""Deploys from Slack: a release manager books in their own Slack time zone, sees a
conflict refused with its reason, and the channel sees the booking, through the Slack rig."""

from __future__ import annotations

from tests.slack_harness import SlackRig, rig_factory_fixture, rig_fixture  # noqa: F401


async def test_a_release_manager_books_from_slack_in_their_zone(rig: SlackRig) -> None:
    rig.api.user("UDAVE").tz = "Europe/Berlin"
    booked = await rig.run("dave", "deploy schedule production v1.42.0 at tomorrow 09:00")
    # The rig's clock is Monday 2026-03-02 10:00 UTC; 09:00 in Berlin is 08:00 UTC.
    assert "Booked slot #1: v1.42.0 to production" in booked["text"]
    assert "2026-03-03 08:00–08:30 UTC (Tue 09:00–09:30 CET)" in booked["text"]
    clash = await rig.run("dave", "deploy schedule production v1.43.0 at 2026-03-03T08:15Z")
    assert "collides with another production slot: #1 v1.42.0 by @dave" in clash["text"]
    denied = await rig.run("bob", "deploy schedule canary v1 at 14:00")
    assert "release managers" in denied["text"]
    await rig.announce()
    texts = [p.get("text", "") for p in rig.posts()]
    assert sum("@dave booked deploy slot #1" in t for t in texts) == 1
    listed = await rig.run("bob", "deploy list", channel="random")
    # bob's Slack zone is UTC: shown in UTC alone.
    assert "#1 production v1.42.0 · 2026-03-03 08:00–08:30 UTC · @dave" in listed["text"]
