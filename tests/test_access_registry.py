"""The roles registry: the roles file on the shipped demo data, and GitLab's groups through
python-gitlab against the loopback fake, mirrored by the sync job; a stale mirror refuses
production changes, and a GitLab outage during a sync keeps the old mirror."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from marvin.access import sync
from marvin.adapters.directory import FileDirectory
from marvin.adapters.gitlab import GitLabClient
from marvin.adapters.gitlab_groups import GitLabGroups
from marvin.store.tables import (
    Account,
    AuditRecord,
    DirectoryMember,
    DirectorySync,
    Grant,
    OutboxMessage,
)
from tests.access_world import GROUPS, MANY, TOKEN, gitlab, gitlab_bot, make, sections
from tests.fakes.gitlab import FakeGitLab
from tests.harness import Bot, make_settings

__all__ = ["gitlab", "gitlab_bot", "make"]  # fixtures


# --- the roles file --------------------------------------------------------------------------


async def test_the_demo_roles_file_says_who_holds_what(sqlite_url: str) -> None:
    directory = FileDirectory(make_settings(sqlite_url).directory)
    alice = await directory.by_handle("alice")
    assert alice is not None
    assert alice.roles == ("production", "ci-runner-access")
    assert alice.environments == ("production", "staging", "runners")
    erin = await directory.by_email("ERIN@example.com")
    assert erin is not None and erin.environments == ("production", "staging")
    bob = await directory.by_gitlab_username("bob")
    assert bob is not None and bob.environments == () and bob.own_grants == ("feature_flags",)
    assert [p.handle for p in await directory.role_members("support") or []] == ["erin"]
    assert await directory.role_members("nope") is None
    assert (await directory.freshness()).live


async def test_who_has_production_access_from_the_file(bot: Bot) -> None:
    reply = await bot.say("carol", "access who --env production", dm=True)
    assert reply.ok
    assert "@alice (Alice Anders), through the roles file" in reply.text
    assert "@dave" in reply.text and "@erin" in reply.text
    assert "@bob" not in reply.text and "@carol" not in reply.text
    assert reply.data == {
        "roles": {"production": ["alice"], "release-manager": ["dave"], "support": ["erin"]}
    }


async def test_staging_is_answered_as_production(bot: Bot) -> None:
    production = await bot.say("carol", "access who --env production")
    staging = await bot.say("carol", "access who --env staging")
    assert staging.data == production.data
    assert "staging holds production data" in staging.text


async def test_runners_are_their_own(bot: Bot) -> None:
    reply = await bot.say("carol", "access who --env runners", channel="random")
    assert reply.data == {"roles": {"production": ["alice"], "ci-runner-access": ["alice"]}}


async def test_who_of_an_unknown_role(bot: Bot) -> None:
    reply = await bot.say("carol", "access who sre")
    assert not reply.ok
    assert "There's no role `sre`" in reply.text and "production" in reply.text


async def test_check_says_why(bot: Bot) -> None:
    reply = await bot.say("bob", "access check @erin", dm=True)
    assert reply.ok
    assert "support, through the roles file" in reply.text
    assert "production, from the support role" in reply.text
    assert "staging, from the support role" in reply.text
    nobody = await bot.say("bob", "access check @nobody")
    assert "@nobody is not in the roles registry" in nobody.text


async def test_mine(bot: Bot) -> None:
    reply = await bot.say("bob", "access mine", dm=True)
    assert "developer, through the roles file" in reply.text
    assert "`feature_flags`, given in the roles registry" in reply.text
    assert "no production, staging or runner access" in reply.text


async def test_refresh_with_the_file_has_nothing_to_do(bot: Bot) -> None:
    reply = await bot.say("alice", "access refresh")
    assert reply.ok and "no mirror to refresh" in reply.text


# --- GitLab's groups ----------------------------------------------------------------------


async def test_groups_through_python_gitlab_follow_every_page(gitlab: FakeGitLab) -> None:
    groups = GitLabGroups(GitLabClient(gitlab.url, TOKEN, 2))
    members = await groups.members("gl-infra/support")
    names = {m.username for m in members}
    assert len(names) == MANY + 2  # every page, erin, and zed inherited from gl-infra
    assert "zed" in names
    pages = gitlab.calls("GET /groups/*/members/all")
    assert len(pages) == 2
    assert await groups.direct_usernames("gl-infra/support") == names - {"zed"}


async def test_blocked_members_hold_nothing(gitlab: FakeGitLab) -> None:
    groups = GitLabGroups(GitLabClient(gitlab.url, TOKEN, 2))
    names = {m.username for m in await groups.members("gl-infra/production-engineers")}
    assert names == {"alice", "zed"}


async def test_an_unknown_group_is_said(gitlab: FakeGitLab) -> None:
    from marvin.adapters.errors import NotFound

    groups = GitLabGroups(GitLabClient(gitlab.url, TOKEN, 2))
    with pytest.raises(NotFound, match="has no group gl-infra/nope"):
        await groups.members("gl-infra/nope")


async def test_the_mirror_answers_who_and_how(gitlab_bot: Bot) -> None:
    bot = gitlab_bot
    rows = await bot.rows(DirectoryMember, DirectoryMember.role == "production")
    assert {(r.username, r.inherited) for r in rows} == {("alice", False), ("zed", True)}
    reply = await bot.say("carol", "access who production", dm=True)
    assert "@alice (Alice), through GitLab group gl-infra/production-engineers" in reply.text
    assert "@zed (Zed), through GitLab group gl-infra/production-engineers (inherited)" in (
        reply.text
    )
    assert "mallory" not in reply.text
    assert "As of the GitLab mirror, synced less than a minute ago." in reply.text
    assert f"GitLab group {GROUPS['production']}" in reply.text


async def test_commands_read_the_mirror_not_gitlab(gitlab_bot: Bot, gitlab: FakeGitLab) -> None:
    await gitlab_bot.say("alice", "whoami")  # linked on first contact (one look-up)
    gitlab.reset_calls()
    assert (await gitlab_bot.say("alice", "access check @erin")).ok
    assert (await gitlab_bot.say("alice", "feature set new_nav true --staging")).ok
    assert gitlab.calls() == []


async def test_first_contact_links_by_email_in_the_mirror(
    gitlab_bot: Bot, gitlab: FakeGitLab
) -> None:
    """GitLab's member entities carry no primary e-mail: a member's first contact asks
    `/users?search=` whose it is, once, and their roles come from the mirror."""
    gitlab.reset_calls()
    reply = await gitlab_bot.say("alice", "access mine")
    assert "linked to GitLab user alice" in reply.text
    assert "production, through GitLab group gl-infra/production-engineers" in reply.text
    assert [c.path for c in gitlab.calls()] == ["/users"]
    assert (await gitlab_bot.say("alice", "access mine")).ok
    assert len(gitlab.calls()) == 1


async def test_a_member_with_a_public_email_links_without_asking_gitlab(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    gitlab.user("erin").public_email = "erin@example.com"
    bot = make(**sections(gitlab))
    await sync.run(bot.services)
    gitlab.reset_calls()
    reply = await bot.say("erin", "access mine")
    assert "support, through GitLab group gl-infra/support" in reply.text
    assert gitlab.calls() == []


async def test_a_stranger_costs_one_gitlab_lookup_per_sync(
    gitlab_bot: Bot, gitlab: FakeGitLab
) -> None:
    """Every message of an account linked to nobody looks for its e-mail again; GitLab's
    "nobody" holds until the groups are read again."""
    bot = gitlab_bot
    gitlab.reset_calls()
    for _ in range(3):
        reply = await bot.say("stranger", "whoami")
        assert "You're not in the roles registry yet" in reply.text
    assert len(gitlab.calls("GET /users")) == 1
    bot.clock.advance(minutes=15)
    await sync.run(bot.services)
    gitlab.add_user("stranger")  # joined GitLab meanwhile
    reply = await bot.say("stranger", "whoami")
    assert "GitLab user: stranger." in reply.text
    assert len(gitlab.calls("GET /users")) == 2


async def test_who_reads_the_mirror_once(gitlab_bot: Bot) -> None:
    from sqlalchemy import event

    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "directory_members" in statement:
            statements.append(statement)

    engine = gitlab_bot.services.store.engine.sync_engine
    await gitlab_bot.say("carol", "whoami")
    event.listen(engine, "before_cursor_execute", count)
    try:
        reply = await gitlab_bot.say("carol", "access who")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert reply.ok and "@zed (Zed)" in reply.text
    # The caller's own entry, then everyone once for every role.
    assert len(statements) == 2, statements


async def test_a_stale_mirror_refuses_production_changes(gitlab_bot: Bot) -> None:
    bot = gitlab_bot
    assert (await bot.say("alice", "feature set new_nav true --staging")).ok
    bot.clock.advance(minutes=61)
    reply = await bot.say("alice", "feature set new_nav false --staging")
    assert not reply.ok and reply.denied_by == "registry"
    assert "was last synced 61 minutes ago" in reply.text
    assert "more than the 60 minutes allowed" in reply.text
    # Reads still answer, and say how old they are.
    who = await bot.say("carol", "access who production")
    assert who.ok and "synced 61 minutes ago" in who.text


async def test_a_mirror_that_never_synced_refuses(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    bot = make(**sections(gitlab))
    reply = await bot.say("carol", "access who production")
    assert "never synced" in reply.text and "@alice" not in reply.text
    # carol's grant was given in Marvin (before the mirror's data went): the roles let her
    # change a flag, the registry rule does not while it can't say who may.
    await bot.say("carol", "whoami")
    (account,) = await bot.rows(Account, Account.directory_handle == "carol")
    async with bot.services.store.transaction(write=True) as session:
        session.add(
            Grant(
                account_id=account.id,
                name="feature_flags",
                granted_by="alice",
                created_at=bot.clock.now(),
            )
        )
    change = await bot.say("carol", "feature set new_nav true --staging")
    assert not change.ok and change.denied_by == "registry", change.text
    assert "has never synced" in change.text


async def test_gitlab_down_during_a_sync_keeps_the_old_mirror(
    gitlab_bot: Bot, gitlab: FakeGitLab
) -> None:
    bot = gitlab_bot
    for who in ("alice", "carol"):
        await bot.say(who, "whoami")  # known before GitLab goes down
    bot.clock.advance(minutes=30)
    await gitlab.down()
    freshness = await sync.run(bot.services)
    assert freshness is not None and freshness.error and "could not be reached" in freshness.error
    assert len(await bot.rows(DirectoryMember, DirectoryMember.role == "production")) == 2
    reply = await bot.say("carol", "access who production")
    assert "@alice" in reply.text
    assert "synced 30 minutes ago. The last sync failed: GitLab could not be reached" in (
        reply.text
    )
    # Within the allowed age, the old mirror still decides.
    assert (await bot.say("alice", "feature set new_nav true --staging")).ok
    bot.clock.advance(minutes=31)
    assert (await bot.say("alice", "feature set new_nav false --staging")).denied_by == "registry"
    await gitlab.up()
    assert (await sync.run(bot.services)) is not None
    assert (await bot.say("alice", "feature set new_nav false --staging")).ok


async def test_refresh_syncs_now_and_is_announced(gitlab_bot: Bot, gitlab: FakeGitLab) -> None:
    bot = gitlab_bot
    gitlab.add_user("newbie")
    gitlab.add_member(gitlab.group("gl-infra/production-engineers"), "newbie", "developer")
    bot.clock.advance(minutes=5)
    reply = await bot.say("alice", "access refresh")
    assert reply.ok and "Synced the roles registry from GitLab" in reply.text
    assert (await bot.say("newbie", "access mine")).ok
    assert (
        "production, through GitLab group" in (await bot.say("carol", "access check @newbie")).text
    )
    sync_row = (await bot.rows(DirectorySync))[0]
    assert sync_row.error is None
    announced = await bot.rows(OutboxMessage, OutboxMessage.kind == "announce")
    assert any("synced the roles registry" in m.payload["text"] for m in announced)
    audited = await bot.rows(AuditRecord, AuditRecord.command == "access refresh")
    assert [a.outcome for a in audited] == ["allowed"]


async def test_refresh_takes_the_grants_of_people_gitlab_blocked(
    gitlab_bot: Bot, gitlab: FakeGitLab
) -> None:
    """`access refresh` is the sync job run now: being blocked in GitLab ends the grants
    given in Marvin there too, audited and announced."""
    bot = gitlab_bot
    assert "GitLab user: carol." in (await bot.say("carol", "whoami")).text  # by her e-mail
    ref = await bot.add_issue("Access request", ["access request"])
    assert (await bot.say("alice", f"access grant feature_flags @carol --issue {ref}")).ok
    assert (await bot.say("carol", "feature set new_nav true --staging")).ok
    gitlab.block_user("carol")
    reply = await bot.say("alice", "access refresh")
    assert reply.ok, reply.text
    assert "GitLab no longer lists @carol as active, so I revoked the grants" in reply.text
    (grant,) = await bot.rows(Grant)
    assert grant.revoked_at is not None and grant.revoked_by == "GitLab user blocked"
    assert (await bot.say("carol", "feature set new_nav false --staging")).denied_by == "roles"
    [record] = await bot.rows(AuditRecord, AuditRecord.outcome == "grant_revoked")
    assert record.reason == "GitLab user blocked"
    announced = [m.payload["text"] for m in await bot.rows(OutboxMessage)]
    assert "`feature_flags` of @carol revoked: GitLab user blocked (the roles registry's sync)" in (
        announced
    )


async def test_refresh_while_gitlab_is_down(gitlab_bot: Bot, gitlab: FakeGitLab) -> None:
    bot = gitlab_bot
    await bot.say("alice", "whoami")  # known before GitLab goes down
    bot.clock.advance(minutes=10)
    await gitlab.down("503")
    reply = await bot.say("alice", "access refresh")
    assert not reply.ok
    assert "so I kept the mirror as it was" in reply.text
    assert "synced 10 minutes ago" in reply.text


async def test_refresh_is_for_the_production_role(gitlab_bot: Bot) -> None:
    reply = await gitlab_bot.say("erin", "access refresh")
    assert reply.denied_by == "roles"
    assert "production engineers (the `production` role) only" in reply.text


def test_config_needs_groups_and_a_gitlab(sqlite_url: str) -> None:
    from marvin.config import check_consistency

    settings = make_settings(sqlite_url, directory={"backend": "gitlab"})
    problems = check_consistency(settings)
    assert any(p.startswith("gitlab.url:") for p in problems)
    assert any(p.startswith("directory.groups:") for p in problems)
    bad = make_settings(
        sqlite_url,
        directory={"backend": "gitlab", "groups": {"sre": "gl-infra/sre"}},
        gitlab={"url": "https://gitlab.example.com"},
    )
    assert "directory.groups.sre: no such role in directory.roles" in check_consistency(bad)


async def test_first_contact_while_gitlab_is_down_links_on_the_next(
    gitlab_bot: Bot, gitlab: FakeGitLab
) -> None:
    await gitlab.down()
    first = await gitlab_bot.say("carol", "whoami")
    assert first.ok and "can't find you in the roles registry" in first.text
    await gitlab.up()
    again = await gitlab_bot.say("carol", "whoami")
    assert "GitLab user: carol." in again.text


async def test_the_shell_syncs_a_stale_mirror_before_its_first_command(
    make: Callable[..., Bot], gitlab: FakeGitLab
) -> None:
    import io

    from marvin.shell import Shell

    bot = make(**sections(gitlab))
    shell = Shell(bot.services, user="alice", out=io.StringIO())
    reply = await shell.run_line("access mine")
    assert "production, through GitLab group gl-infra/production-engineers" in reply.text


async def test_who_lists_grants_besides_roles(bot: Bot) -> None:
    await bot.say("carol", "whoami")
    ref = await bot.add_issue("Access request", ["access request"])
    assert (await bot.say("alice", f"access grant feature_flags @carol --issue {ref}")).ok
    reply = await bot.say("dave", "access who")
    assert "*Grants given in the roles registry*\n  • @bob: feature_flags" in reply.text
    assert "*Grants given through Marvin*\n  • @carol: `feature_flags` granted by @alice" in (
        reply.text
    )


# --- the registry rule for commands allowed on a role -----------------------------------------


async def test_the_registry_rule_judges_commands_allowed_on_a_role(gitlab_bot: Bot) -> None:
    from marvin.commands.access_grants import RevokePlan
    from marvin.commands.access_queries import RefreshPlan
    from marvin.facts import Known
    from marvin.policies.registry import judge_needs

    bot = gitlab_bot
    specs = {s.name: s for s in bot.pipeline.registry.specs}
    fresh = Known(await bot.services.directory.freshness())
    revoke = RevokePlan("feature_flags", "carol", (1,))
    later = bot.clock.now() + timedelta(minutes=61)
    settings = bot.settings
    assert judge_needs(specs["access revoke"], revoke, fresh, bot.clock.now(), settings).allowed
    stale = judge_needs(specs["access revoke"], revoke, fresh, later, settings)
    assert not stale.allowed
    assert "more than the 60 minutes allowed, so I can't be sure who may use `access revoke`" in (
        stale.reason
    )
    # A sync is what a stale mirror calls for; a command allowed to anyone rests on no role.
    refresh = RefreshPlan(sync.Snapshot(()))
    assert judge_needs(specs["access refresh"], refresh, fresh, later, settings).allowed
    assert judge_needs(specs["access request"], revoke, fresh, later, settings).allowed


async def test_a_stale_mirror_refuses_what_the_production_role_is_needed_for(
    gitlab_bot: Bot,
) -> None:
    bot = gitlab_bot
    for who in ("alice", "carol", "stranger"):
        await bot.say(who, "whoami")
    assert (await bot.say("stranger", "account link carol")).ok
    ref = await bot.add_issue("Access request", ["access request"])
    assert (await bot.say("alice", f"access grant feature_flags @carol --issue {ref}")).ok
    bot.clock.advance(minutes=61)
    changes = ("account confirm 1", "access reviewed @erin", "access revoke feature_flags @carol")
    for text in changes:
        reply = await bot.say("alice", text)
        assert reply.denied_by == "registry", (text, reply.text)
    assert (await bot.say("alice", "access refresh")).ok
