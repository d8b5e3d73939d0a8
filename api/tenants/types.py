"""GraphQL types of a tenant, its branches and its staff."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from api.ids import to_global_id
from api.node import Node
from api.rows import RowType
from api.tenants.loaders import (
    branch_loader,
    branch_region_loader,
    pending_loader,
    places_loader,
    region_loader,
    roles_loader,
)
from auth.guard import staff_scope
from auth.models import StaffUser
from domain.errors import Forbidden
from domain.tenants.models import Branch as BranchRow
from domain.tenants.models import Region as RegionRow
from domain.tenants.models import Tenant as TenantRow


@strawberry.type(description="A clinic brand or chain (连锁品牌): the tenant you are signed in to.")
class Tenant(RowType):
    _row: strawberry.Private[TenantRow]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Tenant", self._row.id))

    slug: str = strawberry.field(description="Short unique name used to sign in.")
    name: str = strawberry.field(description="Display name of the chain.")
    kind: str = strawberry.field(
        description="Kind of chain: dental, tcm (中医馆), hospital or other."
    )


@strawberry.type(description="One clinic of the chain (门店 / 医馆).")
class Branch(RowType, Node):
    _row: strawberry.Private[BranchRow]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Branch", self._row.id))

    code: str = strawberry.field(description="The chain's own short code for the branch.")
    name: str = strawberry.field(description="Branch name.")
    city: str = strawberry.field(description="City the branch is in.")
    address: str = strawberry.field(description="Street address of the clinic.")
    phone: str = strawberry.field(description="The clinic's front-desk phone.")
    is_open: bool = strawberry.field(
        description="False once closed: a closed branch takes no new patients or visits; its "
        "history, metrics and scopes stay."
    )

    closed_at: datetime | None = strawberry.field(
        description="When it was closed (null while open)."
    )

    @strawberry.field(description="The region (大区 / 片区) it belongs to, if any.")
    async def region(self, info: Info) -> Region | None:
        ctx = info.context
        row = await ctx.loader("branch_region", lambda: branch_region_loader(ctx.session)).load(
            self._row.id
        )
        return None if row is None else Region.of(row)


@strawberry.type(description="A region of the chain (大区 / 片区): a group of branches.")
class Region(RowType, Node):
    _row: strawberry.Private[RegionRow]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Region", self._row.id))

    name: str = strawberry.field(description="Region name.")


@strawberry.type(description="A staff member who signs in (员工).")
class Staff(RowType, Node):
    _row: strawberry.Private[StaffUser]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Staff", self._row.id))

    display_name: str = strawberry.field(description="Name shown to colleagues.")

    # The fields below need a staff scope that sees this person (HQ and auditors: the chain;
    # managers: the staff of their branches): a staff member shown as a patient's doctor
    # reveals only the name above.

    async def _staff_reader(self, info: Info) -> None:
        ctx = info.context
        scope = staff_scope(await ctx.principal(), "read")
        if scope.chain:
            return
        branch_ids, _ = await ctx.loader("staff_places", lambda: places_loader(ctx.session)).load(
            self._row.id
        )
        if not scope.sees(branch_ids):
            raise Forbidden("not allowed: this staff member is outside your branches")

    @strawberry.field(description="Sign-in e-mail (needs staff:read).")
    async def email(self, info: Info) -> str | None:
        await self._staff_reader(info)
        return self._row.email

    @strawberry.field(
        description="Whether they can sign in: false while an invitation is open and after "
        "being disabled (needs staff:read)."
    )
    async def is_active(self, info: Info) -> bool | None:
        await self._staff_reader(info)
        return self._row.is_active

    @strawberry.field(
        description="An invitation was sent and is still open (not accepted, revoked or "
        "expired) (needs staff:read)."
    )
    async def invitation_pending(self, info: Info) -> bool | None:
        await self._staff_reader(info)
        ctx = info.context
        return await ctx.loader("staff_pending", lambda: pending_loader(ctx.session)).load(
            self._row.id
        )

    @strawberry.field(description="Their roles (needs staff:read).")
    async def roles(self, info: Info) -> list[str] | None:
        await self._staff_reader(info)
        ctx = info.context
        return await ctx.loader("staff_roles", lambda: roles_loader(ctx.session)).load(self._row.id)

    @strawberry.field(description="The branches they work in (needs staff:read).")
    async def branches(self, info: Info) -> list[Branch] | None:
        await self._staff_reader(info)
        ctx = info.context
        branch_ids, _ = await ctx.loader("staff_places", lambda: places_loader(ctx.session)).load(
            self._row.id
        )
        loader = ctx.loader("branch", lambda: branch_loader(ctx.session))
        rows = await loader.load_many(sorted(branch_ids))
        return sorted((Branch.of(r) for r in rows if r is not None), key=lambda b: b._row.code)

    @strawberry.field(description="The regions they manage (needs staff:read).")
    async def regions(self, info: Info) -> list[Region] | None:
        await self._staff_reader(info)
        ctx = info.context
        _, region_ids = await ctx.loader("staff_places", lambda: places_loader(ctx.session)).load(
            self._row.id
        )
        loader = ctx.loader("region", lambda: region_loader(ctx.session))
        rows = await loader.load_many(sorted(region_ids))
        return sorted((Region.of(r) for r in rows if r is not None), key=lambda r: r._row.name)
