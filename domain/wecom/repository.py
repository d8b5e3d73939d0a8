"""All SQL of the WeCom integration's settings: the tenant's one app row and what its settings
show (the tenant's slug for the callback path, the default branch)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.tenants.models import Branch, Tenant
from domain.wecom.models import WecomApp


class WecomRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def app(self) -> WecomApp | None:
        """The bound tenant's WeCom app, if one is configured."""
        return await self.session.scalar(select(WecomApp))

    async def slug_of(self, app: WecomApp) -> str | None:
        return await self.session.scalar(select(Tenant.slug).where(Tenant.id == app.tenant_id))

    async def branch(self, branch_id: uuid.UUID | None) -> Branch | None:
        return await self.session.scalar(select(Branch).where(Branch.id == branch_id))
