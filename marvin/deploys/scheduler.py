"""The deploy scheduler: due slots announced, started and followed, each exactly once.

It runs as a supervisor job (one replica at a time), and still claims each slot itself
before acting on it: a claim with a lease and a fencing number (`deploy_slots.fence`, raised
by every claim). Whatever a replica learned outside (the facts, GitLab's answer) it writes
only if its fence is still the slot's: a replica whose claim ran out and was taken over
writes nothing, so a slot is announced once and its outcome reported once. The pipeline
carries the slot's key as a variable, and before creating one the scheduler looks for a
pipeline with that key, so a trigger whose answer was lost is not sent twice.

Phases, none of them with a transaction open while GitLab or the directory is asked:
- due: `scheduled` slots whose time has come are judged again, on behalf of whoever
  booked them, and announced (naming the booker and who is on call), as overdue when the
  announcement comes late (after a restart); or refused, with the reason.
- starting: slots started by hand (`deploy start`) or by themselves (`deploys.auto_start`)
  get their pipeline; its link is announced.
- started: the pipeline's status is read until it finishes; its outcome is announced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import or_, select, update

from marvin.accounts import Caller, caller_for, granted
from marvin.adapters.errors import AdapterError, OutcomeUnknown, Unavailable
from marvin.adapters.gitlab_deploys import KEY_VARIABLE, PipelineRun
from marvin.clock import as_utc
from marvin.deploys import service, times
from marvin.deploys.gather import slot_facts
from marvin.deploys.notify import announce, tell_head
from marvin.deploys.plans import SlotPlan
from marvin.facts import Known, fetch
from marvin.policies.base import Decision
from marvin.policies.deploys import judge
from marvin.services import Services
from marvin.store.tables import Account, DeploySlot

log = structlog.get_logger(__name__)
UTC_ZONE = times.zone("UTC")
BATCH = 20


@dataclass(frozen=True)
class Claim:
    slot_id: int
    fence: int


class DeployScheduler:
    def __init__(
        self, services: Services, owner: str, lease: timedelta = timedelta(minutes=2)
    ) -> None:
        self.services = services
        self.owner = owner
        self.lease = lease
        self._said: list[str] = []

    async def tick(self) -> list[str]:
        """One round; what it announced (the shell prints it)."""
        self._said = []
        await self.due()
        await self.lapsed()
        await self.starting()
        await self.running()
        return self._said

    async def _say(self, session: Any, *, text: str, key: str, **more: Any) -> None:
        await announce(session, self.services, text=text, key=key, **more)
        self._said.append(text)

    # --- claims --------------------------------------------------------------------------

    async def _candidates(
        self, state: str, *, due_only: bool = False, ended_only: bool = False
    ) -> list[int]:
        now = self.services.clock.now()
        query = select(DeploySlot.id).where(
            DeploySlot.state == state,
            or_(DeploySlot.claim_until.is_(None), DeploySlot.claim_until < now),
        )
        if due_only:
            query = query.where(DeploySlot.starts_at <= now)
        if ended_only:
            query = query.where(DeploySlot.ends_at <= now)
        async with self.services.store.transaction() as session:
            return list(await session.scalars(query.order_by(DeploySlot.starts_at).limit(BATCH)))

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
        return Claim(slot_id, fence), slot

    async def _settle(self, claim: Claim, **values: Any) -> bool:
        """Write what the claim found, if the claim is still the slot's; release it."""
        async with self.services.store.transaction(write=True) as session:
            return await self._settle_in(session, claim, **values)

    async def _settle_in(self, session: Any, claim: Claim, **values: Any) -> bool:
        result = await session.execute(
            update(DeploySlot)
            .where(
                DeploySlot.id == claim.slot_id,
                DeploySlot.fence == claim.fence,
                DeploySlot.claimed_by == self.owner,
            )
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

    # --- due -----------------------------------------------------------------------------

    async def due(self) -> None:
        for slot_id in await self._candidates("scheduled", due_only=True):
            claimed = await self._claim(slot_id, "scheduled")
            if claimed is not None:
                await self._fire(*claimed)

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

    async def _fire(self, claim: Claim, slot: DeploySlot) -> None:
        services = self.services
        settings = services.settings
        now = services.clock.now()
        starts, ends = as_utc(slot.starts_at), as_utc(slot.ends_at)
        booker = await self._booker(slot)
        facts = await slot_facts(
            services,
            environment=slot.environment,
            version=slot.version,
            starts_at=now,
            ends_at=max(ends, now + timedelta(minutes=1)),
            exclude=slot.id,
        )
        oncall = await fetch(services.oncall.on_call(now))
        plan = SlotPlan(
            action="start",
            environment=slot.environment,
            version=slot.version,
            starts_at=now,
            ends_at=max(ends, now + timedelta(minutes=1)),
            booked_by=slot.booked_by,
            facts=facts,
            slot_id=slot.id,
            override_reason=slot.override_reason,
        )
        decision = (
            judge(plan, booker, settings)
            if booker is not None
            else Decision.deny(f"I no longer know @{slot.booked_by}, who booked it")
        )
        late = now - starts > timedelta(minutes=settings.deploys.overdue_minutes)
        what = (
            f"deploy slot #{slot.id}: {slot.version} to {slot.environment} "
            f"({times.span(starts, ends, UTC_ZONE)}), booked by @{slot.booked_by}"
        )
        head = f"⏰ Overdue {what}, was due {starts:%H:%M} UTC" if late else f"⏰ Due: {what}"
        if not decision.allowed:
            text = f"{head}. It won't start: {decision.reason}"
            values: dict[str, Any] = {
                "state": "refused",
                "outcome_reason": decision.reason[:500],
                "announced_at": now,
                "overdue": late,
            }
        else:
            role = settings.deploys.release_role
            release = booker is not None and booker.has_role(role)
            who = f" ({role})" if release else ""
            on_call = (
                f"On call: @{oncall.value}"
                if isinstance(oncall, Known) and oncall.value
                else "Nobody is on call"
                if isinstance(oncall, Known)
                else f"On call: unknown ({oncall.shown()})"
            )
            auto = settings.deploys.auto_start
            next_step = (
                "Starting its pipeline now."
                if auto
                else f"@{slot.booked_by}, `deploy start {slot.id}` starts it."
            )
            note = f" {decision.note}." if decision.note else ""
            text = f"{head}{who}. {on_call}. {next_step}{note}"
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

    async def lapsed(self) -> None:
        """A slot announced and never started lets its window go: it no longer holds the
        environment (nor the queue), and everyone is told once."""
        for slot_id in await self._candidates("announced", ended_only=True):
            claimed = await self._claim(slot_id, "announced")
            if claimed is None:
                continue
            claim, slot = claimed
            now = self.services.clock.now()
            async with self.services.store.transaction(write=True) as session:
                if not await self._settle_in(
                    session,
                    claim,
                    state="missed",
                    finished_at=now,
                    outcome_reason="never started in its window",
                ):
                    continue
                await self._say(
                    session,
                    text=f"⌛ Deploy slot #{slot.id} ({slot.version} to {slot.environment}) "
                    f"was never started, and its window has ended: @{slot.booked_by}, book "
                    "another with `deploy schedule` when you're ready.",
                    key=f"deploy-missed:{slot.key}",
                    fields={"slot": str(slot.id), "environment": slot.environment},
                )
                await service.leave_queue(
                    session=session, environment=slot.environment, handle=slot.booked_by, now=now
                )
                await tell_head(session, self.services, environment=slot.environment, now=now)
            log.info("deploy.missed", slot=slot.id)

    # --- starting ------------------------------------------------------------------------

    async def starting(self) -> None:
        for slot_id in await self._candidates("starting"):
            claimed = await self._claim(slot_id, "starting")
            if claimed is not None:
                await self._trigger(*claimed)

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
            async with services.store.transaction(write=True) as session:
                if await self._settle_in(
                    session,
                    claim,
                    state="failed",
                    outcome_reason=exc.shown()[:500],
                    finished_at=services.clock.now(),
                ):
                    await self._say(
                        session,
                        text=f"❌ {what}: GitLab didn't start its pipeline: {exc.shown()}.",
                        key=f"deploy-pipeline:{slot.key}",
                    )
                    await tell_head(
                        session,
                        services,
                        environment=slot.environment,
                        now=services.clock.now(),
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

    async def running(self) -> None:
        if self.services.deploys is None:
            return
        for slot_id in await self._candidates("started"):
            claimed = await self._claim(slot_id, "started")
            if claimed is not None:
                await self._follow(*claimed)

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
        now = services.clock.now()
        ok = run.status == "success"
        async with services.store.transaction(write=True) as session:
            if not await self._settle_in(
                session,
                claim,
                state="succeeded" if ok else "failed",
                pipeline_status=run.status,
                finished_at=now,
                outcome_reason=None if ok else f"pipeline {run.status}",
            ):
                return
            await self._say(
                session,
                text=f"{'✅' if ok else '❌'} Deploy slot #{slot.id} ({slot.version} to "
                f"{slot.environment}): pipeline {run.status}, {run.url}",
                key=f"deploy-outcome:{slot.key}",
                fields={"slot": str(slot.id), "pipeline": str(run.id)},
            )
            await service.leave_queue(
                session=session, environment=slot.environment, handle=slot.booked_by, now=now
            )
            await tell_head(session, services, environment=slot.environment, now=now)
