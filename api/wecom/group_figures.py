"""The pool figures of customer groups (PoolMetrics.groupChats): apart from the group types,
which need the patient type (that imports the pool's types)."""

from __future__ import annotations

import strawberry


@strawberry.type(description="Customer groups (社群) in the pool, within your patient scope.")
class GroupChatFigures:
    groups: int = strawberry.field(description="Active groups you may see.")
    members: int = strawberry.field(
        description="Patients you may see who are in at least one group now."
    )
    active_members: int = strawberry.field(
        description="Of those, the ones with an interaction in the last 30 days."
    )
    joined: int = strawberry.field(description="Joins in your groups in the last 30 days.")
    left: int = strawberry.field(description="Departures from your groups in the last 30 days.")
