"""A tenant's WeCom (企业微信) app for external-contact callbacks, and the callbacks received.

The callback token and EncodingAESKey are secrets: sealed with the tenant's data key like
patient fields, bound to this table, column and tenant. Each callback received is kept by
its signature (a replay of the same signed request is refused) and by its event (WeCom's
retries of one event change nothing twice).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import LargeBinary, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from domain.tenants.models import branch_fk
from tenancy.orm import Base, TenantScoped, Timestamped, UtcDateTime, utcnow


class WecomApp(TenantScoped, Timestamped, Base):
    __tablename__ = "wecom_apps"
    __table_args__ = (branch_fk("default_branch_id"),)

    corp_id: Mapped[str] = mapped_column(String(64))
    token_ct: Mapped[bytes] = mapped_column(LargeBinary)
    aes_key_ct: Mapped[bytes] = mapped_column(LargeBinary)
    # The customer-contact secret (客户联系 Secret) for WeCom's API: group-message tasks.
    # Unset until bulk sending is configured.
    secret_ct: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    # New contacts join the pool at this branch until staff move them.
    default_branch_id: Mapped[uuid.UUID] = mapped_column(Uuid)


class WecomCallback(TenantScoped, Base):
    __tablename__ = "wecom_callbacks"
    __table_args__ = (UniqueConstraint("tenant_id", "event_key"),)

    signature: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_key: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(64))
    # What came of it: linked, created, unfollowed, ignored.
    outcome: Mapped[str] = mapped_column(String(20))
    patient_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
