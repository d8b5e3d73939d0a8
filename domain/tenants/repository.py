"""SQL over the tenants table itself (not tenant-owned: the one table a process reads before it
knows which tenant it works for)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.tenants.models import Tenant
from tenancy.session import current_tenant


class TenantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def count(self) -> int:
        return int(await self.session.scalar(select(func.count()).select_from(Tenant)) or 0)

    async def set_audit_retention(self, days: int | None) -> None:
        """The bound tenant keeps its access log for `days` (None: for ever)."""
        tenant_id = current_tenant(self.session)
        await self.session.execute(
            update(Tenant).where(Tenant.id == tenant_id).values(audit_retention_days=days)
        )

    async def ids(self) -> Sequence[uuid.UUID]:
        """Every tenant's id (a process resuming work walks them one at a time)."""
        return (await self.session.scalars(select(Tenant.id))).all()

    async def bound(self) -> Tenant | None:
        """The tenant the session is bound to."""
        tenant_id = current_tenant(self.session)
        return await self.session.scalar(select(Tenant).where(Tenant.id == tenant_id))

    async def ids_and_slugs(self, slug: str | None = None) -> list[tuple[uuid.UUID, str]]:
        """(id, slug) of every tenant by slug, or of the one `slug` names."""
        stmt = select(Tenant.id, Tenant.slug).order_by(Tenant.slug)
        if slug is not None:
            stmt = stmt.where(Tenant.slug == slug)
        return [(t.id, t.slug) for t in (await self.session.execute(stmt)).all()]

    async def id_by_slug(self, slug: str) -> uuid.UUID | None:
        return await self.session.scalar(select(Tenant.id).where(Tenant.slug == slug))
