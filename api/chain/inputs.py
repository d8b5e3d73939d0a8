"""GraphQL inputs for setting up a chain's branches and regions."""

from __future__ import annotations

import strawberry


@strawberry.input(description="A new branch (门店 / 医馆).")
class CreateBranchInput:
    code: str = strawberry.field(
        description="The chain's own short code, unique in the chain: 1-32 letters, digits, - or _."
    )
    name: str = strawberry.field(description="Branch name.")
    city: str = strawberry.field(default="", description="City the branch is in.")
    address: str = strawberry.field(default="", description="Street address.")
    phone: str = strawberry.field(default="", description="Front-desk phone.")
    region_id: strawberry.ID | None = strawberry.field(
        default=None, description="The region it belongs to (global id), if any."
    )


@strawberry.input(description="Changes to a branch: only the fields given change.")
class UpdateBranchInput:
    code: str | None = strawberry.field(default=strawberry.UNSET, description="New code.")
    name: str | None = strawberry.field(default=strawberry.UNSET, description="New name.")
    city: str | None = strawberry.field(default=strawberry.UNSET, description="New city.")
    address: str | None = strawberry.field(default=strawberry.UNSET, description="New address.")
    phone: str | None = strawberry.field(default=strawberry.UNSET, description="New phone.")
    region_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET,
        description="Move it to this region (global id); null takes it out of any region.",
    )


@strawberry.input(description="Which branches: every part given must hold.")
class BranchFilter:
    region_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Branches in any of these regions."
    )
    is_open: bool | None = strawberry.field(
        default=None, description="True: open branches only; false: closed ones only."
    )
