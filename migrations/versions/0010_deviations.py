"""deviations: the binding Marvin writes when it opens a deviation issue, and when the
embedded tracker's labels were put on

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 11:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deviations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("flag", sa.String(length=64), nullable=False),
        sa.Column("environments", sa.JSON(), nullable=False),
        sa.Column("max_exposure", sa.Numeric(precision=7, scale=4), nullable=False),
        sa.Column("value", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("marker", sa.String(length=64), nullable=False),
        sa.Column("issue_ref", sa.String(length=64), nullable=True),
        sa.Column("issue_url", sa.String(length=1024), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_deviations_account_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deviations")),
        sa.UniqueConstraint("issue_ref", name=op.f("uq_deviations_issue_ref")),
        sa.UniqueConstraint("marker", name=op.f("uq_deviations_marker")),
    )
    with op.batch_alter_table("deviations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deviations_flag"), ["flag"], unique=False)

    op.create_table(
        "local_issue_label_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["issue_id"],
            ["local_issues.id"],
            name=op.f("fk_local_issue_label_events_issue_id_local_issues"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_local_issue_label_events")),
    )
    with op.batch_alter_table("local_issue_label_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_local_issue_label_events_issue_id"), ["issue_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("local_issue_label_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_local_issue_label_events_issue_id"))
    op.drop_table("local_issue_label_events")
    with op.batch_alter_table("deviations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deviations_flag"))
    op.drop_table("deviations")
