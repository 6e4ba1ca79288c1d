"""The flag log: with `issues.flag_log_project` set, every flag change is also an issue there
(labels: the environment, `change`, `Production check ignored` when overridden), closed at
once; `--rollout-issue` puts a note of the change on the flag's rollout issue. Through the
issue outbox: python-gitlab against the loopback GitLab, faults included, and the embedded
tracker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from marvin import flag_log, issue_delivery
from marvin.store.tables import LocalIssue, LocalIssueNote, OutboxMessage
from tests.fakes.gitlab import FakeGitLab
from tests.harness import Bot, deliver_issues, make_bot, said_ok

TOKEN = "glpat-marvin-bot"
TRACKER = "infra/production"
LOG = "infra/feature-flag-log"
ROLLOUTS = "web/app"
POST_ISSUE = "POST /projects/*/issues"


@pytest.fixture
async def gitlab(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeGitLab]:
    monkeypatch.setenv("GITLAB_TOKEN", TOKEN)
    async with FakeGitLab() as fake:
        marvin = fake.add_user("marvin", token=TOKEN, bot=True)
        for name in ("alice", "bob"):
            fake.add_user(name)
        fake.add_group("infra", visibility="public")
        fake.add_group("web", visibility="public")
        for path in (TRACKER, LOG, ROLLOUTS):
            fake.add_member(fake.add_project(path, visibility="public"), marvin, "reporter")
        yield fake


@pytest.fixture
async def make(sqlite_url: str) -> AsyncIterator[Callable[..., Bot]]:
    made: list[Bot] = []

    def factory(**sections: Any) -> Bot:
        bot = make_bot(sqlite_url, **sections)
        made.append(bot)
        return bot

    yield factory
    for bot in made:
        await bot.services.store.dispose()


def on_gitlab(fake: FakeGitLab, log: str | None = LOG) -> dict[str, Any]:
    return {
        "issues": {"backend": "gitlab", "project": TRACKER, "flag_log_project": log},
        "gitlab": {"url": fake.url, "timeout_seconds": 1},
    }


async def test_each_flag_change_is_an_issue_in_the_log_closed_at_once(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = make(**on_gitlab(gitlab))
    await said_ok(bot, "alice", "feature set new_nav true --staging")
    await said_ok(bot, "alice", "feature set new_nav 1 --actors")
    assert gitlab.issues(LOG) == []  # written to the outbox first, delivered after
    assert await deliver_issues(bot) == 0
    staging, production = gitlab.issues(LOG)
    assert staging.title == "Feature flag new_nav has been set to on for everyone on staging"
    assert production.title == "Feature flag new_nav has been set to 1% of actors on production"
    assert set(staging.labels) == {"staging", "change"}
    assert set(production.labels) == {"production", "change"}
    assert {staging.state, production.state} == {"closed"}
    assert "@alice changed `new_nav` on production" in (production.description or "")
    assert "new → 1% of actors" in (production.description or "")
    assert gitlab.issues(TRACKER) == []  # the infrastructure tracker is not the log


async def test_an_override_is_labelled_and_a_delete_is_logged(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = make(**on_gitlab(gitlab))
    await said_ok(bot, "alice", "feature set new_nav true --staging")
    await said_ok(
        bot, "alice", 'feature set new_nav 1 --actors --ignore-production-check "hotfix, verified"'
    )
    await said_ok(bot, "alice", "feature set old_nav true --staging")
    asked = await bot.say("alice", "feature delete old_nav --staging")
    if asked.confirm is not None:  # deleting can't be undone: confirmed first
        await said_ok(bot, "alice", f"confirm {asked.confirm.token}")
    assert await deliver_issues(bot) == 0
    _, overridden, _, deleted = gitlab.issues(LOG)
    assert set(overridden.labels) == {"production", "change", flag_log.OVERRIDE_LABEL}
    assert "The production check was ignored: hotfix, verified." in (overridden.description or "")
    assert deleted.title == "Feature flag old_nav has been deleted on staging"
    assert deleted.state == "closed"


async def test_the_rollout_issue_gets_a_note(make: Callable[..., Bot], gitlab: FakeGitLab) -> None:
    rollout = gitlab.add_issue(ROLLOUTS, "Roll out new_nav", author="bob")
    bot = make(**on_gitlab(gitlab, log=None))
    await said_ok(bot, "alice", f"feature set new_nav true --staging --rollout-issue {ROLLOUTS}#1")
    url = f"{gitlab.external_url}/{ROLLOUTS}/-/issues/1"
    await said_ok(bot, "alice", f"feature set new_nav 1 --actors --rollout-issue {url}")
    assert await deliver_issues(bot) == 0
    notes = [n.body for n in gitlab.issue(ROLLOUTS, rollout.iid).notes if not n.system]
    assert len(notes) == 2
    assert notes[0].startswith("@alice changed `new_nav` on staging")
    assert "new → 1% of actors" in notes[1]
    assert gitlab.issues(LOG) == []  # no log project: no log issues


async def test_a_bad_rollout_reference_is_refused_before_anything_changes(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = make(**on_gitlab(gitlab))
    reply = await bot.say("alice", "feature set new_nav true --staging --rollout-issue nope")
    assert not reply.ok and "#12, group/project#12 or its URL" in reply.text
    assert await bot.rows(OutboxMessage, OutboxMessage.kind.in_(flag_log.KINDS)) == []


async def test_a_timeout_after_creation_and_an_outage_leave_one_issue_per_change(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    rollout = gitlab.add_issue(ROLLOUTS, "Roll out new_nav", author="bob")
    bot = make(**on_gitlab(gitlab))
    gitlab.hang_after_apply(POST_ISSUE, 3)  # opened, but the answer comes after Marvin's 1 s
    await said_ok(bot, "alice", f"feature set new_nav true --staging --rollout-issue {ROLLOUTS}#1")
    await issue_delivery.issue_worker(bot.services).deliver_due()
    await gitlab.down()
    await said_ok(bot, "alice", f"feature set new_nav 1 --actors --rollout-issue {ROLLOUTS}#1")
    assert await issue_delivery.issue_worker(bot.services).deliver_due() == 0
    # The changes themselves were made and announced, whatever GitLab was doing.
    assert len(await bot.rows(OutboxMessage, OutboxMessage.kind == "announce")) == 2
    await gitlab.up()
    bot.clock.advance(seconds=60)
    assert await deliver_issues(bot) == 0
    assert [i.title.rsplit(" on ", 1)[1] for i in gitlab.issues(LOG)] == [
        "staging",
        "production",
    ]
    assert {i.state for i in gitlab.issues(LOG)} == {"closed"}
    assert len([n for n in gitlab.issue(ROLLOUTS, rollout.iid).notes if not n.system]) == 2


async def test_the_embedded_tracker_keeps_the_log_too(make: Callable[..., Bot]) -> None:
    bot = make(issues={"flag_log_project": "flag-log"})
    rollout = await bot.add_issue("Roll out new_nav", [])
    await said_ok(bot, "alice", f"feature set new_nav true --staging --rollout-issue {rollout}")
    assert await deliver_issues(bot) == 0
    [log] = await bot.rows(LocalIssue, LocalIssue.title.like("Feature flag%"))
    assert log.state == "closed" and set(log.labels) == {"staging", "change"}
    [note] = await bot.rows(LocalIssueNote)
    assert note.body.startswith("@alice changed `new_nav` on staging")


async def test_without_a_log_project_nothing_is_logged(make: Callable[..., Bot]) -> None:
    bot = make()
    await said_ok(bot, "alice", "feature set new_nav true --staging")
    assert await bot.rows(OutboxMessage, OutboxMessage.kind.in_(flag_log.KINDS)) == []


async def test_what_people_typed_cannot_close_the_rollout_issue(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    rollout = gitlab.add_issue(ROLLOUTS, "Roll out new_nav", author="bob")
    gitlab.add_label(ROLLOUTS, "rolled-out")
    bot = make(**on_gitlab(gitlab))
    await said_ok(bot, "alice", "feature set new_nav true --staging")
    # GitLab runs a note's line that starts with `/` as a quick action.
    reason = "hotfix, verified\n/close\n/label ~rolled-out\nby alice"
    await said_ok(
        bot,
        "alice",
        f'feature set new_nav 1 --actors --ignore-production-check "{reason}" '
        f"--rollout-issue {ROLLOUTS}#1",
    )
    assert await deliver_issues(bot) == 0
    issue = gitlab.issue(ROLLOUTS, rollout.iid)
    assert issue.state == "opened" and "rolled-out" not in issue.labels
    [note] = [n.body for n in issue.notes if not n.system]
    assert "ignored: hotfix, verified\n\\/close\n\\/label ~rolled-out\nby alice." in note
    overridden = gitlab.issues(LOG)[-1]
    assert "\n\\/close\n" in (overridden.description or "")


async def test_the_embedded_tracker_notes_only_its_own_issues(make: Callable[..., Bot]) -> None:
    bot = make(issues={"project": "infra/production"})
    unrelated = await bot.add_issue("Unrelated", [])
    assert unrelated == "#1"
    # web/app#1 is another project's issue 1, not the embedded tracker's #1.
    await said_ok(bot, "alice", "feature set new_nav true --staging --rollout-issue web/app#1")
    await said_ok(
        bot, "alice", "feature set old_nav true --staging --rollout-issue infra/production#1"
    )
    assert await deliver_issues(bot) == 0
    [note] = await bot.rows(LocalIssueNote)
    assert note.body.startswith("@alice changed `old_nav` on staging")
    [failed] = await bot.rows(OutboxMessage, OutboxMessage.status == "failed")
    assert failed.kind == flag_log.ROLLOUT_NOTE and failed.payload["ref"] == "web/app#1"
    assert "holds only its own issues" in (failed.last_error or "")
