"""Tenant and branch root fields."""

from __future__ import annotations

from sqlalchemy import select
from strawberry.types import Info

from api.pagination import Connection, held_connection
from api.tenants.types import Branch, Tenant
from domain.tenants.models import Branch as BranchRow
from domain.tenants.models import Tenant as TenantRow


async def tenant(info: Info) -> Tenant:
    ctx = info.context
    principal = await ctx.principal()
    row = await ctx.session.scalar(select(TenantRow).where(TenantRow.id == principal.tenant_id))
    return Tenant(_row=row)


async def branches(
    info: Info, first: int | None = None, after: str | None = None
) -> Connection[Branch]:
    ctx = info.context
    await ctx.principal()
    rows = await ctx.session.scalars(select(BranchRow))
    return held_connection([((b.code,), Branch(_row=b)) for b in rows], 1, first, after)
