"""The patient's own door: a tenant's WeChat mini-program and the WeChat identities that sign
patients in through it.

The mini-program secret is sealed with the tenant's data key like the WeCom secrets. A WeChat
identity (the mini-program's openid, the open platform's unionid) is a personal identifier:
sealed too, found by a keyed blind index. The primary key (tenant, kind, blind index) lets one
WeChat identity point at one record only, so the same person never gets two.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from sqlalchemy import Boolean, Index, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from domain.pool.models import patient_fk
from domain.tenants.models import branch_fk
from tenancy.orm import Base, TenantScoped, Timestamped


class MiniProgramApp(TenantScoped, Timestamped, Base):
    __tablename__ = "mini_program_apps"
    __table_args__ = (branch_fk("default_branch_id"),)

    app_id: Mapped[str] = mapped_column(String(64))
    secret_ct: Mapped[bytes] = mapped_column(LargeBinary)
    # New patients (no record to link to) join the pool at this branch until staff move them.
    default_branch_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    # Whether a patient's "who read my record" names the staff member (else only the role).
    show_staff_names: Mapped[bool] = mapped_column(Boolean, default=False)


class IdentityKind(StrEnum):
    OPENID = "openid"  # the mini-program's own id of the WeChat user
    UNIONID = "unionid"  # the same person across the brand's WeChat apps


class PatientIdentity(TenantScoped, Timestamped, Base):
    __tablename__ = "patient_identities"
    __table_args__ = (
        patient_fk("patient_id"),
        Index("ix_patient_identities_patient", "tenant_id", "patient_id"),
    )

    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    value_ct: Mapped[bytes] = mapped_column(LargeBinary)
