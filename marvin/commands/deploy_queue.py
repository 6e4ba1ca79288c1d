"""`deploy queue|unqueue|lock|unlock`: waiting one's turn at an environment, and stopping
deploys to one with the reason shown to everyone (release managers and production
engineers; the deploy policy judges who)."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from marvin.commands.base import Change, Context, Done, Handler, Moved, Outcome, Plan
from marvin.commands.deploy import ENV_ARG, env_problem, one_line
from marvin.deploys import service
from marvin.deploys.notify import tell_head
from marvin.deploys.plans import AdminPlan, QueuePlan
from marvin.spec import Arg, CommandModel, CommandSpec
from marvin.store.tables import DeployLock, DeployQueueEntry


class DeployQueue(CommandModel):
    env: str | None = Field(None, max_length=32)
    version: str | None = Field(None, max_length=128)


class DeployUnqueue(CommandModel):
    env: str = Field(min_length=1, max_length=32)


class DeployLockCmd(CommandModel):
    env: str = Field(min_length=1, max_length=32)
    reason: str = Field(min_length=3, max_length=500)


class DeployUnlock(CommandModel):
    env: str = Field(min_length=1, max_length=32)


# --- the queue -----------------------------------------------------------------------------


class QueueHandler(Handler[DeployQueue]):
    async def plan(self, cmd: DeployQueue, ctx: Context) -> Plan:
        if cmd.env is None:
            async with ctx.read() as session:
                waiting = await service.queue(session=session, environment=None)
            if not waiting:
                return Done("Nobody is queued for any environment.")
            lines: list[str] = []
            for env in ctx.services.settings.deploys.environments:
                mine = [w for w in waiting if w.environment == env]
                if mine:
                    people = ", ".join(
                        f"{i}. @{w.handle}" + (f" ({w.version})" if w.version else "")
                        for i, w in enumerate(mine, 1)
                    )
                    lines.append(f"{env}: {people}")
            return Done("\n".join(lines))
        env = cmd.env.lower()
        problem = env_problem(ctx, env)
        if problem is not None:
            return problem
        async with ctx.read() as session:
            waiting = await service.queue(session=session, environment=env)
        for i, entry in enumerate(waiting, 1):
            if entry.handle == ctx.caller.handle:
                return Done(f"You're already #{i} in the {env} queue.")
        return QueuePlan("join", env, cmd.version)

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, QueuePlan)
        session.add(
            DeployQueueEntry(
                environment=plan.environment,
                handle=ctx.caller.handle,
                version=plan.version,
                joined_at=ctx.now,
            )
        )
        await session.flush()
        waiting = await service.queue(session=session, environment=plan.environment)
        place = next(i for i, w in enumerate(waiting, 1) if w.handle == ctx.caller.handle)
        told = await tell_head(session, ctx.services, environment=plan.environment, now=ctx.now)
        turn = (
            " You're first: it's your turn now."
            if told == ctx.caller.handle
            else " I'll tell you when it's your turn."
        )
        return Outcome(
            text=f"You're #{place} in the {plan.environment} queue.{turn}",
            announcement=f"🧍 @{ctx.caller.handle} joined the {plan.environment} queue (#{place})",
            fields={"environment": plan.environment},
        )


class UnqueueHandler(Handler[DeployUnqueue]):
    async def plan(self, cmd: DeployUnqueue, ctx: Context) -> Plan:
        env = cmd.env.lower()
        problem = env_problem(ctx, env)
        if problem is not None:
            return problem
        async with ctx.read() as session:
            waiting = await service.queue(session=session, environment=env)
        if all(w.handle != ctx.caller.handle for w in waiting):
            return Done(f"You're not in the {env} queue.")
        return QueuePlan("leave", env)

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, QueuePlan)
        await service.leave_queue(
            session=session, environment=plan.environment, handle=ctx.caller.handle, now=ctx.now
        )
        told = await tell_head(session, ctx.services, environment=plan.environment, now=ctx.now)
        after = f" @{told} is next, and told." if told else ""
        return Outcome(
            text=f"You've left the {plan.environment} queue.{after}",
            announcement=f"🧍 @{ctx.caller.handle} left the {plan.environment} queue",
            fields={"environment": plan.environment},
        )


# --- locks ---------------------------------------------------------------------------------


class LockHandler(Handler[DeployLockCmd]):
    async def plan(self, cmd: DeployLockCmd, ctx: Context) -> Plan:
        env = cmd.env.lower()
        problem = env_problem(ctx, env)
        if problem is not None:
            return problem
        async with ctx.read() as session:
            lock = await service.lock_of(session=session, environment=env)
        if lock is not None:
            return Done(f"{env} is locked already, by @{lock.locked_by}: {lock.reason}")
        return AdminPlan("lock", env, reason=one_line(cmd.reason))

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, AdminPlan) and plan.reason
        if await service.lock_of(session=session, environment=plan.environment) is not None:
            raise Moved()
        session.add(
            DeployLock(
                environment=plan.environment,
                reason=plan.reason,
                locked_by=ctx.caller.handle,
                locked_at=ctx.now,
            )
        )
        return Outcome(
            text=f"Locked deploys to {plan.environment}: {plan.reason}. "
            f"`deploy unlock {plan.environment}` lifts it.",
            announcement=f"🔒 @{ctx.caller.handle} locked deploys to {plan.environment}: "
            f"{plan.reason}",
            fields={"environment": plan.environment},
        )


class UnlockHandler(Handler[DeployUnlock]):
    async def plan(self, cmd: DeployUnlock, ctx: Context) -> Plan:
        env = cmd.env.lower()
        problem = env_problem(ctx, env)
        if problem is not None:
            return problem
        async with ctx.read() as session:
            lock = await service.lock_of(session=session, environment=env)
        if lock is None:
            return Done(f"{env} isn't locked.")
        return AdminPlan("unlock", env, reason=lock.reason)

    async def record(
        self, plan: Change, session: AsyncSession, ctx: Context, applied: dict[str, Any]
    ) -> Outcome:
        assert isinstance(plan, AdminPlan)
        if not await service.unlock(session=session, environment=plan.environment):
            raise Moved()
        return Outcome(
            text=f"Unlocked deploys to {plan.environment}.",
            announcement=f"🔓 @{ctx.caller.handle} unlocked deploys to {plan.environment} "
            f"(locked for: {plan.reason})",
            fields={"environment": plan.environment},
        )


# --- specs ---------------------------------------------------------------------------------

SPECS = (
    CommandSpec(
        "deploy",
        "queue",
        "Join an environment's queue (`deploy queue staging`), or see every queue.",
        DeployQueue,
        QueueHandler(),
        (
            Arg("env", "the environment to queue for", required=False),
            Arg("version", "what you'll deploy", required=False),
        ),
        plans=(QueuePlan,),
    ),
    CommandSpec(
        "deploy",
        "unqueue",
        "Leave an environment's queue; the next in line is told.",
        DeployUnqueue,
        UnqueueHandler(),
        (ENV_ARG,),
        plans=(QueuePlan,),
    ),
    CommandSpec(
        "deploy",
        "lock",
        "Stop deploys to an environment, with the reason shown to everyone.",
        DeployLockCmd,
        LockHandler(),
        (ENV_ARG, Arg("reason", "why", rest=True)),
        production_change=True,
        plans=(AdminPlan,),
    ),
    CommandSpec(
        "deploy",
        "unlock",
        "Let deploys to an environment go ahead again.",
        DeployUnlock,
        UnlockHandler(),
        (ENV_ARG,),
        production_change=True,
        plans=(AdminPlan,),
    ),
)
