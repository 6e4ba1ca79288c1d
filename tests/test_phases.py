"""The pipeline in phases: nothing outside is waited for under a write transaction, every
production change is judged by every mandatory policy, and people are people, not chat ids.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.commands.base import Change, Context, Handler, Outcome, Plan, ProductionChange
from marvin.commands.catalog import RegistryError, build_registry, check
from marvin.pipeline import Pipeline
from marvin.policies import POLICIES
from marvin.shell import Shell
from marvin.spec import CommandModel, CommandSpec, Registry
from marvin.store.tables import AuditRecord, FlagChange, LocalFlag, OutboxMessage
from marvin.supervisor import Job, Leases, Supervisor
from marvin.wiring import build_services
from tests import tripwire
from tests.harness import Bot
from tests.slack_harness import (
    PRODUCTION,
    RigFactory,
    SlackRig,
    rig_factory_fixture,  # noqa: F401
    rig_fixture,  # noqa: F401
    wait_for_call,
)

# --- the tripwire ---------------------------------------------------------------------------


async def test_the_tripwire_catches_a_call_made_under_a_write_transaction(rig: SlackRig) -> None:
    async with rig.store.transaction(write=True):
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{rig.api.base_url}auth.test") as response:
                await response.read()
    async with aiohttp.ClientSession() as http:  # the same call outside: fine
        async with http.post(f"{rig.api.base_url}auth.test") as response:
            await response.read()
    found = tripwire.take()
    assert len(found) == 1 and "auth.test" in found[0]


# --- a slow Slack holds up only the command that waits for it --------------------------------


async def test_a_slow_presence_holds_up_only_the_command_that_asks_it(
    rig_factory: RigFactory,
) -> None:
    rig = await rig_factory(slack={"presence_cache_seconds": 0, "timeout_seconds": 5})
    for who in ("alice", "bob", "carol"):
        await rig.run(who, "whoami")  # accounts exist; who they are is cached
    rig.api.delay("users.getPresence", 2.5)
    slow = await rig.command("bob", "feature set new_nav true --staging")
    await wait_for_call(rig.api, "users.getPresence", lambda c: c.params["user"] == "UBOB")
    # While Slack keeps bob's change waiting, others are acknowledged and answered, writes
    # included: no transaction of bob's holds the database meanwhile.
    others = [
        await rig.command("carol", "status away lunch", channel="dm"),
        await rig.command("alice", "feature list"),
        await rig.command("carol", "status back", channel="dm"),
    ]
    texts = [(await rig.reply(ack))["text"] for ack in others]
    assert "marked away" in texts[0] and "No flags" in texts[1] and "marked available" in texts[2]
    assert rig.replies(slow) == []  # bob's presence is still being asked
    reply = await rig.reply(slow, timeout=10)
    assert "now on for everyone" in reply["text"]


async def test_a_slow_users_info_holds_up_only_the_newcomer(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    await rig.run("alice", "whoami")
    rig.api.delay("users.info", 2.5)
    newcomer = await rig.command("dave", "whoami")
    await wait_for_call(rig.api, "users.info", lambda c: c.params["user"] == "UDAVE")
    known = await rig.command("alice", "feature list")
    assert "No flags" in (await rig.reply(known))["text"]
    assert rig.replies(newcomer) == []
    assert "linked to GitLab user dave" in (await rig.reply(newcomer, timeout=10))["text"]


async def test_slack_not_answering_is_not_reported_as_not_in_the_registry(
    rig_factory: RigFactory,
) -> None:
    rig = await rig_factory(slack={"timeout_seconds": 0.5})
    rig.api.delay("users.info", 2)
    reply = await rig.run("dave", "whoami")
    assert "I couldn't ask Slack who you are" in reply["text"]
    assert "roles registry" not in reply["text"]


async def test_presence_that_slack_cannot_tell_fails_closed(rig_factory: RigFactory) -> None:
    rig = await rig_factory(slack={"timeout_seconds": 0.5, "presence_cache_seconds": 0})
    await rig.run("bob", "whoami")
    rig.api.delay("users.getPresence", 2)
    reply = await rig.run("bob", "feature set new_nav true --staging")
    assert "couldn't tell whether you're around" in reply["text"]
    assert "Slack did not answer within 0.5 s" in reply["text"]
    assert await rig.rows(LocalFlag) == []
    [denied] = await rig.rows(AuditRecord, AuditRecord.outcome == "denied")
    assert denied.policy == "availability"


# --- mentions are resolved at the edge -------------------------------------------------------


async def test_a_mention_becomes_the_gitlab_user_it_names(rig: SlackRig) -> None:
    await rig.run("alice", "feature set new_nav true --staging")
    reply = await rig.run("alice", "feature set new_nav true --staging --user <@UBOB|bob>,carol")
    assert "for user:bob, user:carol" in reply["text"], reply["text"]


async def test_a_mention_of_someone_marvin_cannot_place_is_refused(rig: SlackRig) -> None:
    reply = await rig.run("alice", "feature set new_nav true --staging --user <@UZED|zed>")
    assert "I don't know who @zed is in GitLab" in reply["text"]
    assert await rig.rows(LocalFlag) == []


# --- announcements go to the production channel, whatever the command came through ----------


async def test_a_shell_change_is_announced_in_slack_by_the_server(rig_factory: RigFactory) -> None:
    rig = await rig_factory(production_channel={"chat": "slack"})
    stop = asyncio.Event()
    running = asyncio.create_task(rig.bot.supervisor.run(stop))
    try:
        out = io.StringIO()
        shell = Shell(build_services(rig.settings, clock=rig.clock), user="alice", out=out)
        reply = await shell.run_line("feature set new_nav true --staging")
        assert reply.ok
        assert "📣 #production (posted in Slack by marvin serve)" in out.getvalue()
        # Nobody calls the outbox here: the server's own delivery job posts it.
        posted = await wait_for_call(
            rig.api, "chat.postMessage", lambda c: c.params.get("channel") == PRODUCTION
        )
        assert "@alice set `new_nav` in staging" in posted.params["text"]
        await shell.services.store.dispose()
    finally:
        stop.set()
        await running


async def test_with_no_chat_the_shell_is_the_production_channel(bot: Bot) -> None:
    out = io.StringIO()
    shell = Shell(bot.services, user="alice", out=out)
    await shell.run_line("feature set new_nav true --staging")
    assert "📣 #production: @alice set `new_nav`" in out.getvalue()
    [message] = await bot.rows(OutboxMessage)
    assert message.status == "delivered"


# --- the command set is checked against the policies before the bot starts ------------------


@dataclass(frozen=True)
class MysteryPlan(ProductionChange):
    """A production change that doesn't say what it touches."""

    def summary(self) -> str:
        return "something"


class MysteryCommand(CommandModel):
    pass


class MysteryHandler(Handler[MysteryCommand]):
    async def plan(self, cmd: MysteryCommand, ctx: Context) -> Plan:
        return MysteryPlan()


class Unjudgeable(Change):
    def summary(self) -> str:
        return "unjudgeable"


def _spec(plans: tuple[type[Change], ...], production: bool = True) -> CommandSpec:
    return CommandSpec(
        "mystery",
        None,
        "Does something to production.",
        MysteryCommand,
        MysteryHandler(),
        production_change=production,
        plans=plans,
    )


@pytest.mark.parametrize(
    ("plans", "production", "problem"),
    [
        ((Unjudgeable,), True, "the change_lock policy can't judge Unjudgeable"),
        ((), True, "changes production but declares no plans"),
        ((MysteryPlan,), False, "plans production changes but isn't marked so"),
    ],
)
def test_a_production_change_no_mandatory_policy_can_judge_stops_the_start(
    plans: tuple[type[Change], ...], production: bool, problem: str
) -> None:
    registry = Registry()
    registry.add("a mystery", [_spec(plans, production)])
    with pytest.raises(RegistryError) as raised:
        check(registry, POLICIES)
    assert problem in str(raised.value)


def test_the_shipped_command_set_passes_the_check() -> None:
    build_registry(POLICIES)


async def test_a_plan_a_mandatory_policy_cannot_judge_is_denied_at_run_time(bot: Bot) -> None:
    """Should one slip past the start-time check (built by hand), it still can't pass."""

    class Sneaky(Handler[MysteryCommand]):
        async def plan(self, cmd: MysteryCommand, ctx: Context) -> Plan:
            return Unjudgeable()

        async def record(
            self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
        ) -> Outcome:
            raise AssertionError("a change nobody judged must not be made")

    registry = Registry()
    registry.add("a mystery", [dataclasses.replace(_spec((Unjudgeable,)), handler=Sneaky())])
    pipeline = Pipeline(bot.services, registry)
    reply = await pipeline.handle(bot.invocation("alice", "mystery"))
    assert reply.denied_by == "change_lock" and "can't check this change" in reply.text


# --- reserve: what moved under a plan is planned again ----------------------------------------


async def test_a_change_decided_on_an_old_version_is_planned_again(bot: Bot) -> None:
    assert (await bot.say("alice", "feature set f true --staging")).ok
    feature_set = bot.pipeline.registry.find("feature", "set")
    assert feature_set is not None
    handler = feature_set.handler
    original = handler.plan
    calls = 0

    async def plan_then_someone_else_changes_it(cmd: Any, ctx: Context) -> Plan:
        nonlocal calls
        calls += 1
        planned = await original(cmd, ctx)
        if calls == 1:  # between this plan and its reservation, alice turns it off
            other = bot.invocation("alice", "feature set f false --staging")
            handler.plan = original  # type: ignore[method-assign]
            assert (await bot.pipeline.handle(other)).ok
            handler.plan = plan_then_someone_else_changes_it  # type: ignore[method-assign]
        return planned

    handler.plan = plan_then_someone_else_changes_it  # type: ignore[method-assign]
    try:
        reply = await bot.say("bob", "feature set f true --staging --user carol")
    finally:
        handler.plan = original  # type: ignore[method-assign]
    assert reply.ok and calls == 2
    # Planned on the state after alice's switch-off, so it adds carol to an off flag,
    # rather than reviving the "on for everyone" it first saw.
    assert "now for user:carol (was off)" in reply.text
    history = [c.after for c in sorted(await bot.rows(FlagChange), key=lambda c: c.id)]
    assert history[-1] == {
        "enabled": False,
        "percentage_of_actors": None,
        "percentage_of_time": None,
        "actors": ["user:carol"],
    }


# --- background jobs run on one replica at a time ---------------------------------------------


async def test_a_job_runs_on_one_replica_and_moves_when_it_dies(bot: Bot) -> None:
    from datetime import timedelta

    runs: list[str] = []
    lease = timedelta(seconds=30)

    def replica(name: str) -> Leases:
        return Leases(bot.services.store, bot.clock, name, lease)

    a, b = replica("a"), replica("b")
    assert await a.hold("outbox") and not await b.hold("outbox")
    bot.clock.advance(seconds=15)
    assert await a.hold("outbox") and not await b.hold("outbox")  # a renews while it lives
    bot.clock.advance(seconds=31)  # a died: its lease ran out
    assert await b.hold("outbox")
    assert not await a.hold("outbox")  # a came back: b has it now
    stop = asyncio.Event()

    async def work() -> None:
        runs.append("b")
        stop.set()

    await Supervisor(b, [Job("outbox", 60, work)]).run(stop)
    assert runs == ["b"]
    # Stopping gave the lease back: a takes it at once.
    assert await a.hold("outbox")
