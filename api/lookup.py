"""`node(id:)`: fetch any Node by its global id, through the same resolver (and so the same
scope, field rules and access log) as the type's own root field. Another tenant's id, an id of
a type that is not a Node, and a missing id all answer NOT_FOUND alike."""

from __future__ import annotations

import strawberry
from sqlalchemy import select
from strawberry.types import Info

from api.campaigns.resolvers import campaign
from api.care import resolvers as care
from api.ids import parse_global_id, type_of_global_id
from api.node import Node
from api.patients.resolvers import patient
from api.pool.resolvers import job, segment, tag
from api.tenants.types import Branch, Region, Staff
from auth.guard import require
from auth.models import StaffUser
from domain.errors import NotFound
from domain.tenants.branches import BranchService
from domain.tenants.models import Branch as BranchRow

# Each kind is fetched through the resolver its own list or root field uses.
RESOLVERS = {
    "Patient": patient,
    "Segment": segment,
    "Job": job,
    "Campaign": campaign,
    "Tag": tag,
    "Visit": care.visit,
    "Order": care.order,
    "FollowUp": care.follow_up,
}


async def node(info: Info, id: strawberry.ID) -> Node:
    ctx = info.context
    principal = await ctx.principal()  # the caller before the argument
    kind = type_of_global_id(id)
    if kind in RESOLVERS:
        return await RESOLVERS[kind](info, id)  # type: ignore[operator,no-any-return]
    if kind == "Branch":
        row = await ctx.session.scalar(
            select(BranchRow).where(BranchRow.id == parse_global_id(id, "Branch"))
        )
        if row is not None:
            return Branch(_row=row)
    elif kind == "Region":
        rows = await BranchService(ctx.session).regions([parse_global_id(id, "Region")])
        if rows:
            return Region(_row=rows[0])
    elif kind == "Staff":
        require(principal, "staff", "read")
        row = await ctx.session.scalar(
            select(StaffUser).where(StaffUser.id == parse_global_id(id, "Staff"))
        )
        if row is not None:
            return Staff(_row=row)
    raise NotFound("no such node")
