"""Branches and regions through GraphQL (HQ: `branches:write`). Each change leaves one
administrative access-log entry; bad input changes nothing."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from api.chain.inputs import BranchFilter, CreateBranchInput, UpdateBranchInput
from api.ids import parse_global_id
from api.pagination import Connection, held_connection
from api.tenants.types import Branch, Region
from auth.guard import require
from domain.errors import BadInput
from domain.tenants import branches as domain
from domain.tenants.models import Region as RegionRow


async def _writer(info: Info) -> domain.BranchService:
    require(await info.context.principal(), "branches", "write")
    return domain.BranchService(info.context.session)


async def _region(
    service: domain.BranchService, region_id: strawberry.ID | None, field: str = "regionId"
) -> RegionRow | None:
    if region_id is None:
        return None
    return await service.region(parse_global_id(region_id, "Region", field), field)


def _filter(flt: BranchFilter | None) -> domain.BranchFilter:
    if flt is None:
        return domain.BranchFilter()
    ids = frozenset(parse_global_id(r, "Region", "regionIds") for r in flt.region_ids or [])
    return domain.BranchFilter(region_ids=ids, open=flt.is_open)


async def branches(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    filter: BranchFilter | None = None,
) -> Connection[Branch]:
    ctx = info.context
    await ctx.principal()
    rows = await domain.BranchService(ctx.session).list(_filter(filter))
    return held_connection([((b.code,), Branch.of(b)) for b in rows], 1, first, after)


async def regions(
    info: Info, first: int | None = None, after: str | None = None
) -> Connection[Region]:
    ctx = info.context
    await ctx.principal()
    rows = await domain.BranchService(ctx.session).regions()
    return held_connection([((r.name, str(r.id)), Region.of(r)) for r in rows], 2, first, after)


async def create_branch(info: Info, input: CreateBranchInput) -> Branch:
    service = await _writer(info)
    region = await _region(service, input.region_id, "input.regionId")
    row = await service.create(
        code=input.code,
        name=input.name,
        city=input.city,
        address=input.address,
        phone=input.phone,
        region=region,
    )
    info.context.trail.admin("branch.create", "Branch", row.id)
    return Branch.of(row)


async def update_branch(info: Info, id: strawberry.ID, input: UpdateBranchInput) -> Branch:
    service = await _writer(info)
    row = await service.get(parse_global_id(id, "Branch"), "id")
    changes: dict[str, object] = {}
    for name in ("code", "name", "city", "address", "phone"):
        value = getattr(input, name)
        if value is strawberry.UNSET:
            continue
        if value is None:
            raise BadInput(f"{name} cannot be null", field=f"input.{name}")
        changes[name] = value
    if input.region_id is not strawberry.UNSET:
        changes["region"] = await _region(service, input.region_id, "input.regionId")
    changed = await service.update(row, changes)
    if changed:
        info.context.trail.admin("branch.update", "Branch", row.id, ",".join(changed))
    return Branch.of(row)


async def _set_open(info: Info, id: strawberry.ID, open_: bool) -> Branch:
    service = await _writer(info)
    row = await service.get(parse_global_id(id, "Branch"), "id")
    if await service.set_open(row, open_):
        info.context.trail.admin("branch.reopen" if open_ else "branch.close", "Branch", row.id)
    return Branch.of(row)


async def close_branch(info: Info, id: strawberry.ID) -> Branch:
    return await _set_open(info, id, False)


async def reopen_branch(info: Info, id: strawberry.ID) -> Branch:
    return await _set_open(info, id, True)


async def create_region(
    info: Info, name: str, branch_ids: list[strawberry.ID] | None = None
) -> Region:
    service = await _writer(info)
    picked = [
        await service.get(parse_global_id(b, "Branch", "branchIds"), "branchIds")
        for b in branch_ids or []
    ]
    row = await service.create_region(name)
    for branch in picked:
        await service.set_region(branch, row)
    info.context.trail.admin("region.create", "Region", row.id)
    return Region.of(row)


async def update_region(info: Info, id: strawberry.ID, name: str) -> Region:
    service = await _writer(info)
    row = await service.region(parse_global_id(id, "Region"), "id")
    if await service.rename_region(row, name):
        info.context.trail.admin("region.update", "Region", row.id, "name")
    return Region.of(row)
