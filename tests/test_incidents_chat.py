"""Incidents from Slack: `/marvin incident declare` with nothing after it opens a form
(views.open with the command's trigger_id); the form's fields are checked as they come
back (errors next to them, in `response_action: errors`), then the very same declare runs
through the pipeline. Driven through the Slack rig with signed requests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from marvin import incidents
from marvin.clock import as_utc
from marvin.store.tables import AuditRecord, Incident, IncidentEvent, IncidentPin, OutboxMessage
from tests.fakes.gitlab import FakeGitLab
from tests.harness import Bot, deliver_issues, make_bot
from tests.slack_harness import (
    PRODUCTION,
    RANDOM,
    RigFactory,
    SlackRig,
    rig_factory_fixture,  # noqa: F401
    rig_fixture,  # noqa: F401
    user_id,
    wait_for_call,
)

TOKEN = "glpat-marvin-bot"
PROJECT = "infra/production"


def text(value: str | None) -> dict[str, Any]:
    return {"value": {"type": "plain_text_input", "value": value}}


def select(value: str | None) -> dict[str, Any]:
    option = {"text": {"type": "plain_text", "text": value}, "value": value} if value else None
    return {"value": {"type": "static_select", "selected_option": option}}


def person(who: str | None) -> dict[str, Any]:
    return {"value": {"type": "users_select", "selected_user": user_id(who) if who else None}}


def filled(
    title: str | None = "Checkout returns 500s",
    severity: str | None = "2",
    service: str | None = None,
    labels: str | None = None,
    confidential: str | None = None,
    assign: str | None = None,
) -> dict[str, Any]:
    return {
        "title": text(title),
        "severity": select(severity),
        "service": text(service),
        "labels": text(labels),
        "confidential": select(confidential),
        "assign": person(assign),
    }


async def open_form(rig: SlackRig, who: str = "bob") -> dict[str, Any]:
    ack = await rig.command(who, "incident declare")
    assert ack.status == 200 and ack.text == ""  # nothing to say: the form says it
    call = await wait_for_call(rig.api, "views.open", lambda c: True)
    [view] = rig.api.views()
    assert call.params["trigger_id"] and view["callback_id"] == "marvin_incident_declare"
    return view


async def test_declare_with_no_arguments_opens_a_form_with_the_same_fields(rig: SlackRig) -> None:
    view = await open_form(rig)
    assert view["title"]["text"] == "Declare an incident" and view["submit"]["text"] == "Declare"
    blocks = {b["block_id"]: b for b in view["blocks"]}
    assert list(blocks) == ["title", "severity", "service", "labels", "confidential", "assign"]
    assert [o["value"] for o in blocks["severity"]["element"]["options"]] == ["1", "2", "3", "4"]
    reasons = [o["value"] for o in blocks["confidential"]["element"]["options"]]
    assert reasons == rig.settings.incidents.confidential_reasons
    assert blocks["assign"]["element"]["type"] == "users_select"
    assert await rig.rows(Incident) == []  # opening the form records nothing


async def test_a_submitted_form_declares_through_the_pipeline(rig: SlackRig) -> None:
    view = await open_form(rig)
    ack = await rig.submit(
        "bob",
        view,
        filled(
            title='Checkout says "cart empty"',
            service="web",
            labels="db, customer-facing",
            confidential="security",
            assign="carol",
        ),
    )
    assert ack.status == 200 and ack.text == ""  # the form closes
    await rig.settle()
    [incident] = await rig.rows(Incident)
    assert incident.title == 'Checkout says "cart empty"'
    assert (incident.severity, incident.service, incident.declared_by) == (2, "web", "bob")
    assert incident.handler == "carol" and incident.labels == ["db", "customer-facing"]
    assert incident.confidential_reason == "security"
    # Answered where the form was opened, privately, like a typed command.
    answer = await wait_for_call(
        rig.api,
        "chat.postEphemeral",
        lambda c: (
            c.params.get("user") == user_id("bob") and "Recorded incident 1" in c.params["text"]
        ),
    )
    assert answer.params["channel"] == PRODUCTION
    [audit] = await rig.rows(AuditRecord, AuditRecord.command == "incident declare")
    assert audit.chat_user_id == user_id("bob") and audit.place_id == PRODUCTION
    assert audit.text == (
        "incident declare 'Checkout says \"cart empty\"' --severity 2 --service web "
        '--labels "db, customer-facing" --confidential security --assign @carol'
    )
    assert audit.outcome == "allowed" and audit.details["confidential_reason"] == "security"
    await rig.announce()
    assert any("declared incident 1" in p["text"] for p in rig.posts())


async def test_bad_fields_come_back_next_to_them_and_nothing_is_declared(rig: SlackRig) -> None:
    view = await open_form(rig)
    ack = await rig.submit("bob", view, filled(title="x", service="web server", severity=None))
    assert ack.status == 200
    answer = ack.json()
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {"title", "service", "severity"}
    assert "letters, digits" in answer["errors"]["service"]
    await rig.settle()
    assert await rig.rows(Incident) == []


async def test_a_title_with_both_quotes_is_sent_back_not_mangled(rig: SlackRig) -> None:
    view = await open_form(rig)
    ack = await rig.submit("bob", view, filled(title='Bob\'s "cart" is empty'))
    assert ack.json() == {
        "response_action": "errors",
        "errors": {"title": "Use either double or single quotes here, not both."},
    }


async def test_a_form_submitted_twice_declares_once(rig: SlackRig) -> None:
    view = await open_form(rig)
    for _ in range(2):
        assert (await rig.submit("bob", view, filled())).status == 200
    await rig.settle()
    assert len(await rig.rows(Incident)) == 1


async def test_the_form_runs_where_it_was_opened_so_the_channel_rule_holds(rig: SlackRig) -> None:
    ack = await rig.command("bob", "incident declare", channel="random")
    assert ack.status == 200
    await wait_for_call(rig.api, "views.open", lambda c: True)
    [view] = rig.api.views()
    assert (await rig.submit("bob", view, filled())).status == 200
    await rig.settle()
    refused = await wait_for_call(
        rig.api, "chat.postEphemeral", lambda c: c.params.get("user") == user_id("bob")
    )
    assert refused.params["channel"] != PRODUCTION and "production" in refused.params["text"]
    assert await rig.rows(Incident) == []


async def test_when_the_form_cannot_open_the_person_is_told_how_to_type_it(rig: SlackRig) -> None:
    rig.api.fail_next("views.open", status=200, error="expired_trigger_id", retry_after=None)
    await rig.command("bob", "incident declare")
    told = await wait_for_call(
        rig.api, "chat.postEphemeral", lambda c: c.params.get("user") == user_id("bob")
    )
    assert "I couldn't open the form (expired_trigger_id)" in told.params["text"]
    # (escaped as Slack wants it: Slack shows `<what is broken>`)
    assert 'incident declare "&lt;what is broken&gt;" --severity 1..4' in told.params["text"]


# --- the timeline from chat: a :pushpin: on a message ----------------------------------------


def now(rig: SlackRig) -> None:
    """Slack's message times are real ones: Marvin's clock is set to now."""
    rig.clock.set(datetime.now(UTC))


def reaction(who: str, channel: str, ts: str, name: str = "pushpin") -> dict[str, Any]:
    """`reaction_added` as the Events API sends it."""
    return {
        "type": "reaction_added",
        "user": user_id(who),
        "reaction": name,
        "item_user": "UCAROL",
        "item": {"type": "message", "channel": channel, "ts": ts},
        "event_ts": f"{time.time():.6f}",
    }


async def chat_events(rig: SlackRig | Bot) -> list[IncidentEvent]:
    return await rig.rows(IncidentEvent, IncidentEvent.kind == "chat")


async def told(rig: SlackRig, who: str, needle: str) -> str:
    call = await wait_for_call(
        rig.api,
        "chat.postEphemeral",
        lambda c: c.params.get("user") == user_id(who) and needle in c.params["text"],
    )
    return str(call.params["text"])


@pytest.fixture
async def gitlab(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeGitLab]:
    monkeypatch.setenv("GITLAB_TOKEN", TOKEN)
    async with FakeGitLab() as fake:
        marvin = fake.add_user("marvin", token=TOKEN, bot=True)
        for name in ("alice", "bob", "carol"):
            fake.add_user(name)
        fake.add_group("infra", visibility="public")
        project = fake.add_project(PROJECT, visibility="public")
        fake.add_member(project, marvin, "developer")
        yield fake


async def test_a_pinned_message_goes_on_the_timeline_as_a_gitlab_timeline_event(
    rig_factory: RigFactory, gitlab: FakeGitLab
) -> None:
    rig = await rig_factory(
        issues={"backend": "gitlab", "project": PROJECT},
        gitlab={"url": gitlab.url, "timeout_seconds": 1},
    )
    now(rig)
    assert (
        "Recorded incident 1"
        in (await rig.run("bob", 'incident declare "Checkout returns 500s" --severity 2'))["text"]
    )
    said = rig.api.add_message(
        PRODUCTION, user_id("carol"), 'Rolled back web-17: "errors" dropping'
    )
    await rig.event(reaction("bob", PRODUCTION, said))
    await rig.settle()
    assert "Added to incident 1's timeline" in await told(rig, "bob", "Added")
    [event] = await chat_events(rig)
    # (a quote that would open a quoted word in a command becomes a typographic one)
    assert event.text == '@carol said: Rolled back web-17: ”errors" dropping (added by @bob)'
    when = datetime.fromtimestamp(float(said), UTC)
    assert abs((as_utc(event.occurred_at) - when).total_seconds()) < 1

    # Pinned again, by someone else: once on the timeline.
    await rig.event(reaction("alice", PRODUCTION, said))
    await rig.settle()
    assert "already on incident 1's timeline" in await told(rig, "alice", "already")
    assert len(await chat_events(rig)) == 1

    assert await deliver_issues(rig.bot) == 0
    [issue] = gitlab.issues(PROJECT)
    pinned = [e for e in issue.timeline_events if "Rolled back web-17" in e.note]
    assert len(pinned) == 1
    assert pinned[0].note.startswith("@carol said: Rolled back web-17")
    assert pinned[0].occurred_at.startswith(f"{when:%Y-%m-%dT%H:%M}")
    [note] = [n for n in issue.notes if "Rolled back web-17" in n.body]
    assert "/timeline" not in note.body  # GitLab ran the quick action, as it does


async def test_a_pin_in_a_thread_under_an_incident_goes_on_that_incident(rig: SlackRig) -> None:
    now(rig)
    assert (await rig.run("bob", 'incident declare "Checkout returns 500s" --severity 2'))["text"]
    await rig.announce()
    [declared] = [m for m in rig.api.messages(PRODUCTION) if "declared incident 1" in m["text"]]
    reply = rig.api.add_message(
        PRODUCTION, user_id("carol"), "DB failover done", thread_ts=declared["ts"]
    )
    assert (await rig.run("alice", 'incident declare "Search is slow" --severity 3'))["text"]
    await rig.event(reaction("bob", PRODUCTION, reply))
    await rig.settle()
    [event] = await chat_events(rig)
    assert event.incident_id == 1 and "DB failover done" in event.text


async def test_a_pin_deep_in_a_long_thread_reads_each_message_once(rig: SlackRig) -> None:
    now(rig)
    assert (await rig.run("bob", 'incident declare "Checkout returns 500s" --severity 2'))["text"]
    await rig.announce()
    [declared] = [m for m in rig.api.messages(PRODUCTION) if "declared incident 1" in m["text"]]
    # Past one page of replies (Slack pages a thread: the last ones are on later pages).
    for n in range(250):
        rig.api.add_message(PRODUCTION, user_id("alice"), f"step {n}", thread_ts=declared["ts"])
    reply = rig.api.add_message(
        PRODUCTION, user_id("carol"), "DB failover done", thread_ts=declared["ts"]
    )
    assert (await rig.run("alice", 'incident declare "Search is slow" --severity 3'))["text"]
    rig.api.reset_calls()
    await rig.event(reaction("bob", PRODUCTION, reply))
    await rig.settle()
    [event] = await chat_events(rig)
    assert event.incident_id == 1 and "DB failover done" in event.text
    assert len(rig.api.calls("conversations.history")) == 1  # the miss: it is a reply
    assert len(rig.api.calls("conversations.replies")) == 2  # its thread, two pages

    # A message at the top of a thread: its history once, and nothing more.
    top = rig.api.add_message(PRODUCTION, user_id("carol"), "Search p99 is 4s")
    rig.api.add_message(PRODUCTION, user_id("alice"), "looking", thread_ts=top)
    rig.api.reset_calls()
    await rig.event(reaction("bob", PRODUCTION, top))
    await rig.settle()
    assert len(rig.api.calls("conversations.history")) == 1
    assert rig.api.calls("conversations.replies") == []
    [_, pinned] = await chat_events(rig)
    assert pinned.incident_id == 2 and "Search p99 is 4s" in pinned.text


async def test_other_reactions_and_other_channels_are_none_of_marvins_business(
    rig: SlackRig,
) -> None:
    now(rig)
    assert (await rig.run("bob", 'incident declare "Checkout returns 500s" --severity 2'))["text"]
    here = rig.api.add_message(PRODUCTION, user_id("carol"), "lol")
    elsewhere = rig.api.add_message(RANDOM, user_id("carol"), "lunch?")
    rig.api.reset_calls()
    await rig.event(reaction("bob", PRODUCTION, here, name="thumbsup"))
    await rig.event(reaction("bob", RANDOM, elsewhere))
    await rig.settle()
    assert await chat_events(rig) == []
    assert rig.api.calls("chat.postEphemeral") == []


async def test_with_no_incident_open_the_pin_says_so(rig: SlackRig) -> None:
    now(rig)
    said = rig.api.add_message(PRODUCTION, user_id("carol"), "Rolled back web-17")
    await rig.event(reaction("bob", PRODUCTION, said))
    await rig.settle()
    assert "No incident is open" in await told(rig, "bob", "No incident")


async def test_a_message_pinned_twice_at_once_goes_on_once(
    any_bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = any_bot
    assert (await bot.say("bob", 'incident declare "Checkout 500s" --severity 2')).ok
    source = f"slack:{PRODUCTION}:1700000000.000100"

    async def pin(who: str) -> IncidentEvent | None:
        async with bot.services.store.transaction(write=True) as session:
            incident = await session.get(Incident, 1)
            assert incident is not None
            return await incidents.pin(
                session=session,
                incident=incident,
                text=f"DB failover done (added by @{who})",
                occurred_at=bot.clock.now(),
                source=source,
                pinned_by=who,
                now=bot.clock.now(),
                request_id=f"pin-{who}",
            )

    assert await pin("bob") is not None
    notes = len(await bot.rows(OutboxMessage, OutboxMessage.kind == incidents.ISSUE_NOTE))

    # Alice's check ran before Bob's pin was committed (PostgreSQL lets both see none).
    async def not_yet(**_: object) -> bool:
        return False

    monkeypatch.setattr(incidents, "pinned", not_yet)
    assert await pin("alice") is None  # and her transaction is not the worse for it
    assert len(await chat_events(bot)) == 1
    assert len(await bot.rows(IncidentPin)) == 1
    assert len(await bot.rows(OutboxMessage, OutboxMessage.kind == incidents.ISSUE_NOTE)) == notes


async def test_the_same_timeline_entry_by_hand_in_the_shell(sqlite_url: str) -> None:
    bot = make_bot(sqlite_url)
    try:
        assert (await bot.say("bob", 'incident declare "Checkout 500s" --severity 2')).ok
        reply = await bot.say(
            "carol", 'incident timeline "Error rate back to normal" --at "2026-03-02 09:58"'
        )
        assert reply.ok and "Added to incident 1's timeline at 09:58 UTC" in reply.text
        future = await bot.say("carol", 'incident timeline "Later" --at "2026-03-02 12:00"')
        assert not future.ok and "is in the future" in future.text
        [event] = await bot.rows(IncidentEvent, IncidentEvent.kind == "chat")
        assert as_utc(event.occurred_at) == datetime(2026, 3, 2, 9, 58, tzinfo=UTC)
        show = await bot.say("bob", "incident show 1")
        lines = show.text.splitlines()
        pinned = next(i for i, line in enumerate(lines) if "Error rate back" in line)
        declared = next(i for i, line in enumerate(lines) if "Incident declared" in line)
        assert pinned < declared  # the timeline reads in the order things happened
    finally:
        await bot.services.store.dispose()
