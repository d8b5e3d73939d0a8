"""WeCom customer groups (社群): the groups, their customer members (by blind index), which
staff member a WeCom user is, campaigns sent to a group; `groupchats` permissions for the
existing tenants' default roles

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-02 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.policy_data import grant_to_default_roles, take_from_default_roles
from tenancy import rls

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here (auth.roles may move on).
_READ = [("groupchats", "read")]
GAINED: dict[str, list[tuple[str, str]]] = {
    "hq_admin": [("groupchats", "read"), ("groupchats", "write")],
    "branch_manager": _READ,
    "region_manager": _READ,
    "doctor": _READ,
    "health_manager": _READ,
    "operator": _READ,
    "marketing": _READ,
}


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"],
        ["tenants.id"],
        name=op.f(f"fk_{table}_tenant_id_tenants"),
        ondelete="CASCADE",
    )


def _group_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", "group_id"],
        ["wecom_group_chats.tenant_id", "wecom_group_chats.id"],
        name=op.f(f"fk_{table}_tenant_id_group_id_wecom_group_chats"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "wecom_group_chats",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("chat_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("owner_userid", sa.String(length=64), nullable=False),
        sa.Column("branch_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("dismissed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "branch_id"],
            ["branches.tenant_id", "branches.id"],
            name=op.f("fk_wecom_group_chats_tenant_id_branch_id_branches"),
        ),
        _tenant_fk("wecom_group_chats"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_wecom_group_chats")),
        sa.UniqueConstraint("tenant_id", "chat_id", name="uq_wecom_group_chats_chat_id"),
    )
    op.create_index("ix_wecom_group_chats_branch", "wecom_group_chats", ["tenant_id", "branch_id"])
    op.create_table(
        "wecom_staff_links",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("wecom_userid", sa.String(length=64), nullable=False),
        sa.Column("staff_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "staff_id"],
            ["staff_users.tenant_id", "staff_users.id"],
            name=op.f("fk_wecom_staff_links_tenant_id_staff_id_staff_users"),
        ),
        _tenant_fk("wecom_staff_links"),
        sa.PrimaryKeyConstraint("tenant_id", "wecom_userid", name=op.f("pk_wecom_staff_links")),
    )
    op.create_table(
        "wecom_group_campaigns",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("msgid", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _group_fk("wecom_group_campaigns"),
        _tenant_fk("wecom_group_campaigns"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_wecom_group_campaigns")),
    )
    op.create_index(
        "ix_wecom_group_campaigns_due",
        "wecom_group_campaigns",
        ["tenant_id", "status", "window_start"],
    )
    op.create_table(
        "wecom_group_members",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("member_bidx", sa.LargeBinary(length=16), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("left_at", sa.DateTime(timezone=True), nullable=True),
        _group_fk("wecom_group_members"),
        _tenant_fk("wecom_group_members"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_wecom_group_members")),
    )
    op.create_index(
        "ix_wecom_group_members_group",
        "wecom_group_members",
        ["tenant_id", "group_id", "joined_at"],
    )
    op.create_index(
        "ix_wecom_group_members_member", "wecom_group_members", ["tenant_id", "member_bidx"]
    )
    op.create_index(
        "uq_wecom_group_members_open",
        "wecom_group_members",
        ["tenant_id", "group_id", "member_bidx"],
        unique=True,
        sqlite_where=sa.text("left_at IS NULL"),
        postgresql_where=sa.text("left_at IS NULL"),
    )
    # Nothing deletes a group or a stay: a dismissed group and a departure are kept, dated.
    rls.enable_tenant_rls(op, "wecom_group_chats", "SELECT, INSERT, UPDATE")
    rls.enable_tenant_rls(op, "wecom_group_members", "SELECT, INSERT, UPDATE")
    rls.enable_tenant_rls(op, "wecom_staff_links", "SELECT, INSERT, UPDATE, DELETE")
    rls.enable_tenant_rls(op, "wecom_group_campaigns", "SELECT, INSERT, UPDATE")
    grant_to_default_roles(op.get_bind(), GAINED)


def downgrade() -> None:
    take_from_default_roles(op.get_bind(), GAINED)
    for table in (
        "wecom_group_campaigns",
        "wecom_group_members",
        "wecom_staff_links",
        "wecom_group_chats",
    ):
        rls.disable_tenant_rls(op, table)
    op.drop_index("uq_wecom_group_members_open", table_name="wecom_group_members")
    op.drop_index("ix_wecom_group_members_member", table_name="wecom_group_members")
    op.drop_index("ix_wecom_group_members_group", table_name="wecom_group_members")
    op.drop_table("wecom_group_members")
    op.drop_index("ix_wecom_group_campaigns_due", table_name="wecom_group_campaigns")
    op.drop_table("wecom_group_campaigns")
    op.drop_table("wecom_staff_links")
    op.drop_index("ix_wecom_group_chats_branch", table_name="wecom_group_chats")
    op.drop_table("wecom_group_chats")
