"""GraphQL types for roles, permissions and service tokens."""

from __future__ import annotations

import strawberry


@strawberry.type(description="One permission: an object and an action (e.g. patients:branch/read).")
class Permission:
    object: str = strawberry.field(description="What it is about (patients:chain, fields:health…).")
    action: str = strawberry.field(description="What may be done (read, write, erase…).")


@strawberry.input(description="One permission to grant.")
class PermissionInput:
    object: str = strawberry.field(description="What it is about (see `permissionCatalogue`).")
    action: str = strawberry.field(description="What may be done.")


@strawberry.type(description="A role of this chain and the permissions it carries (角色).")
class Role:
    name: str = strawberry.field(description="Role name, e.g. hq_admin, doctor.")
    permissions: list[Permission] = strawberry.field(description="What the role may do.")


@strawberry.type(description="A staff member's roles after a change.")
class StaffRoles:
    staff_id: strawberry.ID = strawberry.field(description="The staff member.")
    roles: list[str] = strawberry.field(description="Their roles now.")


@strawberry.type(description="A new service token for a mini-program backend, shown once.")
class ServiceTokenPayload:
    id: strawberry.ID = strawberry.field(description="Id of the token (for revoking it).")
    token: str = strawberry.field(
        description="The secret: send as `Authorization: Bearer <token>`. Shown only now."
    )
    permissions: list[Permission] = strawberry.field(description="What it may do.")
