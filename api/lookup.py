"""`node(id:)`: fetch any Node by its global id, through the same resolver (and so the same
scope, field rules and access log) as the type's own root field. Another tenant's id, an id of
a type that is not a Node, and a missing id all answer NOT_FOUND alike."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from api.campaigns.resolvers import campaign
from api.care import resolvers as care
from api.ids import parse_global_id, type_of_global_id
from api.node import Node
from api.patients.resolvers import patient
from api.pool.resolvers import job, segment, tag
from api.tenants.types import Branch, Region, Staff
from api.wecom.group_resolvers import group_chat
from auth.guard import staff_scope
from auth.staff import StaffService
from domain.errors import NotFound
from domain.tenants.branches import BranchService

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
    "GroupChat": group_chat,
}


async def node(info: Info, id: strawberry.ID) -> Node:
    ctx = info.context
    principal = await ctx.principal()  # the caller before the argument
    kind = type_of_global_id(id)
    if kind in RESOLVERS:
        return await RESOLVERS[kind](info, id)  # type: ignore[operator,no-any-return]
    if kind == "Branch":
        found = await BranchService(ctx.session).by_ids([parse_global_id(id, "Branch")])
        if found:
            return Branch.of(found[0])
    elif kind == "Region":
        rows = await BranchService(ctx.session).regions([parse_global_id(id, "Region")])
        if rows:
            return Region.of(rows[0])
    elif kind == "Staff":
        # As the `staff` list: a manager's scope shows only the staff of their branches.
        scope = staff_scope(principal, "read")
        service = StaffService(ctx.session, ctx.trail)
        return Staff.of(await service.get(parse_global_id(id, "Staff"), "id", scope))
    raise NotFound("no such node")
