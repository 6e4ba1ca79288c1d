"""Marvin over Slack's HTTP mode: signed requests in, what people see out.

Each test drives `build_bot(...).web` (what `marvin serve` runs) with requests signed as
Slack signs them, and asserts on what Slack was sent (the ack, the response_url post, the
messages in channels and threads) and on what the database holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from marvin.clock import as_utc
from marvin.commands.feature import ListHandler
from marvin.store.tables import (
    Account,
    AuditRecord,
    Confirmation,
    InboxItem,
    LocalFlag,
    OutboxMessage,
)
from tests.fakes import slack_requests
from tests.harness import START
from tests.slack_harness import (
    PRODUCTION,
    SECRET,
    STRANGER_EMAIL,
    RigFactory,
    SlackRig,
    any_rig_fixture,  # noqa: F401
    button,
    dm_id,
    epoch,
    json_log_fixture,  # noqa: F401
    log_entries,
    mention_event,
    message_event,
    rig_factory_fixture,  # noqa: F401
    rig_fixture,  # noqa: F401
    user_id,
)

ROOT = Path(__file__).resolve().parents[1]
SET_STAGING = "feature set new_nav true --staging"


async def audit(rig: SlackRig, *where: Any) -> list[AuditRecord]:
    return sorted(await rig.rows(AuditRecord, *where), key=lambda a: a.id)


async def nothing_stored(rig: SlackRig) -> None:
    await rig.settle()
    assert await rig.rows(Account) == []
    assert await rig.rows(AuditRecord) == []
    assert await rig.rows(OutboxMessage) == []


# ------------------------------------------------------------------ slash commands


async def test_a_change_is_acked_then_answered_privately_then_announced(any_rig: SlackRig) -> None:
    rig = any_rig
    # Hold the first outside call of the work: the ack must not wait for any of it.
    rig.api.delay("users.info", 0.5)
    ack = await rig.command("bob", SET_STAGING)
    assert ack.status == 200
    assert ack.headers["Content-Type"].startswith("application/json")
    assert ack.json() == {"response_type": "ephemeral", "text": f"Working on `{SET_STAGING}`…"}
    assert rig.replies(ack) == [] and await rig.rows(Account) == []
    rig.api.delay("users.info", 0)

    reply = await rig.reply(ack)
    assert reply["response_type"] == "ephemeral" and reply["replace_original"] is True
    assert "linked to GitLab user bob" in reply["text"]
    assert "`new_nav` in staging is now on for everyone (was new)" in reply["text"]
    assert reply["blocks"][0]["type"] == "section"
    assert "now on for everyone" in reply["blocks"][0]["text"]["text"]

    # Announced only when the outbox runs, and then in the production channel.
    assert rig.posts() == []
    [pending] = await rig.rows(OutboxMessage)
    assert pending.status == "pending"
    assert await rig.announce() == 1
    [post] = rig.posts()
    text = "@bob set `new_nav` in staging: new → on for everyone. On call: @alice."
    assert post["text"] == text
    assert post["blocks"][0] == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": f":loudspeaker: {text}"},
    }
    [record] = await audit(rig, AuditRecord.outcome == "allowed")
    assert post["blocks"][1]["type"] == "context"
    assert record.request_id in post["blocks"][1]["elements"][0]["text"]
    assert [m["text"] for m in rig.api.messages(PRODUCTION)] == [text]
    [delivered] = await rig.rows(OutboxMessage)
    assert delivered.status == "delivered" and delivered.attempts == 1

    assert [(a.outcome, a.command) for a in await audit(rig)] == [
        ("registered", None),
        ("allowed", "feature set"),
    ]
    assert (record.transport, record.chat_user_id, record.place_id, record.place_name) == (
        "slack",
        "UBOB",
        PRODUCTION,
        "production",
    )
    assert record.text == SET_STAGING

    # The conversation goes on: a refusal is private, audited and never announced.
    carol = await rig.run("carol", "feature set new_nav false --staging")
    assert carol["response_type"] == "ephemeral"
    assert carol["text"].startswith(":no_entry: Welcome!")
    assert "needs the `feature_flags` grant" in carol["text"]
    assert await rig.announce() == 0
    assert len(rig.posts()) == 1
    [denied] = await audit(rig, AuditRecord.outcome == "denied")
    assert (denied.chat_user_id, denied.policy) == ("UCAROL", "roles")
    flags = await rig.rows(LocalFlag)
    assert [(f.name, f.environment, f.enabled) for f in flags] == [("new_nav", "staging", True)]


DENIALS = {
    "no grant": ("carol", "production", "roles", "needs the `feature_flags` grant"),
    "wrong channel": ("alice", "random", "channel", "run only in #production"),
    "slash command in a DM": ("alice", "dm", "channel", "You're in a direct message"),
    "not in the directory": ("zed", "production", "registration", STRANGER_EMAIL),
}


@pytest.mark.parametrize(("who", "channel", "policy", "says"), DENIALS.values(), ids=DENIALS)
async def test_a_refusal_is_private_audited_and_not_announced(
    rig: SlackRig, who: str, channel: str, policy: str, says: str
) -> None:
    reply = await rig.run(who, SET_STAGING, channel=channel)
    assert reply["response_type"] == "ephemeral" and reply["replace_original"] is True
    assert reply["text"].startswith(":no_entry:") and says in reply["text"]
    assert await rig.announce() == 0
    assert rig.api.calls("chat.postMessage") == []
    assert await rig.rows(OutboxMessage) == [] and await rig.rows(LocalFlag) == []
    [record] = await audit(rig, AuditRecord.outcome == "denied")
    assert (record.chat_user_id, record.command, record.policy) == (
        user_id(who),
        "feature set",
        policy,
    )
    assert says in (record.reason or "")


USAGE = {
    "missing argument": ("feature set", "`feature set` needs `&lt;name&gt;`."),
    "over 100 percent": ("feature set new_nav 1000 --actors", "'1000' is over 100%"),
    "unknown verb": ("feature frob", "`feature` has no subcommand `frob`."),
}


@pytest.mark.parametrize(("text", "says"), USAGE.values(), ids=USAGE)
async def test_a_usage_error_is_private_and_explains(rig: SlackRig, text: str, says: str) -> None:
    reply = await rig.run("alice", text)
    assert reply["response_type"] == "ephemeral"
    assert says in reply["text"] and "Usage:" in reply["text"]
    assert await rig.announce() == 0
    assert rig.api.calls("chat.postMessage") == []
    [record] = await audit(rig, AuditRecord.outcome == "usage_error")
    assert record.text == text


async def test_an_empty_command_is_help(rig: SlackRig) -> None:
    ack = await rig.command("erin", "")
    assert ack.json()["text"] == "Working on `help`…"
    reply = await rig.reply(ack)
    assert "feature set" in reply["text"]
    [*_, record] = await audit(rig)
    assert (record.text, record.command, record.outcome) == ("help", "help", "ok")


async def test_what_people_type_is_escaped_not_turned_into_mentions(rig: SlackRig) -> None:
    ack = await rig.command("alice", "feature set a <!channel>")
    assert ack.json()["text"] == "Working on `feature set a &lt;!channel&gt;`…"
    reply = await rig.reply(ack)
    assert "'&lt;!channel&gt;' is not a value" in reply["text"]
    assert "<!channel>" not in str(reply)


async def test_when_the_response_url_is_used_up_the_answer_comes_as_an_ephemeral(
    rig: SlackRig,
) -> None:
    rig.api.fail_next("response_url", status=404, error="expired_url", retry_after=None)
    ack = await rig.command("bob", "feature list")
    call = await rig.api.wait_for("chat.postEphemeral")
    assert call[0].params["channel"] == PRODUCTION and call[0].params["user"] == "UBOB"
    assert "No flags in production." in call[0].params["text"]
    assert len(rig.replies(ack)) == 1  # tried once, then the fallback


# ------------------------------------------------------------------ requests not from Slack


def _forge(body: bytes, headers: dict[str, str], how: str) -> tuple[bytes, dict[str, str]]:
    if how == "forged body":
        return body.replace(b"help", b"feature+set+x+true"), headers
    if how == "wrong secret":
        content_type = headers["Content-Type"]
        return body, slack_requests.signed_headers(
            "not-the-secret", body, content_type=content_type
        )
    if how == "unsigned":
        return body, {"Content-Type": headers["Content-Type"]}
    if how == "stale":
        old = int(time.time()) - 6 * 60
        return body, slack_requests.signed_headers(
            SECRET, body, content_type=headers["Content-Type"], timestamp=old
        )
    if how == "timestamp not a number":
        return body, {**headers, "X-Slack-Request-Timestamp": "soon"}
    raise AssertionError(how)


def _genuine(rig: SlackRig, kind: str) -> tuple[bytes, dict[str, str]]:
    if kind == "command":
        return slack_requests.slash_command(
            SECRET,
            text="help",
            user_id="UBOB",
            user_name="bob",
            channel_id=PRODUCTION,
            channel_name="production",
            response_url=rig.api.response_url(PRODUCTION, "UBOB"),
            trigger_id=slack_requests.new_trigger_id(),
        )
    if kind == "event":
        return slack_requests.event_callback(SECRET, message_event("bob", "help"))
    return slack_requests.block_action(
        SECRET,
        user_id="UBOB",
        action_id="marvin_confirm",
        value="0123456789abcdef",
        channel_id=PRODUCTION,
        response_url=rig.api.response_url(PRODUCTION, "UBOB", kind="actions"),
        message={"type": "message", "text": "help"},
    )


@pytest.mark.parametrize("kind", ["command", "event", "click"])
@pytest.mark.parametrize(
    "how", ["forged body", "wrong secret", "unsigned", "stale", "timestamp not a number"]
)
async def test_a_request_not_signed_by_slack_is_refused(rig: SlackRig, kind: str, how: str) -> None:
    body, headers = _forge(*_genuine(rig, kind), how)
    response = await rig.post(body, headers)
    assert response.status == 401
    await nothing_stored(rig)
    assert rig.api.calls() == []


async def test_the_same_request_signed_properly_is_taken(rig: SlackRig) -> None:
    # The control for the test above: what is refused there is accepted when genuine.
    body, headers = _genuine(rig, "command")
    response = await rig.post(body, headers)
    assert response.status == 200
    await rig.api.wait_for("response_url")
    assert len(await rig.rows(Account)) == 1


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), 512):
        yield body[i : i + 512]
        await asyncio.sleep(0)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_over_the_limit_is_refused_before_it_is_read(
    rig_factory: RigFactory, framing: str
) -> None:
    rig = await rig_factory(slack={"max_body_bytes": 2048})
    body, headers = slack_requests.slash_command(
        SECRET,
        text="feature list " + "x" * 3000,
        user_id="UBOB",
        user_name="bob",
        channel_id=PRODUCTION,
        channel_name="production",
        response_url=rig.api.response_url(PRODUCTION, "UBOB"),
        trigger_id=slack_requests.new_trigger_id(),
    )
    assert len(body) > 2048
    data: Any = body if framing == "content-length" else _chunks(body)
    response = await rig.client.post("/slack/events", data=data, headers=headers)
    assert response.status == 413
    assert "Traceback" not in await response.text()
    await nothing_stored(rig)
    assert rig.api.calls() == []
    # Under the limit, the same person is served.
    assert (await rig.command("bob", "help")).status == 200


def _signed(body: bytes, content_type: str) -> dict[str, str]:
    # By hand: slack_sdk's own signer cannot sign a body that is not UTF-8.
    timestamp = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
    }


MALFORMED = {
    "not UTF-8": (b"text=\xff\xfe", slack_requests.FORM),
    "JSON that does not parse": (b'{"type": "event_callback",', slack_requests.JSON),
    "JSON that is a list": (b"[1, 2]", slack_requests.JSON),
    "interactivity payload not JSON": (b"payload=%7Bnope", slack_requests.FORM),
    "interactivity payload a string": (b"payload=%22click%22", slack_requests.FORM),
    "empty": (b"", slack_requests.FORM),
    "an object of nothing known": (b"{}", slack_requests.JSON),
}


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize(("body", "content_type"), MALFORMED.values(), ids=MALFORMED)
async def test_a_malformed_body_is_a_4xx_never_a_500(
    rig: SlackRig, body: bytes, content_type: str, signed: bool
) -> None:
    headers = _signed(body, content_type) if signed else {"Content-Type": content_type}
    response = await rig.post(body, headers)
    text = await response.text()
    assert 400 <= response.status < 500, (response.status, text)
    assert "Traceback" not in text and "Error" not in text
    await nothing_stored(rig)


async def test_the_url_verification_handshake_is_echoed(rig: SlackRig) -> None:
    body, headers = slack_requests.url_verification(SECRET, challenge="3eZbrw1aBm2rZgRNFdxV2595")
    response = await rig.post(body, headers)
    assert response.status == 200
    assert (await response.json()) == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595"}


# ------------------------------------------------------------------ registration by talking

FIRST_CONTACT = {
    "direct message": lambda: message_event("bob", "whoami"),
    "mention": lambda: mention_event("bob", "<@UBOT> whoami"),
    "mention with a colon": lambda: mention_event("bob", "<@UBOT>: whoami"),
}


@pytest.mark.parametrize("make_event", FIRST_CONTACT.values(), ids=FIRST_CONTACT)
async def test_talking_to_marvin_creates_an_account_linked_to_gitlab(
    rig: SlackRig, make_event: Any
) -> None:
    event = make_event()
    ack = await rig.event(event)
    assert ack.status == 200
    said = await rig.said(event["channel"], event["ts"])
    assert said["text"].startswith(
        "Welcome! I've created your Marvin account, linked to GitLab user bob."
    )
    assert "You are bob (bob@example.com)" in said["text"]
    assert said["blocks"][0]["type"] == "section"
    assert [c.params["user"] for c in rig.api.calls("users.info")][:1] == ["UBOB"]
    [account] = await rig.rows(Account)
    assert (
        account.transport,
        account.chat_user_id,
        account.email,
        account.directory_handle,
        account.gitlab_username,
    ) == ("slack", "UBOB", "bob@example.com", "bob", "bob")
    records = await audit(rig)
    assert [(r.outcome, r.text) for r in records] == [("registered", "whoami"), ("ok", "whoami")]
    assert records[0].details == {"linked": True, "gitlab_username": "bob"}


async def test_someone_not_in_the_directory_is_told_they_can_only_read(rig: SlackRig) -> None:
    event = message_event("zed", "feature list")
    await rig.event(event)
    said = await rig.said(dm_id("zed"), event["ts"])
    assert "I can't find you in the roles registry, so you can read but not change" in said["text"]
    assert "No flags in production." in said["text"]
    [account] = await rig.rows(Account)
    assert (account.email, account.directory_handle, account.gitlab_username) == (
        STRANGER_EMAIL,
        None,
        None,
    )


async def test_a_dm_can_read_but_a_change_from_a_dm_is_refused(rig: SlackRig) -> None:
    read = message_event("bob", "feature list --staging")
    await rig.event(read)
    assert "No flags in staging." in (await rig.said(dm_id("bob"), read["ts"]))["text"]

    change = message_event("bob", SET_STAGING)
    await rig.event(change)
    said = await rig.said(dm_id("bob"), change["ts"])
    assert said["text"].startswith(":no_entry:")
    assert "run only in #production" in said["text"] and "direct message" in said["text"]
    assert await rig.rows(LocalFlag) == [] and await rig.rows(OutboxMessage) == []
    [denied] = await audit(rig, AuditRecord.outcome == "denied")
    assert (denied.policy, denied.place_id) == ("channel", dm_id("bob"))


async def test_a_mention_in_a_thread_is_answered_in_that_thread(rig: SlackRig) -> None:
    event = mention_event("alice", "<@UBOT> feature list", thread_ts="1700000000.000100")
    await rig.event(event)
    said = await rig.said(PRODUCTION, "1700000000.000100")
    assert "No flags in production." in said["text"]


IGNORED = {
    "another bot": {"subtype": "bot_message", "bot_id": "B0OTHER"},
    "marvin itself": {"user": "UBOT", "bot_id": "BBOT"},
    "an edit": {
        "subtype": "message_changed",
        "message": {"type": "message", "user": "UBOB", "text": "whoami", "ts": "1.000001"},
    },
    "a deletion": {"subtype": "message_deleted", "deleted_ts": "1.000001"},
    "a join": {"subtype": "channel_join"},
    "a channel message": {"channel": PRODUCTION, "channel_type": "channel"},
}


@pytest.mark.parametrize("extra", IGNORED.values(), ids=IGNORED)
async def test_bot_messages_edits_and_channel_chatter_are_ignored(
    rig: SlackRig, extra: dict[str, Any]
) -> None:
    ack = await rig.event(message_event("bob", "whoami", **extra))
    assert ack.status == 200
    await nothing_stored(rig)
    assert rig.api.calls("chat.postMessage") == []


async def test_another_bot_mentioning_marvin_is_ignored(rig: SlackRig) -> None:
    event = mention_event("bob", "<@UBOT> whoami", bot_id="B0OTHER", subtype="bot_message")
    assert (await rig.event(event)).status == 200
    await nothing_stored(rig)
    assert rig.api.calls("chat.postMessage") == []


# ------------------------------------------------------------------ Slack's retries

REDELIVERIES = {
    "after the first was answered": (True, "Ev0SAME", 1),
    "while the first is in flight": (False, "Ev0SAME", 1),
    "a different event (control)": (True, "Ev0OTHER", 2),
}


@pytest.mark.parametrize(
    ("sequential", "second_id", "answers"), REDELIVERIES.values(), ids=REDELIVERIES
)
async def test_a_redelivered_event_is_handled_once(
    rig: SlackRig, sequential: bool, second_id: str, answers: int
) -> None:
    event = message_event("carol", "whoami")
    if sequential:
        await rig.event(event, event_id="Ev0SAME")
        await rig.said(dm_id("carol"), event["ts"])
        ack = await rig.event(event, event_id=second_id, retry_num=1)
        assert ack.status == 200
    else:
        acks = await asyncio.gather(
            rig.event(event, event_id="Ev0SAME"),
            rig.event(event, event_id=second_id, retry_num=1),
        )
        assert [a.status for a in acks] == [200, 200]
    await rig.settle()
    assert len(rig.posts(dm_id("carol"))) == answers
    assert len(await audit(rig, AuditRecord.outcome == "ok")) == answers
    assert len(await rig.rows(Account)) == 1
    assert len(await rig.rows(InboxItem, InboxItem.kind == "event")) == answers


# ------------------------------------------------------------------ availability from Slack

NOW = epoch(START)
AVAILABILITY = {
    "presence away": ({"presence": "away"}, "Slack shows you as away"),
    "in scheduled do-not-disturb": (
        {"dnd_enabled": True, "next_dnd_start_ts": NOW - 3600, "next_dnd_end_ts": NOW + 3600},
        "in do-not-disturb hours",
    ),
    "do-not-disturb already over": (
        {"dnd_enabled": True, "next_dnd_start_ts": NOW - 7200, "next_dnd_end_ts": NOW - 3600},
        None,
    ),
    "do-not-disturb later today": (
        {"dnd_enabled": True, "next_dnd_start_ts": NOW + 3600, "next_dnd_end_ts": NOW + 7200},
        None,
    ),
    "out-of-office emoji": (
        {"status_emoji": ":palm_tree:", "status_text": "Back Monday"},
        "status :palm_tree: Back Monday",
    ),
    "out-of-office text": (
        {"status_emoji": ":calendar:", "status_text": "Out of office until the 9th"},
        "status :calendar: Out of office until the 9th",
    ),
    "out-of-office status still running": (
        {"status_emoji": ":airplane:", "status_text": "", "status_expiration": NOW + 60},
        "status :airplane:",
    ),
    "out-of-office status expired": (
        {"status_emoji": ":airplane:", "status_text": "Vacation", "status_expiration": NOW - 60},
        None,
    ),
    "a status that means nothing": ({"status_emoji": ":coffee:", "status_text": "Focus"}, None),
}


@pytest.mark.parametrize(("slack_state", "reason"), AVAILABILITY.values(), ids=AVAILABILITY)
async def test_slack_availability_decides_whether_bob_may_change_a_flag(
    rig: SlackRig, slack_state: dict[str, Any], reason: str | None
) -> None:
    bob = rig.api.user("UBOB")
    for key, value in slack_state.items():
        setattr(bob, key, value)
    reply = await rig.run("bob", SET_STAGING)
    if reason is None:
        assert "now on for everyone" in reply["text"]
        assert len(await rig.rows(OutboxMessage)) == 1
        return
    assert reply["text"].startswith(":no_entry:")
    assert f"Your chat status says you're away ({reason})" in reply["text"]
    assert await rig.rows(LocalFlag) == [] and await rig.rows(OutboxMessage) == []
    [denied] = await audit(rig, AuditRecord.outcome == "denied")
    assert denied.policy == "availability" and reason in (denied.reason or "")


@pytest.mark.parametrize(("cache_seconds", "asked"), [(60, 1), (0, 2)], ids=["cached", "no cache"])
async def test_presence_is_asked_once_within_the_cache_time(
    rig_factory: RigFactory, cache_seconds: int, asked: int
) -> None:
    rig = await rig_factory(slack={"presence_cache_seconds": cache_seconds})
    assert "now on" in (await rig.run("bob", "feature set a true --staging"))["text"]
    assert "now on" in (await rig.run("bob", "feature set b true --staging"))["text"]
    presence = rig.api.calls("users.getPresence")
    assert [c.params["user"] for c in presence] == ["UBOB"] * asked
    assert len(rig.api.calls("dnd.info")) == asked


async def test_an_out_of_office_status_set_since_the_last_command_counts(
    rig_factory: RigFactory,
) -> None:
    # Who someone is may be cached for long; whether they are away only as long as presence.
    rig = await rig_factory(slack={"presence_cache_seconds": 0, "people_cache_seconds": 600})
    assert "now on" in (await rig.run("bob", "feature set a true --staging"))["text"]
    rig.api.user("UBOB").status_emoji = ":palm_tree:"
    reply = await rig.run("bob", "feature set b true --staging")
    assert "Your chat status says you're away (status :palm_tree:)" in reply["text"]


# ------------------------------------------------------------------ confirmation by button


async def _ask_to_delete(rig: SlackRig) -> str:
    assert "now on" in (await rig.run("alice", "feature set doomed true --staging"))["text"]
    assert await rig.announce() == 1
    reply = await rig.run("alice", "feature delete doomed --staging")
    assert reply["response_type"] == "ephemeral"
    assert reply["text"] == "Please confirm: deleting `doomed` in staging can't be undone."
    go = button(reply["blocks"])
    assert go["action_id"] == "marvin_confirm" and go["style"] == "danger"
    assert go["confirm"] == {
        "title": {"type": "plain_text", "text": "Are you sure?"},
        "text": {"type": "mrkdwn", "text": "deleting `doomed` in staging can't be undone?"},
        "confirm": {"type": "plain_text", "text": "Do it"},
        "deny": {"type": "plain_text", "text": "Cancel"},
        "style": "danger",
    }
    [waiting] = await rig.rows(Confirmation)
    assert waiting.token == go["value"] and waiting.used_at is None
    assert len(await rig.rows(LocalFlag)) == 1  # nothing happened yet
    assert await rig.announce() == 0
    return str(go["value"])


async def test_a_delete_runs_when_its_author_clicks_and_only_once(rig: SlackRig) -> None:
    token = await _ask_to_delete(rig)
    click = await rig.click("alice", token)
    assert (click.status, click.text) == (200, "")
    done = await rig.reply(click)
    assert done["response_type"] == "ephemeral" and done["replace_original"] is True
    assert "Deleted `doomed` in staging (was on for everyone)" in done["text"]
    assert await rig.rows(LocalFlag) == []
    assert await rig.announce() == 1
    assert rig.posts()[-1]["text"].startswith(
        "@alice deleted `doomed` in staging (was on for everyone)."
    )

    again = await rig.click("alice", token)
    assert "already confirmed" in (await rig.reply(again))["text"]
    assert await rig.announce() == 0 and len(rig.posts()) == 2

    clicks = await audit(rig, AuditRecord.text == f"confirm {token}")
    assert [(c.chat_user_id, c.command, c.outcome) for c in clicks] == [
        ("UALICE", "confirm", "allowed"),
        ("UALICE", "confirm", "ok"),
    ]
    deletes = await audit(rig, AuditRecord.command == "feature delete")
    assert [d.outcome for d in deletes] == ["confirm_requested", "allowed"]


async def test_someone_else_clicking_the_button_is_refused(rig: SlackRig) -> None:
    token = await _ask_to_delete(rig)
    click = await rig.click("bob", token)
    refused = await rig.reply(click)
    assert "Only the person who asked for this change can confirm it." in refused["text"]
    assert len(await rig.rows(LocalFlag)) == 1 and await rig.announce() == 0
    records = await audit(rig, AuditRecord.text == f"confirm {token}")
    assert [(r.chat_user_id, r.command, r.outcome) for r in records] == [
        ("UBOB", None, "registered"),  # his first word to Marvin was the click
        ("UBOB", "confirm", "denied"),
    ]
    # Bob's click used nothing up: Alice still can.
    assert "Deleted" in (await rig.reply(await rig.click("alice", token)))["text"]


# ------------------------------------------------------------------ announcements vs Slack limits


async def test_a_rate_limited_announcement_is_retried_and_delivered_once(rig: SlackRig) -> None:
    await rig.run("bob", SET_STAGING)
    rig.api.fail_next("chat.postMessage", status=429, retry_after=1)
    assert await rig.announce() == 1
    assert len(rig.posts()) == 2  # the 429 and the retry slack_sdk made after Retry-After
    assert len(rig.api.messages(PRODUCTION)) == 1
    [row] = await rig.rows(OutboxMessage)
    assert (row.status, row.attempts) == ("delivered", 1)


async def test_when_retries_run_out_the_outbox_keeps_it_for_later(rig_factory: RigFactory) -> None:
    rig = await rig_factory(slack={"rate_limit_retries": 1})
    await rig.run("bob", SET_STAGING)
    rig.api.fail_next("chat.postMessage", status=429, retry_after=1, times=2)
    assert await rig.announce() == 0
    assert len(rig.posts()) == 2 and rig.api.messages(PRODUCTION) == []
    [row] = await rig.rows(OutboxMessage)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "rate limited: ratelimited")
    assert as_utc(row.next_attempt_at) == START + timedelta(seconds=1)  # Retry-After

    assert await rig.announce() == 0  # not due yet: nothing sent
    assert len(rig.posts()) == 2
    rig.clock.advance(seconds=1)
    assert await rig.announce() == 1
    assert len(rig.posts()) == 3 and len(rig.api.messages(PRODUCTION)) == 1
    [row] = await rig.rows(OutboxMessage)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 2, None)
    assert (
        _sample(await _metrics(rig), "marvin_outbound_api_errors_total", error="ratelimited") == 1
    )


async def test_a_slack_outage_is_retried_later_with_backoff(rig: SlackRig) -> None:
    await rig.run("bob", SET_STAGING)
    rig.api.fail_next("chat.postMessage", status=503, body="<html>Service Unavailable</html>")
    assert await rig.announce() == 0
    [row] = await rig.rows(OutboxMessage)
    assert (row.status, row.last_error) == ("pending", "503")
    assert as_utc(row.next_attempt_at) == START + timedelta(seconds=2)
    rig.clock.advance(seconds=2)
    assert await rig.announce() == 1 and len(rig.api.messages(PRODUCTION)) == 1


PERMANENT = {
    "channel_not_found": {"is_private": True, "is_member": False},
    "not_in_channel": {"is_member": False},
    "is_archived": {"is_archived": True},
}


@pytest.mark.parametrize(("error", "channel_state"), PERMANENT.items(), ids=PERMANENT)
async def test_a_permanent_error_marks_the_announcement_failed(
    rig: SlackRig, error: str, channel_state: dict[str, Any]
) -> None:
    await rig.run("bob", SET_STAGING)
    channel = rig.api.channel(PRODUCTION)
    for key, value in channel_state.items():
        setattr(channel, key, value)
    assert await rig.announce() == 0
    [row] = await rig.rows(OutboxMessage)
    assert (row.status, row.attempts, row.last_error) == ("failed", 1, error)
    rig.clock.advance(hours=1)
    assert await rig.announce() == 0
    assert len(rig.posts()) == 1  # never tried again
    assert _sample(await _metrics(rig), "marvin_outbound_api_errors_total", error=error) == 1


async def test_a_burst_of_changes_is_announced_in_one_message(rig: SlackRig) -> None:
    for who, flag in [("alice", "a"), ("bob", "b"), ("alice", "c")]:
        assert "now on" in (await rig.run(who, f"feature set {flag} true --staging"))["text"]
    assert await rig.announce() == 3
    [post] = rig.posts()
    lines = post["text"].split("\n")
    assert [line.split(":")[0] for line in lines] == [
        "@alice set `a` in staging",
        "@bob set `b` in staging",
        "@alice set `c` in staging",
    ]
    sections = [b for b in post["blocks"] if b["type"] == "section"]
    assert [s["text"]["text"] for s in sections] == [f":loudspeaker: {line}" for line in lines]
    assert len([b for b in post["blocks"] if b["type"] == "context"]) == 3
    assert {row.status for row in await rig.rows(OutboxMessage)} == {"delivered"}


# ------------------------------------------------------------------ /healthz and /metrics


async def _metrics(rig: SlackRig) -> str:
    response = await rig.client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return await response.text()


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def test_healthz_says_ok_when_the_database_answers(rig: SlackRig) -> None:
    response = await rig.client.get("/healthz")
    assert response.status == 200 and await response.json() == {"status": "ok"}


async def test_healthz_is_503_when_the_database_is_gone(rig_factory: RigFactory) -> None:
    rig = await rig_factory(db="postgresql+asyncpg://x@127.0.0.1:1/x")
    response = await rig.client.get("/healthz")
    assert response.status == 503
    assert await response.json() == {"status": "database unreachable"}


async def test_metrics_count_commands_by_group_and_decision_and_time_the_acks(
    rig: SlackRig,
) -> None:
    await rig.run("bob", SET_STAGING)
    await rig.run("carol", SET_STAGING)
    await rig.run("carol", "feature list")
    await rig.run("carol", "whoami")
    text = await _metrics(rig)
    commands = "marvin_commands_total"
    assert _sample(text, commands, group="feature", decision="result") == 2
    assert _sample(text, commands, group="feature", decision="denied:roles") == 1
    assert _sample(text, commands, group="whoami", decision="result") == 1
    assert _sample(text, "marvin_ack_seconds_count", kind="command") == 4
    assert _sample(text, "marvin_ack_seconds_bucket", kind="command", le="3.0") == 4


# ------------------------------------------------------------------ failures inside


async def test_a_crash_inside_is_a_short_answer_with_a_request_id(
    rig: SlackRig, json_log: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(*_args: Any) -> None:
        raise RuntimeError("kaboom in the flag store at 0xdeadbeef")

    monkeypatch.setattr(ListHandler, "plan", explode)
    reply = await rig.run("alice", "feature list")
    assert reply["response_type"] == "ephemeral"
    match = re.fullmatch(
        r":warning: (Welcome!.*\n\n)?Something went wrong on my side and nothing was changed\. "
        r"Quote request id `(slack-[0-9]+)` when you ask for help\.",
        reply["text"],
        flags=re.DOTALL,
    )
    assert match, reply["text"]
    request_id = match.group(2)
    for leak in ("Traceback", "RuntimeError", "kaboom", "0xdeadbeef"):
        assert leak not in str(reply)
    [record] = await audit(rig, AuditRecord.outcome == "error")
    assert (record.request_id, record.text) == (request_id, "feature list")
    [failed] = [e for e in log_entries(json_log) if e["event"] == "pipeline.failed"]
    assert failed["request_id"] == request_id and failed["level"] == "error"
    assert "RuntimeError: kaboom in the flag store" in failed["exception"]


# ------------------------------------------------------------------ the command line


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MARVIN_"))}
    clean |= {"MARVIN_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path}/marvin.db", **env}
    return subprocess.run(
        [sys.executable, "-m", "marvin.cli", "--config", str(ROOT / "config.example.yaml"), *args],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


MISSING = {
    "http": ({}, ["SLACK_BOT_TOKEN is not set", "SLACK_SIGNING_SECRET is not set"], "APP_TOKEN"),
    "socket": (
        {"MARVIN_SLACK__MODE": "socket"},
        ["SLACK_BOT_TOKEN is not set", "SLACK_APP_TOKEN is not set"],
        "SIGNING_SECRET",
    ),
}


@pytest.mark.parametrize(("env", "named", "not_named"), MISSING.values(), ids=MISSING)
def test_config_check_serve_names_each_missing_thing(
    tmp_path: Path, env: dict[str, str], named: list[str], not_named: str
) -> None:
    result = _cli(tmp_path, "config", "check", "--serve", **env)
    assert result.returncode != 0
    for problem in [*named, "production_channel.id is still the example value"]:
        assert f"missing for serve: {problem}" in result.stderr
    assert not_named not in result.stderr
    assert "Traceback" not in result.stderr


def test_config_check_serve_passes_with_everything_set(tmp_path: Path) -> None:
    result = _cli(
        tmp_path,
        "config",
        "check",
        "--serve",
        SLACK_BOT_TOKEN="xoxb-1-very-secret",
        SLACK_SIGNING_SECRET="sign-very-secret",
        MARVIN_PRODUCTION_CHANNEL__ID="C123",
    )
    assert result.returncode == 0, result.stderr
    assert "Ready to serve Slack in http mode." in result.stdout
    assert "very-secret" not in result.stdout + result.stderr


def test_config_check_serve_refuses_a_token_of_the_wrong_kind(tmp_path: Path) -> None:
    result = _cli(
        tmp_path,
        "config",
        "check",
        "--serve",
        SLACK_BOT_TOKEN="xoxp-a-user-token",
        SLACK_SIGNING_SECRET="s",
        MARVIN_PRODUCTION_CHANNEL__ID="C123",
    )
    assert result.returncode != 0
    assert "SLACK_BOT_TOKEN does not look like a bot token (xoxb-...)" in result.stderr


def test_serve_without_a_token_exits_2_with_the_list(tmp_path: Path) -> None:
    result = _cli(tmp_path, "serve", "--port", "0", SLACK_SIGNING_SECRET="s")
    assert result.returncode == 2
    assert result.stderr.startswith("marvin serve cannot start:")
    assert "SLACK_BOT_TOKEN is not set" in result.stderr
    assert "production_channel.id is still the example value" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "marvin.db").exists()


def test_serve_on_an_unmigrated_database_says_so(tmp_path: Path) -> None:
    result = _cli(
        tmp_path,
        "serve",
        "--port",
        "0",
        SLACK_BOT_TOKEN="xoxb-1",
        SLACK_SIGNING_SECRET="s",
        MARVIN_PRODUCTION_CHANNEL__ID="C123",
    )
    assert result.returncode == 2
    assert "run `marvin db upgrade` first" in result.stderr
    assert "Traceback" not in result.stderr
