"""The shipped app manifest asks Slack for what Marvin listens for and calls: an event
that is not subscribed, or a scope that is not asked for, never reaches it in production
(the fake Slack grants exactly the manifest's scopes)."""

from __future__ import annotations

import yaml

from tests.fakes.slack_api import MANIFEST, manifest_scopes
from tests.slack_harness import (
    SlackRig,
    rig_factory_fixture,  # noqa: F401
    rig_fixture,  # noqa: F401
)

# An Events API event as Bolt names it, and its subscriptions in the manifest.
SUBSCRIBED_AS = {"message": {"message.im", "message.channels", "message.groups"}}
# What each event needs to be delivered at all (api.slack.com/events).
NEEDS_SCOPE = {
    "app_mention": "app_mentions:read",
    "message": "im:history",
    "reaction_added": "reactions:read",
}


def test_every_event_marvin_listens_for_is_subscribed(rig: SlackRig) -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    subscribed = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    scopes = set(manifest_scopes())
    for event in rig.bot.transport.events():
        assert SUBSCRIBED_AS.get(event, {event}) & subscribed, f"{event} is not subscribed"
        assert NEEDS_SCOPE[event] in scopes, f"{event} needs {NEEDS_SCOPE[event]}"
