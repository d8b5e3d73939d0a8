"""The declarative base and the marker every tenant-owned model carries.

A model that mixes in `TenantScoped` gets a `tenant_id` column; the session filter in
`tenancy.session` adds `tenant_id = <current tenant>` to every ORM select, update and delete on
it and stamps it on inserts. `tenant_id` leads each tenant-owned primary key so the schema is
ready to be distributed by tenant (Citus).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, MetaData, Uuid
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware. SQLite keeps no offset,
    so without this a value read there is naive and cannot be compared with an aware one."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            return value.astimezone(UTC)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        # PostgreSQL's driver reads `timestamptz` aware already: no Python call per value
        # (a page of 50 patients reads 300 timestamps). SQLite needs the offset put back.
        if dialect.name == "postgresql":
            return None
        return super().result_processor(dialect, coltype)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


class TenantScoped:
    """Mixin for tenant-owned tables: `tenant_id` first in the primary key."""

    __tenant_scoped__ = True

    @declared_attr
    def tenant_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(
            Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True, sort_order=-10
        )


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


def is_tenant_scoped(cls: type) -> bool:
    return bool(getattr(cls, "__tenant_scoped__", False))


def tenant_tables() -> list[str]:
    """Names of every tenant-owned table known to the metadata (RLS and tests walk these)."""
    return sorted(m.local_table.name for m in Base.registry.mappers if is_tenant_scoped(m.class_))
