"""surveys: satisfaction survey templates (versioned), rules, the delivery outbox and the
answers (free text sealed); survey permissions for the default roles

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02 06:15:17
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.policy_data import grant_to_default_roles, take_from_default_roles
from tenancy import rls

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What the default roles gain with this revision, frozen here (auth.roles may move on).
_RW = ("read", "write")
NEW_PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    "hq_admin": [("surveys", a) for a in _RW] + [("survey_answers", "read")],
    "branch_manager": [("surveys", "read"), ("survey_answers", "read")],
    "region_manager": [("surveys", "read"), ("survey_answers", "read")],
    "health_manager": [("survey_answers", "read")],
    "doctor": [("survey_answers", "read")],
}
# Templates and versions are never deleted (deliveries keep theirs); deliveries and answers
# are removed only with their patient (ON DELETE CASCADE, erasure).
TABLES = (
    "survey_templates",
    "survey_template_versions",
    "survey_rules",
    "survey_deliveries",
    "survey_answers",
)


def upgrade() -> None:
    op.create_table(
        "survey_templates",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_survey_templates_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_survey_templates")),
    )
    op.create_table(
        "survey_rules",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("template_id", sa.Uuid(), nullable=False),
        sa.Column("delay_days", sa.Integer(), nullable=False),
        sa.Column("visit_kind", sa.String(length=10), nullable=False),
        sa.Column("branch_id", sa.Uuid(), nullable=True),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answer_days", sa.Integer(), nullable=False),
        sa.Column("low_rating", sa.Integer(), nullable=True),
        sa.Column("low_nps", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "branch_id"],
            ["branches.tenant_id", "branches.id"],
            name=op.f("fk_survey_rules_tenant_id_branch_id_branches"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "template_id"],
            ["survey_templates.tenant_id", "survey_templates.id"],
            name=op.f("fk_survey_rules_tenant_id_template_id_survey_templates"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_survey_rules_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_survey_rules")),
    )
    op.create_table(
        "survey_template_versions",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("template_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("intro", sa.String(length=200), nullable=False),
        sa.Column("questions", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "template_id"],
            ["survey_templates.tenant_id", "survey_templates.id"],
            name="fk_survey_template_versions_template",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_survey_template_versions_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "template_id", "version", name=op.f("pk_survey_template_versions")
        ),
    )
    op.create_table(
        "survey_deliveries",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("rule_id", sa.Uuid(), nullable=False),
        sa.Column("template_id", sa.Uuid(), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("branch_id", sa.Uuid(), nullable=False),
        sa.Column("doctor_id", sa.Uuid(), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=40), nullable=False),
        sa.Column("provider_ref", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "branch_id"],
            ["branches.tenant_id", "branches.id"],
            name=op.f("fk_survey_deliveries_tenant_id_branch_id_branches"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name=op.f("fk_survey_deliveries_tenant_id_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "rule_id"],
            ["survey_rules.tenant_id", "survey_rules.id"],
            name=op.f("fk_survey_deliveries_tenant_id_rule_id_survey_rules"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "template_id", "template_version"],
            [
                "survey_template_versions.tenant_id",
                "survey_template_versions.template_id",
                "survey_template_versions.version",
            ],
            name="fk_survey_deliveries_template_version",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "visit_id"],
            ["visits.tenant_id", "visits.id"],
            name=op.f("fk_survey_deliveries_tenant_id_visit_id_visits"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_survey_deliveries_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_survey_deliveries")),
    )
    with op.batch_alter_table("survey_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_survey_deliveries_due", ["tenant_id", "status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            "ix_survey_deliveries_recent", ["tenant_id", "patient_id", "queued_at"], unique=False
        )
        batch_op.create_index("ix_survey_deliveries_sent", ["tenant_id", "sent_at"], unique=False)
        batch_op.create_index(
            "uq_survey_deliveries_visit", ["tenant_id", "rule_id", "visit_id"], unique=True
        )

    op.create_table(
        "survey_answers",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rating_sum", sa.Integer(), nullable=False),
        sa.Column("rating_count", sa.Integer(), nullable=False),
        sa.Column("nps", sa.Integer(), nullable=True),
        sa.Column("choices", sa.JSON(), nullable=False),
        sa.Column("free_text_ct", sa.LargeBinary(), nullable=True),
        sa.Column("low_score", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "delivery_id"],
            ["survey_deliveries.tenant_id", "survey_deliveries.id"],
            name=op.f("fk_survey_answers_tenant_id_delivery_id_survey_deliveries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name=op.f("fk_survey_answers_tenant_id_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_survey_answers_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "delivery_id", name=op.f("pk_survey_answers")),
    )
    with op.batch_alter_table("survey_answers", schema=None) as batch_op:
        batch_op.create_index("ix_survey_answers_time", ["tenant_id", "answered_at"], unique=False)

    for table in TABLES:
        rls.enable_tenant_rls(op, table, "SELECT, INSERT, UPDATE")
    grant_to_default_roles(op.get_bind(), NEW_PERMISSIONS)


def downgrade() -> None:
    take_from_default_roles(op.get_bind(), NEW_PERMISSIONS)
    for table in reversed(TABLES):
        rls.disable_tenant_rls(op, table)
    with op.batch_alter_table("survey_answers", schema=None) as batch_op:
        batch_op.drop_index("ix_survey_answers_time")

    op.drop_table("survey_answers")
    with op.batch_alter_table("survey_deliveries", schema=None) as batch_op:
        batch_op.drop_index("uq_survey_deliveries_visit")
        batch_op.drop_index("ix_survey_deliveries_sent")
        batch_op.drop_index("ix_survey_deliveries_recent")
        batch_op.drop_index("ix_survey_deliveries_due")

    op.drop_table("survey_deliveries")
    op.drop_table("survey_template_versions")
    op.drop_table("survey_rules")
    op.drop_table("survey_templates")
