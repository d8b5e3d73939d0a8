"""The GraphQL schema: root fields wired to their resolvers, and the operation boundary."""

from __future__ import annotations

import logging

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from api.extensions import OperationBoundary
from api.pagination import Connection
from api.patients import resolvers as patients
from api.patients.types import Patient
from api.policies import resolvers as policies
from api.policies.types import Permission, Role, ServiceTokenPayload, StaffRoles
from api.pool import resolvers as pool
from api.pool.types import (
    Channel,
    Job,
    PoolMetrics,
    RecordEventsPayload,
    ScoringRules,
    Tag,
    TaggingPayload,
    TagGroup,
)
from api.sessions import resolvers as sessions
from api.settings import Settings
from api.tenants import resolvers as tenants
from api.tenants.types import Branch, Tenant

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 2000


@strawberry.type(description="Read the patient pool.")
class Query:
    me: sessions.Me = strawberry.field(
        resolver=sessions.me, description="The signed-in principal: user, tenant, roles, branches."
    )
    tenant: Tenant = strawberry.field(
        resolver=tenants.tenant, description="The tenant you are signed in to."
    )
    branches: list[Branch] = strawberry.field(
        resolver=tenants.branches, description="The branches of your chain."
    )
    patient: Patient = strawberry.field(
        resolver=patients.patient,
        description="One patient by id, within your scope; NOT_FOUND otherwise.",
    )
    patients: Connection[Patient] = strawberry.field(
        resolver=patients.patients,
        description="Patients within your scope, newest first, paged with first/after.",
    )
    tags: list[Tag] = strawberry.field(resolver=pool.tags, description="The chain's tags.")
    tag_groups: list[TagGroup] = strawberry.field(
        resolver=pool.tag_groups, description="The chain's tag groups."
    )
    channels: list[Channel] = strawberry.field(
        resolver=pool.channels, description="Where patients come from (渠道)."
    )
    segments: Connection[pool.Segment] = strawberry.field(
        resolver=pool.segments, description="Saved segments, by name."
    )
    segment: pool.Segment = strawberry.field(
        resolver=pool.segment, description="One saved segment, with live count and members."
    )
    preview_segment: pool.SegmentPreview = strawberry.field(
        resolver=pool.preview_segment, description="Try a filter before saving it."
    )
    scoring_rules: ScoringRules = strawberry.field(
        resolver=pool.scoring_rules, description="The lead-scoring rules in force."
    )
    job: Job = strawberry.field(resolver=pool.job, description="A background job's progress.")
    possible_duplicates: list[pool.DuplicateGroup] = strawberry.field(
        resolver=pool.possible_duplicates,
        description="Records that share a phone, WeChat or WeCom id (one person, two records?).",
    )
    pool_metrics: PoolMetrics = strawberry.field(
        resolver=pool.pool_metrics, description="Pool size, stages, channels and scores."
    )
    roles: list[Role] = strawberry.field(
        resolver=policies.roles, description="The chain's roles and their permissions."
    )
    permission_catalogue: list[Permission] = strawberry.field(
        resolver=policies.permission_catalogue,
        description="Every permission a rule may name.",
    )


@strawberry.type(description="Change the patient pool.")
class Mutation:
    sign_in: sessions.AuthPayload = strawberry.field(
        resolver=sessions.sign_in_mutation,
        description="Sign in with tenant slug, email and password.",
    )
    refresh_tokens: sessions.AuthPayload = strawberry.field(
        resolver=sessions.refresh_tokens,
        description="Trade a refresh token for new tokens (the old one stops working).",
    )
    sign_out: bool = strawberry.field(
        resolver=sessions.sign_out_mutation, description="End this sign-in's refresh session."
    )
    create_patient: patients.CreatePatientPayload = strawberry.field(
        resolver=patients.create_patient, description="Add a patient to the pool."
    )
    update_patient: patients.UpdatePatientPayload = strawberry.field(
        resolver=patients.update_patient, description="Change a patient."
    )
    erase_patient: patients.ErasePatientPayload = strawberry.field(
        resolver=patients.erase_patient,
        description="Erase a patient's personal and health data on request (PIPL right to "
        "erasure); counts, referral shapes and the access log keep their ids.",
    )
    create_channel: Channel = strawberry.field(
        resolver=pool.create_channel, description="Add a channel (渠道)."
    )
    create_tag_group: TagGroup = strawberry.field(
        resolver=pool.create_tag_group, description="Add a tag group."
    )
    create_tag: Tag = strawberry.field(
        resolver=pool.create_tag, description="Add a tag; with autoRule it is automatic."
    )
    tag_patients: TaggingPayload = strawberry.field(
        resolver=pool.tag_patients,
        description="Tag up to 10,000 patients at once; all or nothing.",
    )
    untag_patients: TaggingPayload = strawberry.field(
        resolver=pool.untag_patients, description="Remove a tag from many patients at once."
    )
    apply_auto_tag: TaggingPayload = strawberry.field(
        resolver=pool.apply_auto_tag,
        description="Make an automatic tag hold for exactly the patients its rule matches.",
    )
    record_events: RecordEventsPayload = strawberry.field(
        resolver=pool.record_events,
        description="Record interaction events (idempotent by clientEventId); rescores.",
    )
    set_scoring_rules: Job = strawberry.field(
        resolver=pool.set_scoring_rules,
        description="Replace the scoring rules; the chain is rescored in the background.",
    )
    change_stage: Patient = strawberry.field(
        resolver=pool.change_stage, description="Move a patient to another lifecycle stage."
    )
    merge_patients: Patient = strawberry.field(
        resolver=pool.merge_patients,
        description="Merge a duplicate record into another (one patient, one record).",
    )
    create_segment: pool.Segment = strawberry.field(
        resolver=pool.create_segment, description="Save a segment."
    )
    change_password: bool = strawberry.field(
        resolver=sessions.change_password_mutation,
        description="Change your password; every other sign-in of yours ends.",
    )
    set_staff_roles: StaffRoles = strawberry.field(
        resolver=policies.set_staff_roles,
        description="Replace a staff member's roles (you can grant only what you hold).",
    )
    set_role_permissions: Role = strawberry.field(
        resolver=policies.set_role_permissions_mutation,
        description="Replace a role's permissions (you can add only what you hold).",
    )
    set_staff_active: bool = strawberry.field(
        resolver=policies.set_staff_active,
        description="Disable or re-enable a staff member; disabling ends their tokens.",
    )
    create_service_token: ServiceTokenPayload = strawberry.field(
        resolver=policies.create_service_token,
        description="A token for a mini-program backend, scoped to this chain and to the "
        "permissions given.",
    )


class PatientPoolSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Strawberry's default logs every error with the request's variables in reach; ours are
        # formatted and, when unexpected, logged by api.errors without personal data.
        return None


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    extensions: list[object] = [
        OperationBoundary,
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
    ]
    if settings is not None and not settings.introspection_enabled:
        extensions.append(DisableIntrospection)
    return PatientPoolSchema(
        query=Query,
        mutation=Mutation,
        config=StrawberryConfig(auto_camel_case=True),
        extensions=extensions,  # type: ignore[arg-type]
    )


logging.getLogger("strawberry.execution").setLevel(logging.CRITICAL)
