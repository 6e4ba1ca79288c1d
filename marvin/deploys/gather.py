"""The facts a slot's window is judged by: Marvin's own (one short read), then GitLab's
freeze periods, with no transaction open while GitLab is asked."""

from __future__ import annotations

from datetime import datetime, timedelta

from marvin.adapters.gitlab_deploys import FreezePeriod
from marvin.clock import as_utc
from marvin.deploys import service
from marvin.deploys.freezes import Window
from marvin.deploys.plans import DeployFacts, SlotPlan, SlotView
from marvin.facts import Known, Unknown, fetch
from marvin.services import Services
from marvin.store.tables import DeploySlot


async def slot_facts(
    services: Services,
    *,
    environment: str,
    version: str,
    starts_at: datetime,
    ends_at: datetime,
    exclude: int | None = None,
) -> DeployFacts:
    settings = services.settings
    protected = environment in settings.deploys.protected
    async with services.store.transaction() as session:
        others = await service.overlapping(
            session=session,
            environment=environment,
            starts_at=starts_at,
            ends_at=ends_at,
            exclude=exclude,
        )
        frozen = await service.freezes(
            session=session, environment=environment, starts_at=starts_at, ends_at=ends_at
        )
        lock = await service.lock_of(session=session, environment=environment)
        views = tuple(
            SlotView(s.id, s.version, as_utc(s.starts_at), as_utc(s.ends_at), s.booked_by)
            for s in others
        )
        windows = tuple(
            Window(as_utc(f.starts_at), as_utc(f.ends_at), f"the freeze #{f.id} “{f.reason}”")
            for f in frozen
        )
        locked = (lock.reason, lock.locked_by) if lock is not None else None
    # GitLab's freeze periods hold the protected environments (production and canary).
    gitlab: Known[tuple[FreezePeriod, ...]] | Unknown | None = None
    if services.deploys is not None and protected:
        read = await fetch(services.deploys.freeze_periods())
        gitlab = Known(tuple(read.value)) if isinstance(read, Known) else read
    requests: Known[tuple[str, ...]] | Unknown | None = None
    deploys = settings.deploys
    if deploys.require_change_request and environment == "production":
        found = await fetch(services.issues.open_labelled(deploys.change_request_label, version))
        requests = Known(tuple(i.ref for i in found.value)) if isinstance(found, Known) else found
    return DeployFacts(
        others=views,
        freezes=windows,
        gitlab=gitlab,
        lock=locked,
        change_requests=requests,
    )


async def start_plan(
    services: Services, slot: DeploySlot, *, now: datetime, override_reason: str | None
) -> SlotPlan:
    """Starting `slot` now, as it is judged whoever starts it (`deploy start`, or the
    scheduler when it comes due): the deploy runs from now until the slot's end, so that
    window is judged, not the one booked."""
    ends = max(as_utc(slot.ends_at), now + timedelta(minutes=1))
    facts = await slot_facts(
        services,
        environment=slot.environment,
        version=slot.version,
        starts_at=now,
        ends_at=ends,
        exclude=slot.id,
    )
    return SlotPlan(
        action="start",
        environment=slot.environment,
        version=slot.version,
        starts_at=now,
        ends_at=ends,
        booked_by=slot.booked_by,
        facts=facts,
        slot_id=slot.id,
        override_reason=override_reason,
        state=slot.state,
    )
