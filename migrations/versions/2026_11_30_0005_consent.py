"""consent: records and states per patient, purpose and channel; export and consent permissions

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.policy_data import grant_to_default_roles
from tenancy import rls

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RW = ("read", "write")
# What the default roles gain with this revision, frozen here (auth.policy may move on).
NEW_PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    "hq_admin": [*(("consents", a) for a in _RW), ("patients", "export")],
    "branch_manager": [("consents", a) for a in _RW],
    "health_manager": [("consents", a) for a in _RW],
    "operator": [("consents", a) for a in _RW],
    "doctor": [("consents", "read")],
}


def _patient_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", "patient_id"],
        ["patients.tenant_id", "patients.id"],
        name=op.f(f"fk_{table}_tenant_id_patient_id_patients"),
        ondelete="CASCADE",
    )


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"],
        ["tenants.id"],
        name=op.f(f"fk_{table}_tenant_id_tenants"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "consent_records",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("text_version", sa.String(length=40), nullable=False),
        sa.Column("method", sa.String(length=40), nullable=False),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        _patient_fk("consent_records"),
        _tenant_fk("consent_records"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_consent_records")),
    )
    with op.batch_alter_table("consent_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consent_records_patient", ["tenant_id", "patient_id", "recorded_at"], unique=False
        )
    op.create_table(
        "consent_states",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("text_version", sa.String(length=40), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        _patient_fk("consent_states"),
        _tenant_fk("consent_states"),
        sa.PrimaryKeyConstraint(
            "tenant_id", "patient_id", "purpose", "channel", name=op.f("pk_consent_states")
        ),
    )
    with op.batch_alter_table("consent_states", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consent_states_reach", ["tenant_id", "purpose", "channel", "granted"], unique=False
        )
    # The history is evidence: insert and read only.
    rls.enable_tenant_rls(op, "consent_records", "SELECT, INSERT")
    rls.append_only(op, "consent_records")
    rls.enable_tenant_rls(op, "consent_states", "SELECT, INSERT, UPDATE")
    grant_to_default_roles(op.get_bind(), NEW_PERMISSIONS)


def downgrade() -> None:
    rls.drop_append_only(op, "consent_records")
    for table in ("consent_states", "consent_records"):
        rls.disable_tenant_rls(op, table)
    with op.batch_alter_table("consent_states", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_states_reach")
    op.drop_table("consent_states")
    with op.batch_alter_table("consent_records", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_records_patient")
    op.drop_table("consent_records")
