"""Access requests open their issue; grants need that issue, are stored with who granted
them and until when, audited, announced and noted on it; an expired grant stops counting,
and its holder is told a week before. On the embedded tracker and on GitLab's."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import update

from marvin.access import notices
from marvin.commands.access_grants import AccessRevoke, RevokeHandler
from marvin.commands.base import Context, Plan
from marvin.models import Reply
from marvin.outbox import ANNOUNCE
from marvin.store.tables import (
    Account,
    AuditRecord,
    Grant,
    LocalIssue,
    LocalIssueNote,
    OutboxMessage,
)
from tests.access_world import TRACKER, gitlab, make, sections
from tests.fakes.gitlab import FakeGitLab
from tests.harness import Bot

__all__ = ["gitlab", "make"]  # fixtures


async def request(bot: Bot, who: str = "carol") -> str:
    reply = await bot.say(who, 'access request feature_flags "to roll out new_nav"', dm=True)
    assert reply.ok, reply.text
    issues = await bot.rows(LocalIssue)
    return f"#{issues[-1].id}"


async def test_a_request_opens_an_issue_naming_the_gitlab_user(bot: Bot) -> None:
    reply = await bot.say("carol", 'access request feature_flags "to roll out new_nav"', dm=True)
    assert reply.ok
    assert "I opened #1 for your `feature_flags` request, labelled `access request`" in reply.text
    (issue,) = await bot.rows(LocalIssue)
    assert issue.labels == ["access request"]
    assert "GitLab user @carol" in issue.description
    assert "roles developer: no environment access; no grants" in issue.description
    assert "to roll out new_nav" in issue.description
    announced = await bot.rows(OutboxMessage, OutboxMessage.kind == ANNOUNCE)
    assert ["@carol requested `feature_flags`: #1." in m.payload["text"] for m in announced] == [
        True
    ]


async def test_production_access_is_requested_with_the_access_label(bot: Bot) -> None:
    reply = await bot.say("carol", 'access request staging "debugging a migration"')
    assert reply.ok
    (issue,) = await bot.rows(LocalIssue)
    assert issue.labels == ["access"]
    assert "asks for staging access" in issue.title


async def test_what_you_already_have_is_not_requested(bot: Bot) -> None:
    reply = await bot.say("erin", 'access request staging "need it"')
    assert not reply.ok
    assert "You already have `staging` through your roles (support)" in reply.text
    flags = await bot.say("bob", 'access request feature_flags "need it"')
    assert "You already have `feature_flags` through the registry" in flags.text
    alice = await bot.say("alice", 'access request runners "need it"')
    assert "already have `runners`" in alice.text
    assert await bot.rows(LocalIssue) == []


async def test_a_grant_on_the_request_issue(bot: Bot) -> None:
    ref = await request(bot)
    assert (await bot.say("carol", "feature set new_nav true --staging")).denied_by == "roles"
    reply = await bot.say("alice", f"access grant feature_flags @carol --issue {ref} --expires 30d")
    assert reply.ok, reply.text
    assert "Granted `feature_flags` to @carol until 2026-04-01, and noted it on #1." in reply.text
    (grant,) = await bot.rows(Grant)
    assert (grant.name, grant.granted_by, grant.issue_ref) == ("feature_flags", "alice", "#1")
    notes = await bot.rows(LocalIssueNote)
    assert ["@alice granted `feature_flags` to @carol" in n.body for n in notes] == [True]
    audited = await bot.rows(AuditRecord, AuditRecord.command == "access grant")
    assert [a.outcome for a in audited] == ["allowed"]
    announced = [m.payload["text"] for m in await bot.rows(OutboxMessage)]
    assert any(
        "@alice granted `feature_flags` to @carol until 2026-04-01 (#1)" in t for t in announced
    )
    assert (await bot.say("carol", "feature set new_nav true --staging")).ok
    check = await bot.say("bob", "access check @carol")
    assert "`feature_flags` granted by @alice on #1 until 2026-04-01" in check.text


async def test_a_grant_needs_an_open_access_request_issue(bot: Bot) -> None:
    await bot.say("carol", "whoami")
    other = await bot.add_issue("Something else", ["bug"])
    closed = await bot.add_issue("Access request", ["access request"], state="closed")
    no_label = await bot.say("alice", f"access grant feature_flags @carol --issue {other}")
    assert "is not labelled `access request`" in no_label.text
    shut = await bot.say("alice", f"access grant feature_flags @carol --issue {closed}")
    assert "is closed: a grant needs an open access request issue" in shut.text
    missing = await bot.say("alice", "access grant feature_flags @carol --issue #99")
    assert "I can't find the request issue #99" in missing.text
    assert await bot.rows(Grant) == []


async def test_grants_are_for_the_production_role(bot: Bot) -> None:
    ref = await request(bot)
    for who in ("bob", "dave", "erin", "carol"):
        reply = await bot.say(who, f"access grant feature_flags @carol --issue {ref}")
        assert reply.denied_by == "roles", who
    assert await bot.rows(Grant) == []


async def test_no_grant_of_what_they_hold_nor_to_strangers(bot: Bot) -> None:
    ref = await bot.add_issue("Access request", ["access request"])
    await bot.say("bob", "whoami")
    held = await bot.say("alice", f"access grant feature_flags @bob --issue {ref}")
    assert "@bob already has `feature_flags` through the registry" in held.text
    unknown = await bot.say("alice", f"access grant feature_flags @zoe --issue {ref}")
    assert "@zoe is not in the roles registry" in unknown.text
    silent = await bot.say("alice", f"access grant feature_flags @dave --issue {ref}")
    assert "@dave has no Marvin account yet" in silent.text


async def test_bad_expiry_is_a_sentence(bot: Bot) -> None:
    reply = await bot.say("alice", "access grant feature_flags @carol --issue #1 --expires soon")
    assert not reply.ok and reply.kind == "usage"
    assert "like 90d or 12w" in reply.text
    long = await bot.say("alice", "access grant feature_flags @carol --issue #1 --expires 400d")
    assert "from 1 to 365 days" in long.text


async def test_revoke(bot: Bot) -> None:
    ref = await request(bot)
    assert (await bot.say("alice", f"access grant feature_flags @carol --issue {ref}")).ok
    reply = await bot.say("alice", "access revoke feature_flags @carol")
    assert reply.ok and "Revoked @carol's `feature_flags` grant (from #1)." in reply.text
    (grant,) = await bot.rows(Grant)
    assert grant.revoked_by == "alice" and grant.revoked_at is not None
    assert (await bot.say("carol", "feature set new_nav true --staging")).denied_by == "roles"
    again = await bot.say("alice", "access revoke feature_flags @carol")
    assert "@carol holds no `feature_flags` grant given in Marvin." in again.text
    through = await bot.say("alice", "access revoke feature_flags @bob")
    assert "changes in the roles registry, not here" in through.text
    # The request issue says it was taken back, too (through the issue outbox).
    from marvin import issue_delivery

    await issue_delivery.issue_worker(bot.services).deliver_due()
    bodies = [n.body for n in await bot.rows(LocalIssueNote)]
    assert any("@alice revoked `feature_flags` of @carol in Marvin" in b for b in bodies), bodies


async def test_a_revoke_that_changed_nothing_does_not_say_it_revoked(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = await request(bot)
    assert (await bot.say("alice", f"access grant feature_flags @carol --issue {ref}")).ok
    planned = RevokeHandler.plan

    async def revoked_meanwhile(self: RevokeHandler, cmd: AccessRevoke, ctx: Context) -> Plan:
        plan = await planned(self, cmd, ctx)
        # Another production engineer's revoke lands between this plan and its record.
        async with bot.services.store.transaction(write=True) as session:
            await session.execute(update(Grant).values(revoked_at=ctx.now, revoked_by="dave"))
        return plan

    monkeypatch.setattr(RevokeHandler, "plan", revoked_meanwhile)
    reply = await bot.say("alice", "access revoke feature_flags @carol")
    assert not reply.ok and reply.kind == "not_found", reply.text
    assert "@carol holds no `feature_flags` grant given in Marvin." in reply.text
    (grant,) = await bot.rows(Grant)
    assert grant.revoked_by == "dave"
    announced = [m.payload["text"] for m in await bot.rows(OutboxMessage)]
    assert not any("revoked @carol's" in t for t in announced)


async def test_a_grant_holds_on_each_of_the_persons_chat_accounts(bot: Bot) -> None:
    """Grants are the person's: given while carol wrote from the test chat, they count when
    she writes from the shell too, as `access mine` there says."""

    async def from_shell(text: str) -> Reply:
        inv = bot.invocation("carol", text).model_copy(update={"transport": "shell"})
        return await bot.pipeline.handle(inv)

    assert (await bot.say("carol", "whoami")).ok
    assert (await from_shell("whoami")).ok
    accounts = await bot.rows(Account, Account.directory_handle == "carol")
    assert sorted(a.transport for a in accounts) == ["shell", "test"]
    ref = await bot.add_issue("Access request", ["access request"])
    assert (await bot.say("alice", f"access grant feature_flags @carol --issue {ref}")).ok
    (grant,) = await bot.rows(Grant)
    assert grant.account_id == min(a.id for a in accounts)  # stored on her first account
    assert "`feature_flags` granted by @alice" in (await from_shell("access mine")).text
    assert (await from_shell("feature set new_nav true --staging")).ok
    assert (await bot.say("alice", "access revoke feature_flags @carol")).ok
    assert (await from_shell("feature set new_nav false --staging")).denied_by == "roles"


async def test_a_grant_expires_and_its_holder_is_told_a_week_before(bot: Bot) -> None:
    ref = await request(bot)
    assert (
        await bot.say("alice", f"access grant feature_flags @carol --issue {ref} --expires 30d")
    ).ok
    bot.clock.advance(days=22)
    assert await notices.warn_expiring(bot.services) == 0  # eight days left
    bot.clock.advance(days=1, minutes=1)
    assert await notices.warn_expiring(bot.services) == 1
    assert await notices.warn_expiring(bot.services) == 0  # once
    (dm,) = await bot.rows(OutboxMessage, OutboxMessage.kind == "dm:test")
    assert dm.payload["user_id"] == "U-carol"
    assert (
        "Your `feature_flags` grant expires on 2026-04-01 10:00 UTC (given on #1)"
        in (dm.payload["text"])
    )
    assert (await bot.say("carol", "feature set new_nav true --staging")).ok
    bot.clock.advance(days=7)
    reply = await bot.say("carol", "feature set new_nav false --staging")
    assert reply.denied_by == "roles"
    assert "no longer" not in reply.text and "needs the `feature_flags` grant" in reply.text
    assert "`feature_flags` granted" not in (await bot.say("carol", "access mine")).text


# --- on GitLab's tracker, through python-gitlab ------------------------------------------------


async def test_request_and_grant_on_gitlab(make: Callable[..., Bot], gitlab: FakeGitLab) -> None:
    bot = make(**sections(gitlab, issues={"backend": "gitlab", "project": TRACKER}))
    from marvin.access import sync

    await sync.run(bot.services)
    reply = await bot.say("carol", 'access request feature_flags "to roll out new_nav"')
    assert reply.ok, reply.text
    (issue,) = gitlab.issues(TRACKER)
    assert issue.labels == ["access request"]
    assert f"{gitlab.external_url}/{TRACKER}/-/issues/1" in reply.text
    # carol holds no role in GitLab's groups: her account was linked by her e-mail there.
    mine = await bot.say("carol", "access mine")
    assert "GitLab user carol" in mine.text and "Roles: none." in mine.text
    granted = await bot.say("alice", "access grant feature_flags @carol --issue #1 --expires 12w")
    assert granted.ok, granted.text
    assert ["@alice granted `feature_flags` to @carol" in n.body for n in issue.notes] == [True]
    assert (await bot.say("carol", "feature set new_nav true --staging")).ok
    bot.clock.advance(minutes=61)
    await bot.say("dave", "whoami")
    stale = await bot.say("alice", "access grant feature_flags @dave --issue #1")
    assert not stale.ok and "more than the 60 minutes allowed" in stale.text
    assert len(issue.notes) == 1


async def test_a_request_gitlab_answered_too_late_is_settled_by_its_marker(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    from datetime import timedelta

    from marvin import intents
    from marvin.access import sync
    from marvin.store.tables import ChangeIntent

    bot = make(
        **sections(
            gitlab,
            issues={"backend": "gitlab", "project": TRACKER},
            gitlab={"timeout_seconds": 0.5},
        )
    )
    await sync.run(bot.services)
    gitlab.hang_after_apply("POST /projects/*/issues", 3)
    reply = await bot.say("carol", 'access request feature_flags "to roll out new_nav"')
    assert not reply.ok and "don't repeat the command" in reply.text
    assert len(gitlab.issues(TRACKER)) == 1  # made, though the answer never came
    gitlab.clear_faults()
    settled = await intents.settle_due(bot.services, bot.pipeline.registry, timedelta(seconds=60))
    assert settled == 1
    (intent,) = await bot.rows(ChangeIntent)
    assert intent.status == "applied"
    announced = [m.payload["text"] for m in await bot.rows(OutboxMessage)]
    assert any("@carol requested `feature_flags`" in t for t in announced)
    assert len(gitlab.issues(TRACKER)) == 1


async def test_a_grant_ends_when_gitlab_blocks_its_holder(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    """Leaving the groups takes a person's roles at the next sync; being blocked in GitLab
    (they left the company) takes the grants given in Marvin too, audited and announced."""
    from marvin.access import sync

    bot = make(**sections(gitlab, issues={"backend": "gitlab", "project": TRACKER}))
    await sync.run(bot.services)
    assert (await bot.say("carol", 'access request feature_flags "to roll out new_nav"')).ok
    granted = await bot.say("alice", "access grant feature_flags @carol --issue #1 --expires 12w")
    assert granted.ok, granted.text
    assert (await bot.say("carol", "feature set new_nav true --staging")).ok

    await sync.run(bot.services)  # still active: nothing changes
    (grant,) = await bot.rows(Grant)
    assert grant.revoked_at is None

    gitlab.block_user("carol")
    await sync.run(bot.services)
    (grant,) = await bot.rows(Grant)
    assert grant.revoked_at is not None and grant.revoked_by == "GitLab user blocked"
    refused = await bot.say("carol", "feature set new_nav false --staging")
    assert not refused.ok
    [record] = await bot.rows(AuditRecord, AuditRecord.outcome == "grant_revoked")
    assert record.reason == "GitLab user blocked"
    announced = [
        m.payload["text"] for m in await bot.rows(OutboxMessage, OutboxMessage.kind == ANNOUNCE)
    ]
    assert "`feature_flags` of @carol revoked: GitLab user blocked (the roles registry's sync)" in (
        announced
    )
    await sync.run(bot.services)  # once
    assert len(await bot.rows(AuditRecord, AuditRecord.outcome == "grant_revoked")) == 1


async def test_a_sync_that_cannot_ask_about_a_grant_holder_keeps_the_old_mirror(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    from marvin.access import sync

    bot = make(**sections(gitlab, issues={"backend": "gitlab", "project": TRACKER}))
    await sync.run(bot.services)
    assert (await bot.say("carol", 'access request feature_flags "to roll out new_nav"')).ok
    assert (await bot.say("alice", "access grant feature_flags @carol --issue #1")).ok
    gitlab.fail_next("GET /users", 500)
    freshness = await sync.run(bot.services)
    assert freshness is not None and freshness.error
    (grant,) = await bot.rows(Grant)
    assert grant.revoked_at is None
