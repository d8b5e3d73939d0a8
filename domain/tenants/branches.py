"""Branches and regions of a chain: create, change, close and reopen, assign to regions.

Their SQL is domain.tenants.repository's (`BranchRepository`). Checks come before any write,
so bad input changes nothing; uniqueness (branch code, region name) is also held by the database.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import BadInput, Conflict, NotFound
from domain.tenants.models import Branch, BranchRegion, Region
from domain.tenants.repository import BranchFilter, BranchRepository

CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
UNSET = object()


def _text(value: str, field: str, limit: int, *, required: bool = False) -> str:
    value = value.strip()
    if required and not value:
        raise BadInput(f"{field} must not be empty", field=field)
    if len(value) > limit:
        raise BadInput(f"{field} has at most {limit} characters", field=field)
    return value


def _code(value: str) -> str:
    value = value.strip()
    if not CODE.match(value):
        raise BadInput(
            "code is 1-32 letters, digits, dashes or underscores, starting with a letter or digit",
            field="code",
        )
    return value


class BranchService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = BranchRepository(session)

    async def get(self, branch_id: uuid.UUID, field: str = "branchId") -> Branch:
        row = await self.repo.branch(branch_id)
        if row is None:
            raise NotFound("no such branch", field=field)
        return row

    async def by_code(self, code: str) -> Branch | None:
        return await self.repo.branch_by_code(code)

    async def region(self, region_id: uuid.UUID, field: str = "regionId") -> Region:
        row = await self.repo.region(region_id)
        if row is None:
            raise NotFound("no such region", field=field)
        return row

    async def _check_code_free(self, code: str, keep: Branch | None = None) -> None:
        found = await self.by_code(code)
        if found is not None and found is not keep:
            raise Conflict("a branch with this code exists", field="code")

    async def create(
        self,
        *,
        code: str,
        name: str,
        city: str = "",
        address: str = "",
        phone: str = "",
        region: Region | None = None,
    ) -> Branch:
        branch = Branch(
            code=_code(code),
            name=_text(name, "name", 200, required=True),
            city=_text(city, "city", 100),
            address=_text(address, "address", 300),
            phone=_text(phone, "phone", 40),
        )
        await self._check_code_free(branch.code)
        self.session.add(branch)
        await self.session.flush()
        if region is not None:
            await self.set_region(branch, region)
        return branch

    async def update(self, branch: Branch, changes: dict[str, object]) -> list[str]:
        """Apply the given changes (name, city, address, phone, code, region); returns the
        names of the fields that changed."""
        values: dict[str, object] = {}
        if "code" in changes:
            values["code"] = _code(str(changes["code"]))
            await self._check_code_free(str(values["code"]), keep=branch)
        limits = {"name": 200, "city": 100, "address": 300, "phone": 40}
        for name, limit in limits.items():
            if name in changes:
                values[name] = _text(str(changes[name]), name, limit, required=name == "name")
        changed = [k for k, v in values.items() if getattr(branch, k) != v]
        for k in changed:
            setattr(branch, k, values[k])
        if "region" in changes:
            region = changes["region"]
            current = await self.region_id_of(branch)
            wanted = region.id if isinstance(region, Region) else None
            if current != wanted:
                await self.set_region(branch, region if isinstance(region, Region) else None)
                changed.append("region")
        await self.session.flush()
        return changed

    async def set_open(self, branch: Branch, open_: bool) -> bool:
        """Close or reopen; True when that changed anything."""
        if branch.is_open == open_:
            return False
        branch.closed_at = None if open_ else datetime.now(UTC)
        await self.session.flush()
        return True

    async def check_open(self, branch_id: uuid.UUID, field: str) -> None:
        """For new patients and visits: the branch exists and is open."""
        row = await self.repo.closed_at(branch_id)
        if row is None:
            raise NotFound("no such branch", field=field)
        if row[0] is not None:
            raise BadInput("this branch is closed", field=field)

    async def region_id_of(self, branch: Branch) -> uuid.UUID | None:
        return await self.repo.region_id_of(branch)

    async def set_region(self, branch: Branch, region: Region | None) -> None:
        await self.repo.clear_region(branch)
        if region is not None:
            self.session.add(BranchRegion(branch_id=branch.id, region_id=region.id))
        await self.session.flush()

    async def by_ids(self, ids: Sequence[uuid.UUID]) -> Sequence[Branch]:
        return await self.repo.branches(ids)

    async def list(self, flt: BranchFilter = BranchFilter()) -> Sequence[Branch]:
        return await self.repo.matching(flt)

    async def regions_of(self, branch_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        """branch id → region id, for the branches that have one."""
        if not branch_ids:
            return {}
        return await self.repo.regions_of(branch_ids)

    # Regions

    async def _check_region_name_free(self, name: str, keep: Region | None = None) -> None:
        found = await self.repo.region_by_name(name)
        if found is not None and found is not keep:
            raise Conflict("a region with this name exists", field="name")

    async def create_region(self, name: str) -> Region:
        name = _text(name, "name", 200, required=True)
        await self._check_region_name_free(name)
        region = Region(name=name)
        self.session.add(region)
        await self.session.flush()
        return region

    async def rename_region(self, region: Region, name: str) -> bool:
        name = _text(name, "name", 200, required=True)
        if name == region.name:
            return False
        await self._check_region_name_free(name, keep=region)
        region.name = name
        await self.session.flush()
        return True

    async def regions(self, ids: Sequence[uuid.UUID] | None = None) -> Sequence[Region]:
        return await self.repo.regions(ids)

    async def branch_ids_of_regions(self, region_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        return await self.repo.branch_ids_of_regions(region_ids)
