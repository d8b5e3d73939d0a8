"""GraphQL types of referral trees, top referrers, reward rules and rewards."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import strawberry

from api.ids import to_global_id
from api.patients.types import Patient
from api.rows import RowType
from api.tenants.types import Branch
from domain.care.orders import to_yuan
from domain.patients.models import Patient as PatientRow
from domain.referrals import models as rm
from domain.referrals import tree

RewardTrigger = strawberry.enum(
    rm.RewardTrigger,
    description="FIRST_VISIT: the referred patient's first visit; FIRST_PAYMENT: their first "
    "paid order; REFERRED_COUNT (任务裂变): the referrer reached `threshold` eligible referrals.",
)
RewardStatus = strawberry.enum(
    rm.RewardStatus, description="GRANTED, or REFUSED by a fraud check (see reason)."
)


@strawberry.type(
    description="A patient in a referral tree. Patients outside your scope are anonymous: "
    "`patient` is null but the shape and the figures stay."
)
class ReferralNode:
    index: int = strawberry.field(description="Position in this answer's `nodes` list.")
    parent_index: int | None = strawberry.field(
        description="Index of the node's referrer in `nodes` (null for the root)."
    )
    depth: int = strawberry.field(description="Levels below the tree's root (root: 0).")
    patient: Patient | None = strawberry.field(description="Null when outside your scope.")
    anonymous: bool = strawberry.field(description="True when the patient is outside your scope.")
    subtree_size: int = strawberry.field(
        description="Patients this node brought, directly or through others (itself excluded)."
    )
    converted_count: int = strawberry.field(
        description="Of those, how many have paid orders (net of refunds above zero)."
    )
    converted_value: Decimal = strawberry.field(
        description="What they have paid, net of refunds, yuan."
    )


@strawberry.type(description="A referrer in the chain above a patient.")
class ReferrerLink:
    hops: int = strawberry.field(description="1 for the direct referrer, 2 for theirs, …")
    patient: Patient | None = strawberry.field(description="Null when outside your scope.")
    anonymous: bool = strawberry.field(description="True when the patient is outside your scope.")


def _parent_indices(nodes: list[tree.Node]) -> list[int | None]:
    """Each node's referrer as a position in `nodes` (None for the root)."""
    index = {n.patient_id: i for i, n in enumerate(nodes)}
    return [index.get(n.parent_id) if n.parent_id else None for n in nodes]


@strawberry.type(
    description="The nodes of a referral tree as parallel lists, entry i for `nodes[i]`: the "
    "compact form for big trees (a chart of thousands of nodes answers about three times "
    "faster than the same figures asked node by node)."
)
class ReferralColumns:
    _nodes: strawberry.Private[list[tree.Node]]
    _shown: strawberry.Private[set[uuid.UUID]]

    @strawberry.field(description="Index of each node's referrer (null for the root).")
    def parent_index(self) -> list[int | None]:
        return _parent_indices(self._nodes)

    @strawberry.field(description="Levels below the tree's root (root: 0).")
    def depth(self) -> list[int]:
        return [n.depth for n in self._nodes]

    @strawberry.field(description="Each node's patient id; null when outside your scope.")
    def patient_id(self) -> list[strawberry.ID | None]:
        return [
            strawberry.ID(to_global_id("Patient", n.patient_id))
            if n.patient_id in self._shown
            else None
            for n in self._nodes
        ]

    @strawberry.field(description="True when the node's patient is outside your scope.")
    def anonymous(self) -> list[bool]:
        return [n.patient_id not in self._shown for n in self._nodes]

    @strawberry.field(description="Patients each node brought, directly or through others.")
    def subtree_size(self) -> list[int]:
        return [n.subtree_size for n in self._nodes]

    @strawberry.field(description="Of those, how many have paid orders (net above zero).")
    def converted_count(self) -> list[int]:
        return [n.converted for n in self._nodes]

    @strawberry.field(description="What they have paid, net of refunds, yuan.")
    def converted_value(self) -> list[Decimal]:
        return [to_yuan(n.converted_fen) for n in self._nodes]


@strawberry.type(description="A patient's referral tree (转介绍 / 裂变).")
class ReferralTree:
    referrers: list[ReferrerLink] = strawberry.field(
        description="The chain of referrers above the patient, nearest first, up to the root."
    )
    truncated: bool = strawberry.field(
        description="True when `maxNodes` cut the list short; figures still count everyone."
    )
    _sub: strawberry.Private[tree.Subtree]
    _shown: strawberry.Private[set[uuid.UUID]]
    # the records of the shown patients, read only when a `patient` field was asked for
    _records: strawberry.Private[dict[uuid.UUID, PatientRow]]
    _ctx: strawberry.Private[Any]  # the request's context, for the patients' fields

    @strawberry.field(
        description="The patient (index 0) and everyone below, breadth first, to `depth`."
    )
    def nodes(self) -> list[ReferralNode]:
        parents = _parent_indices(self._sub.nodes)
        return [
            ReferralNode(
                index=i,
                parent_index=parents[i],
                depth=n.depth,
                patient=Patient.of(self._records[n.patient_id], _ctx=self._ctx)
                if n.patient_id in self._records
                else None,
                anonymous=n.patient_id not in self._shown,
                subtree_size=n.subtree_size,
                converted_count=n.converted,
                converted_value=to_yuan(n.converted_fen),
            )
            for i, n in enumerate(self._sub.nodes)
        ]

    @strawberry.field(description="The same nodes as parallel lists (see ReferralColumns).")
    def columns(self) -> ReferralColumns:
        return ReferralColumns(_nodes=self._sub.nodes, _shown=self._shown)


@strawberry.type(description="A referral link.")
class Referral:
    referrer: Patient | None = strawberry.field(description="Null when outside your scope.")
    referred: Patient = strawberry.field(description="The referred patient.")
    channel: str = strawberry.field(description="Campaign or channel code.")
    eligible: bool = strawberry.field(description="False when a fraud check failed.")
    ineligible_reason: str = strawberry.field(
        description="self_referral (same phone / WeChat / WeCom id as the referrer) or "
        "already_in_pool; empty when eligible."
    )
    created_at: datetime = strawberry.field(description="When the link was made.")


@strawberry.type(description="A referrer's figures for a period.")
class ReferrerFigures:
    patient: Patient | None = strawberry.field(description="Null when outside your scope.")
    anonymous: bool = strawberry.field(description="True when the patient is outside your scope.")
    branch: Branch | None = strawberry.field(description="The referrer's home branch.")
    referred_count: int = strawberry.field(description="Eligible referrals made in the period.")
    converted_count: int = strawberry.field(
        description="Of those referred patients, how many paid an order in the period."
    )
    converted_value: Decimal = strawberry.field(
        description="What they paid in the period, net of refunds, yuan."
    )


@strawberry.type(description="A reward rule of the chain's referral programme.")
class RewardRule(RowType):
    _row: strawberry.Private[rm.RewardRule]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("RewardRule", self._row.id))

    @strawberry.field(description="What earns the reward.")
    def trigger(self) -> RewardTrigger:  # type: ignore[valid-type]
        return rm.RewardTrigger(self._row.trigger)

    threshold: int = strawberry.field(description="N for REFERRED_COUNT; 1 otherwise.")
    points: int = strawberry.field(description="Points granted.")
    coupon: str = strawberry.field(description="Coupon granted (its code or name), or empty.")
    active: bool = strawberry.field(description="Whether the rule grants rewards now.")


@strawberry.type(description="A reward recorded on a referrer, once per rule and subject.")
class Reward(RowType):
    _row: strawberry.Private[rm.Reward]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Reward", self._row.id))

    @strawberry.field(description="The rule that made it.")
    def rule_id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("RewardRule", self._row.rule_id))

    @strawberry.field(description="Granted or refused.")
    def status(self) -> RewardStatus:  # type: ignore[valid-type]
        return rm.RewardStatus(self._row.status)

    points: int = strawberry.field(description="Points granted (0 when refused).")
    coupon: str = strawberry.field(description="Coupon granted, or empty.")
    reason: str = strawberry.field(description="Why it was refused, or empty.")

    @strawberry.field(description="The referred patient it is for (null for REFERRED_COUNT).")
    def referred_id(self) -> strawberry.ID | None:
        if self._row.referred_id is None:
            return None
        return strawberry.ID(to_global_id("Patient", self._row.referred_id))

    created_at: datetime = strawberry.field(description="When it was recorded.")
