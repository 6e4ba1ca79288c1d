"""Four-eyes in Slack: the request is posted in the production channel with Approve and
Decline buttons; a second production engineer's click runs the change."""

from __future__ import annotations

from typing import Any

from marvin.adapters.issues import LocalIssueTracker
from marvin.slack.render import APPROVE_ACTION, DECLINE_ACTION
from marvin.store.tables import Approval, Deviation, LocalFlag
from tests.harness import deliver_issues
from tests.slack_harness import (
    PRODUCTION,
    RigFactory,
    SlackRig,
    rig_factory_fixture,  # noqa: F401
    wait_for_call,
)


def buttons(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        element["action_id"]: element
        for block in blocks
        if block.get("type") == "actions"
        for element in block["elements"]
    }


async def ask(rig: SlackRig) -> str:
    assert "now on" in (await rig.run("alice", "feature set new_nav true --staging"))["text"]
    asked = await rig.run("bob", 'feature deviate new_nav 50 "roll out fast for the launch"')
    assert "opening a deviation issue" in asked["text"]
    # `marvin serve`'s own issue loop opens it.
    assert await deliver_issues(rig.bot) == 0
    [deviation] = await rig.rows(Deviation)
    assert deviation.issue_ref is not None
    ref = deviation.issue_ref
    await LocalIssueTracker(rig.store, rig.clock).add_label(ref, "deviation::approved")
    reply = await rig.run("bob", f"feature set new_nav 50 --actors --issue {ref}")
    assert "waits for a second production engineer" in reply["text"]
    await rig.announce()
    posted = await wait_for_call(
        rig.api,
        "chat.postMessage",
        lambda c: c.params.get("channel") == PRODUCTION and "asks for" in c.params["text"],
    )
    found = buttons(posted.params["blocks"])
    assert set(found) == {APPROVE_ACTION, DECLINE_ACTION}
    assert found[APPROVE_ACTION]["value"] == found[DECLINE_ACTION]["value"]
    return str(found[APPROVE_ACTION]["value"])


async def test_a_second_engineer_approves_with_a_click(rig_factory: RigFactory) -> None:
    rig = await rig_factory(flags={"four_eyes": ["production"]})
    token = await ask(rig)
    # bob can't approve his own request: he isn't even a production engineer.
    refused = await rig.reply(await rig.click("bob", token, action_id=APPROVE_ACTION))
    assert "production engineers" in refused["text"]
    done = await rig.reply(await rig.click("alice", token, action_id=APPROVE_ACTION))
    assert done["text"].startswith("Approved @bob's change.")
    [flag] = await rig.rows(LocalFlag, LocalFlag.environment == "production")
    assert flag.percentage_of_actors == 50
    await rig.announce()
    assert any("Approved by @alice" in p["text"] for p in rig.posts())


async def test_a_decline_click_turns_it_down(rig_factory: RigFactory) -> None:
    rig = await rig_factory(flags={"four_eyes": ["production"]})
    token = await ask(rig)
    answer = await rig.reply(await rig.click("alice", token, action_id=DECLINE_ACTION))
    assert "Declined @bob's request" in answer["text"]
    [row] = await rig.rows(Approval)
    assert row.state == "declined"
    assert await rig.rows(LocalFlag, LocalFlag.environment == "production") == []
