"""Every policy's allow and deny paths, through the real pipeline on a real database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import update

from marvin.commands.base import Change
from marvin.flags import Environment
from marvin.pipeline import FAILED_CLOSED, Pipeline
from marvin.policies import Decision, Request
from marvin.store.tables import Account, AuditRecord, LocalFlag
from marvin.wiring import registry
from tests.harness import START, Bot

BotFactory = Callable[..., Bot]


async def staged(bot: Bot, flag: str = "new_nav") -> None:
    """Turn a flag on in staging, as every production change needs first."""
    reply = await bot.say("alice", f"feature set {flag} true --staging")
    assert reply.ok, reply.text


async def at_one_percent(bot: Bot, flag: str = "new_nav") -> None:
    await staged(bot, flag)
    reply = await bot.say("bob", f"feature set {flag} 1 --actors")
    assert reply.ok, reply.text


# --- channel -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "label"), [({"channel": "random"}, "#random"), ({"dm": True}, "a direct message")]
)
async def test_changes_outside_the_production_channel_are_refused(
    bot: Bot, where: dict[str, object], label: str
) -> None:
    reply = await bot.say("bob", "feature set new_nav true --staging", **where)  # type: ignore[arg-type]
    assert reply.denied_by == "channel"
    assert "#production" in reply.text and label in reply.text
    assert await bot.rows(LocalFlag) == []


@pytest.mark.parametrize("text", ["feature list", "feature get new_nav", "whoami", "help"])
async def test_reads_work_anywhere_including_dms(bot: Bot, text: str) -> None:
    reply = await bot.say("carol", text, dm=True)
    assert reply.denied_by is None
    assert reply.kind in ("result", "not_found")


async def test_channel_is_matched_by_id_not_by_name(bot: Bot) -> None:
    inv = bot.invocation("bob", "feature set new_nav true --staging")
    impostor = inv.model_copy(update={"place": inv.place.model_copy(update={"id": "C0OTHER"})})
    reply = await bot.pipeline.handle(impostor)
    assert reply.denied_by == "channel"


# --- registration --------------------------------------------------------------------------


async def test_first_message_creates_an_account_linked_by_email(bot: Bot) -> None:
    reply = await bot.say("bob", "whoami", dm=True)
    assert reply.ok
    assert "Welcome! I've created your Marvin account, linked to GitLab user bob" in reply.text
    assert "Grants: feature_flags" in reply.text
    accounts = await bot.rows(Account)
    assert [(a.display_name, a.gitlab_username, a.directory_handle) for a in accounts] == [
        ("bob", "bob", "bob")
    ]
    audit = await bot.rows(AuditRecord, AuditRecord.outcome == "registered")
    assert len(audit) == 1 and audit[0].details["linked"] is True
    again = await bot.say("bob", "whoami", dm=True)
    assert "Welcome" not in again.text
    assert len(await bot.rows(Account)) == 1


async def test_a_stranger_gets_an_account_but_cannot_change_anything(bot: Bot) -> None:
    reply = await bot.say("zed", "whoami")
    assert reply.ok and "can't find you in the roles registry" in reply.text
    reply = await bot.say("zed", "feature set new_nav true --staging")
    assert reply.denied_by == "registration"
    assert "zed@example.com" in reply.text


async def test_a_blocked_account_is_refused_even_reads(bot: Bot) -> None:
    await bot.say("bob", "whoami")
    async with bot.services.store.transaction(write=True) as session:
        await session.execute(update(Account).values(state="blocked"))
    reply = await bot.say("bob", "feature list")
    assert reply.denied_by == "registration" and "blocked" in reply.text


# --- roles ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "text", "needle"),
    [
        ("carol", "feature set new_nav true --staging", "`feature_flags` grant"),
        ("dave", "feature set new_nav true --staging", "`feature_flags` grant"),
        ("erin", "feature set new_nav true --staging", "`feature_flags` grant"),
        ("bob", "feature delete new_nav --staging", "production engineers"),
        ("dave", "feature delete new_nav --staging", "production engineers"),
        ("erin", "feature delete new_nav --staging", "production engineers"),
        (
            "bob",
            'feature set new_nav true --staging --ignore-production-check "hotfix"',
            "--ignore-production-check",
        ),
    ],
)
async def test_roles_refuse(bot: Bot, who: str, text: str, needle: str) -> None:
    reply = await bot.say(who, text)
    assert reply.denied_by == "roles", reply.text
    assert needle in reply.text


async def test_a_production_engineer_can_delete(bot: Bot) -> None:
    await staged(bot)
    reply = await bot.say("alice", "feature delete new_nav --staging")
    assert reply.kind == "confirm" and reply.confirm is not None
    reply = await bot.say("alice", f"confirm {reply.confirm.token}")
    assert reply.ok, reply.text
    assert reply.announcement and "deleted `new_nav` in staging" in reply.announcement.text
    assert await bot.rows(LocalFlag) == []


async def test_deleting_a_missing_flag_says_so(bot: Bot) -> None:
    reply = await bot.say("alice", "feature delete ghost --staging")
    assert not reply.ok and reply.kind == "not_found" and "no flag `ghost`" in reply.text


async def test_a_grant_in_the_database_counts(bot: Bot) -> None:
    from marvin.store.tables import Grant

    await bot.say("carol", "whoami")
    async with bot.services.store.transaction(write=True) as session:
        session.add(Grant(account_id=1, name="feature_flags", created_at=START, issue_ref="#7"))
    reply = await bot.say("carol", "feature set new_nav true --staging")
    assert reply.ok, reply.text


# --- change lock ---------------------------------------------------------------------------


@pytest.mark.parametrize("severity", [1, 2])
async def test_a_serious_incident_locks_raising(bot: Bot, severity: int) -> None:
    await staged(bot)
    await bot.open_incident(severity)
    reply = await bot.say("bob", "feature set new_nav 1 --actors")
    assert reply.denied_by == "change_lock"
    assert f"(S{severity})" in reply.text and "--ignore-production-check" in reply.text


async def test_a_minor_incident_does_not_lock(bot: Bot) -> None:
    await staged(bot)
    await bot.open_incident(3)
    assert (await bot.say("bob", "feature set new_nav 1 --actors")).ok


async def test_lowering_stays_allowed_during_an_incident(bot: Bot) -> None:
    await at_one_percent(bot)
    await bot.open_incident(1)
    reply = await bot.say("bob", "feature set new_nav false")
    assert reply.ok, reply.text


async def test_a_production_engineer_overrides_and_it_is_announced_and_audited(bot: Bot) -> None:
    await staged(bot)
    await bot.open_incident(1)
    reply = await bot.say(
        "alice", 'feature set new_nav 1 --actors --ignore-production-check "the fix itself"'
    )
    assert reply.ok, reply.text
    assert reply.announcement is not None
    assert "Production check overridden" in reply.announcement.text
    assert "the fix itself" in reply.announcement.text
    allowed = await bot.rows(AuditRecord, AuditRecord.outcome == "allowed")
    assert any("the fix itself" in " ".join(a.details["notes"]) for a in allowed)


async def test_a_freeze_window_locks_its_environments(bot_factory: BotFactory) -> None:
    bot = bot_factory(
        change_lock={
            "freezes": [
                {
                    "name": "Year end",
                    "starts_at": START - timedelta(hours=1),
                    "ends_at": START + timedelta(days=2),
                    "environments": ["production"],
                }
            ]
        }
    )
    await staged(bot)  # staging is not frozen
    reply = await bot.say("bob", "feature set new_nav 1 --actors")
    assert reply.denied_by == "change_lock" and "Year end" in reply.text
    bot.clock.advance(days=2)
    assert (await bot.say("bob", "feature set new_nav 1 --actors")).ok


# --- consistency ---------------------------------------------------------------------------


async def test_production_cannot_run_ahead_of_staging(bot: Bot) -> None:
    reply = await bot.say("bob", "feature set new_nav 1 --actors")
    assert reply.denied_by == "consistency" and "off in staging" in reply.text


async def test_staging_cannot_be_turned_off_under_production(bot: Bot) -> None:
    await at_one_percent(bot)
    reply = await bot.say("bob", "feature set new_nav false --staging")
    assert reply.denied_by == "consistency" and "on in production" in reply.text
    reply = await bot.say("alice", "feature delete new_nav --staging")
    assert reply.denied_by == "consistency"  # refused before it is even offered to confirm


# --- ceiling -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("1", True),
        ("0.5", True),
        ("1%", True),
        ("0.9999", True),
        ("1.0001", False),
        ("2", False),
        ("100", False),
        ("true", False),
    ],
)
async def test_the_ceiling_for_a_new_flag(bot: Bot, value: str, allowed: bool) -> None:
    await staged(bot)
    suffix = "" if value == "true" else " --actors"
    reply = await bot.say("bob", f"feature set new_nav {value}{suffix}")
    assert reply.ok is allowed, reply.text
    if not allowed:
        assert reply.denied_by == "ceiling"


async def test_targeted_actors_are_not_a_share_of_traffic(bot: Bot) -> None:
    await staged(bot)
    reply = await bot.say("bob", "feature set new_nav true --group gitlab-org --user bob,carol")
    assert reply.ok, reply.text
    reply = await bot.say("bob", "feature set new_nav true")  # dropping the gates: everyone
    assert reply.denied_by == "ceiling"


async def test_the_soak_time_is_counted_from_first_exposure(bot: Bot) -> None:
    await at_one_percent(bot)
    bot.clock.advance(hours=23, minutes=59)
    reply = await bot.say("bob", "feature set new_nav 5 --actors")
    assert reply.denied_by == "ceiling" and "24.0h soak time" in reply.text
    bot.clock.advance(minutes=1)
    assert (await bot.say("bob", "feature set new_nav 5 --actors")).ok


async def test_turning_a_flag_off_restarts_the_soak(bot: Bot) -> None:
    await at_one_percent(bot)
    bot.clock.advance(hours=30)
    assert (await bot.say("bob", "feature set new_nav false")).ok
    assert (await bot.say("bob", "feature set new_nav 1 --actors")).ok
    reply = await bot.say("bob", "feature set new_nav 50 --actors")
    assert reply.denied_by == "ceiling"


async def test_lowering_is_always_allowed(bot: Bot) -> None:
    await at_one_percent(bot)
    assert (await bot.say("bob", "feature set new_nav 0.1 --actors")).ok


async def test_an_approved_deviation_issue_lifts_the_ceiling(bot: Bot) -> None:
    await staged(bot)
    ref = await bot.deviation("bob", 'new_nav 50 "roll new_nav out fast"')
    reply = await bot.say("bob", f"feature set new_nav 50 --actors --issue {ref}")
    assert reply.kind == "confirm" and reply.confirm is not None
    reply = await bot.say("bob", f"confirm {reply.confirm.token}")
    assert reply.ok, reply.text
    assert reply.announcement and f"approved deviation {ref}" in reply.announcement.text


@pytest.mark.parametrize(
    ("approve", "close", "needle"), [(False, False, "isn't approved"), (True, True, "closed")]
)
async def test_an_unapproved_or_closed_issue_does_not(
    bot: Bot, approve: bool, close: bool, needle: str
) -> None:
    await staged(bot)
    ref = await bot.deviation("bob", 'new_nav 50 "roll out" now', approve=approve)
    if close:
        await bot.close_issue(ref)
    reply = await bot.say("bob", f"feature set new_nav 50 --actors --issue {ref}")
    assert reply.denied_by == "ceiling" and needle in reply.text


@pytest.mark.parametrize(("ref", "needle"), [("#999", "can't find"), ("abc", "not an issue")])
async def test_a_missing_or_malformed_issue_does_not(bot: Bot, ref: str, needle: str) -> None:
    await staged(bot)
    reply = await bot.say("bob", f"feature set new_nav 50 --actors --issue {ref}")
    assert reply.denied_by == "ceiling" and needle in reply.text


async def test_random_is_refused_unless_configured(bot_factory: BotFactory) -> None:
    bot = bot_factory()
    await staged(bot)
    reply = await bot.say("bob", "feature set new_nav 1 --random")
    assert reply.denied_by == "ceiling" and "--actors" in reply.text


async def test_random_when_configured(bot_factory: BotFactory) -> None:
    bot = bot_factory(flags={"allow_random": True})
    await staged(bot)
    reply = await bot.say("bob", "feature set new_nav 1 --random")
    assert reply.ok and "1% of the time" in reply.text


# --- availability --------------------------------------------------------------------------


async def test_someone_away_cannot_change_flags(bot: Bot) -> None:
    assert (await bot.say("bob", "status away dentist", dm=True)).ok
    reply = await bot.say("bob", "feature set new_nav true --staging")
    assert reply.denied_by == "availability" and "status back" in reply.text
    assert (await bot.say("bob", "status back", dm=True)).ok
    assert (await bot.say("bob", "feature set new_nav true --staging")).ok


async def test_nobody_on_call_refuses_changes(bot_factory: BotFactory) -> None:
    bot = bot_factory(oncall={"rotation": {"people": []}})
    reply = await bot.say("bob", "feature set new_nav true --staging")
    assert reply.denied_by == "availability" and "nobody is on call" in reply.text


async def test_nobody_on_call_can_be_allowed_by_config(bot_factory: BotFactory) -> None:
    bot = bot_factory(oncall={"rotation": {"people": []}}, availability={"require_oncall": False})
    reply = await bot.say("bob", "feature set new_nav true --staging")
    assert reply.ok and reply.announcement
    assert "No production engineer is on call" in reply.announcement.text


async def test_an_on_call_engineer_marked_away_counts_as_nobody(bot: Bot) -> None:
    await bot.say("alice", "status away on a plane", dm=True)
    reply = await bot.say("bob", "feature set new_nav true --staging")
    assert reply.denied_by == "availability" and "@alice is marked away" in reply.text


async def test_the_rotation_and_overrides_name_who_is_on_call(bot_factory: BotFactory) -> None:
    bot = bot_factory(
        oncall={
            "rotation": {"starts_at": START, "shift_hours": 24, "people": ["alice", "dave"]},
            "overrides": [
                {
                    "handle": "erin",
                    "starts_at": START + timedelta(days=2),
                    "ends_at": START + timedelta(days=3),
                }
            ],
        }
    )
    names = []
    for _ in range(3):
        reply = await bot.say("alice", "feature set f true --staging")
        assert reply.announcement is not None
        names.append(reply.announcement.text.split("On call: ")[1].rstrip("."))
        await bot.say("alice", "feature set f false --staging")
        bot.clock.advance(days=1)
    assert names == ["@alice", "@dave", "@erin"]


async def test_going_away_reminds_you_of_what_you_watch(bot: Bot) -> None:
    await staged(bot)
    reply = await bot.say("alice", "status away", dm=True)
    assert "feature new_nav (staging) until 2026-03-02 14:00 UTC" in reply.text


# --- the pipeline around the policies ------------------------------------------------------


async def test_asking_for_the_state_a_flag_has_is_already_so(bot: Bot) -> None:
    await at_one_percent(bot)
    reply = await bot.say("bob", "feature set new_nav 1% --actors")
    assert reply.ok and "already" in reply.text and reply.announcement is None


async def test_a_policy_that_fails_denies(bot: Bot) -> None:
    class Broken:
        name = "broken"
        mandatory = True
        judges: tuple[type[Change], ...] = (Change,)

        def check(self, req: Request) -> Decision:
            raise RuntimeError("directory timed out")

    pipeline = Pipeline(bot.services, registry(), policies=(Broken(),))
    reply = await pipeline.handle(bot.invocation("alice", "feature set x true --staging"))
    assert reply.denied_by == "broken" and reply.text.endswith(FAILED_CLOSED)
    assert await bot.rows(LocalFlag) == []


async def test_an_unexpected_error_gives_a_request_id_not_a_traceback(bot: Bot) -> None:
    class Exploding:
        name = "exploding"
        mandatory = True
        judges: tuple[type[Change], ...] = (Change,)

        def check(self, req: Request) -> Decision:
            return Decision.allow()

    backend = bot.services.flags(Environment.staging)
    backend.put_in = None  # type: ignore[method-assign,assignment,attr-defined]
    pipeline = Pipeline(bot.services, registry(), policies=(Exploding(),))
    inv = bot.invocation("alice", "feature set x true --staging")
    reply = await pipeline.handle(inv)
    assert reply.kind == "error" and inv.request_id in reply.text
    assert "Traceback" not in reply.text
    errors = await bot.rows(AuditRecord, AuditRecord.outcome == "error")
    assert [e.request_id for e in errors] == [inv.request_id]


async def test_someone_added_to_the_registry_later_is_linked_on_their_next_message(
    bot_factory: BotFactory,
) -> None:
    before = bot_factory()
    assert "can't find you" in (await before.say("zed", "whoami")).text
    people = [p.model_dump() for p in before.settings.directory.people]
    people.append({"handle": "zed", "email": "zed@example.com", "grants": ["feature_flags"]})
    after = bot_factory(directory={"people": people})
    after.clock.advance(hours=1)
    reply = await after.say("zed", "whoami")
    assert "GitLab user: zed." in reply.text and "Grants: feature_flags." in reply.text
    [account] = await after.rows(Account)
    assert account.directory_handle == "zed"
    assert account.last_seen_at.replace(tzinfo=None) == after.clock.now().replace(tzinfo=None)
