"""Relay's Node interface: anything that can be fetched again by its global id."""

from __future__ import annotations

import strawberry


@strawberry.interface(
    description="Something with an opaque global id that `node(id:)` fetches again (Relay)."
)
class Node:
    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        raise NotImplementedError  # each type answers its own
