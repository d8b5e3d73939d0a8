"""Root fields of the patient's door, kept apart from `api/schema.py`; `Query` and `Mutation`
there inherit these. The patient fields answer only to a patient token (api/gate.py and
`auth.guard.own_record_scope`); a patient token answers nothing else."""

from __future__ import annotations

import strawberry

from api.consent.types import PatientConsents, PatientDataExport
from api.door import resolvers as door
from api.door.types import MyAccessEntry, MyFollowUp, MyOrder, MyRecord, MyReferral, MyVisit
from api.pagination import Connection

# What a patient token reaches (besides the public fields): everything else is FORBIDDEN.
PATIENT_ROOT_FIELDS = frozenset(
    {
        "myRecord",
        "myVisits",
        "myOrders",
        "myFollowUps",
        "myConsents",
        "myReferral",
        "myAccessHistory",
        "bookMyVisit",
        "cancelMyVisit",
        "grantMyConsent",
        "withdrawMyConsent",
        "exportMyData",
        "mySurveys",  # api.surveys.fields
    }
)


@strawberry.type(description="What a signed-in patient reads of their own record.")
class DoorQuery:
    my_record: MyRecord = strawberry.field(
        resolver=door.my_record,
        description="Your record (patient token): contact fields, stage, branch.",
    )
    my_visits: list[MyVisit] = strawberry.field(
        resolver=door.my_visits, description="Your appointments and visits, newest first."
    )
    my_orders: list[MyOrder] = strawberry.field(
        resolver=door.my_orders, description="Your orders, newest first."
    )
    my_follow_ups: list[MyFollowUp] = strawberry.field(
        resolver=door.my_follow_ups,
        description="What the clinic will contact you about, due by now (or within withinDays).",
    )
    my_consents: PatientConsents = strawberry.field(
        resolver=door.my_consents,
        description="Your consents in force and their history (the same staff see).",
    )
    my_referral: MyReferral = strawberry.field(
        resolver=door.my_referral,
        description="Your referral code, poster data, friends joined and rewards (counts only).",
    )
    my_access_history: Connection[MyAccessEntry] = strawberry.field(
        resolver=door.my_access_history,
        description="Who read or changed your record, newest first, from the access log.",
    )


@strawberry.type(description="What a patient does from the mini-program, and its set-up.")
class DoorMutation:
    sign_in_patient: door.PatientAuthPayload = strawberry.field(
        resolver=door.sign_in_patient_mutation,
        description="Sign a patient in from the chain's mini-program with a wx.login code "
        "(and, to link by phone, a getPhoneNumber code); returns a patient token.",
    )
    configure_mini_program: door.MiniProgramSettings = strawberry.field(
        resolver=door.configure_mini_program,
        description="Set the chain's mini-program (HQ): AppID, secret (stored sealed), the "
        "branch new patients join, and whether patients see staff names in their history.",
    )
    book_my_visit: MyVisit = strawberry.field(
        resolver=door.book_my_visit, description="Book a visit at a branch (patient token)."
    )
    cancel_my_visit: MyVisit = strawberry.field(
        resolver=door.cancel_my_visit, description="Cancel one of your booked visits."
    )
    grant_my_consent: PatientConsents = strawberry.field(
        resolver=door.grant_my_consent,
        description="Give consent for a purpose on a channel (in force once this returns).",
    )
    withdraw_my_consent: PatientConsents = strawberry.field(
        resolver=door.withdraw_my_consent,
        description="Withdraw consent for a purpose on a channel: no campaign reaches you "
        "there from this moment.",
    )
    export_my_data: PatientDataExport = strawberry.field(
        resolver=door.export_my_data,
        description="A copy of everything the clinic holds on you (PIPL 个人信息副本).",
    )
