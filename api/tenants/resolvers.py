"""The tenant root field (branches and regions: `api.chain`)."""

from __future__ import annotations

from sqlalchemy import select
from strawberry.types import Info

from api.tenants.types import Tenant
from domain.tenants.models import Tenant as TenantRow


async def tenant(info: Info) -> Tenant:
    ctx = info.context
    principal = await ctx.principal()
    row = await ctx.session.scalar(select(TenantRow).where(TenantRow.id == principal.tenant_id))
    return Tenant(_row=row)
