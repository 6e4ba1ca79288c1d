"""access: the roles registry's GitLab mirror, access reviews and reminders, account links,
and who revoked a grant and when its holder was told of its expiry

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 11:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "directory_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("gitlab_user_id", sa.Integer(), nullable=False),
        sa.Column("group_path", sa.String(length=255), nullable=False),
        sa.Column("inherited", sa.Boolean(), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directory_members")),
        sa.UniqueConstraint("role", "username", name=op.f("uq_directory_members_role")),
    )
    with op.batch_alter_table("directory_members", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_directory_members_username"), ["username"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_directory_members_email"), ["email"], unique=False)
    op.create_table(
        "directory_syncs",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_directory_syncs")),
    )
    op.create_table(
        "access_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("handle", sa.String(length=255), nullable=False),
        sa.Column("reviewed_by", sa.String(length=255), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_reviews")),
    )
    with op.batch_alter_table("access_reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_reviews_handle"), ["handle"], unique=False)
    op.create_table(
        "access_reminders",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_access_reminders")),
    )
    op.create_table(
        "account_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("gitlab_username", sa.String(length=255), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_by", sa.String(length=255), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_links_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_links")),
    )
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_by", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("expiry_notified_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_column("expiry_notified_at")
        batch_op.drop_column("revoked_by")
    op.drop_table("account_links")
    op.drop_table("access_reminders")
    with op.batch_alter_table("access_reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_reviews_handle"))
    op.drop_table("access_reviews")
    op.drop_table("directory_syncs")
    with op.batch_alter_table("directory_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_directory_members_email"))
        batch_op.drop_index(batch_op.f("ix_directory_members_username"))
    op.drop_table("directory_members")
