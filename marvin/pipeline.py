"""The command pipeline, top to bottom:

    register the caller -> parse -> plan (under lock) -> policies in order -> apply
    -> audit + announcement (same transaction) -> Reply

Every invocation leaves an audit record, whatever its outcome. Nothing in here knows which
chat the invocation came from.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import structlog

from marvin import audit
from marvin.accounts import ensure_account, known_account, load_caller
from marvin.commands.base import Change, Context, Done, Rerun
from marvin.grammar import Parsed, UsageError, parse
from marvin.models import Announcement, ConfirmRequest, Invocation, Reply
from marvin.outbox import enqueue
from marvin.policies import POLICIES, Decision, Policy, Request
from marvin.policies.roles import meets
from marvin.store.tables import Account, Confirmation
from marvin.wiring import Services

log = structlog.get_logger(__name__)

FAILED_CLOSED = "A safety check could not run, so I stopped here; nothing was changed."
CONFIRM_WITHIN = timedelta(minutes=5)


def announcement_kind(transport: str) -> str:
    return f"announce:{transport}"


class Pipeline:
    def __init__(self, services: Services, policies: tuple[Policy, ...] = POLICIES) -> None:
        self.services = services
        self.policies = policies

    async def handle(self, inv: Invocation) -> Reply:
        with structlog.contextvars.bound_contextvars(request_id=inv.request_id):
            try:
                return await self._handle(inv)
            except Exception:
                log.exception("pipeline.failed", transport=inv.transport)
                await self._audit_failure(inv)
                return Reply(
                    request_id=inv.request_id,
                    ok=False,
                    kind="error",
                    text=(
                        "Something went wrong on my side and nothing was changed. "
                        f"Quote request id `{inv.request_id}` when you ask for help."
                    ),
                )

    async def _handle(self, inv: Invocation) -> Reply:
        services = self.services
        now = services.clock.now()
        welcome = await self._register(inv, now)
        try:
            parsed = parse(inv.text, services.registry, services.settings.limits.max_command_chars)
        except UsageError as exc:
            async with services.store.transaction(write=True) as session:
                await audit.record(
                    session, inv, outcome="usage_error", account_id=welcome[0], reason=exc.message
                )
            return self._reply(inv, welcome, ok=False, kind="usage", text=exc.text())
        log.info("command.parsed", command=parsed.spec.name)
        reply, rerun = await self._run(inv, parsed, welcome)
        if rerun is None:
            return reply.model_copy(update={"command": parsed.spec.name})
        # Confirmed: the original command runs again, through every policy, as it stands now.
        confirmed = inv.model_copy(
            update={"text": rerun.text, "place": rerun.place, "confirmed": True}
        )
        return await self._handle(confirmed)

    async def _register(self, inv: Invocation, now: datetime) -> tuple[int, str | None]:
        """The caller's account id, and a welcome text when this is their first contact."""
        services = self.services
        # Most callers are known and linked: a read, without taking the write lock.
        async with services.store.transaction() as session:
            known = await known_account(session, inv)
            if known is not None:
                return known.id, None
        async with services.store.transaction(write=True) as session:
            account, created = await ensure_account(session, inv, services.directory, now)
            if not created:
                return account.id, None
            linked = account.directory_handle is not None
            caller = await load_caller(session, account, services.directory, now)
            flag_set = services.registry.find("feature", "set")
            needs = flag_set.needs if flag_set else None
            await audit.record(
                session,
                inv,
                outcome="registered",
                account_id=account.id,
                details={"linked": linked, "gitlab_username": account.gitlab_username},
            )
        log.info("account.registered", account_id=account.id, linked=linked)
        if linked:
            hint = (
                ""
                if needs is None or meets(caller, needs)
                else f" Changing feature flags needs the `{needs.name}` {needs.kind}, which "
                "you request with an issue labelled `access request`."
            )
            return account.id, (
                f"Welcome! I've created your Marvin account, linked to GitLab user "
                f"{account.gitlab_username}. Say `help` to see what I do.{hint}"
            )
        return account.id, (
            "Welcome! I've created your Marvin account, but I can't find you in the roles "
            "registry, so you can read but not change anything yet."
        )

    async def _run(
        self, inv: Invocation, parsed: Parsed, welcome: tuple[int, str | None]
    ) -> tuple[Reply, Rerun | None]:
        services = self.services
        spec, command = parsed.spec, parsed.command
        # Every invocation writes its audit record, so take the write lock up front (SQLite
        # cannot upgrade a read transaction safely under contention).
        account_id = welcome[0]
        async with services.store.transaction(write=True) as session:
            account = await session.get(Account, account_id)
            assert account is not None
            now = services.clock.now()
            account.last_seen_at = now
            caller = await load_caller(session, account, services.directory, now)
            ctx = Context(
                invocation=inv, caller=caller, session=session, services=services, now=now
            )
            plan = await spec.handler.plan(command, ctx)
            request = Request(spec=spec, command=command, plan=plan, ctx=ctx)
            notes: list[str] = []
            for policy in self.policies:
                decision = await self._decide(policy, request)
                if not decision.allowed:
                    # Whatever the plan touched (a new flag's ledger rows) goes; the record stays.
                    await session.rollback()
                    await audit.record(
                        session,
                        inv,
                        outcome="denied",
                        account_id=account_id,
                        command=spec.name,
                        policy=policy.name,
                        reason=decision.reason,
                    )
                    log.info("command.denied", command=spec.name, policy=policy.name)
                    return self._reply(
                        inv,
                        welcome,
                        ok=False,
                        kind="denied",
                        text=decision.reason,
                        denied_by=policy.name,
                    ), None
                if decision.note:
                    notes.append(decision.note)
            if isinstance(plan, Done):
                await audit.record(
                    session,
                    inv,
                    outcome="ok" if plan.ok else plan.kind,
                    account_id=account_id,
                    command=spec.name,
                )
                reply = self._reply(inv, welcome, ok=plan.ok, kind=plan.kind, text=plan.text)
                return reply, None
            reason = plan.confirmation_reason()
            if reason and not inv.confirmed:
                return await self._ask_confirmation(ctx, spec.name, plan, reason), None
            outcome = await spec.handler.apply(plan, ctx)
            announcement = None
            if spec.production_change and outcome.announcement:
                announcement = Announcement(
                    channel_id=services.settings.production_channel.id,
                    text=". ".join([outcome.announcement, *notes]) + ".",
                    fields={**outcome.fields, "by": caller.handle, "request_id": inv.request_id},
                    idempotency_key=f"announce:{inv.request_id}",
                )
                await enqueue(
                    session,
                    kind=announcement_kind(inv.transport),
                    key=announcement.idempotency_key,
                    payload=announcement.model_dump(mode="json"),
                    now=now,
                )
            await audit.record(
                session,
                inv,
                outcome="allowed",
                account_id=account_id,
                command=spec.name,
                details={"change": plan.summary(), "notes": notes, **outcome.details},
            )
            log.info("command.applied", command=spec.name)
            reply = self._reply(inv, welcome, ok=True, text=outcome.text, announcement=announcement)
            return reply, plan if isinstance(plan, Rerun) else None

    async def _ask_confirmation(
        self, ctx: Context, command: str, plan: Change, reason: str
    ) -> Reply:
        inv = ctx.invocation
        account_id = ctx.caller.account.id
        # Nothing the plan prepared is kept; only the request to confirm is.
        await ctx.session.rollback()
        token = secrets.token_hex(8)
        expires = ctx.now + CONFIRM_WITHIN
        ctx.session.add(
            Confirmation(
                token=token,
                account_id=account_id,
                transport=inv.transport,
                chat_user_id=inv.user_id,
                place=inv.place.model_dump(mode="json"),
                text=inv.text,
                request_id=inv.request_id,
                created_at=ctx.now,
                expires_at=expires,
            )
        )
        await audit.record(
            ctx.session,
            inv,
            outcome="confirm_requested",
            account_id=account_id,
            command=command,
            details={"change": plan.summary(), "token": token},
        )
        return Reply(
            request_id=inv.request_id,
            ok=True,
            kind="confirm",
            text=f"Please confirm: {reason}.",
            confirm=ConfirmRequest(token=token, prompt=f"{reason}?", expires_at=expires),
        )

    async def _decide(self, policy: Policy, request: Request) -> Decision:
        try:
            return await policy.check(request)
        except Exception:
            # A check that cannot run must not let the change through (fail closed).
            log.exception("policy.failed", policy=policy.name)
            return Decision.deny(FAILED_CLOSED)

    async def _audit_failure(self, inv: Invocation) -> None:
        try:
            async with self.services.store.transaction(write=True) as session:
                await audit.record(session, inv, outcome="error")
        except Exception:
            log.exception("audit.failed")

    @staticmethod
    def _reply(
        inv: Invocation, welcome: tuple[int, str | None], *, text: str, **fields: Any
    ) -> Reply:
        if welcome[1]:
            text = f"{welcome[1]}\n\n{text}"
        return Reply(request_id=inv.request_id, text=text, **fields)
