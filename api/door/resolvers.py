"""The patient's door: root fields a signed-in patient uses from the mini-program, and the two
that open it (configureMiniProgram for HQ, signInPatient for the patient).

Every patient field takes a patient principal and reads through `own_record_scope`, the scope
`auth/` builds for exactly their record; each read or change lands on the request's access
trail, so the access log holds it with the patient as actor.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import strawberry
from strawberry.types import Info

from api.consent.types import (
    Consent,
    ConsentRecord,
    ContactChannelEnum,
    PatientConsents,
    PatientDataExport,
    PurposeEnum,
)
from api.door.types import (
    MyAccessEntry,
    MyBranch,
    MyFollowUp,
    MyOrder,
    MyPoster,
    MyRecord,
    MyReferral,
    MyReward,
    MyVisit,
)
from api.ids import parse_global_id, to_global_id
from api.pagination import Connection, check_first, decode_cursor, make_connection
from api.tenants.types import Branch
from auth import access_history
from auth.access_log import Action, Outcome
from auth.guard import own_record_scope, require
from auth.patient_sessions import sign_in_patient
from auth.principal import Principal
from domain.care import models as cm
from domain.care.orders import to_yuan
from domain.care.visits import VisitService
from domain.consent import service as consent
from domain.consent.models import ContactChannel, Purpose
from domain.door.repository import DoorRepository
from domain.door.service import DoorService
from domain.errors import BadInput, NotFound
from domain.patients.models import SEALED_FIELDS, FieldGroup
from domain.patients.models import Patient as PatientRow
from domain.patients.service import unseal
from domain.reasons.models import Purpose as AccessPurpose
from domain.referrals.models import RewardStatus
from domain.rights.export import patient_copy
from domain.tenants.models import Branch as BranchRow
from tenancy.orm import utcnow

# A patient's own lists are short; past this many the oldest are left out.
MAX_OWN = 200
# The page the referral poster's QR code opens (the mini-program's own route).
INVITE_PAGE = "pages/invite/index"


@strawberry.type(description="A patient's token, from signInPatient.")
class PatientAuthPayload:
    access_token: str = strawberry.field(
        description="Send as Authorization: Bearer …; works only on the patient fields "
        "(myRecord, myVisits, …), never on staff ones."
    )
    expires_in: int = strawberry.field(description="Seconds until it expires; sign in again.")
    new_patient: bool = strawberry.field(
        description="True when no record matched and a new one (a lead) was made."
    )


@strawberry.type(description="The chain's mini-program (HQ): never its secret.")
class MiniProgramSettings:
    app_id: str = strawberry.field(description="The mini-program's AppID (wx…).")
    default_branch: Branch = strawberry.field(
        description="Where new patients from the mini-program join the pool."
    )
    show_staff_names: bool = strawberry.field(
        description="Whether a patient's myAccessHistory names the staff member (else roles)."
    )


async def configure_mini_program(
    info: Info,
    app_id: str,
    secret: str,
    default_branch_id: strawberry.ID,
    show_staff_names: bool = False,
) -> MiniProgramSettings:
    ctx = info.context
    require(await ctx.principal(), "policies", "write")
    branch_id = parse_global_id(default_branch_id, "Branch", "defaultBranchId")
    app = await DoorService(ctx.session, await ctx.cipher()).configure(
        app_id, secret, branch_id, show_staff_names
    )
    ctx.trail.admin("mini_program.configure", "MiniProgram", app.app_id)
    branch = (await DoorRepository(ctx.session).branches({branch_id}))[branch_id]
    return MiniProgramSettings(
        app_id=app.app_id, default_branch=Branch.of(branch), show_staff_names=show_staff_names
    )


async def sign_in_patient_mutation(
    info: Info,
    tenant: str,
    code: str,
    phone_code: str | None = None,
    referral_code: str | None = None,
) -> PatientAuthPayload:
    ctx = info.context
    token = await sign_in_patient(
        ctx.app.sessions,
        ctx.app.signing_keys,
        ctx.app.key_provider,
        ctx.app.sign_in_limits,
        ctx.app.settings.wechat_api_url,
        tenant_slug=tenant,
        code=code,
        phone_code=phone_code,
        info=ctx.request_info,
        referral_code=referral_code,
    )
    return PatientAuthPayload(
        access_token=token.access_token, expires_in=token.expires_in, new_patient=token.created
    )


# --- the signed-in patient ---


async def _own(info: Info, act: str = "read") -> tuple[Principal, PatientRow]:
    ctx = info.context
    principal = await ctx.principal()
    row = await DoorRepository(ctx.session).own(own_record_scope(principal, act))
    if row is None:
        raise NotFound("no such patient")
    return principal, row


def _branch(row: BranchRow) -> MyBranch:
    return MyBranch(
        id=strawberry.ID(to_global_id("Branch", row.id)),
        name=row.name,
        city=row.city,
        address=row.address,
        phone=row.phone,
    )


async def _branches(info: Info, ids: set[uuid.UUID]) -> dict[uuid.UUID, MyBranch]:
    rows = await DoorRepository(info.context.session).branches(ids)
    return {k: _branch(v) for k, v in rows.items()}


def _read(info: Info, patient: PatientRow, *groups: FieldGroup) -> None:
    trail = info.context.trail
    trail.returned(Action.READ, [patient.id])
    for group in groups:
        trail.field(patient.id, str(group), Outcome.ALLOWED)


async def my_record(info: Info) -> MyRecord:
    _, patient = await _own(info)
    cipher = await info.context.cipher()
    _read(info, patient, FieldGroup.CONTACT)
    home = (await _branches(info, {patient.home_branch_id}))[patient.home_branch_id]
    return MyRecord(
        id=strawberry.ID(to_global_id("Patient", patient.id)),
        name=unseal(cipher, patient, "name"),
        phone=unseal(cipher, patient, "phone"),
        wechat_id=unseal(cipher, patient, "wechat_id"),
        lifecycle_stage=patient.lifecycle_stage,  # type: ignore[arg-type]
        home_branch=home,
        referral_code=patient.referral_code,
    )


def _visit(row: cm.Visit, branches: dict[uuid.UUID, MyBranch]) -> MyVisit:
    return MyVisit(
        id=strawberry.ID(to_global_id("Visit", row.id)),
        branch=branches[row.branch_id],
        scheduled_at=row.scheduled_at,
        status=cm.VisitStatus(row.status),  # type: ignore[arg-type]
        arrived_at=row.arrived_at,
    )


async def my_visits(info: Info) -> list[MyVisit]:
    _, patient = await _own(info)
    rows = list(await DoorRepository(info.context.session).visits(patient))[:MAX_OWN]
    _read(info, patient)
    branches = await _branches(info, {r.branch_id for r in rows})
    return [_visit(r, branches) for r in rows]


async def my_orders(info: Info) -> list[MyOrder]:
    _, patient = await _own(info)
    rows = list(await DoorRepository(info.context.session).orders(patient))[:MAX_OWN]
    _read(info, patient)
    branches = await _branches(info, {r.branch_id for r in rows})
    return [
        MyOrder(
            id=strawberry.ID(to_global_id("Order", r.id)),
            branch=branches[r.branch_id],
            status=cm.OrderStatus(r.status),  # type: ignore[arg-type]
            total=to_yuan(r.total_fen),
            refunded=to_yuan(r.refunded_fen),
            created_at=r.created_at,
            paid_at=r.paid_at,
        )
        for r in rows
    ]


async def my_follow_ups(info: Info, within_days: int = 0) -> list[MyFollowUp]:
    """Open follow-ups due by now (or within `within_days` from now)."""
    if not 0 <= within_days <= 90:
        raise BadInput("withinDays must be 0-90", field="withinDays")
    _, patient = await _own(info)
    until = utcnow() + timedelta(days=within_days)
    rows = await DoorRepository(info.context.session).follow_ups_due(patient, until)
    _read(info, patient)
    return [
        MyFollowUp(
            id=strawberry.ID(to_global_id("FollowUp", r.id)),
            kind=r.kind,  # type: ignore[arg-type]
            due_at=r.due_at,
        )
        for r in list(rows)[:MAX_OWN]
    ]


async def _consents(info: Info, patient: PatientRow) -> PatientConsents:
    session = info.context.session
    return PatientConsents(
        current=[Consent.of(r) for r in await consent.states(session, patient.id)],
        history=[ConsentRecord.of(r) for r in await consent.history(session, patient.id)],
    )


async def my_consents(info: Info) -> PatientConsents:
    _, patient = await _own(info)
    _read(info, patient)
    return await _consents(info, patient)


async def _change_consent(
    info: Info, purpose: Purpose, channel: ContactChannel, granted: bool, text_version: str
) -> PatientConsents:
    principal, patient = await _own(info, "write")
    change = consent.ConsentChange(purpose, channel, granted, text_version, "mini_program")
    await consent.record(info.context.session, patient, change, principal.subject)
    info.context.trail.changed(Action.UPDATE, [patient.id])
    return await _consents(info, patient)


async def grant_my_consent(
    info: Info,
    purpose: PurposeEnum,  # type: ignore[valid-type]
    channel: ContactChannelEnum,  # type: ignore[valid-type]
    text_version: str,
) -> PatientConsents:
    return await _change_consent(info, purpose, channel, True, text_version)


async def withdraw_my_consent(
    info: Info,
    purpose: PurposeEnum,  # type: ignore[valid-type]
    channel: ContactChannelEnum,  # type: ignore[valid-type]
    text_version: str = "withdrawn",
) -> PatientConsents:
    return await _change_consent(info, purpose, channel, False, text_version)


async def book_my_visit(info: Info, branch_id: strawberry.ID, at: datetime) -> MyVisit:
    principal, patient = await _own(info, "write")
    branch = parse_global_id(branch_id, "Branch", "branchId")
    if not await DoorRepository(info.context.session).branch_exists(branch):
        raise NotFound("no such branch", field="branchId")
    if at.tzinfo is not None and at <= utcnow():
        raise BadInput("book a time in the future", field="at")
    visit = await VisitService(info.context.session, principal.subject).book(
        patient, branch, None, at
    )
    info.context.trail.changed(Action.UPDATE, [patient.id])
    return _visit(visit, await _branches(info, {visit.branch_id}))


async def cancel_my_visit(info: Info, id: strawberry.ID) -> MyVisit:
    principal, patient = await _own(info, "write")
    repo = DoorRepository(info.context.session)
    visit = await repo.visit(patient, parse_global_id(id, "Visit", "id"))
    if visit is None:
        raise NotFound("no such visit", field="id")
    await VisitService(info.context.session, principal.subject).cancel(visit)
    info.context.trail.changed(Action.UPDATE, [patient.id])
    return _visit(visit, await _branches(info, {visit.branch_id}))


async def my_referral(info: Info) -> MyReferral:
    _, patient = await _own(info)
    repo = DoorRepository(info.context.session)
    rewards = [r for r in await repo.rewards(patient)]
    chain = await repo.tenant_name()
    _read(info, patient)
    code = patient.referral_code
    return MyReferral(
        code=code,
        poster=MyPoster(
            code=code, page=f"{INVITE_PAGE}?ref={code}", scene=f"ref={code}", chain_name=chain
        ),
        friends_joined=await repo.friends_joined(patient),
        points_earned=sum(r.points for r in rewards if r.status == RewardStatus.GRANTED),
        rewards=[
            MyReward(
                points=r.points,
                coupon=r.coupon,
                granted=r.status == RewardStatus.GRANTED,
                created_at=r.created_at,
            )
            for r in rewards
        ],
    )


async def export_my_data(info: Info) -> PatientDataExport:
    """Your copy of everything the clinic holds on you (PIPL 个人信息副本); logged."""
    ctx = info.context
    _, patient = await _own(info)
    copy = await patient_copy(ctx.session, await ctx.cipher(), patient)
    ctx.trail.changed(Action.EXPORT, [patient.id], {str(g) for g in set(SEALED_FIELDS.values())})
    return PatientDataExport(
        patient_id=strawberry.ID(to_global_id("Patient", patient.id)),
        exported_at=utcnow(),
        content=json.dumps(copy, ensure_ascii=False, sort_keys=True),
    )


async def my_access_history(
    info: Info, first: int | None = None, after: str | None = None
) -> Connection[MyAccessEntry]:
    """Every access-log entry about you, newest first (your own reads included)."""
    ctx = info.context
    _, patient = await _own(info)
    limit = check_first(first)
    cursor = decode_cursor(after, 1)
    before = None
    if cursor is not None:
        if not cursor[0].isdigit():
            raise BadInput("after is not a valid cursor", field="after")
        before = int(cursor[0])
    rows = list(await access_history.entries(ctx.session, patient.id, limit + 1, before))
    has_next = len(rows) > limit
    rows = rows[:limit]
    staff = await access_history.staff_facts(ctx.session, rows)
    stated = await access_history.purposes(ctx.session, patient.id, rows)
    names = await DoorRepository(ctx.session).shows_staff_names()
    branches = await _branches(info, {b for f in staff.values() for b in f.branch_ids})
    items = []
    for r in rows:
        facts = staff.get(r.actor_id) if r.actor_type == "user" else None
        items.append(
            MyAccessEntry(
                id=strawberry.ID(to_global_id("AccessLogEntry", r.id)),
                occurred_at=r.occurred_at,
                action=r.action,  # type: ignore[arg-type]
                field_groups=[g for g in r.field_groups.split(",") if g],
                by_you=r.actor_type == "patient" and r.actor_id == str(patient.id),
                actor_kind="staff" if r.actor_type == "user" else r.actor_type,
                staff_roles=[x for x in r.actor_roles.split(",") if x]
                if r.actor_type == "user"
                else [],
                staff_name=facts.display_name if facts is not None and names else None,
                branches=[branches[b] for b in facts.branch_ids if b in branches] if facts else [],
                purpose=AccessPurpose(stated[r.seq]) if r.seq in stated else None,
            )
        )
    # Reading one's own history is an access too: it is logged like the rest.
    _read(info, patient)
    return make_connection(
        items,
        [[str(r.seq)] for r in rows],
        has_next,
        lambda: access_history.count(ctx.session, patient.id),
    )
