"""What a transport hands the core (Invocation) and what the core hands back (Reply).

Nothing in here knows about Slack: the shell, Slack and any future chat build the same
Invocation and render the same Reply.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ReplyKind = Literal["result", "usage", "denied", "error", "not_found", "confirm"]


class Place(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str | None = None
    is_dm: bool = False

    def label(self) -> str:
        if self.is_dm:
            return "a direct message"
        return f"#{self.name}" if self.name else self.id


class Invocation(BaseModel):
    model_config = ConfigDict(frozen=True)

    request_id: str
    transport: str = Field(description="shell, slack, ...")
    user_id: str = Field(description="The chat's own id for the person")
    user_name: str
    user_email: str | None = None
    place: Place
    text: str
    received_at: datetime
    # The confirmation code, when the person confirmed a change Marvin asked them to confirm.
    confirmation: str | None = None
    # The approval code and the approver, when a second person approved this change.
    approval: str | None = None
    approved_by: str | None = None
    # People the chat named (mentions) that its transport could not tell who they are.
    unresolved: tuple[str, ...] = ()
    # Why the chat could not tell who the caller is (its API did not answer), if it couldn't.
    identity_error: str | None = None
    # Delivered again (a crash, a takeover): answer from the record if it was already done.
    redelivered: bool = False
    # The person's time zone (IANA name) where the chat knows it: times they type are read
    # in it and shown back in it besides UTC.
    timezone: str | None = None


class ApprovalRequest(BaseModel):
    """A change waiting for a second person: any chat renders it (buttons, typed commands)."""

    model_config = ConfigDict(frozen=True)

    token: str
    prompt: str
    expires_at: datetime


class Announcement(BaseModel):
    """A message the production channel must see, delivered through the outbox."""

    model_config = ConfigDict(frozen=True)

    channel_id: str
    text: str
    fields: dict[str, str] = Field(default_factory=dict)
    idempotency_key: str
    approval: ApprovalRequest | None = None


class ConfirmRequest(BaseModel):
    """Marvin asks the caller to confirm; any transport renders it (button, typed command)."""

    model_config = ConfigDict(frozen=True)

    token: str
    prompt: str
    expires_at: datetime


class Reply(BaseModel):
    model_config = ConfigDict(frozen=True)

    request_id: str
    ok: bool
    kind: ReplyKind = "result"
    command: str | None = None
    text: str
    denied_by: str | None = None
    announcement: Announcement | None = None
    confirm: ConfirmRequest | None = None
    data: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "ok": self.ok,
            "kind": self.kind,
            "text": self.text,
            "denied_by": self.denied_by,
            "announcement": self.announcement.text if self.announcement else None,
            "confirm": self.confirm.token if self.confirm else None,
            "request_id": self.request_id,
        }
