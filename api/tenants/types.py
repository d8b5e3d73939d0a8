"""GraphQL types of a tenant, its branches and its staff."""

from __future__ import annotations

import strawberry

from api.ids import to_global_id
from api.node import Node
from auth.models import StaffUser
from domain.tenants.models import Branch as BranchRow
from domain.tenants.models import Tenant as TenantRow


@strawberry.type(description="A clinic brand or chain (连锁品牌): the tenant you are signed in to.")
class Tenant:
    _row: strawberry.Private[TenantRow]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Tenant", self._row.id))

    @strawberry.field(description="Short unique name used to sign in.")
    def slug(self) -> str:
        return self._row.slug

    @strawberry.field(description="Display name of the chain.")
    def name(self) -> str:
        return self._row.name

    @strawberry.field(description="Kind of chain: dental, tcm (中医馆), hospital or other.")
    def kind(self) -> str:
        return self._row.kind


@strawberry.type(description="One clinic of the chain (门店 / 医馆).")
class Branch(Node):
    _row: strawberry.Private[BranchRow]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Branch", self._row.id))

    @strawberry.field(description="The chain's own short code for the branch.")
    def code(self) -> str:
        return self._row.code

    @strawberry.field(description="Branch name.")
    def name(self) -> str:
        return self._row.name

    @strawberry.field(description="City the branch is in.")
    def city(self) -> str:
        return self._row.city


@strawberry.type(description="A staff member who signs in (员工).")
class Staff(Node):
    _row: strawberry.Private[StaffUser]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Staff", self._row.id))

    @strawberry.field(description="Name shown to colleagues.")
    def display_name(self) -> str:
        return self._row.display_name
