"""GraphQL types of a patient. Sealed fields are decrypted only when selected, and only after
`auth.guard` has decided the caller may see their group; each decision lands on the trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.dataloader import DataLoader

from api.ids import to_global_id
from api.node import Node
from api.pool.loaders import patient_tags_loader
from api.pool.types import ScoreExplanation, ScoreLine, StageChange, Tag
from api.rows import RowType
from api.tenants.loaders import branch_loader, staff_loader
from api.tenants.types import Branch, Staff
from auth.guard import Visibility, field_visibility, mask_value, record_field
from auth.principal import Principal
from auth.reasons import IN_CARE, HealthGrant, check_grant, grants, in_own_care_at_once
from domain.errors import Forbidden, NotFound
from domain.patients import models as m
from domain.patients.models import SEALED_FIELDS
from domain.patients.models import ChannelTouch as ChannelTouchRow
from domain.patients.models import Patient as PatientRow
from domain.patients.repository import PatientRepository
from domain.patients.service import unseal
from domain.pool.repository import PoolRepository
from domain.pool.service import PoolService
from tenancy.keyring import DecryptionError, FieldCipher

Gender = strawberry.enum(m.Gender, description="Gender as recorded by the clinic.")
PoolTier = strawberry.enum(
    m.PoolTier,
    description="Pool tier: SEMI_PRIVATE (半私域, past patients in the hospital system) or "
    "STRONG_PRIVATE (强私域, WeCom/WeChat friends and group members).",
)
LifecycleStage = strawberry.enum(
    m.LifecycleStage,
    description="Lifecycle stage: lead → nurturing → qualified → booked → visited → converted → "
    "returning → referrer (转介绍), or lost.",
)
TrustLevel = strawberry.enum(
    m.TrustLevel, description="Trust built with the patient: none, weak, strong, super (超强信任)."
)


def _reveal(
    ctx: Any,
    principal: Principal,
    cipher: FieldCipher,
    patient: PatientRow,
    name: str,
    grant: HealthGrant = IN_CARE,
) -> str | None:
    group = SEALED_FIELDS[name]
    visibility = field_visibility(principal, group)
    if visibility is Visibility.DENIED:
        record_field(ctx.trail, patient.id, group, visibility)
        raise Forbidden(f"not allowed to read {group} fields")
    if group is m.FieldGroup.HEALTH and not grant.in_care:
        check_grant(ctx.trail, patient.id, grant)  # logs the purpose, or raises REASON_REQUIRED
    else:
        record_field(ctx.trail, patient.id, group, visibility)
    try:
        value = unseal(cipher, patient, name)
    except DecryptionError:
        ctx.trail.integrity_failed(patient.id, str(group))
        raise
    return mask_value(name, value) if visibility is Visibility.MASKED else value


def _health_gate(ctx: Any, principal: Principal) -> Any:
    """One loader per request: the care/reason gate (auth.reasons) for a batch of patients."""

    def make() -> DataLoader[PatientRow, HealthGrant]:
        async def load(rows: list[PatientRow]) -> list[HealthGrant]:
            found = await grants(ctx.session, principal, rows)
            return [found[r.id] for r in rows]

        # Keyed by the row (the gate reads its assignee), cached by its id.
        return DataLoader(load_fn=load, cache_key_fn=lambda row: row.id)

    return ctx.loader("health_gate", make)


def _gated(principal: Principal, patient: PatientRow, name: str) -> bool:
    """Whether the care/reason gate must be asked (health fields Casbin lets the caller read,
    of a patient not assigned to them: for those the row answers `grants` alone, so a page of
    the caller's own patients resolves without the gate's look-up)."""
    return (
        SEALED_FIELDS[name] is m.FieldGroup.HEALTH
        and field_visibility(principal, m.FieldGroup.HEALTH) is not Visibility.DENIED
        and not in_own_care_at_once(principal, patient)
    )


async def _sealed_async(patient: PatientRow, ctx: Any, name: str) -> str | None:
    principal = await ctx.principal()
    if field_visibility(principal, SEALED_FIELDS[name]) is Visibility.DENIED:
        return _reveal(ctx, principal, None, patient, name)  # type: ignore[arg-type]  # raises
    grant = IN_CARE
    if _gated(principal, patient, name):
        grant = await _health_gate(ctx, principal).load(patient)
    return _reveal(ctx, principal, await ctx.cipher(), patient, name, grant)


def _sealed(patient: PatientRow, ctx: Any, name: str) -> Any:
    """The field's value, or an awaitable of it. Once the root resolver has loaded the
    principal and the cipher (`page_patients` does), no await and no task per field:
    a page of 50 patients with 3 sealed fields is 150 plain calls (health fields of patients
    outside the caller's own care wait for the gate's one batched look-up)."""
    principal, cipher = ctx.loaded("principal"), ctx.loaded("cipher")
    if principal is None or cipher is None:
        return _sealed_async(patient, ctx, name)
    if _gated(principal, patient, name):
        # The gate's answer comes from its DataLoader, awaited (its one batch for the page).
        return _sealed_async(patient, ctx, name)
    return _reveal(ctx, principal, cipher, patient, name, IN_CARE)


@strawberry.type(description="One time the person came in through a channel (OneID).")
class ChannelTouch(RowType):
    _row: strawberry.Private[ChannelTouchRow]

    channel: str = strawberry.field(
        description="The channel code (as in sourceChannel); may be empty."
    )

    via: str = strawberry.field(
        description="How: create (createPatient), wecom (a WeCom contact) or import."
    )

    occurred_at: datetime = strawberry.field(description="When.")


def _touch_loader(session: Any) -> DataLoader[Any, list[ChannelTouchRow]]:
    async def load(ids: Any) -> list[list[ChannelTouchRow]]:
        found = await PatientRepository(session).touches(list(ids))
        return [found[i] for i in ids]

    return DataLoader(load_fn=load)


def _visible_tags(
    ctx: Any,
    principal: Principal,
    patient: PatientRow,
    found: list[tuple[Any, Any]],
    grant: HealthGrant | None = None,
) -> list[Tag] | None:
    """The patient's tags the caller may see. Health tags are health data: only for roles
    that read health fields in full, and past the care/reason gate (a patient outside the
    caller's own care shows them only under an open purpose, and that read is logged with it;
    otherwise they are left out). None when the gate's answer is needed and not given."""
    shown = [(t, g) for t, g in found if not g.is_health]
    if len(shown) == len(found) or (
        field_visibility(principal, m.FieldGroup.HEALTH) is not Visibility.FULL
    ):
        return [Tag.of(t, _group=g) for t, g in shown]
    if not in_own_care_at_once(principal, patient):
        if grant is None:
            return None  # the caller awaits the gate's batched answer and asks again
        if not grant.opens:
            return [Tag.of(t, _group=g) for t, g in shown]
        check_grant(ctx.trail, patient.id, grant)  # logs the purpose (opens: never raises)
    return [Tag.of(t, _group=g) for t, g in found]


@strawberry.type(
    description="A patient of the pool (患者 / 客户). Contact and health fields are "
    "encrypted at rest; fields you may not see come back null with a FORBIDDEN error, "
    "or masked where your role allows only that."
)
class Patient(RowType, Node):
    _row: strawberry.Private[PatientRow]
    # The request's context (api.context.Context): the fields that decide what the caller may
    # see (the sealed fields, tags) read the principal, the cipher and the trail from it, so
    # their resolvers take the object alone and a compiled plan calls them directly.
    _ctx: strawberry.Private[Any]
    # The patient's tags with their groups, when the resolver that made the object loaded
    # them for its whole page (page_patients): `tags` then answers without an await.
    _tags: strawberry.Private[list[tuple[Any, Any]] | None] = None

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Patient", self._row.id))

    @strawberry.field(description="Name (contact group; masked for some roles).")
    def name(self) -> str | None:
        return _sealed(self._row, self._ctx, "name")

    @strawberry.field(
        description="Mobile phone, normalised, e.g. +8613800138000 (contact group; "
        "masked as 138****8000 for some roles)."
    )
    def phone(self) -> str | None:
        return _sealed(self._row, self._ctx, "phone")

    @strawberry.field(description="WeChat id / mini-program openid (contact group).")
    def wechat_id(self) -> str | None:
        return _sealed(self._row, self._ctx, "wechat_id")

    @strawberry.field(description="WeCom external contact id (企业微信外部联系人, contact group).")
    def wecom_external_id(self) -> str | None:
        return _sealed(self._row, self._ctx, "wecom_external_id")

    @strawberry.field(description="National id number (身份证号; health group: most restricted).")
    def national_id(self) -> str | None:
        return _sealed(self._row, self._ctx, "national_id")

    @strawberry.field(description="Medical history (既往史, health group).")
    def medical_history(self) -> str | None:
        return _sealed(self._row, self._ctx, "medical_history")

    @strawberry.field(description="Allergies (过敏史, health group).")
    def allergies(self) -> str | None:
        return _sealed(self._row, self._ctx, "allergies")

    @strawberry.field(description="Diagnoses (诊断, health group).")
    def diagnoses(self) -> str | None:
        return _sealed(self._row, self._ctx, "diagnoses")

    @strawberry.field(description="Free-text clinical notes (health group).")
    def notes(self) -> str | None:
        return _sealed(self._row, self._ctx, "notes")

    @strawberry.field(description="Gender.")
    def gender(self) -> Gender:  # type: ignore[valid-type]
        return m.Gender(self._row.gender)

    birth_year: int | None = strawberry.field(description="Year of birth.")
    source_channel: str = strawberry.field(
        description="Where the patient came from (渠道), e.g. xiaohongshu, douyin."
    )

    @strawberry.field(description="Pool tier (半私域 / 强私域).")
    def pool_tier(self) -> PoolTier:  # type: ignore[valid-type]
        return m.PoolTier(self._row.pool_tier)

    @strawberry.field(description="Lifecycle stage.")
    def lifecycle_stage(self) -> LifecycleStage:  # type: ignore[valid-type]
        return m.LifecycleStage(self._row.lifecycle_stage)

    @strawberry.field(description="Trust level.")
    def trust_level(self) -> TrustLevel:  # type: ignore[valid-type]
        return m.TrustLevel(self._row.trust_level)

    referral_code: str = strawberry.field(
        description="Code a new patient can give to be linked as referred (转介绍码)."
    )

    @strawberry.field(description="Whether the patient has consented to being contacted.")
    def consented(self) -> bool:
        return self._row.consent_at is not None

    @strawberry.field(description="True once the patient's data was erased on request.")
    def erased(self) -> bool:
        return self._row.erased_at is not None

    created_at: datetime = strawberry.field(description="When the record was created.")
    updated_at: datetime = strawberry.field(description="When the record last changed.")

    @strawberry.field(description="Home branch (所属门店).")
    async def home_branch(self) -> Branch:
        ctx = self._ctx
        loader = ctx.loader("branch", lambda: branch_loader(ctx.session))
        row = await loader.load(self._row.home_branch_id)
        if row is None:  # a foreign key every patient has; branches are closed, never deleted
            raise NotFound("no such branch")
        return Branch.of(row)

    @strawberry.field(description="Staff member the patient is assigned to (doctor or 健康管家).")
    async def assigned_staff(self) -> Staff | None:
        if self._row.assigned_staff_id is None:
            return None
        ctx = self._ctx
        loader = ctx.loader("staff", lambda: staff_loader(ctx.session))
        row = await loader.load(self._row.assigned_staff_id)
        return None if row is None else Staff.of(row)

    lead_score: int = strawberry.field(
        description="Lead score (线索评分) under the tenant's rules."
    )

    last_interaction_at: datetime | None = strawberry.field(
        description="When the patient last did anything we recorded."
    )

    last_visit_at: datetime | None = strawberry.field(
        description="When the patient last visited (就诊)."
    )

    @strawberry.field(
        description="Tags on the patient; health tags only for roles that may read health data "
        "and, for a patient outside your own care, while a purpose you stated is open "
        "(statePurpose); otherwise they are left out."
    )
    def tags(self) -> list[Tag]:
        # The page's resolver loaded them for the page (`_tags`): a plain call for a caller
        # whose principal is loaded and who needs no gate's answer; otherwise awaited.
        principal = self._ctx.loaded("principal")
        if principal is not None and self._tags is not None:
            shown = _visible_tags(self._ctx, principal, self._row, self._tags)
            if shown is not None:
                return shown
        return self._tags_awaited()  # type: ignore[return-value]

    async def _tags_awaited(self) -> list[Tag]:
        ctx = self._ctx
        principal = await ctx.principal()
        found = self._tags
        if found is None:
            loader = ctx.loader("patient_tags", lambda: patient_tags_loader(ctx.session))
            found = await loader.load(self._row.id)
        shown = _visible_tags(ctx, principal, self._row, found)
        if shown is None:
            grant = await _health_gate(ctx, principal).load(self._row)
            shown = _visible_tags(ctx, principal, self._row, found, grant)
        assert shown is not None
        return shown

    @strawberry.field(description="How the lead score came about: which events gave which points.")
    async def score_explanation(self) -> ScoreExplanation:
        ctx = self._ctx
        await ctx.principal()
        result = await PoolService(ctx.session, "").explain(self._row)
        return ScoreExplanation(
            score=result.score,
            lines=[ScoreLine(what=w, count=n, points=p) for w, n, p in result.lines],
        )

    @strawberry.field(
        description="Every channel the person came in through, oldest first: the first is the "
        "one the record joined through; a known phone, WeChat, WeCom or national id coming "
        "in again (createPatient, a WeCom contact, an import) adds one (OneID)."
    )
    async def channel_history(self) -> list[ChannelTouch]:
        ctx = self._ctx
        await ctx.principal()
        loader = ctx.loader("channel_touches", lambda: _touch_loader(ctx.session))
        return [ChannelTouch.of(r) for r in await loader.load(self._row.id)]

    @strawberry.field(description="Lifecycle stage changes, oldest first.")
    async def stage_history(self) -> list[StageChange]:
        ctx = self._ctx
        await ctx.principal()
        rows = await PoolRepository(ctx.session).stage_changes(self._row.id)
        return [StageChange.of(r) for r in rows]
