"""patient door: a tenant's mini-program (sealed secret), the WeChat identities patients sign
in with (sealed, by blind index), the `patient` role in every tenant, and the index of which
patients each access-log entry touched, filled from the entries already written

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02 16:00:00
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tenancy import rls

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here: the role as this revision seeds it (auth.policy may move on).
PATIENT_RULES = (("self", "read"), ("self", "write"))

# One row per (patient id in the entry's JSON list, entry); uuids as each database stores them.
BACKFILL = {
    "postgresql": """
INSERT INTO access_log_patients (tenant_id, patient_id, seq)
SELECT DISTINCT e.tenant_id, j.value::uuid, e.seq
FROM access_log e, json_array_elements_text(e.patient_ids::json) AS j(value)
WHERE e.tenant_id = :t
""",
    "sqlite": """
INSERT OR IGNORE INTO access_log_patients (tenant_id, patient_id, seq)
SELECT e.tenant_id, replace(j.value, '-', ''), e.seq
FROM access_log e, json_each(e.patient_ids) AS j
WHERE e.tenant_id = :t
""",
}


def upgrade() -> None:
    op.create_table(
        "mini_program_apps",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("secret_ct", sa.LargeBinary(), nullable=False),
        sa.Column("default_branch_id", sa.Uuid(), nullable=False),
        sa.Column("show_staff_names", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "default_branch_id"],
            ["branches.tenant_id", "branches.id"],
            name=op.f("fk_mini_program_apps_tenant_id_default_branch_id_branches"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_mini_program_apps_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_mini_program_apps")),
    )
    op.create_table(
        "patient_identities",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=16), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("value_ct", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name=op.f("fk_patient_identities_tenant_id_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_patient_identities_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "kind", "digest", name=op.f("pk_patient_identities")),
    )
    op.create_index(
        "ix_patient_identities_patient", "patient_identities", ["tenant_id", "patient_id"]
    )
    op.create_table(
        "access_log_patients",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_access_log_patients_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "patient_id", "seq", name=op.f("pk_access_log_patients")
        ),
    )
    rls.enable_tenant_rls(op, "mini_program_apps", "SELECT, INSERT, UPDATE")
    rls.enable_tenant_rls(op, "patient_identities", "SELECT, INSERT")
    rls.enable_tenant_rls(op, "access_log_patients", "SELECT, INSERT")
    rls.append_only(op, "access_log_patients")

    bind = op.get_bind()
    on_pg = bind.dialect.name == "postgresql"
    tenants = sa.table("tenants", sa.column("id", sa.Uuid()))
    rules = sa.table(
        "casbin_rules",
        *(sa.column(c, sa.String()) for c in ("ptype", "v0", "v1", "v2", "v3", "v4", "v5")),
        sa.column("tenant_id", sa.Uuid()),
        sa.column("id", sa.Uuid()),
    )
    fill = sa.text(BACKFILL[bind.dialect.name]).bindparams(sa.bindparam("t", type_=sa.Uuid()))
    for (tid,) in bind.execute(sa.select(tenants.c.id)).all():
        if on_pg:
            bind.execute(sa.text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tid)})
        bind.execute(fill, {"t": tid})
        bind.execute(
            rules.insert(),
            [
                {"tenant_id": tid, "id": uuid.uuid4(), "ptype": "p", "v0": "patient",
                 "v1": str(tid), "v2": obj, "v3": act, "v4": "", "v5": ""}
                for obj, act in PATIENT_RULES
            ],
        )  # fmt: skip
    # Processes reload each tenant's rules on the next request that sees the version move.
    bind.execute(sa.text("UPDATE tenants SET policy_version = policy_version + 1"))


def downgrade() -> None:
    bind = op.get_bind()
    on_pg = bind.dialect.name == "postgresql"
    tenants = sa.table("tenants", sa.column("id", sa.Uuid()))
    for (tid,) in bind.execute(sa.select(tenants.c.id)).all():
        if on_pg:
            bind.execute(sa.text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tid)})
        bind.execute(
            sa.text("DELETE FROM casbin_rules WHERE tenant_id = :t AND v0 = 'patient'").bindparams(
                sa.bindparam("t", type_=sa.Uuid())
            ),
            {"t": tid},
        )
    bind.execute(sa.text("UPDATE tenants SET policy_version = policy_version + 1"))
    rls.drop_append_only(op, "access_log_patients")
    for table in ("access_log_patients", "patient_identities", "mini_program_apps"):
        rls.disable_tenant_rls(op, table)
    op.drop_index("ix_patient_identities_patient", table_name="patient_identities")
    op.drop_table("access_log_patients")
    op.drop_table("patient_identities")
    op.drop_table("mini_program_apps")
