"""The command pipeline, top to bottom, one small function per phase:

    identify -> parse -> gate -> gather -> judge -> reserve -> apply -> record -> Reply

- identify: the caller's account (created and linked on first contact).
- gate: channel, registration, roles; Marvin's own data only, before anything is asked.
- gather: every fact from outside (the handler's and the production facts), concurrently,
  each under its deadline, with NO database transaction open.
- judge: the policies, pure functions of the plan and the facts; the first deny wins.
- reserve: a short write transaction re-checks what may have moved (a version) and, for a
  remote change, records the intent. If something moved, the command is gathered and
  judged again, as it stands then.
- apply: the remote call, with no transaction open. (A local change is applied in record.)
- record: a short write transaction: the change's local effects, the audit record and the
  announcement in the outbox, together.

Every invocation leaves an audit record, whatever its outcome. Nothing in here knows which
chat the invocation came from.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from marvin import audit, intents
from marvin.accounts import Caller, caller_for, ensure_account, granted, known_account
from marvin.adapters.errors import AdapterError, Conflict, OutcomeUnknown
from marvin.announce import announce
from marvin.commands.approval import AlreadyDecided
from marvin.commands.approval import spend as spend_approval
from marvin.commands.base import (
    Change,
    Context,
    Done,
    Moved,
    Outcome,
    Overtaken,
    Plan,
    ProductionChange,
    Rerun,
)
from marvin.commands.confirm import AlreadySpent, spend
from marvin.commands.on_environment import OnEnvironment
from marvin.facts import fetch
from marvin.facts import gather as gather_facts
from marvin.flags import Environment
from marvin.grammar import Parsed, UsageError, parse, without_options
from marvin.models import (
    Announcement,
    ApprovalRequest,
    ConfirmRequest,
    Invocation,
    Reply,
    ReplyKind,
)
from marvin.outbox import ANNOUNCE, enqueue
from marvin.policies import FAILED_CLOSED as FAILED_CLOSED  # where it was always read
from marvin.policies import GATES, POLICIES, Gate, GateRequest, Policy, Request, judge_all, registry
from marvin.policies import decide as _decide
from marvin.policies.roles import meets
from marvin.services import Services
from marvin.spec import CommandSpec, Registry
from marvin.store.tables import Account, Approval, AuditRecord, Confirmation

log = structlog.get_logger(__name__)

CONFIRM_WITHIN = timedelta(minutes=5)
# A change re-planned this often because the state kept moving under it gives up.
MAX_ATTEMPTS = 10


class Pipeline:
    def __init__(
        self,
        services: Services,
        registry: Registry,
        *,
        gates: tuple[Gate, ...] = GATES,
        policies: tuple[Policy, ...] = POLICIES,
    ) -> None:
        self.services = services
        self.registry = registry
        self.gates = gates
        self.policies = policies
        self.journal = audit.Journal(services.store)

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
        if inv.redelivered:
            done = await self._answered_before(inv)
            if done is not None:
                return done
        caller, welcome = await self._identify(inv)
        if caller is None:
            return Reply(request_id=inv.request_id, ok=False, kind="error", text=welcome or "")
        answer = Answer(self, inv, caller, welcome)
        try:
            parsed = parse(inv.text, self.registry, self.services.settings.limits.max_command_chars)
        except UsageError as exc:
            return await answer.final("usage_error", ok=False, kind="usage", text=exc.text())
        if inv.unresolved:
            who = ", ".join(inv.unresolved)
            return await answer.final(
                "usage_error",
                ok=False,
                kind="usage",
                text=f"I don't know who {who} is in GitLab: name them by their GitLab username.",
                command=parsed.spec.name,
            )
        command = parsed.command
        if parsed.spec.production_change and isinstance(command, OnEnvironment) and command.many:
            return await self._in_each_environment(
                inv, welcome, command.environments, command.lowers
            )
        log.info("command.parsed", command=parsed.spec.name)
        denied = self._gate(parsed, caller, inv)
        if denied is not None:
            return await answer.denied(parsed.spec, *denied)
        return await self._run(answer, parsed)

    async def _in_each_environment(
        self, inv: Invocation, welcome: str | None, named: Sequence[str], lowers: bool
    ) -> Reply:
        """`--staging --production`, as GitLab's ChatOps takes it: one change per
        environment, each judged, recorded and announced on its own (its own request id, so
        a redelivery or a confirmation finds its part). The followed environment goes first
        (staging), the followers first when turning off or removing (production never runs
        what staging doesn't); the first that isn't made (refused, or waiting for a
        confirmation) stops the rest."""
        environments = self.registry.environments
        order = environments.in_order(map(Environment, named), lowering=lowers)
        replies: list[Reply] = []
        for env in order:
            part = inv.model_copy(
                update={
                    "request_id": f"{inv.request_id}.{env}"[:64],
                    "text": only_environment(inv.text, env, environments),
                }
            )
            with structlog.contextvars.bound_contextvars(request_id=part.request_id):
                reply = await self._handle(part)
            replies.append(reply)
            if not reply.ok or reply.confirm is not None:
                break
        shown = [r.text for r in replies]
        rest = order[len(replies) :]
        if rest and replies[-1].confirm is not None:
            then = only_environment(inv.text, rest, environments)
            shown.append(f"Nothing was done in {_and(rest)} yet: once this is done, `{then}`.")
        elif rest:
            shown.append(f"Nothing was done in {_and(rest)}.")
        texts = [a.announcement.text for a in replies if a.announcement is not None]
        last = replies[-1]
        return last.model_copy(
            update={
                "request_id": inv.request_id,
                "ok": all(r.ok for r in replies),
                "text": "\n".join(([welcome] if welcome else []) + shown),
                "announcement": (
                    last.announcement.model_copy(update={"text": "\n".join(texts)})
                    if last.announcement is not None and len(texts) > 1
                    else last.announcement
                ),
                "data": {"environments": [r.data for r in replies]},
            }
        )

    # --- identify ------------------------------------------------------------------------

    async def _identify(self, inv: Invocation) -> tuple[Caller | None, str | None]:
        """The caller, and a welcome when this is their first contact. (None, why) when the
        chat could not tell who they are and Marvin doesn't know them yet."""
        services = self.services
        now = services.clock.now()
        # Most callers are known and linked: a read, without taking the write lock.
        async with services.store.transaction() as session:
            known = await known_account(session, inv)
            grants = await granted(session, known.id, now) if known else frozenset()
        if known is not None:
            return await caller_for(known, grants, services.directory), None
        if inv.identity_error:
            return None, (
                f"I couldn't ask {inv.identity_error} who you are, so I can't tell what you may "
                "do. Nothing was done; please try again in a minute."
            )
        try:
            person = await services.directory.by_email(inv.user_email) if inv.user_email else None
        except AdapterError as exc:
            # Not linked this time: the account is made, and the next message asks again.
            log.warning("directory.lookup_failed", error=exc.shown())
            person = None
        async with services.store.transaction(write=True) as session:
            account, created, unlinked = await ensure_account(session, inv, person, now)
            grants = await granted(session, account.id, now)
            if unlinked is not None:
                await self._unlinked(session, inv, account, unlinked)
            if created:
                await audit.record(
                    session,
                    inv,
                    outcome="registered",
                    account_id=account.id,
                    details={
                        "linked": person is not None,
                        "gitlab_username": person and person.gitlab_username,
                    },
                )
        caller = await caller_for(account, grants, services.directory)
        if not created:
            return caller, None
        log.info("account.registered", account_id=account.id, linked=person is not None)
        return caller, self._welcome(caller)

    async def _unlinked(
        self, session: AsyncSession, inv: Invocation, account: Account, handle: str
    ) -> None:
        """The chat's e-mail no longer matches the linked person: said in the record and in
        the production channel, in the same transaction as the unlinking."""
        await audit.record(
            session,
            inv,
            outcome="unlinked",
            account_id=account.id,
            details={"was": handle, "email": account.email},
        )
        message = Announcement(
            channel_id=self.services.settings.production_channel.id,
            text=(
                f"The chat account that was @{handle}'s now gives the e-mail {account.email}: "
                f"its link to @{handle}, and every role and grant with it, is suspended until "
                "it is linked again."
            ),
            idempotency_key=f"unlinked:{inv.request_id}",
        )
        await enqueue(
            session,
            kind=ANNOUNCE,
            key=message.idempotency_key,
            payload=message.model_dump(mode="json"),
            now=self.services.clock.now(),
        )
        log.warning("account.unlinked", account_id=account.id, was=handle)

    def _welcome(self, caller: Caller) -> str:
        if caller.person is None:
            return (
                "Welcome! I've created your Marvin account, but I can't find you in the roles "
                "registry, so you can read but not change anything yet. No one there has your "
                "e-mail: if you have a GitLab user, say `account link <gitlab-username>` and a "
                "production engineer will confirm it."
            )
        flag_set = self.registry.find("feature", "set")
        needs = flag_set.needs if flag_set else None
        hint = (
            ""
            if needs is None or meets(caller, needs)
            else f" Changing feature flags needs the `{needs.name}` {needs.kind}, which "
            "you request with an issue labelled `access request` "
            f'(`access request {needs.name} "<why>"` opens one).'
        )
        return (
            f"Welcome! I've created your Marvin account, linked to GitLab user "
            f"{caller.account.gitlab_username}. Say `help` to see what I do.{hint}"
        )

    async def _answered_before(self, inv: Invocation) -> Reply | None:
        """A redelivered invocation that already finished gets its first answer again."""
        async with self.services.store.transaction() as session:
            rows = await session.scalars(
                select(AuditRecord)
                .where(AuditRecord.request_id == inv.request_id)
                .order_by(AuditRecord.id.desc())
            )
            for row in rows:
                stored = row.details.get("reply")
                if isinstance(stored, dict):
                    log.info("command.replayed", outcome=row.outcome)
                    return Reply(request_id=inv.request_id, command=row.command, **stored)
        return None

    # --- gate ----------------------------------------------------------------------------

    def _gate(self, parsed: Parsed, caller: Caller, inv: Invocation) -> tuple[str, str] | None:
        req = GateRequest(parsed.spec, parsed.command, caller, inv, self.services.settings)
        for gate in self.gates:
            decision = _decide(gate.name, gate.check, req)
            if not decision.allowed:
                return gate.name, decision.reason
        return None

    # --- gather, judge, and then reserve, apply, record ----------------------------------

    async def _run(self, answer: Answer, parsed: Parsed) -> Reply:
        spec = parsed.spec
        for attempt in range(MAX_ATTEMPTS):
            ctx = Context(answer.inv, answer.caller, self.services, self.services.clock.now())
            plan = await self._gather(spec, parsed, ctx)
            if isinstance(plan, Done):
                outcome = "ok" if plan.ok else plan.kind
                return await answer.final(
                    outcome,
                    ok=plan.ok,
                    kind=plan.kind,
                    text=plan.text,
                    command=spec.name,
                    data=plan.data,
                )
            if isinstance(plan, Rerun):
                return await self._rerun(answer, spec, plan)
            notes: list[str] = []
            if spec.production_change:
                assert ctx.facts is not None
                request = Request(
                    spec,
                    parsed.command,
                    answer.caller,
                    answer.inv,
                    self.services.settings,
                    ctx.now,
                    plan,
                    ctx.facts,
                )
                verdict = judge_all(self.policies, request)
                if isinstance(verdict, tuple):
                    return await answer.denied(spec, *verdict)
                notes = verdict
            elif spec.needs is not None:
                stale = await self._registry_stale(spec, plan, ctx)
                if stale is not None:
                    return await answer.denied(spec, registry.NAME, stale)
            deviation = self._needs_approval(plan)
            if deviation and not answer.inv.approval:
                return await self._ask_approval(answer, spec.name, plan, deviation, ctx.now)
            reason = plan.confirmation_reason()
            if reason and not (answer.inv.confirmation or answer.inv.approval):
                return await self._ask_confirmation(answer, spec.name, plan, reason, ctx.now)
            try:
                return await self._commit(answer, spec, plan, ctx, notes)
            except Moved:
                log.info("command.moved", command=spec.name, attempt=attempt + 1)
                await asyncio.sleep(0.005 * (attempt + 1))
            except AlreadySpent:
                return await answer.final(
                    "ok",
                    ok=True,
                    text="That change was already confirmed and made; nothing more to do.",
                    command=spec.name,
                )
            except Overtaken as exc:
                return await answer.final(
                    "overtaken", ok=False, kind="error", text=exc.reason, command=spec.name
                )
            except AlreadyDecided:
                return await answer.final(
                    "ok",
                    ok=True,
                    text="That request was already decided; nothing more to do.",
                    command=spec.name,
                )
        return await answer.final(
            "moved",
            ok=False,
            kind="error",
            text="What you asked about kept changing while I checked it; nothing was changed. "
            "Look at its state and try again.",
            command=spec.name,
        )

    async def _gather(self, spec: CommandSpec, parsed: Parsed, ctx: Context) -> Plan:
        """The handler's facts and, for a production change, the production facts, both
        asked at once; no transaction is open while either waits."""
        if not spec.production_change:
            return await spec.handler.plan(parsed.command, ctx)
        plan, facts = await asyncio.gather(
            spec.handler.plan(parsed.command, ctx),
            gather_facts(self.services, ctx.invocation, ctx.now),
        )
        ctx.facts = facts
        return plan

    async def _registry_stale(self, spec: CommandSpec, plan: Change, ctx: Context) -> str | None:
        """A command allowed on a role or grant read from the registry, that is no production
        change (whose policies judge this among its other facts): refused, as a production
        change is, when the registry is too old to say who holds that role."""
        fact = await fetch(self.services.directory.freshness())
        settings = self.services.settings
        decision = _decide(
            registry.NAME, lambda p: registry.judge_needs(spec, p, fact, ctx.now, settings), plan
        )
        return None if decision.allowed else decision.reason

    async def _commit(
        self, answer: Answer, spec: CommandSpec, plan: Change, ctx: Context, notes: list[str]
    ) -> Reply:
        handler = spec.handler
        store = self.services.store
        if not plan.remote:
            # Local: reserve, apply and record are one short transaction.
            async with store.transaction(write=True) as session:
                await self._reserve(session, spec, plan, ctx)
                outcome = await handler.record(plan, session, ctx, {})
                reply = await answer.applied(session, spec, plan, outcome, notes)
            await self._publish_flags()
            return reply
        async with store.transaction(write=True) as session:
            await self._reserve(session, spec, plan, ctx)
            intent_id = await intents.open_intent(session, ctx, spec.name, plan)
        try:
            applied = await handler.apply(plan, ctx)
        except (OutcomeUnknown, Conflict) as exc:
            # Sent, but what happened isn't known (no answer), or isn't what was asked (the
            # backend holds something else after it): the reconciler reads it back.
            async with store.transaction(write=True) as session:
                await intents.mark(session, intent_id, "unknown", exc.shown(), ctx.now)
                return await answer.unknown(session, spec, plan, exc)
        except AdapterError as exc:
            async with store.transaction(write=True) as session:
                await intents.mark(session, intent_id, "failed", exc.shown(), ctx.now)
                return await answer.final_in(
                    session,
                    "failed",
                    ok=False,
                    kind="error",
                    text=f"{exc.shown()}. Nothing was changed.",
                    command=spec.name,
                )
        async with store.transaction(write=True) as session:
            outcome = await handler.record(plan, session, ctx, applied)
            await intents.mark(session, intent_id, "applied", None, ctx.now)
            return await answer.applied(session, spec, plan, outcome, notes)

    async def _reserve(
        self, session: AsyncSession, spec: CommandSpec, plan: Change, ctx: Context
    ) -> None:
        inv = ctx.invocation
        if inv.confirmation:
            await spend(session, inv.confirmation, ctx)
        if inv.approval and inv.approved_by:
            await spend_approval(session, inv.approval, inv.approved_by, ctx)
        await spec.handler.reserve(plan, session, ctx)

    # --- confirmations -------------------------------------------------------------------

    async def _ask_confirmation(
        self, answer: Answer, command: str, plan: Change, reason: str, now: datetime
    ) -> Reply:
        inv = answer.inv
        token = secrets.token_hex(8)
        expires = now + CONFIRM_WITHIN
        async with self.services.store.transaction(write=True) as session:
            session.add(
                Confirmation(
                    token=token,
                    account_id=answer.caller.account.id,
                    transport=inv.transport,
                    chat_user_id=inv.user_id,
                    place=inv.place.model_dump(mode="json"),
                    text=inv.text,
                    request_id=inv.request_id,
                    created_at=now,
                    expires_at=expires,
                )
            )
            return await answer.final_in(
                session,
                "confirm_requested",
                ok=True,
                kind="confirm",
                text=f"Please confirm: {reason}.",
                command=command,
                details={"change": plan.summary(), "token": token},
                confirm=ConfirmRequest(token=token, prompt=f"{reason}?", expires_at=expires),
            )

    async def _rerun(self, answer: Answer, spec: CommandSpec, plan: Rerun) -> Reply:
        """Confirmed or approved: the original command runs again, through every policy, as
        it stands now; an approved one as its requester, with the approver named."""
        if plan.on_behalf is None:
            await answer.record_only("allowed", command=spec.name, details={"confirmed": plan.text})
            confirmed = answer.inv.model_copy(
                update={"text": plan.text, "place": plan.place, "confirmation": plan.token}
            )
            return await self._handle(confirmed)
        await answer.record_only(
            "allowed", command=spec.name, details={"approved": plan.text, "token": plan.token}
        )
        approved = plan.on_behalf.model_copy(
            update={
                "request_id": f"{answer.inv.request_id}-approved",
                "received_at": self.services.clock.now(),
                "approval": plan.token,
                "approved_by": plan.approved_by,
                "redelivered": False,
            }
        )
        reply = await self._handle(approved)
        # The approver is the one reading this answer: say whose change it was.
        text = f"Approved @{plan.on_behalf.user_name}'s change. {reply.text}"
        return reply.model_copy(update={"text": text, "request_id": answer.inv.request_id})

    async def _publish_flags(self) -> None:
        """Rewrite the flagd file after a change (committed; no transaction is open)."""
        flagd = self.services.flagd
        if flagd is None:
            return
        try:
            await flagd.write()  # a read and a compare; no write when nothing changed
        except Exception:
            log.exception("flagd.write_failed", path=str(flagd.path))

    def _needs_approval(self, plan: Change) -> str | None:
        """The deviation, when this change must wait for a second person (four-eyes)."""
        if not isinstance(plan, ProductionChange):
            return None
        impact = plan.impact()
        if impact.deviation and impact.environment in self.services.settings.flags.four_eyes:
            return f"{impact.target} in {impact.environment}, {impact.deviation}"
        return None

    async def _ask_approval(
        self, answer: Answer, command: str, plan: Change, deviation: str, now: datetime
    ) -> Reply:
        inv = answer.inv
        token = secrets.token_hex(8)
        expires = now + timedelta(minutes=self.services.settings.flags.approval_minutes)
        who = answer.caller.handle
        what = f"{plan.summary()}: {deviation}"
        request = ApprovalRequest(
            token=token, prompt=f"Approve @{who}'s change?", expires_at=expires
        )
        channel = self.services.settings.production_channel
        async with self.services.store.transaction(write=True) as session:
            session.add(
                Approval(
                    token=token,
                    account_id=answer.caller.account.id,
                    requester=who,
                    invocation=inv.model_dump(mode="json"),
                    summary=what,
                    created_at=now,
                    expires_at=expires,
                )
            )
            message = Announcement(
                channel_id=channel.id,
                text=(
                    f"@{who} asks for a second production engineer's approval: {what} "
                    f"(`approve {token}` or `decline {token}`)"
                ),
                fields={"by": who, "request_id": inv.request_id},
                idempotency_key=f"approval:{token}",
                approval=request,
            )
            await enqueue(
                session,
                kind=ANNOUNCE,
                key=message.idempotency_key,
                payload=message.model_dump(mode="json"),
                now=now,
            )
            minutes = f"{self.services.settings.flags.approval_minutes:g}"
            return await answer.final_in(
                session,
                "approval_requested",
                ok=True,
                kind="confirm",
                text=(
                    f"This change deviates from the rules ({deviation}), so it waits for a "
                    f"second production engineer: I've asked in #{channel.name}. It goes ahead "
                    f"when someone approves it within {minutes} minutes, after every check "
                    "runs again."
                ),
                command=command,
                details={"change": plan.summary(), "approval": token},
                announcement=message,
            )

    async def _audit_failure(self, inv: Invocation) -> None:
        try:
            async with self.services.store.transaction(write=True) as session:
                await audit.record(session, inv, outcome="error")
        except Exception:
            log.exception("audit.failed")


def only_environment(text: str, envs: str | Sequence[str], environments: Iterable[str]) -> str:
    """The command as typed, naming `envs` (one, or several) alone."""
    wanted = [envs] if isinstance(envs, str) else list(envs)
    return " ".join([without_options(text, environments), *(f"--{env}" for env in wanted)])


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


class Answer:
    """The record phase: every answer is audited (with the reply, so a redelivery gets the
    same answer), the caller's last contact noted, and a change's announcement queued, in
    one short transaction."""

    def __init__(
        self, pipeline: Pipeline, inv: Invocation, caller: Caller, welcome: str | None
    ) -> None:
        self.services = pipeline.services
        self.journal = pipeline.journal
        self.inv = inv
        self.caller = caller
        self.welcome = welcome

    def _reply(self, text: str, **fields: Any) -> Reply:
        if self.welcome:
            text = f"{self.welcome}\n\n{text}"
        return Reply(request_id=self.inv.request_id, text=text, **fields)

    async def final(self, outcome: str, **fields: Any) -> Reply:
        """An answer that changes nothing: its record is written with others' (a journal)."""
        reply, record = self._compose(outcome, **fields)
        seen = (self.caller.account.id, self.services.clock.now())
        await self.journal.write(self.inv, seen=seen, **record)
        return reply

    async def final_in(self, session: AsyncSession, outcome: str, **fields: Any) -> Reply:
        """An answer recorded in `session`, the transaction of the change it reports."""
        reply, record = self._compose(outcome, **fields)
        await self._seen(session)
        await audit.record(session, self.inv, **record)
        return reply

    def _compose(
        self,
        outcome: str,
        *,
        ok: bool,
        text: str,
        kind: ReplyKind = "result",
        command: str | None = None,
        policy: str | None = None,
        details: dict[str, Any] | None = None,
        **extra: Any,
    ) -> tuple[Reply, dict[str, Any]]:
        """The reply, and its audit record (which keeps the reply, for a redelivery)."""
        reply = self._reply(text, ok=ok, kind=kind, command=command, denied_by=policy, **extra)
        stored = {"ok": ok, "kind": kind, "text": reply.text, "denied_by": policy}
        record = {
            "outcome": outcome,
            "account_id": self.caller.account.id,
            "command": command,
            "policy": policy,
            "reason": text if policy else (text if outcome == "usage_error" else None),
            "details": {**(details or {}), "reply": stored},
        }
        return reply, record

    async def record_only(self, outcome: str, **fields: Any) -> None:
        async with self.services.store.transaction(write=True) as session:
            await audit.record(
                session, self.inv, outcome=outcome, account_id=self.caller.account.id, **fields
            )

    async def denied(self, spec: CommandSpec, policy: str, reason: str) -> Reply:
        return await self.final(
            "denied", ok=False, kind="denied", text=reason, command=spec.name, policy=policy
        )

    async def applied(
        self,
        session: AsyncSession,
        spec: CommandSpec,
        plan: Change,
        outcome: Outcome,
        notes: list[str],
    ) -> Reply:
        if self.inv.approved_by:
            notes = [*notes, f"Approved by @{self.inv.approved_by}"]
        announcement = await announce(session, self.services, self.inv, self.caller, outcome, notes)
        log.info("command.applied", command=spec.name)
        return await self.final_in(
            session,
            "allowed",
            ok=True,
            text=outcome.text,
            command=spec.name,
            details={"change": plan.summary(), "notes": notes, **outcome.details},
            announcement=announcement,
        )

    async def unknown(
        self, session: AsyncSession, spec: CommandSpec, plan: Change, exc: AdapterError
    ) -> Reply:
        channel = self.services.settings.production_channel.name
        what = (
            "so I don't know whether it happened"
            if isinstance(exc, OutcomeUnknown)
            else "which is not what you asked"
        )
        return await self.final_in(
            session,
            "unknown",
            ok=False,
            kind="error",
            text=(
                f"I asked {exc.service} to make the change ({plan.summary()}), but it "
                f"{exc.message}, {what}. I'll read it back from {exc.service} and announce "
                f"the outcome in #{channel}; don't repeat the command meanwhile."
            ),
            command=spec.name,
            details={"change": plan.summary(), "error": exc.shown()},
        )

    async def _seen(self, session: AsyncSession) -> None:
        await session.execute(
            update(Account)
            .where(Account.id == self.caller.account.id)
            .values(last_seen_at=self.services.clock.now())
            # Nothing in this session holds the row: no need to look for it there.
            .execution_options(synchronize_session=False)
        )
