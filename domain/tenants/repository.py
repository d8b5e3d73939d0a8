"""All SQL of the tenants feature. `TenantRepository` reads and writes the tenants table itself
(not tenant-owned: the one table a process reads before it knows which tenant it works for);
`BranchRepository` holds the bound tenant's branches and regions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.tenants.models import Branch, BranchRegion, Region, Tenant
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

    # --- offboarding ---

    async def by_slug(self, slug: str) -> Tenant | None:
        return await self.session.scalar(select(Tenant).where(Tenant.slug == slug))

    async def set_offboarding_state(self, tenant: Tenant, state: str) -> None:
        """Record the offboarding state (domain.tenants.offboarding) without touching the
        loaded row."""
        await self.session.execute(
            update(Tenant)
            .where(Tenant.id == tenant.id)
            .values(offboarding_state=state)
            .execution_options(synchronize_session=False)
        )


@dataclass(frozen=True)
class BranchFilter:
    region_ids: frozenset[uuid.UUID] = frozenset()
    open: bool | None = None  # None: open and closed alike


class BranchRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- branches ---

    async def branch(self, branch_id: uuid.UUID) -> Branch | None:
        return await self.session.scalar(select(Branch).where(Branch.id == branch_id))

    async def branch_by_code(self, code: str) -> Branch | None:
        return await self.session.scalar(select(Branch).where(Branch.code == code))

    async def closed_at(self, branch_id: uuid.UUID) -> Row[tuple[datetime | None]] | None:
        """The branch's `closed_at` in a row (None when open), or no row when there is no such
        branch; the branch itself is not loaded."""
        return (
            await self.session.execute(select(Branch.closed_at).where(Branch.id == branch_id))
        ).first()

    async def branches(self, ids: Sequence[uuid.UUID]) -> Sequence[Branch]:
        stmt = select(Branch).where(Branch.id.in_(sorted(set(ids))))
        return (await self.session.scalars(stmt)).all()

    async def matching(self, flt: BranchFilter) -> Sequence[Branch]:
        """The branches `flt` lets through, by code."""
        stmt = select(Branch)
        if flt.region_ids:
            stmt = stmt.join(BranchRegion, BranchRegion.branch_id == Branch.id).where(
                BranchRegion.region_id.in_(sorted(flt.region_ids))
            )
        if flt.open is True:
            stmt = stmt.where(Branch.closed_at.is_(None))
        elif flt.open is False:
            stmt = stmt.where(Branch.closed_at.is_not(None))
        return (await self.session.scalars(stmt.order_by(Branch.code))).all()

    # --- branches in regions ---

    async def region_id_of(self, branch: Branch) -> uuid.UUID | None:
        return await self.session.scalar(
            select(BranchRegion.region_id).where(BranchRegion.branch_id == branch.id)
        )

    async def clear_region(self, branch: Branch) -> None:
        """Take the branch out of its region (if any)."""
        await self.session.execute(
            delete(BranchRegion)
            .where(BranchRegion.branch_id == branch.id)
            .execution_options(synchronize_session=False)
        )

    async def regions_of(self, branch_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        """branch id → region id, for the branches that have one."""
        rows = await self.session.execute(
            select(BranchRegion.branch_id, BranchRegion.region_id).where(
                BranchRegion.branch_id.in_(sorted(set(branch_ids)))
            )
        )
        return {b: r for b, r in rows}

    async def branch_ids_of_regions(self, region_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        rows = await self.session.scalars(
            select(BranchRegion.branch_id).where(BranchRegion.region_id.in_(sorted(region_ids)))
        )
        return list(rows)

    # --- regions ---

    async def region(self, region_id: uuid.UUID) -> Region | None:
        return await self.session.scalar(select(Region).where(Region.id == region_id))

    async def region_by_name(self, name: str) -> Region | None:
        return await self.session.scalar(select(Region).where(Region.name == name))

    async def regions(self, ids: Sequence[uuid.UUID] | None = None) -> Sequence[Region]:
        """Regions by name: all of them, or those of `ids`."""
        stmt = select(Region).order_by(Region.name)
        if ids is not None:
            stmt = stmt.where(Region.id.in_(sorted(set(ids))))
        return (await self.session.scalars(stmt)).all()
