"""GraphQL inputs for patients."""

from __future__ import annotations

import strawberry

from api.patients.types import Gender, LifecycleStage, PoolTier, TrustLevel


@strawberry.input(description="Filter for the patient list; all given parts must match.")
class PatientFilter:
    phone: str | None = strawberry.field(
        default=None, description="Exact phone match, through the blind index (no decryption)."
    )
    branch_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Home branch is one of these."
    )
    stages: list[LifecycleStage] | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Lifecycle stage is one of these."
    )
    tiers: list[PoolTier] | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Pool tier is one of these."
    )
    channels: list[str] | None = strawberry.field(
        default=None, description="Source channel is one of these."
    )


@strawberry.input(description="A new patient. Contact and health fields are encrypted at rest.")
class CreatePatientInput:
    name: str = strawberry.field(description="Name (required).")
    home_branch_id: strawberry.ID = strawberry.field(description="Home branch (required).")
    phone: str | None = strawberry.field(default=None, description="Mobile phone.")
    wechat_id: str | None = strawberry.field(default=None, description="WeChat id / openid.")
    wecom_external_id: str | None = strawberry.field(
        default=None, description="WeCom external contact id."
    )
    national_id: str | None = strawberry.field(default=None, description="National id number.")
    medical_history: str | None = strawberry.field(default=None, description="Medical history.")
    allergies: str | None = strawberry.field(default=None, description="Allergies.")
    diagnoses: str | None = strawberry.field(default=None, description="Diagnoses.")
    notes: str | None = strawberry.field(default=None, description="Clinical notes.")
    gender: Gender | None = strawberry.field(default=None, description="Gender.")  # type: ignore[valid-type]
    birth_year: int | None = strawberry.field(default=None, description="Year of birth.")
    source_channel: str | None = strawberry.field(default=None, description="Source channel.")
    pool_tier: PoolTier | None = strawberry.field(default=None, description="Pool tier.")  # type: ignore[valid-type]
    lifecycle_stage: LifecycleStage | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Lifecycle stage (default LEAD)."
    )
    trust_level: TrustLevel | None = strawberry.field(default=None, description="Trust level.")  # type: ignore[valid-type]
    assigned_staff_id: strawberry.ID | None = strawberry.field(
        default=None, description="Staff member to assign."
    )
    consent: bool | None = strawberry.field(
        default=None, description="The patient consented to being contacted."
    )
    referral_code: str | None = strawberry.field(
        default=None,
        description="The referral code (推荐码) the patient signed up with: links them to the "
        "referrer in the same transaction.",
    )
    referral_channel: str | None = strawberry.field(
        default=None, description="Campaign or channel code of the referral."
    )


@strawberry.input(
    description="Changes to a patient: only the fields given are changed; "
    "null clears an optional field."
)
class UpdatePatientInput:
    name: str | None = strawberry.field(
        default=strawberry.UNSET, description="Name (cannot be cleared)."
    )
    home_branch_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="Home branch."
    )
    phone: str | None = strawberry.field(default=strawberry.UNSET, description="Mobile phone.")
    wechat_id: str | None = strawberry.field(
        default=strawberry.UNSET, description="WeChat id / openid."
    )
    wecom_external_id: str | None = strawberry.field(
        default=strawberry.UNSET, description="WeCom external contact id."
    )
    national_id: str | None = strawberry.field(
        default=strawberry.UNSET, description="National id number."
    )
    medical_history: str | None = strawberry.field(
        default=strawberry.UNSET, description="Medical history."
    )
    allergies: str | None = strawberry.field(default=strawberry.UNSET, description="Allergies.")
    diagnoses: str | None = strawberry.field(default=strawberry.UNSET, description="Diagnoses.")
    notes: str | None = strawberry.field(default=strawberry.UNSET, description="Clinical notes.")
    gender: Gender | None = strawberry.field(default=strawberry.UNSET, description="Gender.")  # type: ignore[valid-type]
    birth_year: int | None = strawberry.field(
        default=strawberry.UNSET, description="Year of birth."
    )
    source_channel: str | None = strawberry.field(
        default=strawberry.UNSET, description="Source channel."
    )
    pool_tier: PoolTier | None = strawberry.field(
        default=strawberry.UNSET, description="Pool tier."
    )  # type: ignore[valid-type]
    lifecycle_stage: LifecycleStage | None = strawberry.field(
        default=strawberry.UNSET, description="Lifecycle stage."
    )  # type: ignore[valid-type]
    trust_level: TrustLevel | None = strawberry.field(
        default=strawberry.UNSET, description="Trust level."
    )  # type: ignore[valid-type]
    assigned_staff_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="Staff member to assign (null unassigns)."
    )
    consent: bool | None = strawberry.field(
        default=strawberry.UNSET,
        description="The patient consented to being contacted (false withdraws it).",
    )
