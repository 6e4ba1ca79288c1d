"""The deploy scheduler: due slots announced, started and followed, each exactly once.

It runs as a supervisor job (one replica at a time), and still claims each slot itself
before acting on it: a claim with a lease and a fencing number (`deploy_slots.fence`, raised
by every claim). Whatever a replica learned outside (the facts, GitLab's answer) it writes
only if its fence is still the slot's: a replica whose claim ran out and was taken over
writes nothing, so a slot is announced once and its outcome reported once. The pipeline
carries the slot's key as a variable, and before creating one the scheduler looks for a
pipeline with that key, so a trigger whose answer was lost is not sent twice.

A person's command on a slot (`deploy cancel`, `done`, `start`, `move`) raises the fence
too, and the scheduler's writes also require the state its claim found: whatever the
scheduler learned about a slot before a person changed it is not written over them.

Phases, none of them with a transaction open while GitLab or the directory is asked:
- due: `scheduled` slots whose time has come are judged again, on behalf of whoever
  booked them, by every policy `deploy start` is judged by (the same plan, the same
  production facts), and announced (naming the booker and who is on call), as overdue when
  the announcement comes late (after a restart); or refused, with the reason.
- announced: a slot never started by the end of its window is missed; the queue moves on.
- starting: slots started by hand (`deploy start`) or by themselves (`deploys.auto_start`)
  get their pipeline; its link is announced.
- started: the pipeline's status is read until it finishes; its outcome is announced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import structlog
from sqlalchemy import ColumnElement, and_, or_, select, update

from marvin.accounts import Caller, caller_for, granted
from marvin.adapters.errors import AdapterError, OutcomeUnknown, Unavailable
from marvin.adapters.gitlab_deploys import KEY_VARIABLE, PipelineRun
from marvin.announce import tell_production
from marvin.clock import as_utc
from marvin.commands.deploy import START_SPEC, DeployStart
from marvin.deploys import service, times
from marvin.deploys.gather import start_plan
from marvin.deploys.service import Claim
from marvin.facts import gather
from marvin.models import Invocation, Place
from marvin.policies import POLICIES, Policy, Request, judge_all
from marvin.services import Services
from marvin.store.tables import Account, DeploySlot

log = structlog.get_logger(__name__)
UTC_ZONE = times.zone("UTC")
BATCH = 20
# The transport of the scheduler's own invocations: no chat is asked about its presence.
TRANSPORT = "scheduler"


class DeployScheduler:
    def __init__(
        self,
        services: Services,
        owner: str,
        lease: timedelta = timedelta(minutes=2),
        *,
        policies: tuple[Policy, ...] = POLICIES,
    ) -> None:
        self.services = services
        self.owner = owner
        self.lease = lease
        self.policies = policies
        self._said: list[str] = []

    async def tick(self) -> list[str]:
        """One round; what it announced (the shell prints it)."""
        self._said = []
        await self._each("scheduled", self._fire)
        await self._each("announced", self._lapse)
        await self._each("starting", self._trigger)
        if self.services.deploys is not None:
            await self._each("started", self._follow)
        return self._said

    async def pending(self) -> bool:
        """Whether a round now would find a slot to act on: one short read, for a caller
        that would rather not run a round (and ask GitLab) for nothing."""
        now = self.services.clock.now()
        phases = ["scheduled", "announced", "starting"]
        if self.services.deploys is not None:
            phases.append("started")
        query = (
            select(DeploySlot.id)
            .where(or_(*(self._ready(state, now) for state in phases)))
            .limit(1)
        )
        async with self.services.store.transaction() as session:
            return (await session.scalars(query)).first() is not None

    async def _say(self, session: Any, *, text: str, key: str, **more: Any) -> None:
        await tell_production(session, self.services, text=text, key=key, **more)
        self._said.append(text)

    # --- claims --------------------------------------------------------------------------

    @staticmethod
    def _ready(state: str, now: datetime) -> ColumnElement[bool]:
        """A slot in `state` that its phase acts on now, and that no claim holds."""
        found = [
            DeploySlot.state == state,
            or_(DeploySlot.claim_until.is_(None), DeploySlot.claim_until < now),
        ]
        if state == "scheduled":
            found.append(DeploySlot.starts_at <= now)  # due
        elif state == "announced":
            found.append(DeploySlot.ends_at <= now)  # its window let go
        return and_(*found)

    async def _each(self, state: str, act: Callable[[Claim, DeploySlot], Awaitable[None]]) -> None:
        now = self.services.clock.now()
        query = (
            select(DeploySlot.id)
            .where(self._ready(state, now))
            .order_by(DeploySlot.starts_at)
            .limit(BATCH)
        )
        async with self.services.store.transaction() as session:
            candidates = list(await session.scalars(query))
        for slot_id in candidates:
            claimed = await self._claim(slot_id, state)
            if claimed is None:
                continue
            try:
                await act(*claimed)
            except Exception:
                # One slot that can't be handled (a bug, a database error) holds its claim
                # until the lease runs out and is tried again; the others go on.
                log.exception("deploy.slot_failed", slot=slot_id, state=state)

    async def _claim(self, slot_id: int, state: str) -> tuple[Claim, DeploySlot] | None:
        now = self.services.clock.now()
        async with self.services.store.transaction(write=True) as session:
            result = await session.execute(
                update(DeploySlot)
                .where(
                    DeploySlot.id == slot_id,
                    DeploySlot.state == state,
                    or_(DeploySlot.claim_until.is_(None), DeploySlot.claim_until < now),
                )
                .values(
                    claimed_by=self.owner,
                    claim_until=now + self.lease,
                    fence=DeploySlot.fence + 1,
                )
                .returning(DeploySlot.fence)
                .execution_options(synchronize_session=False)
            )
            fence = result.scalar_one_or_none()
            if fence is None:
                return None
            slot = await session.get(DeploySlot, slot_id, populate_existing=True)
            assert slot is not None
            session.expunge(slot)
        return Claim(slot_id, fence, state, self.owner), slot

    async def _settle(self, claim: Claim, **values: Any) -> bool:
        """Write what the claim found, if the claim is still the slot's; release it."""
        async with self.services.store.transaction(write=True) as session:
            return await self._settle_in(session, claim, **values)

    async def _settle_in(self, session: Any, claim: Claim, **values: Any) -> bool:
        result = await session.execute(
            update(DeploySlot)
            .where(*service.held(claim))
            .values(
                claimed_by=None,
                claim_until=None,
                updated_at=self.services.clock.now(),
                **values,
            )
            .returning(DeploySlot.id)
            .execution_options(synchronize_session=False)
        )
        if result.first() is None:
            log.warning("deploy.fenced_out", slot=claim.slot_id, fence=claim.fence)
            return False
        return True

    async def _finish(
        self,
        claim: Claim,
        slot: DeploySlot,
        *,
        text: str,
        key: str,
        fields: dict[str, str] | None = None,
        **how: Any,
    ) -> bool:
        """The end of the slot's turn (`service.finish`), announced with `text`, if the
        claim is still the slot's."""
        async with self.services.store.transaction(write=True) as session:
            done = await service.finish(
                session=session,
                services=self.services,
                slot=slot,
                claim=claim,
                say=partial(self._say, text=text, key=key, fields=fields),
                **how,
            )
        if not done:
            log.warning("deploy.fenced_out", slot=claim.slot_id, fence=claim.fence)
        return done

    # --- due -----------------------------------------------------------------------------

    async def _booker(self, slot: DeploySlot) -> Caller | None:
        if slot.account_id is None:
            return None
        async with self.services.store.transaction() as session:
            account = await session.get(Account, slot.account_id)
            if account is None:
                return None
            session.expunge(account)
            grants = await granted(session, account.id, self.services.clock.now())
        return await caller_for(account, grants, self.services.directory)

    def _invocation(self, slot: DeploySlot, now: datetime) -> Invocation:
        """The slot's start as if its booker said `deploy start` in the production channel.

        Its transport is no chat's, so the booker's chat presence is not asked (a slot
        starts at its booked time, whether or not their chat client is awake); Marvin's
        own away status (`status away`) is still judged, from their account."""
        channel = self.services.settings.production_channel
        return Invocation(
            request_id=f"deploy-slot-{slot.key}"[:64],
            transport=TRANSPORT,
            user_id=slot.booked_by,
            user_name=slot.booked_by,
            place=Place(id=channel.id, name=channel.name),
            text=f"deploy start {slot.id}",
            received_at=now,
        )

    async def _judge(
        self, slot: DeploySlot, booker: Caller | None, now: datetime
    ) -> list[str] | tuple[str, str]:
        """The notes of every policy, or (policy, reason) of the first that refuses: the
        ones `deploy start` is judged by, on the facts the pipeline gathers for it."""
        if booker is None:
            return "deploys", f"I no longer know @{slot.booked_by}, who booked it"
        inv = self._invocation(slot, now)
        plan, facts = await asyncio.gather(
            start_plan(self.services, slot, now=now, override_reason=slot.override_reason),
            gather(self.services, inv, now),
        )
        command = DeployStart(id=slot.id, ignore_production_check=slot.override_reason)
        request = Request(
            START_SPEC, command, booker, inv, self.services.settings, now, plan, facts
        )
        return judge_all(self.policies, request)

    async def _fire(self, claim: Claim, slot: DeploySlot) -> None:
        services = self.services
        settings = services.settings
        now = services.clock.now()
        starts, ends = as_utc(slot.starts_at), as_utc(slot.ends_at)
        booker = await self._booker(slot)
        verdict = await self._judge(slot, booker, now)
        late = now - starts > timedelta(minutes=settings.deploys.overdue_minutes)
        what = (
            f"deploy slot #{slot.id}: {slot.version} to {slot.environment} "
            f"({times.span(starts, ends, UTC_ZONE)}), booked by @{slot.booked_by}"
        )
        head = f"⏰ Overdue {what}, was due {starts:%H:%M} UTC" if late else f"⏰ Due: {what}"
        if isinstance(verdict, tuple):
            policy, reason = verdict
            text = f"{head}. It won't start: {reason}"
            values: dict[str, Any] = {
                "state": "refused",
                "outcome_reason": reason[:500],
                "announced_at": now,
                "overdue": late,
            }
            log.info("deploy.refused", slot=slot.id, policy=policy)
        else:
            role = settings.deploys.release_role
            release = booker is not None and booker.has_role(role)
            who = f" ({role})" if release else ""
            auto = settings.deploys.auto_start
            next_step = (
                "Starting its pipeline now."
                if auto
                else f"@{slot.booked_by}, `deploy start {slot.id}` starts it."
            )
            # The availability policy's note says who is on call.
            text = ". ".join([f"{head}{who}", *verdict]) + f". {next_step}"
            values = {"state": "starting" if auto else "announced", "announced_at": now}
            values["overdue"] = late
            if auto:
                values |= {"started_by": slot.booked_by, "started_at": now}
        async with services.store.transaction(write=True) as session:
            if not await self._settle_in(session, claim, **values):
                return
            await self._say(
                session,
                text=text,
                key=f"deploy-due:{slot.key}",
                fields={"slot": str(slot.id), "environment": slot.environment},
            )
        log.info("deploy.due", slot=slot.id, state=values["state"], overdue=late)

    # --- lapsed --------------------------------------------------------------------------

    async def _lapse(self, claim: Claim, slot: DeploySlot) -> None:
        """A slot announced and never started lets its window go: it no longer holds the
        environment (nor the queue), and everyone is told once."""
        if await self._finish(
            claim,
            slot,
            state="missed",
            now=self.services.clock.now(),
            reason="never started in its window",
            text=f"⌛ Deploy slot #{slot.id} ({slot.version} to {slot.environment}) "
            f"was never started, and its window has ended: @{slot.booked_by}, book "
            "another with `deploy schedule` when you're ready.",
            key=f"deploy-missed:{slot.key}",
            fields={"slot": str(slot.id), "environment": slot.environment},
        ):
            log.info("deploy.missed", slot=slot.id)

    # --- starting ------------------------------------------------------------------------

    async def _trigger(self, claim: Claim, slot: DeploySlot) -> None:
        services = self.services
        deploys = services.settings.deploys
        backend = services.deploys
        what = f"deploy slot #{slot.id} ({slot.version} to {slot.environment})"
        if backend is None:
            async with services.store.transaction(write=True) as session:
                if await self._settle_in(session, claim, state="started"):
                    await self._say(
                        session,
                        text=f"🚀 {what} is on: no pipeline is configured, so "
                        f"@{slot.started_by or slot.booked_by} deploys it and says "
                        f"`deploy done {slot.id}`.",
                        key=f"deploy-pipeline:{slot.key}",
                    )
            return
        variables = {
            deploys.version_variable: slot.version,
            "DEPLOY_ENVIRONMENT": slot.environment,
            KEY_VARIABLE: slot.key,
        }
        run: PipelineRun | None = None
        try:
            # A trigger whose answer was lost may have created it: look before creating.
            run = await backend.find(ref=deploys.pipeline_ref, key=slot.key)
            if run is None:
                run = await backend.trigger(ref=deploys.pipeline_ref, variables=variables)
        except (OutcomeUnknown, Unavailable) as exc:
            # Tried again on the next round, after looking for it by its key.
            log.warning("deploy.trigger_unknown", slot=slot.id, error=exc.shown())
            await self._settle(claim)
            return
        except AdapterError as exc:
            await self._finish(
                claim,
                slot,
                state="failed",
                now=services.clock.now(),
                reason=exc.shown(),
                text=f"❌ {what}: GitLab didn't start its pipeline: {exc.shown()}.",
                key=f"deploy-pipeline:{slot.key}",
            )
            return
        async with services.store.transaction(write=True) as session:
            if await self._settle_in(
                session,
                claim,
                state="started",
                pipeline_id=run.id,
                pipeline_url=run.url,
                pipeline_status=run.status,
            ):
                await self._say(
                    session,
                    text=f"🚀 {what} started by @{slot.started_by or slot.booked_by}: "
                    f"pipeline {run.url}",
                    key=f"deploy-pipeline:{slot.key}",
                    fields={"slot": str(slot.id), "pipeline": str(run.id)},
                )
        log.info("deploy.triggered", slot=slot.id, pipeline=run.id)

    # --- started -------------------------------------------------------------------------

    async def _follow(self, claim: Claim, slot: DeploySlot) -> None:
        services = self.services
        backend = services.deploys
        if backend is None or slot.pipeline_id is None:
            await self._settle(claim)
            return
        try:
            run = await backend.pipeline(slot.pipeline_id)
        except AdapterError as exc:
            log.warning("deploy.pipeline_unread", slot=slot.id, error=exc.shown())
            await self._settle(claim)
            return
        if not run.finished:
            await self._settle(claim, pipeline_status=run.status)
            return
        ok = run.status == "success"
        await self._finish(
            claim,
            slot,
            state="succeeded" if ok else "failed",
            now=services.clock.now(),
            reason=None if ok else f"pipeline {run.status}",
            pipeline_status=run.status,
            text=f"{'✅' if ok else '❌'} Deploy slot #{slot.id} ({slot.version} to "
            f"{slot.environment}): pipeline {run.status}, {run.url}",
            key=f"deploy-outcome:{slot.key}",
            fields={"slot": str(slot.id), "pipeline": str(run.id)},
        )
