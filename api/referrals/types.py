"""GraphQL types of referral trees, top referrers, reward rules and rewards."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry

from api.ids import to_global_id
from api.patients.types import Patient
from api.tenants.types import Branch
from domain.referrals import models as rm

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


@strawberry.type(description="A patient's referral tree (转介绍 / 裂变).")
class ReferralTree:
    referrers: list[ReferrerLink] = strawberry.field(
        description="The chain of referrers above the patient, nearest first, up to the root."
    )
    nodes: list[ReferralNode] = strawberry.field(
        description="The patient (index 0) and everyone below, breadth first, to `depth`."
    )
    truncated: bool = strawberry.field(
        description="True when `maxNodes` cut the list short; figures still count everyone."
    )


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
class RewardRule:
    _row: strawberry.Private[rm.RewardRule]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("RewardRule", self._row.id))

    @strawberry.field(description="What earns the reward.")
    def trigger(self) -> RewardTrigger:  # type: ignore[valid-type]
        return rm.RewardTrigger(self._row.trigger)

    @strawberry.field(description="N for REFERRED_COUNT; 1 otherwise.")
    def threshold(self) -> int:
        return self._row.threshold

    @strawberry.field(description="Points granted.")
    def points(self) -> int:
        return self._row.points

    @strawberry.field(description="Coupon granted (its code or name), or empty.")
    def coupon(self) -> str:
        return self._row.coupon

    @strawberry.field(description="Whether the rule grants rewards now.")
    def active(self) -> bool:
        return self._row.active


@strawberry.type(description="A reward recorded on a referrer, once per rule and subject.")
class Reward:
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

    @strawberry.field(description="Points granted (0 when refused).")
    def points(self) -> int:
        return self._row.points

    @strawberry.field(description="Coupon granted, or empty.")
    def coupon(self) -> str:
        return self._row.coupon

    @strawberry.field(description="Why it was refused, or empty.")
    def reason(self) -> str:
        return self._row.reason

    @strawberry.field(description="The referred patient it is for (null for REFERRED_COUNT).")
    def referred_id(self) -> strawberry.ID | None:
        if self._row.referred_id is None:
            return None
        return strawberry.ID(to_global_id("Patient", self._row.referred_id))

    @strawberry.field(description="When it was recorded.")
    def created_at(self) -> datetime:
        return self._row.created_at
