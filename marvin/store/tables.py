"""The schema. It changes only through Alembic migrations in `migrations/`."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

UtcDateTime = DateTime(timezone=True)
Percent = Numeric(7, 4)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("transport", "chat_user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    transport: Mapped[str] = mapped_column(String(32))
    chat_user_id: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    directory_handle: Mapped[str | None] = mapped_column(String(64), index=True)
    gitlab_username: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default="active")
    away_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    away_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Grant(Base):
    """A permission given to one account, normally through an access-request issue."""

    __tablename__ = "grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    granted_by: Mapped[str | None] = mapped_column(String(255))
    issue_ref: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(255))
    # When its holder was told it is about to expire (once).
    expiry_notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AuditRecord(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    transport: Mapped[str] = mapped_column(String(32))
    chat_user_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    place_id: Mapped[str] = mapped_column(String(64))
    place_name: Mapped[str | None] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    command: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))
    policy: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class LocalFlag(Base):
    """The embedded flag backend's own storage."""

    __tablename__ = "local_flags"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    environment: Mapped[str] = mapped_column(String(16), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    percentage_of_actors: Mapped[Decimal | None] = mapped_column(Percent)
    percentage_of_time: Mapped[Decimal | None] = mapped_column(Percent)
    actors: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class FlagLedger(Base):
    """Marvin's own record per flag and environment, whatever the backend.

    Its rows are what a change reserves: `version` goes up with every change, so a change
    decided on an older version is planned again. `exposed_since` is what the soak time
    counts from.
    """

    __tablename__ = "flag_ledger"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    environment: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    exposed_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class FlagChange(Base):
    __tablename__ = "flag_changes"
    __table_args__ = (Index("ix_flag_changes_name_env", "name", "environment", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    environment: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(255))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    exposure_before: Mapped[Decimal] = mapped_column(Percent)
    exposure_after: Mapped[Decimal] = mapped_column(Percent)
    issue_ref: Mapped[str | None] = mapped_column(String(255))
    override_reason: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Watch(Base):
    """A person's commitment to watch a change they made for the hours after it."""

    __tablename__ = "watches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(255))
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    oncall_handle: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64))
    # When the watcher was told the watch ended, and reminded (once) that they are on it.
    ended_notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reminded_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Incident(Base):
    """An outage, as Marvin records it: its own record first (the change lock reads it at
    once), the tracker's issue its projection (`issue_ref`, `issue_url` once it answered).

    `state`: open (the issue's Incident::Active), mitigated, resolved.
    """

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    severity: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="open", index=True)
    declared_by: Mapped[str | None] = mapped_column(String(255))
    issue_ref: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    service: Mapped[str | None] = mapped_column(String(100))
    # The labels asked for beyond those Marvin derives (outage, state, severity, service).
    labels: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    # Who owns it: the declarer or `--assign`; a directory handle and the GitLab username.
    handler: Mapped[str | None] = mapped_column(String(255))
    handler_gitlab: Mapped[str | None] = mapped_column(String(255))
    # Public unless this is set: one of `incidents.confidential_reasons`.
    confidential_reason: Mapped[str | None] = mapped_column(String(500))
    mitigated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    issue_url: Mapped[str | None] = mapped_column(String(1000))
    # The hidden marker in the issue's description: how a retried creation finds the issue
    # an unanswered one may have opened, instead of opening a second.
    marker: Mapped[str | None] = mapped_column(String(64), unique=True)
    request_id: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class IncidentEvent(Base):
    """The incident's timeline as Marvin recorded it (each also a note on the issue)."""

    __tablename__ = "incident_events"
    __table_args__ = (Index("ix_incident_events_incident_id", "incident_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    # declared, flag_change, deploy, watch, update, severity, mitigated, resolved
    kind: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    author: Mapped[str | None] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    request_id: Mapped[str | None] = mapped_column(String(64))


class ChangeRequest(Base):
    """A planned change to production (`change request`): its own issue, from the
    `change_checklist` template; criticality 1 and 2 lock other changes while it runs."""

    __tablename__ = "change_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    criticality: Mapped[int] = mapped_column(Integer)
    # requested, running, done
    state: Mapped[str] = mapped_column(String(16), index=True)
    requested_by: Mapped[str] = mapped_column(String(255))
    scheduled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    started_by: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The hidden marker in its issue's description, and the issue once it is opened.
    marker: Mapped[str] = mapped_column(String(64), unique=True)
    issue_ref: Mapped[str | None] = mapped_column(String(255))
    issue_url: Mapped[str | None] = mapped_column(String(1000))
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class IncidentPin(Base):
    """A chat message put on an incident's timeline (a reaction): once, however often it is
    pinned."""

    __tablename__ = "incident_pins"
    __table_args__ = (UniqueConstraint("incident_id", "source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    # Where the message is: "<chat>:<channel>:<ts>".
    source: Mapped[str] = mapped_column(String(200))
    event_id: Mapped[int] = mapped_column(ForeignKey("incident_events.id", ondelete="CASCADE"))
    pinned_by: Mapped[str] = mapped_column(String(255))
    pinned_at: Mapped[datetime] = mapped_column(UtcDateTime)


class LocalIssueNote(Base):
    """A note on an issue of the embedded tracker (an incident's timeline, its updates)."""

    __tablename__ = "local_issue_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_id: Mapped[int] = mapped_column(
        ForeignKey("local_issues.id", ondelete="CASCADE"), index=True
    )
    body: Mapped[str] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class LocalIssue(Base):
    """The embedded issue tracker, for teams without GitLab and for the demo."""

    __tablename__ = "local_issues"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    labels: Mapped[list[str]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), default="opened")
    author: Mapped[str | None] = mapped_column(String(255))
    assignee: Mapped[str | None] = mapped_column(String(255))
    confidential: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Confirmation(Base):
    """A risky change waiting for its author's explicit go-ahead."""

    __tablename__ = "confirmations"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    transport: Mapped[str] = mapped_column(String(32))
    chat_user_id: Mapped[str] = mapped_column(String(64))
    place: Mapped[dict[str, Any]] = mapped_column(JSON)
    text: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Approval(Base):
    """A change waiting for a second person's go-ahead (four-eyes), decided once."""

    __tablename__ = "approvals"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    requester: Mapped[str] = mapped_column(String(255))
    # The requester's invocation, to run again on their behalf once approved.
    invocation: Mapped[dict[str, Any]] = mapped_column(JSON)
    summary: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class InboxItem(Base):
    """Work a chat handed us and we acknowledged: written before the acknowledgement, so a
    crash after it delays the work and never drops it."""

    __tablename__ = "inbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)
    transport: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The replica working on it, until when: another replica takes it over only once the
    # lease has run out (the owner renews it while it lives).
    owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)


class OutboxMessage(Base):
    """A call to the outside world that must not be lost: written first, delivered later."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class JobLease(Base):
    """Which replica runs a background job (outbox, recovery, retention...), until when.

    `fence` goes up with every grant, so work done under an older grant can tell.
    """

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    fence: Mapped[int] = mapped_column(Integer, default=0)


class ChangeIntent(Base):
    """A change sent to an outside system: written before the call, settled after it.

    A call that timed out leaves the intent `unknown`, and the reconciler settles it by
    reading the backend: applied, not applied, or diverged (for a person to look at).
    """

    __tablename__ = "change_intents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    command: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    invocation: Mapped[dict[str, Any]] = mapped_column(JSON)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    settled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Deviation(Base):
    """A deviation Marvin was asked for and opened an issue for: the binding that issue
    approves, written by Marvin, not typed by whoever later links the issue."""

    __tablename__ = "deviations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flag: Mapped[str] = mapped_column(String(64), index=True)
    environments: Mapped[list[str]] = mapped_column(JSON)
    # The most the deviation lets the flag expose (percent of traffic; 100 for `true`).
    max_exposure: Mapped[Decimal] = mapped_column(Percent)
    value: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    requested_by: Mapped[str] = mapped_column(String(255))
    marker: Mapped[str] = mapped_column(String(64), unique=True)
    # The tracker's reference once the issue is open ("#12"); unique: one binding per issue.
    issue_ref: Mapped[str | None] = mapped_column(String(64), unique=True)
    issue_url: Mapped[str | None] = mapped_column(String(1024))
    request_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    opened_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class LocalIssueLabelEvent(Base):
    """When a label was put on or taken off an issue of the embedded tracker: how long ago
    a deviation was approved is read from here (GitLab has its resource label events)."""

    __tablename__ = "local_issue_label_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_id: Mapped[int] = mapped_column(
        ForeignKey("local_issues.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(8))  # add | remove
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class DeploySlot(Base):
    """A booked deploy: one version to one environment in one window.

    The scheduler claims a due slot with `claimed_by`/`claim_until` and raises `fence` with
    every claim, so a replica whose claim ran out can't act on it any more; a person's
    command on the slot raises it too, so no claim taken before writes over the command.
    `key` is the slot's idempotency key, carried by its announcement and its pipeline.
    """

    __tablename__ = "deploy_slots"
    __table_args__ = (
        Index("ix_deploy_slots_environment_starts_at", "environment", "starts_at"),
        Index("ix_deploy_slots_state_starts_at", "state", "starts_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    environment: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(128))
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime)
    note: Mapped[str | None] = mapped_column(String(500))
    booked_by: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    # scheduled -> announced (due) -> starting -> started -> succeeded | failed; or cancelled,
    # refused (when due), missed (never started). The sets of them the code asks are named
    # once, in marvin.deploys.service (HOLDS_WINDOW, CANCELLABLE, ...).
    state: Mapped[str] = mapped_column(String(16))
    override_reason: Mapped[str | None] = mapped_column(String(500))
    fence: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claim_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    announced_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    overdue: Mapped[bool] = mapped_column(Boolean, default=False)
    started_by: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    pipeline_id: Mapped[int | None] = mapped_column(Integer)
    pipeline_url: Mapped[str | None] = mapped_column(String(1000))
    pipeline_status: Mapped[str | None] = mapped_column(String(32))
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    outcome_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class DeployFreeze(Base):
    """A window in which one environment takes no deploys (Marvin's own; GitLab's are read)."""

    __tablename__ = "deploy_freezes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment: Mapped[str] = mapped_column(String(32), index=True)
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(String(500))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    removed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class DeployLock(Base):
    """An environment stopped for deploys, with the reason shown to everyone."""

    __tablename__ = "deploy_locks"

    environment: Mapped[str] = mapped_column(String(32), primary_key=True)
    reason: Mapped[str] = mapped_column(String(500))
    locked_by: Mapped[str] = mapped_column(String(64))
    locked_at: Mapped[datetime] = mapped_column(UtcDateTime)


class DeployQueueEntry(Base):
    """Someone waiting for their turn at an environment, in the order they joined."""

    __tablename__ = "deploy_queue"
    __table_args__ = (Index("ix_deploy_queue_environment_id", "environment", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment: Mapped[str] = mapped_column(String(32))
    handle: Mapped[str] = mapped_column(String(64))
    version: Mapped[str | None] = mapped_column(String(128))
    joined_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # When they were told it is their turn (once), and when they left the queue.
    told_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    left_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class DirectoryMember(Base):
    """The `gitlab` roles registry's mirror: one row per role and member, as last synced.

    Commands read this, never GitLab: a sync replaces it whole in one short transaction.
    """

    __tablename__ = "directory_members"
    __table_args__ = (UniqueConstraint("role", "username"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(64))
    username: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    gitlab_user_id: Mapped[int] = mapped_column(Integer)
    group_path: Mapped[str] = mapped_column(String(255))
    inherited: Mapped[bool] = mapped_column(Boolean, default=False)
    synced_at: Mapped[datetime] = mapped_column(UtcDateTime)


class DirectorySync(Base):
    """How fresh the mirror is: its last successful sync and the last attempt's error."""

    __tablename__ = "directory_syncs"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    synced_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    attempted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    members: Mapped[int] = mapped_column(Integer, default=0)


class AccessReview(Base):
    """Someone's production access looked at and confirmed (`access reviewed @person`)."""

    __tablename__ = "access_reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    handle: Mapped[str] = mapped_column(String(255), index=True)
    reviewed_by: Mapped[str] = mapped_column(String(255))
    reviewed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    note: Mapped[str | None] = mapped_column(String(500))


class AccessReminder(Base):
    """When a recurring access notice (the monthly review summary) was last posted."""

    __tablename__ = "access_reminders"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AccountLink(Base):
    """An account asking to be linked to a GitLab user its e-mail didn't match, until a
    production engineer confirms it (`account link`)."""

    __tablename__ = "account_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    gitlab_username: Mapped[str] = mapped_column(String(255))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    confirmed_by: Mapped[str | None] = mapped_column(String(255))
    confirmed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
