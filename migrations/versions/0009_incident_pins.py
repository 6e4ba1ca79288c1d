"""incident pins: chat messages put on an incident's timeline, once each

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-30 11:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "incident_pins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("pinned_by", sa.String(length=255), nullable=False),
        sa.Column("pinned_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["incident_events.id"],
            name=op.f("fk_incident_pins_event_id_incident_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_pins_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_pins")),
        sa.UniqueConstraint("incident_id", "source", name=op.f("uq_incident_pins_incident_id")),
    )


def downgrade() -> None:
    op.drop_table("incident_pins")
