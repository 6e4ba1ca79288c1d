"""deploys: slots, freezes, locks and the queue

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 11:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "deploy_slots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("environment", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("starts_at", UTC_DT, nullable=False),
        sa.Column("ends_at", UTC_DT, nullable=False),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("booked_by", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("override_reason", sa.String(length=500), nullable=True),
        sa.Column("fence", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("claim_until", UTC_DT, nullable=True),
        sa.Column("announced_at", UTC_DT, nullable=True),
        sa.Column("overdue", sa.Boolean(), nullable=False),
        sa.Column("started_by", sa.String(length=64), nullable=True),
        sa.Column("started_at", UTC_DT, nullable=True),
        sa.Column("pipeline_id", sa.Integer(), nullable=True),
        sa.Column("pipeline_url", sa.String(length=1000), nullable=True),
        sa.Column("pipeline_status", sa.String(length=32), nullable=True),
        sa.Column("finished_at", UTC_DT, nullable=True),
        sa.Column("outcome_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", UTC_DT, nullable=False),
        sa.Column("updated_at", UTC_DT, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_deploy_slots_account_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deploy_slots")),
        sa.UniqueConstraint("key", name=op.f("uq_deploy_slots_key")),
    )
    op.create_index(
        "ix_deploy_slots_environment_starts_at", "deploy_slots", ["environment", "starts_at"]
    )
    op.create_index("ix_deploy_slots_state_starts_at", "deploy_slots", ["state", "starts_at"])
    op.create_table(
        "deploy_freezes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("environment", sa.String(length=32), nullable=False),
        sa.Column("starts_at", UTC_DT, nullable=False),
        sa.Column("ends_at", UTC_DT, nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC_DT, nullable=False),
        sa.Column("removed_at", UTC_DT, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deploy_freezes")),
    )
    op.create_index(
        op.f("ix_deploy_freezes_environment"), "deploy_freezes", ["environment"], unique=False
    )
    op.create_table(
        "deploy_locks",
        sa.Column("environment", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("locked_by", sa.String(length=64), nullable=False),
        sa.Column("locked_at", UTC_DT, nullable=False),
        sa.PrimaryKeyConstraint("environment", name=op.f("pk_deploy_locks")),
    )
    op.create_table(
        "deploy_queue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("environment", sa.String(length=32), nullable=False),
        sa.Column("handle", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=True),
        sa.Column("joined_at", UTC_DT, nullable=False),
        sa.Column("told_at", UTC_DT, nullable=True),
        sa.Column("left_at", UTC_DT, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deploy_queue")),
    )
    op.create_index("ix_deploy_queue_environment_id", "deploy_queue", ["environment", "id"])


def downgrade() -> None:
    op.drop_index("ix_deploy_queue_environment_id", table_name="deploy_queue")
    op.drop_table("deploy_queue")
    op.drop_table("deploy_locks")
    op.drop_index(op.f("ix_deploy_freezes_environment"), table_name="deploy_freezes")
    op.drop_table("deploy_freezes")
    op.drop_index("ix_deploy_slots_state_starts_at", table_name="deploy_slots")
    op.drop_index("ix_deploy_slots_environment_starts_at", table_name="deploy_slots")
    op.drop_table("deploy_slots")
