"""GraphQL types a signed-in patient reads (the mini-program's screens): their own record and
what hangs off it, shaped for them. They are types of their own, not the staff types, so no
path leads from them to staff notes, scores, tags, other patients or staff records."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry

from api.audit.types import AccessAction
from api.care.types import FollowUpKind, OrderStatus, VisitStatus
from api.patients.types import LifecycleStage
from api.reasons.types import Purpose


@strawberry.type(description="A branch (门店) as a patient sees it: where to go, whom to call.")
class MyBranch:
    id: strawberry.ID = strawberry.field(description="Opaque global id (for bookMyVisit).")
    name: str = strawberry.field(description="The branch's name.")
    city: str = strawberry.field(description="Its city.")
    address: str = strawberry.field(description="Its address.")
    phone: str = strawberry.field(description="Its front-desk phone.")


@strawberry.type(description="The signed-in patient's own record: contact fields and stage.")
class MyRecord:
    id: strawberry.ID = strawberry.field(description="Your patient id (opaque).")
    name: str | None = strawberry.field(description="Your name as the clinic holds it.")
    phone: str | None = strawberry.field(description="Your phone (E.164).")
    wechat_id: str | None = strawberry.field(description="Your WeChat id, if the clinic has it.")
    lifecycle_stage: LifecycleStage = strawberry.field(  # type: ignore[valid-type]
        description="Where you are with the clinic: lead, booked, visited, converted, …"
    )
    home_branch: MyBranch = strawberry.field(description="Your branch.")
    referral_code: str = strawberry.field(description="Your referral code (see myReferral).")


@strawberry.type(description="One of your appointments or visits.")
class MyVisit:
    id: strawberry.ID = strawberry.field(description="Opaque global id (for cancelMyVisit).")
    branch: MyBranch = strawberry.field(description="Where.")
    scheduled_at: datetime = strawberry.field(description="When it is (was) booked for.")
    status: VisitStatus = strawberry.field(description="Booked, arrived, no-show or cancelled.")  # type: ignore[valid-type]
    arrived_at: datetime | None = strawberry.field(description="When you arrived, if you did.")


@strawberry.type(description="One of your orders.")
class MyOrder:
    id: strawberry.ID = strawberry.field(description="Opaque global id.")
    branch: MyBranch = strawberry.field(description="Where.")
    status: OrderStatus = strawberry.field(description="Pending, paid, cancelled or refunded.")  # type: ignore[valid-type]
    total: Decimal = strawberry.field(description="The order's total, yuan.")
    refunded: Decimal = strawberry.field(description="What was refunded, yuan.")
    created_at: datetime = strawberry.field(description="When it was opened.")
    paid_at: datetime | None = strawberry.field(description="When it was paid.")


@strawberry.type(description="Something the clinic will contact you about (回访), due by now.")
class MyFollowUp:
    id: strawberry.ID = strawberry.field(description="Opaque global id.")
    kind: FollowUpKind = strawberry.field(description="What it is about.")  # type: ignore[valid-type]
    due_at: datetime = strawberry.field(description="When it is due.")


@strawberry.type(description="A reward your referrals earned you.")
class MyReward:
    points: int = strawberry.field(description="Points.")
    coupon: str = strawberry.field(description="Coupon, if any.")
    granted: bool = strawberry.field(description="Granted (false: refused by the checks).")
    created_at: datetime = strawberry.field(description="When it was recorded.")


@strawberry.type(
    description="What a share poster (分享海报) needs: the code to print, the mini-program page "
    "to open and the `scene` for wxacode.getUnlimited (a QR code that opens that page)."
)
class MyPoster:
    code: str = strawberry.field(description="Your referral code.")
    page: str = strawberry.field(description="The mini-program page a friend lands on.")
    scene: str = strawberry.field(description="The `scene` to put in the poster's QR code.")
    chain_name: str = strawberry.field(description="The chain's name, for the poster.")


@strawberry.type(
    description="Your referral progress (裂变): counts and rewards only, never who your "
    "friends are."
)
class MyReferral:
    code: str = strawberry.field(description="Your referral code.")
    poster: MyPoster = strawberry.field(description="What to put on your share poster.")
    friends_joined: int = strawberry.field(description="How many friends joined through you.")
    points_earned: int = strawberry.field(description="Points of your granted rewards.")
    rewards: list[MyReward] = strawberry.field(description="Your rewards, oldest first.")


@strawberry.type(
    description="One access to your record, from the clinic's tamper-evident access log: "
    "when, who (a staff role, a branch; a name only where the chain shows names), and what."
)
class MyAccessEntry:
    id: strawberry.ID = strawberry.field(description="Opaque global id of the log entry.")
    occurred_at: datetime = strawberry.field(description="When.")
    action: AccessAction = strawberry.field(description="What was done.")  # type: ignore[valid-type]
    field_groups: list[str] = strawberry.field(
        description="Which of your data: contact (name, phone, WeChat) and/or health."
    )
    by_you: bool = strawberry.field(description="True when it was you, in the mini-program.")
    actor_kind: str = strawberry.field(
        description="staff, patient (you), service (a clinic system) or system."
    )
    staff_roles: list[str] = strawberry.field(
        description="The staff member's roles at the time (doctor, health_manager, …)."
    )
    staff_name: str | None = strawberry.field(
        description="The staff member's display name, where your chain shows names."
    )
    branches: list[MyBranch] = strawberry.field(description="The staff member's branches.")
    purpose: Purpose | None = strawberry.field(  # type: ignore[valid-type]
        description="The purpose the staff member stated before opening your health data "
        "outside their own care (on the statement and on each read or change it opened); "
        "null otherwise. Their note stays with the clinic's auditors."
    )
