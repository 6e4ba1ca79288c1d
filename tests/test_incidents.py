"""Incidents from chat: declared, followed, mitigated and resolved, each an issue in GitLab
(python-gitlab against the loopback fake) or in the embedded tracker, with the "what
changed" timeline, the change lock, and the rules of who may do what."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest

from marvin import issue_delivery
from marvin.adapters.errors import NotFound, Refused
from marvin.adapters.gitlab import GitLabClient
from marvin.adapters.gitlab_issues import (
    GitLabIssueTracker,
    IncidentTracker,
    NewIssue,
    TimelineEvent,
)
from marvin.clock import FrozenClock
from marvin.issue_delivery import EmbeddedIncidentTracker
from marvin.outbox import ANNOUNCE, OutboxWorker
from marvin.store.db import Store
from marvin.store.tables import (
    AuditRecord,
    DeploySlot,
    Incident,
    IncidentEvent,
    LocalIssue,
    LocalIssueNote,
    OutboxMessage,
)
from tests.fakes.gitlab import FakeGitLab
from tests.fakes.gitlab import Issue as FakeIssue
from tests.harness import START, Bot, deliver_issues, make_bot, said_ok

TOKEN = "glpat-marvin-bot"
PROJECT = "infra/production"
STATUS = "C0STATUS"
INCIDENTS = {"status_channel": STATUS}


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
async def gitlab() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab() as fake:
        marvin = fake.add_user("marvin", token=TOKEN, bot=True)
        for name in ("alice", "bob", "carol", "dave"):
            fake.add_user(name)
        fake.add_group("infra", visibility="public")
        project = fake.add_project(PROJECT, visibility="public")
        fake.add_member(
            project, marvin, "developer"
        )  # incidents need Reporter; /timeline Developer
        yield fake


def gitlab_sections(fake: FakeGitLab, **extra: Any) -> dict[str, Any]:
    sections: dict[str, Any] = {
        "issues": {"backend": "gitlab", "project": PROJECT},
        "gitlab": {"url": fake.url, "timeout_seconds": 1},
        "incidents": INCIDENTS,
    }
    for key, value in extra.items():
        sections[key] = {**sections.get(key, {}), **value}
    return sections


async def _bots(url: str) -> AsyncIterator[Callable[..., Bot]]:
    made: list[Bot] = []

    def factory(**sections: Any) -> Bot:
        bot = make_bot(url, **sections)
        made.append(bot)
        return bot

    yield factory
    for bot in made:
        await bot.services.store.dispose()


@pytest.fixture
async def make(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Bot]]:
    """Bots on one SQLite database: `make(**sections)`."""
    monkeypatch.setenv("GITLAB_TOKEN", TOKEN)
    async for factory in _bots(sqlite_url):
        yield factory


@pytest.fixture
async def any_make(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Bot]]:
    """The same, on SQLite and on PostgreSQL."""
    monkeypatch.setenv("GITLAB_TOKEN", TOKEN)
    async for factory in _bots(db_url):
        yield factory


@pytest.fixture
def bot(make: Callable[..., Bot], gitlab: FakeGitLab) -> Bot:
    """Marvin with its issues in GitLab."""
    return make(**gitlab_sections(gitlab))


@pytest.fixture
def local_bot(make: Callable[..., Bot]) -> Bot:
    """Marvin with the embedded tracker (the default)."""
    return make(incidents=INCIDENTS)


def worker(bot: Bot) -> OutboxWorker:
    return issue_delivery.issue_worker(bot.services)


async def deliver(bot: Bot, rounds: int = 30) -> int:
    """Deliver every issue message, moving the clock to each next retry; how many are left."""
    return await deliver_issues(bot, rounds)


async def declare(bot: Bot, who: str = "bob", text: str = "") -> int:
    reply = await bot.say(
        who, text or 'incident declare "Checkout returns 500s" --severity 2 --service web'
    )
    assert reply.ok, reply.text
    [row] = await bot.rows(Incident, Incident.request_id == reply.request_id)
    return row.id


def only_issue(fake: FakeGitLab) -> FakeIssue:
    issues = fake.issues(PROJECT)
    assert len(issues) == 1, [i.title for i in issues]
    return issues[0]


def timeline(issue: FakeIssue) -> list[str]:
    return [event.note for event in issue.timeline_events]


async def announced(bot: Bot, channel: str) -> list[str]:
    rows = await bot.rows(OutboxMessage, OutboxMessage.kind == ANNOUNCE)
    return [r.payload["text"] for r in rows if r.payload["channel_id"] == channel]


async def staged(bot: Bot, flag: str) -> None:
    reply = await bot.say("alice", f"feature set {flag} true --staging")
    assert reply.ok, reply.text


# --- declaring -----------------------------------------------------------------------------


async def test_a_declaration_is_recorded_at_once_and_becomes_an_incident_issue(
    bot: Bot, gitlab: FakeGitLab
) -> None:
    reply = await bot.say(
        "bob",
        'incident declare "Checkout returns 500s" --severity 2 --service web '
        "--labels db,customer-facing",
    )
    assert reply.ok, reply.text
    assert "Recorded incident 1 (severity 2): Checkout returns 500s." in reply.text
    assert "Changes to production are locked until it is mitigated" in reply.text
    assert "`incident show 1` gives the link once GitLab answers" in reply.text
    assert gitlab.issues(PROJECT) == []  # nothing has been asked of GitLab yet
    [incident] = await bot.rows(Incident)
    assert (incident.state, incident.severity, incident.handler) == ("open", 2, "bob")

    assert await deliver(bot) == 0
    issue = only_issue(gitlab)
    assert issue.title == "2026-03-02: Checkout returns 500s"
    assert issue.issue_type == "incident" and not issue.confidential
    assert set(issue.labels) == {
        "outage",
        "Incident::Active",
        "Severity::2",
        "Service::web",
        "db",
        "customer-facing",
        "blocks deployments",
        "blocks feature-flags",
    }
    assert issue.assignee_ids == [gitlab.user("bob").id]  # the declarer handles it
    description = issue.description or ""
    for heading in (
        "## Summary",
        "## Impact",
        "## Detection",
        "## Timeline",
        "## Root cause",
        "## What went well",
        "## What went wrong",
        "## Corrective actions",
    ):
        assert heading in description  # the bundled blameless post-mortem
    assert "## What changed before it was declared" in description
    assert f"<!-- {incident.marker} -->" in description
    [incident] = await bot.rows(Incident)
    assert incident.issue_ref == "#1"
    assert incident.issue_url == f"{gitlab.url}/{PROJECT}/-/issues/incident/1"
    shown = await bot.say("carol", "incident show 1", dm=True)
    assert f"Issue: {incident.issue_url}" in shown.text and "waiting" not in shown.text
    # The link is said where the declaration was, once GitLab answered.
    linked = f"Incident 1 (severity 2, “Checkout returns 500s”) has its issue: {incident.issue_url}"
    assert linked in await announced(bot, "C0PRODUCTION")
    assert linked in await announced(bot, STATUS)


async def test_the_projects_own_template_replaces_the_bundled_one(
    bot: Bot, gitlab: FakeGitLab
) -> None:
    gitlab.add_file(
        PROJECT, ".gitlab/issue_templates/incident.md", "## Our own template\n\n/label ~ops\n"
    )
    await declare(bot)
    await deliver(bot)
    description = only_issue(gitlab).description or ""
    assert "## Our own template" in description
    assert "## What went well" not in description
    assert "## What changed before it was declared" in description


async def test_the_template_name_comes_from_config(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    gitlab.add_file(PROJECT, ".gitlab/issue_templates/outage.md", "## Outage review\n")
    gitlab.add_file(PROJECT, ".gitlab/issue_templates/incident.md", "## Not this one\n")
    bot = make(**gitlab_sections(gitlab, incidents={"template": "outage"}))
    await declare(bot)
    await deliver(bot)
    description = only_issue(gitlab).description or ""
    assert "## Outage review" in description and "Not this one" not in description


async def test_assign_names_the_handler_who_owns_the_issue(bot: Bot, gitlab: FakeGitLab) -> None:
    reply = await bot.say("bob", 'incident declare "Queue backlog" --severity 3 --assign @carol')
    assert reply.ok, reply.text
    assert "Handler: @carol." in reply.text
    assert "locked" not in reply.text  # severity 3 doesn't lock
    await deliver(bot)
    issue = only_issue(gitlab)
    assert issue.assignee_ids == [gitlab.user("carol").id]
    assert "blocks deployments" not in issue.labels and "Severity::3" in issue.labels
    reply = await bot.say("bob", 'incident declare "Other" --severity 3 --assign @nobody')
    assert not reply.ok and "I don't know @nobody" in reply.text


@pytest.mark.parametrize(
    ("option", "confidential", "reason"),
    [
        ("", False, None),
        ('--confidential "Security"', True, "security"),
        ('--confidential "customer data"', True, "customer data"),
    ],
)
async def test_public_by_default_confidential_only_for_a_listed_reason_which_is_audited(
    bot: Bot, gitlab: FakeGitLab, option: str, confidential: bool, reason: str | None
) -> None:
    reply = await bot.say("bob", f'incident declare "Data exposure" --severity 1 {option}')
    assert reply.ok, reply.text
    await deliver(bot)
    issue = only_issue(gitlab)
    assert issue.confidential is confidential
    [incident] = await bot.rows(Incident)
    assert incident.confidential_reason == reason
    [record] = await bot.rows(AuditRecord, AuditRecord.command == "incident declare")
    assert record.details["confidential_reason"] == reason
    if reason:
        assert f"Confidential: {reason}." in (issue.description or "")


async def test_a_reason_off_the_list_keeps_it_public_and_records_nothing(bot: Bot) -> None:
    reply = await bot.say(
        "bob", 'incident declare "Checkout down" --severity 1 --confidential "embarrassing"'
    )
    assert not reply.ok and reply.kind == "usage"
    assert "public by default" in reply.text and "“security”" in reply.text
    assert await bot.rows(Incident) == []
    assert await bot.rows(OutboxMessage) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('incident declare "Down"', "severity"),
        ('incident declare "Down" --severity 5', "severity"),
        ('incident declare "Down" --severity 1 --service "two words"', "service"),
        ("incident severity 1 0", "severity"),
        ("incident show x", "id"),
    ],
)
async def test_usage_errors(bot: Bot, text: str, expected: str) -> None:
    reply = await bot.say("bob", text)
    assert not reply.ok and reply.kind == "usage" and expected in reply.text


async def test_declaring_happens_in_the_production_channel(bot: Bot) -> None:
    reply = await bot.say("bob", 'incident declare "Down" --severity 1', dm=True)
    assert reply.denied_by == "channel" and "#production" in reply.text
    assert await bot.rows(Incident) == []


async def test_nothing_stops_a_declaration_lock_freeze_away_or_nobody_on_call(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    freeze = {
        "name": "Year end",
        "starts_at": (START - timedelta(hours=1)).isoformat(),
        "ends_at": (START + timedelta(hours=1)).isoformat(),
    }
    bot = make(
        **gitlab_sections(gitlab),
        change_lock={"freezes": [freeze]},
        oncall={"rotation": {"people": []}},
    )
    await bot.open_incident(1, "Something else is already on fire")
    assert (await bot.say("bob", "status away lunch")).ok
    reply = await bot.say("bob", 'incident declare "Checkout down" --severity 1')
    assert reply.ok, reply.text
    assert reply.announcement is not None
    assert "No production engineer is on call" in reply.announcement.text


async def test_people_outside_the_registry_may_not_declare(bot: Bot) -> None:
    reply = await bot.say("mallory", 'incident declare "Down" --severity 1')
    assert reply.denied_by == "registration"


# --- what changed --------------------------------------------------------------------------


async def test_the_timeline_starts_with_the_declaration_then_what_changed_and_who_watches(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    declared_at = START + timedelta(hours=7)
    freeze = {
        "name": "Checkout freeze",
        "starts_at": (START + timedelta(hours=5, minutes=10)).isoformat(),
        "ends_at": (START + timedelta(hours=5, minutes=30)).isoformat(),
    }
    bot = make(**gitlab_sections(gitlab), change_lock={"freezes": [freeze]})
    await staged(bot, "old_flag")  # 7 hours before: outside the 6-hour window
    bot.clock.advance(hours=5)
    await staged(bot, "new_nav")
    assert (await bot.say("bob", "feature set new_nav 1 --actors")).ok
    bot.clock.advance(minutes=20)  # into the freeze
    await staged(bot, "quick_fix")
    reply = await bot.say(
        "alice",
        'feature set quick_fix 1 --actors --ignore-production-check "hotfix for checkout"',
    )
    assert reply.ok, reply.text
    bot.clock.set(declared_at)

    reply = await bot.say(
        "carol", 'incident declare "Checkout returns 500s" --severity 1 --assign @dave'
    )
    assert reply.ok, reply.text
    assert reply.announcement is not None
    text = reply.announcement.text
    assert text.startswith("🚨 @carol declared incident 1 (severity 1): “Checkout returns 500s”.")
    assert "Handler: @dave." in text
    assert "@bob set `new_nav` in production: new → 1% of actors (15:00 UTC)" in text
    assert "(production check overridden: hotfix for checkout)" in text
    assert "@bob (feature new_nav (production) until 19:00 UTC)" in text
    assert "old_flag" not in text

    assert await deliver(bot) == 0
    issue = only_issue(gitlab)
    events = timeline(issue)
    assert events[0] == (
        "Incident declared by @carol (severity 1): Checkout returns 500s. Handler: @dave."
    )
    changes = [e for e in events if " set `" in e]
    assert changes == [
        "@alice set `new_nav` in staging: new → on for everyone",
        "@bob set `new_nav` in production: new → 1% of actors",
        "@alice set `quick_fix` in staging: new → on for everyone",
        "@alice set `quick_fix` in production: new → 1% of actors "
        "(production check overridden: hotfix for checkout)",
    ]
    assert events.index(changes[0]) == 1  # right after the declaration
    watching = [e for e in events if "is watching" in e]
    assert "@bob is watching feature new_nav (production) until 19:00 UTC" in watching
    assert "@alice is watching feature quick_fix (production) until 19:20 UTC" in watching
    assert not any("old_flag" in e for e in events)
    # Each timeline event is one note; each note's time is the change's own.
    assert len(issue.notes) == len(events)
    when = {e.note: e.occurred_at for e in issue.timeline_events}
    assert when[changes[1]] == "2026-03-02T15:00:00.000Z"
    assert when[events[0]] == "2026-03-02T17:00:00.000Z"
    description = issue.description or ""
    assert "- 2026-03-02 15:00 UTC: @bob set `new_nav` in production" in description
    assert "- @bob: feature new_nav (production) until 19:00 UTC" in description
    # The record keeps the same timeline, and the watchers were told in a DM.
    rows = await bot.rows(IncidentEvent)
    assert [r.text for r in sorted(rows, key=lambda r: r.id)] == events
    dms = await bot.rows(OutboxMessage, OutboxMessage.kind == "dm:test")
    told = {m.payload["user_id"]: m.payload["text"] for m in dms}
    assert set(told) == {"U-alice", "U-bob"}
    assert "Incident 1 (severity 1, “Checkout returns 500s”) was just declared" in told["U-bob"]
    assert "feature new_nav (production) until 19:00 UTC" in told["U-bob"]


async def test_what_people_typed_never_becomes_a_quick_action(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    freeze = {
        "name": "Freeze",
        "starts_at": (START - timedelta(hours=1)).isoformat(),
        "ends_at": (START + timedelta(hours=1)).isoformat(),
    }
    bot = make(**gitlab_sections(gitlab), change_lock={"freezes": [freeze]})
    await staged(bot, "quick_fix")
    reply = await bot.say(
        "alice",
        'feature set quick_fix 1 --actors --ignore-production-check "hotfix\n/close"',
    )
    assert reply.ok, reply.text
    await declare(bot)
    assert (await bot.say("bob", 'incident update 1 "found it\n/close\n/label ~oops"')).ok
    await deliver(bot)
    issue = only_issue(gitlab)
    assert issue.state == "opened" and "oops" not in issue.labels
    lines = (issue.description or "").splitlines() + [
        line for note in issue.notes for line in note.body.splitlines()
    ]
    assert not [line for line in lines if line.startswith("/")]
    assert "@bob: found it /close /label ~oops" in timeline(issue)


async def test_deploys_and_change_requests_are_what_changed_too(
    make: Callable[..., Bot],
) -> None:
    bot = make(incidents=INCIDENTS)

    async def started_deploy(version: str, who: str) -> None:
        now = bot.clock.now()
        async with bot.services.store.transaction(write=True) as session:
            session.add(
                DeploySlot(
                    key=f"slot-{version}",
                    environment="production",
                    version=version,
                    starts_at=now,
                    ends_at=now + timedelta(minutes=30),
                    booked_by=who,
                    state="started",
                    started_by=who,
                    started_at=now,
                    pipeline_url=f"https://gitlab.example.com/deploy/-/pipelines/{version}",
                    created_at=now,
                    updated_at=now,
                )
            )

    await started_deploy("17.10.0", "carol")  # 7 hours before: outside the 6-hour window
    bot.clock.advance(hours=7)
    await said_ok(bot, "bob", 'change request "Rotate TLS certificates" --criticality 3')
    await said_ok(bot, "bob", "change start 1")
    bot.clock.advance(minutes=30)
    await started_deploy("17.11.2", "dave")
    bot.clock.advance(minutes=30)
    await said_ok(bot, "bob", "change done 1")
    bot.clock.advance(minutes=10)
    await declare(bot)

    events = sorted(await bot.rows(IncidentEvent), key=lambda e: e.id)
    changed = [(e.kind, e.text) for e in events if e.kind in ("change", "deploy")]
    assert changed == [
        ("change", "@bob started change 1 (C3): Rotate TLS certificates"),
        (
            "deploy",
            "@dave started the deploy of 17.11.2 to production "
            "(pipeline https://gitlab.example.com/deploy/-/pipelines/17.11.2)",
        ),
        ("change", "Finished change 1 (C3): Rotate TLS certificates"),
    ]
    assert await deliver(bot) == 0
    [issue] = await bot.rows(LocalIssue, LocalIssue.title.like("%Checkout%"))
    assert "- 2026-03-02 17:30 UTC: @dave started the deploy of 17.11.2" in issue.description
    assert "17.10.0" not in issue.description


async def test_with_nothing_recorded_the_timeline_says_so(bot: Bot, gitlab: FakeGitLab) -> None:
    reply = await bot.say("bob", 'incident declare "Down" --severity 3')
    assert "Marvin recorded no change in the 6 hours before" in reply.text
    await deliver(bot)
    issue = only_issue(gitlab)
    assert len(timeline(issue)) == 1
    assert "- Nothing was recorded." in (issue.description or "")


# --- the lifecycle -------------------------------------------------------------------------


async def test_declare_update_mitigate_resolve(bot: Bot, gitlab: FakeGitLab) -> None:
    await staged(bot, "new_nav")
    await declare(bot, text='incident declare "Checkout returns 500s" --severity 1')
    # Locked at once, before GitLab has heard of it.
    reply = await bot.say("bob", "feature set new_nav 1 --actors")
    assert reply.denied_by == "change_lock" and "incident 1 (S1)" in reply.text
    assert (await bot.say("alice", "feature set new_nav false --staging")).ok  # lowering

    reply = await bot.say("carol", 'incident update 1 "Errors began with the 09:55 deploy"')
    assert reply.ok and "Added to incident 1's timeline" in reply.text
    assert (await bot.say("carol", "incident update 1 from a DM", dm=True)).ok
    reply = await bot.say("bob", "incident mitigated 1")
    assert reply.ok, reply.text
    assert reply.text == (
        "You marked incident 1 mitigated. Changes to production are no longer locked by it."
    )
    assert (await bot.say("alice", "feature set new_nav true --staging")).ok
    assert (await bot.say("bob", "feature set new_nav 1 --actors")).ok  # unlocked
    reply = await bot.say("bob", "incident resolve 1")
    assert reply.ok and "Its issue will be closed" in reply.text

    assert await deliver(bot) == 0
    issue = only_issue(gitlab)
    assert issue.state == "closed"
    assert set(issue.labels) == {"outage", "Incident::Resolved", "Severity::1"}
    events = timeline(issue)
    assert events[0].startswith("Incident declared by @bob")
    assert events[-4:] == [
        "@carol: Errors began with the 09:55 deploy",
        "@carol: from a DM",
        "Mitigated by @bob.",
        "Resolved by @bob.",
    ]
    for channel in ("C0PRODUCTION", STATUS):
        texts = await announced(bot, channel)
        assert any("declared incident 1" in t for t in texts), texts
        assert any("@bob marked incident 1 mitigated" in t for t in texts), texts
        assert any("@bob marked incident 1 resolved" in t for t in texts), texts
    # Updates go to the status channel, not to production's.
    assert any("Update on incident 1 from @carol" in t for t in await announced(bot, STATUS))
    assert not any("Update on" in t for t in await announced(bot, "C0PRODUCTION"))
    listing = await bot.say("carol", "incident list")
    assert listing.text == "No open incidents."
    listing = await bot.say("carol", "incident list --all")
    assert "• 1: severity 1, resolved" in listing.text and issue_url(gitlab) in listing.text


def issue_url(gitlab: FakeGitLab, iid: int = 1) -> str:
    return f"{gitlab.url}/{PROJECT}/-/issues/incident/{iid}"


async def test_severity_moves_the_lock_and_the_labels(bot: Bot, gitlab: FakeGitLab) -> None:
    await staged(bot, "new_nav")
    await declare(bot, text='incident declare "Slow pages" --severity 3')
    assert (await bot.say("bob", "incident severity 1 2")).text == (
        "You changed incident 1's severity from 3 to 2. Changes to production are locked "
        "until it is mitigated."
    )
    assert (await bot.say("bob", "feature set new_nav 1 --actors")).denied_by == "change_lock"
    await deliver(bot)
    labels = set(only_issue(gitlab).labels)
    assert {"Severity::2", "blocks deployments", "blocks feature-flags"} <= labels
    assert "Severity::3" not in labels
    reply = await bot.say("bob", "incident severity 1 4")
    assert reply.text.endswith("It no longer locks changes to production.")
    assert (await bot.say("bob", "feature set new_nav 1 --actors")).ok
    await deliver(bot)
    labels = set(only_issue(gitlab).labels)
    assert "Severity::4" in labels and "blocks deployments" not in labels
    assert (await bot.say("bob", "incident severity 1 4")).text.endswith("nothing changed.")


async def test_only_the_handler_or_a_production_engineer_steers_an_incident(bot: Bot) -> None:
    await declare(bot, text='incident declare "Down" --severity 1 --assign @carol')
    reply = await bot.say("bob", "incident mitigated 1")  # declared it, but carol handles it
    assert not reply.ok and reply.kind == "denied" and "@carol" in reply.text
    assert not (await bot.say("dave", "incident severity 1 2")).ok
    assert (await bot.say("carol", "incident severity 1 2")).ok
    assert (await bot.say("alice", "incident mitigated 1")).ok  # production role
    assert (await bot.say("carol", "incident resolve 1")).ok
    assert (await bot.say("carol", "incident resolve 1")).text.endswith("nothing changed.")
    assert (await bot.say("carol", "incident mitigated 1")).text == (
        "Incident 1 is already resolved; nothing changed."
    )
    assert (await bot.say("carol", "incident show 9")).kind == "not_found"


async def test_list_and_show_say_what_is_on_its_way_then_give_the_link(
    bot: Bot, gitlab: FakeGitLab
) -> None:
    await declare(bot)
    await bot.say("bob", 'incident update 1 "Investigating"')
    listing = await bot.say("carol", "incident list")
    assert "1 open incident(s):" in listing.text
    assert "• 1: severity 2, active · locks changes · Checkout returns 500s" in listing.text
    assert "Issue: not opened in GitLab yet (the issue and 2 notes waiting)" in listing.text
    shown = await bot.say("carol", "incident show 1")
    assert "Incident 1, severity 2, active: Checkout returns 500s" in shown.text
    assert "handler @bob · service web" in shown.text
    assert "Changes to production are locked until it is mitigated." in shown.text
    assert "@bob: Investigating" in shown.text
    await deliver(bot)
    listing = await bot.say("carol", "incident list")
    assert f"Issue: {issue_url(gitlab)}" in listing.text and "waiting" not in listing.text


async def test_a_redelivered_declaration_is_answered_again_not_declared_again(
    bot: Bot, gitlab: FakeGitLab
) -> None:
    inv = bot.invocation("bob", 'incident declare "Down" --severity 2')
    first = await bot.pipeline.handle(inv)
    again = await bot.pipeline.handle(inv.model_copy(update={"redelivered": True}))
    assert again.text == first.text
    assert len(await bot.rows(Incident)) == 1
    await deliver(bot)
    only_issue(gitlab)


@pytest.mark.parametrize("tracker_name", ["gitlab", "local"])
async def test_the_whole_life_of_an_incident_on_each_database(
    any_make: Callable[..., Bot], gitlab: FakeGitLab, tracker_name: str
) -> None:
    sections = gitlab_sections(gitlab) if tracker_name == "gitlab" else {"incidents": INCIDENTS}
    bot = any_make(**sections)
    await staged(bot, "new_nav")
    await declare(bot, text='incident declare "Checkout returns 500s" --severity 1 --labels db')
    assert (await bot.say("bob", "feature set new_nav 1 --actors")).denied_by == "change_lock"
    assert (await bot.say("carol", 'incident update 1 "Rolled back"')).ok
    assert (await bot.say("bob", "incident severity 1 2")).ok
    assert (await bot.say("bob", "incident mitigated 1")).ok
    assert (await bot.say("bob", "feature set new_nav 1 --actors")).ok
    assert (await bot.say("alice", "incident resolve 1")).ok
    assert await deliver(bot) == 0
    if tracker_name == "gitlab":
        issue = only_issue(gitlab)
        state, labels, notes = issue.state, set(issue.labels), len(issue.notes)
    else:
        [local] = await bot.rows(LocalIssue)
        state, labels = local.state, set(local.labels)
        notes = len(await bot.rows(LocalIssueNote))
    assert state == "closed"
    assert labels == {"outage", "db", "Incident::Resolved", "Severity::2"}
    assert notes == len(await bot.rows(IncidentEvent)) == 7
    assert "No open incidents." in (await bot.say("carol", "incident list")).text


# --- the embedded tracker ------------------------------------------------------------------


async def test_the_same_flow_on_the_embedded_tracker(local_bot: Bot) -> None:
    bot = local_bot
    await staged(bot, "new_nav")
    reply = await bot.say(
        "bob", 'incident declare "Checkout returns 500s" --severity 1 --confidential security'
    )
    assert reply.ok and "Its issue is on its way to the issue tracker" in reply.text
    assert (await bot.say("bob", 'incident update 1 "Rolled back"')).ok
    assert (await bot.say("bob", "incident mitigated 1")).ok
    assert await deliver(bot) == 0
    [issue] = await bot.rows(LocalIssue)
    assert issue.title == "2026-03-02: Checkout returns 500s"
    assert (issue.assignee, issue.confidential, issue.state) == ("bob", True, "opened")
    assert set(issue.labels) == {"outage", "Incident::Mitigated", "Severity::1"}
    assert "## Corrective actions" in issue.description
    notes = [n.body for n in await bot.rows(LocalIssueNote)]
    assert len(notes) == 5  # declared, the staging change, alice's watch, update, mitigated
    assert "Incident declared by @bob" in notes[0]
    assert "@alice set `new_nav` in staging" in notes[1]
    assert "@bob: Rolled back" in notes[3] and "Mitigated by @bob." in notes[4]
    [incident] = await bot.rows(Incident)
    assert (incident.issue_ref, incident.issue_url) == (f"#{issue.id}", None)
    assert (await bot.say("bob", "incident resolve 1")).ok
    await deliver(bot)
    [issue] = await bot.rows(LocalIssue)
    assert issue.state == "closed" and "Incident::Resolved" in issue.labels
    shown = await bot.say("carol", "incident show 1")
    assert f"Issue: #{issue.id}" in shown.text and "confidential (security)" in shown.text


async def test_help_lists_the_incident_commands(local_bot: Bot) -> None:
    reply = await local_bot.say("bob", "help incident")
    for verb in ("declare", "list", "show", "update", "severity", "mitigated", "resolve"):
        assert f"incident {verb}" in reply.text


# --- the IncidentTracker contract, on both trackers ----------------------------------------


@pytest.fixture(params=["local", "gitlab"])
async def tracker(
    request: pytest.FixtureRequest, gitlab: FakeGitLab, sqlite_url: str
) -> AsyncIterator[IncidentTracker]:
    if request.param == "gitlab":
        yield GitLabIssueTracker(GitLabClient(gitlab.url, TOKEN, 1), PROJECT)
        return
    store = Store(sqlite_url)
    yield EmbeddedIncidentTracker(store, FrozenClock(START))
    await store.dispose()


def new_issue(marker: str) -> NewIssue:
    return NewIssue(
        title="2026-03-02: Down",
        description=f"Post-mortem\n\n<!-- {marker} -->",
        labels=("outage", "Incident::Active"),
        issue_type="incident",
        confidential=True,
        assignee="bob",
        author="bob",
    )


async def test_contract_an_opened_issue_is_found_by_its_marker(tracker: IncidentTracker) -> None:
    made = await tracker.open_issue(new_issue("marvin-incident-0001"))
    assert made.is_open and set(made.labels) == {"outage", "Incident::Active"}
    found = await tracker.find_marked("marvin-incident-0001")
    assert found is not None and found.ref == made.ref
    assert await tracker.find_marked("marvin-incident-0002") is None


async def test_contract_notes_are_found_by_their_marker(tracker: IncidentTracker) -> None:
    made = await tracker.open_issue(new_issue("marvin-incident-0001"))
    when = START + timedelta(minutes=5)
    await tracker.add_note(
        made.ref, "Rolled back", marker="m-note-1", timeline=TimelineEvent("Rolled back", when)
    )
    assert await tracker.has_note(made.ref, "m-note-1")
    assert not await tracker.has_note(made.ref, "m-note-2")


async def test_contract_labels_move_and_the_issue_closes(tracker: IncidentTracker) -> None:
    made = await tracker.open_issue(new_issue("marvin-incident-0001"))
    moved = await tracker.update(
        made.ref, add_labels=["Incident::Resolved"], remove_labels=["Incident::Active"], close=True
    )
    assert set(moved.labels) == {"outage", "Incident::Resolved"} and not moved.is_open
    again = await tracker.update(
        made.ref, add_labels=["Incident::Resolved"], remove_labels=["Incident::Active"], close=True
    )
    assert set(again.labels) == set(moved.labels) and not again.is_open  # idempotent


async def test_contract_no_template_of_that_name(tracker: IncidentTracker) -> None:
    assert await tracker.template("nothing-of-the-kind") is None


async def test_contract_a_missing_issue_is_not_found(tracker: IncidentTracker) -> None:
    with pytest.raises(NotFound):
        await tracker.add_note("#4242", "x", marker="m")
    with pytest.raises(Refused) as raised:
        await tracker.has_note("not a reference", "m")
    assert "not an issue reference" in raised.value.shown()


async def test_the_gitlab_tracker_is_an_issue_tracker_too(gitlab: FakeGitLab) -> None:
    issues = GitLabIssueTracker(GitLabClient(gitlab.url, TOKEN, 1), PROJECT)
    made = await issues.create(title="Roll out fast", description="why", labels=["a"], author="b")
    found = await issues.get(made.ref)
    assert (found.title, found.labels, found.is_open) == ("Roll out fast", ("a",), True)
    assert (await issues.get(f"{PROJECT}{made.ref}")).ref == made.ref
    with pytest.raises(Refused):
        await issues.get("other/project#1")
    with pytest.raises(NotFound):
        await issues.get("#4242")
