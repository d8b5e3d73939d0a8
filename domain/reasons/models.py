"""Stated purposes (break the glass): a staff member's reason for reading one patient's health
fields outside their own care, the window it opens, and an auditor's flag on it.

The note and the flag note are free text staff write, so they may name the patient or their
condition: sealed with the tenant's data key like patient fields, bound to this table, column
and row, and never written to a log line.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from tenancy.orm import Base, TenantScoped, UtcDateTime, new_id, utcnow

TABLE = "stated_purposes"
# How long a stated purpose opens health fields when the tenant has not said otherwise.
DEFAULT_WINDOW_MINUTES = 30
MAX_WINDOW_MINUTES = 8 * 60
MAX_NOTE = 500


class Purpose(StrEnum):
    CARE = "CARE"
    QUALITY_REVIEW = "QUALITY_REVIEW"
    COMPLAINT = "COMPLAINT"
    LEGAL = "LEGAL"
    OTHER = "OTHER"


class StatedPurpose(TenantScoped, Base):
    __tablename__ = TABLE
    __table_args__ = (
        # The gate's look-up: this staff member's open windows on these patients.
        Index("ix_stated_purposes_staff_patient", "tenant_id", "staff_id", "patient_id"),
        # The auditors' review, paged in (stated_at, id) order.
        Index("ix_stated_purposes_page", "tenant_id", "stated_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    staff_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    # The patient's home branch when the purpose was stated (auditors filter by it).
    branch_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    purpose: Mapped[str] = mapped_column(String(20))
    note_ct: Mapped[bytes] = mapped_column(LargeBinary)
    stated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    flagged_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    flagged_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    flag_note_ct: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
