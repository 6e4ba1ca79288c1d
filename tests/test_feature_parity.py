"""What production engineers bring from GitLab's own ChatOps, and the kill switch: lowering
never waits."""

from __future__ import annotations

from marvin.store.tables import LocalFlag
from tests.harness import Bot
from tests.test_policies import at_one_percent, staged


async def test_feature_get_shows_every_environment_when_none_is_named(bot: Bot) -> None:
    await at_one_percent(bot)
    await bot.say("carol", "whoami")
    reply = await bot.say("carol", "feature get new_nav")
    assert reply.text.splitlines() == [
        "`new_nav`:",
        "• staging: on for everyone",
        "• production: 1% of actors",
    ]
    assert reply.data == {
        "flag": "new_nav",
        "environments": {
            "staging": {
                "enabled": True,
                "percentage_of_actors": None,
                "percentage_of_time": None,
                "actors": [],
            },
            "production": {
                "enabled": False,
                "percentage_of_actors": "1",
                "percentage_of_time": None,
                "actors": [],
            },
        },
    }
    one = await bot.say("carol", "feature get new_nav --staging")
    assert one.text == "`new_nav` in staging: on for everyone"
    assert (await bot.say("carol", "feature get nothing_here")).kind == "not_found"


async def test_feature_list_match_and_enabled(bot: Bot) -> None:
    for name in ("ci_fast_builds", "ci_slow_builds", "new_nav"):
        assert (await bot.say("alice", f"feature set {name} true --staging")).ok
    assert (await bot.say("alice", "feature set ci_slow_builds false --staging")).ok
    await bot.say("carol", "whoami")
    reply = await bot.say("carol", "feature list --staging --match builds --enabled")
    assert reply.text.splitlines() == [
        "1 flag(s) containing `builds` that are on in staging:",
        "• `ci_fast_builds`: on for everyone",
    ]
    assert reply.data is not None and list(reply.data["flags"]) == ["ci_fast_builds"]


async def test_namespace_and_feature_group_gates(bot: Bot) -> None:
    await staged(bot)
    reply = await bot.say(
        "bob", "feature set new_nav true --feature-group gitlab_team_members --namespace gitlab-org"
    )
    assert reply.ok, reply.text
    assert (
        "feature_group:gitlab_team_members" in reply.text and "namespace:gitlab-org" in reply.text
    )
    # A namespace outside the dogfooders reaches a whole group: the ceiling's to judge.
    reply = await bot.say("bob", "feature set new_nav true --namespace acme")
    assert reply.denied_by == "ceiling"


async def test_handles_are_case_insensitive(bot: Bot) -> None:
    await staged(bot)
    assert (await bot.say("bob", "feature set new_nav true --user Bob")).ok
    reply = await bot.say("bob", "feature set new_nav true --user bob")
    assert "already" in reply.text


async def test_the_consistency_check_can_be_ignored_by_a_production_engineer(bot: Bot) -> None:
    text = "feature set new_nav 1 --actors --ignore-feature-flag-consistency-check"
    assert (await bot.say("bob", text)).denied_by == "roles"
    reply = await bot.say("alice", text)
    assert reply.ok and reply.announcement is not None
    assert "Consistency with staging ignored" in reply.announcement.text


async def test_lowering_never_waits_for_availability_oncall_the_lock_or_the_ceiling(
    bot_factory: type,
) -> None:
    # The worst moment: nobody on call, bob away, an incident, a flag far over the ceiling.
    worst = bot_factory(oncall={"rotation": {"people": []}})
    await worst.say("bob", "status away", dm=True)
    await worst.open_incident(1)
    now = worst.clock.now()
    async with worst.services.store.transaction(write=True) as session:
        for env in ("staging", "production"):
            session.add(
                LocalFlag(name="kill", environment=env, enabled=True, actors=[], updated_at=now)
            )
    assert (await worst.say("bob", "feature set kill true --user carol")).denied_by
    reply = await worst.say("bob", "feature set kill false")
    assert reply.ok, reply.text
    assert reply.announcement is not None
    announced = reply.announcement.text
    assert "@bob lowered it while marked away" in announced
    assert "No production engineer is on call" in announced


async def test_a_staging_change_elsewhere_is_not_said_to_change_production(bot: Bot) -> None:
    reply = await bot.say("alice", "feature set new_nav true --staging", channel="random")
    assert reply.denied_by == "channel"
    assert "changes production" not in reply.text
    assert "(to staging as to production) run only in #production" in reply.text


async def test_a_watch_past_midnight_says_tomorrow(bot: Bot) -> None:
    bot.clock.set(bot.clock.now().replace(hour=22, minute=30))
    reply = await bot.say("alice", "feature set new_nav true --staging")
    assert reply.ok
    assert "You're watching it until tomorrow 02:30 UTC." in reply.text


def test_moments_are_spoken_next_to_now() -> None:
    from datetime import UTC, datetime

    from marvin.clock import spoken

    now = datetime(2026, 11, 30, 22, 30, tzinfo=UTC)
    assert spoken(now.replace(hour=23), now) == "23:30 UTC"
    assert spoken(datetime(2026, 12, 1, 0, 11, tzinfo=UTC), now) == "tomorrow 00:11 UTC"
    assert spoken(datetime(2026, 11, 29, 8, 0, tzinfo=UTC), now) == "yesterday 08:00 UTC"
    assert spoken(datetime(2026, 12, 4, 9, 5, tzinfo=UTC), now) == "Fri 4 Dec 09:05 UTC"


async def test_both_environments_in_one_command_staging_first(bot: Bot) -> None:
    from marvin.store.tables import AuditRecord, OutboxMessage

    reply = await bot.say("alice", "feature set new_nav 1 --actors --staging --production")
    assert reply.ok, reply.text
    staging, production = reply.text.splitlines()[-2:]  # after the first contact's welcome
    assert staging.startswith("`new_nav` in staging is now 1% of actors (was new).")
    assert production.startswith("`new_nav` in production is now 1% of actors (was new).")
    rows = await bot.rows(LocalFlag)
    assert sorted((r.environment, r.percentage_of_actors) for r in rows) == [
        ("production", 1),
        ("staging", 1),
    ]
    # Two changes, each audited and announced on its own.
    allowed = await bot.rows(AuditRecord, AuditRecord.outcome == "allowed")
    assert [r.request_id.rsplit(".", 1)[1] for r in allowed] == ["staging", "production"]
    assert len(await bot.rows(OutboxMessage)) == 2
    both = await bot.say("alice", "feature get new_nav —staging —production")
    assert "• staging: 1% of actors" in both.text and "• production: 1% of actors" in both.text


async def test_both_environments_turned_off_production_first(bot: Bot) -> None:
    assert (await bot.say("alice", "feature set new_nav 1 --actors --staging --production")).ok
    reply = await bot.say("alice", "feature set new_nav false --staging --production")
    assert reply.ok, reply.text
    first, second = reply.text.splitlines()[-2:]
    assert first.startswith("`new_nav` in production is now off")
    assert second.startswith("`new_nav` in staging is now off")


async def test_both_environments_stop_at_the_first_refusal(bot: Bot) -> None:
    reply = await bot.say("carol", "feature set new_nav true --staging --production")
    assert not reply.ok
    assert reply.text.endswith("Nothing was done in production.")
    assert await bot.rows(LocalFlag) == []


async def test_both_environments_wait_for_a_confirmation(bot: Bot) -> None:
    assert (await bot.say("alice", "feature set new_nav 1 --actors --staging --production")).ok
    reply = await bot.say("alice", "feature delete new_nav --staging --production")
    assert reply.confirm is not None
    assert "Nothing was done in staging yet: once this is done, " in reply.text
    assert "`feature delete new_nav --staging`" in reply.text
