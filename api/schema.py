"""The GraphQL schema: root fields wired to their resolvers, and the operation boundary."""

from __future__ import annotations

import logging
from pathlib import Path

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaxTokensLimiter
from strawberry.file_uploads import Upload
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from api import lookup
from api.argdocs import describe_arguments
from api.audit import resolvers as audit
from api.audit.types import AccessLogArchive, AccessLogEntry, AccessLogExport
from api.campaigns import resolvers as campaign_api
from api.campaigns.types import Campaign, ContactRules
from api.care import resolvers as care
from api.care.types import ChainMetrics, FollowUp, FollowUpRule, Order, Visit
from api.chain.fields import ChainMutation, ChainQuery
from api.consent import resolvers as consent
from api.consent.types import PatientConsents, PatientDataExport
from api.door.fields import PATIENT_ROOT_FIELDS, DoorMutation, DoorQuery
from api.edge_settings import EdgeSettings
from api.execution import Execution
from api.exports import resolvers as exports
from api.extensions import OperationBoundary
from api.gate import caller_first
from api.imports import resolvers as imports
from api.imports.upload import UPLOAD
from api.limits import MAX_TOKENS, validation_extensions
from api.node import Node
from api.pagination import Connection
from api.parse_cache import ParseOnce
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
from api.reasons import resolvers as reasons
from api.reasons.types import ReasonedAccess
from api.referrals import resolvers as referrals
from api.referrals.types import Referral, ReferralTree, ReferrerFigures, Reward, RewardRule
from api.sessions import resolvers as sessions
from api.sessions.fields import TwoFactorMutation, TwoFactorQuery
from api.surveys.fields import PUBLIC_SURVEY_FIELDS, SurveyMutation, SurveyQuery
from api.tenants import resolvers as tenants
from api.tenants.types import Tenant
from api.wecom import resolvers as wecom
from api.wecom.group_fields import GroupChatMutation, GroupChatQuery
from api.wecom.types import WecomSettings

OPERATIONS = Path(__file__).resolve().parent.parent / "frontend-schema" / "operations"
# Root fields a caller without a token may use; every other root field answers UNAUTHENTICATED
# before any of its arguments is looked at (api/gate.py).
PUBLIC_ROOT_FIELDS = frozenset(
    {
        "signIn",
        "refreshTokens",
        "acceptInvitation",
        "completePasswordReset",
        "verifyTotp",
        "signInPatient",
        *PUBLIC_SURVEY_FIELDS,
    }
)
# All a token that may only set up a second factor reaches (signIn's enrolmentRequired).
ENROLMENT_ROOT_FIELDS = frozenset({"me", "startTotpEnrolment", "confirmTotp"})


@strawberry.type(description="Read the patient pool.")
class Query(ChainQuery, TwoFactorQuery, DoorQuery, GroupChatQuery, SurveyQuery):
    me: sessions.Me = strawberry.field(
        resolver=sessions.me, description="The signed-in principal: user, tenant, roles, branches."
    )
    tenant: Tenant = strawberry.field(
        resolver=tenants.tenant, description="The tenant you are signed in to."
    )
    node: Node = strawberry.field(
        resolver=lookup.node,
        description="Fetch a Patient, Segment, Job, Branch or Staff member again by its global "
        "id (Relay), with the same rules and logging as its own root field.",
    )
    patient: Patient = strawberry.field(
        resolver=patients.patient,
        description="One patient by id, within your scope; NOT_FOUND otherwise.",
    )
    patients: Connection[Patient] = strawberry.field(
        resolver=patients.patients,
        description="Patients within your scope, newest first, paged with first/after.",
    )
    tags: Connection[Tag] = strawberry.field(resolver=pool.tags, description="The chain's tags.")
    tag_groups: Connection[TagGroup] = strawberry.field(
        resolver=pool.tag_groups, description="The chain's tag groups."
    )
    channels: Connection[Channel] = strawberry.field(
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
    possible_duplicates: Connection[pool.DuplicateGroup] = strawberry.field(
        resolver=pool.possible_duplicates,
        description="Records that share a phone, WeChat or WeCom id (one person, two records?).",
    )
    pool_metrics: PoolMetrics = strawberry.field(
        resolver=pool.pool_metrics, description="Pool size, stages, channels and scores."
    )
    access_log: Connection[AccessLogEntry] = strawberry.field(
        resolver=audit.access_log,
        description="The access log, newest first (auditors): who did what to which patients.",
    )
    patient_access_history: Connection[AccessLogEntry] = strawberry.field(
        resolver=audit.patient_access_history,
        description="Who has seen or changed this patient, newest first (auditors).",
    )
    reasoned_access: Connection[ReasonedAccess] = strawberry.field(
        resolver=reasons.reasoned_access,
        description="Purposes staff stated to read health fields outside their own care "
        "(break the glass), oldest first, for review (auditors).",
    )
    campaigns: Connection[Campaign] = strawberry.field(
        resolver=campaign_api.campaigns,
        description="Campaigns (群发), oldest first, with what each reached and brought in.",
    )
    campaign: Campaign = strawberry.field(
        resolver=campaign_api.campaign, description="One campaign by id."
    )
    contact_rules: ContactRules = strawberry.field(
        resolver=campaign_api.contact_rules_query,
        description="The frequency cap and quiet hours every campaign obeys.",
    )
    patient_consents: PatientConsents = strawberry.field(
        resolver=consent.patient_consents,
        description="A patient's consents (知情同意): in force by purpose and channel, "
        "and their history.",
    )
    wecom_settings: WecomSettings | None = strawberry.field(
        resolver=wecom.wecom_settings,
        description="The WeCom (企业微信) callback app, if configured (HQ).",
    )
    access_log_archive: AccessLogArchive = strawberry.field(
        resolver=audit.access_log_archive,
        description="The access log's retention and its archived segments (auditors).",
    )
    referral_tree: ReferralTree = strawberry.field(
        resolver=referrals.referral_tree,
        description="A patient's referrers up to the root and referral subtree to `depth`, "
        "with sizes, conversions and value per node (转介绍 / 裂变).",
    )
    top_referrers: Connection[ReferrerFigures] = strawberry.field(
        resolver=referrals.top_referrers,
        description="Referrers ranked by the referred patients who paid in the period, then "
        "by what those paid.",
    )
    reward_rules: Connection[RewardRule] = strawberry.field(
        resolver=referrals.reward_rules, description="The referral reward rules."
    )
    rewards: Connection[Reward] = strawberry.field(
        resolver=referrals.rewards, description="Rewards recorded on a referrer, oldest first."
    )
    visits: Connection[Visit] = strawberry.field(
        resolver=care.visits, description="Appointments and visits within your scope, by time."
    )
    orders: Connection[Order] = strawberry.field(
        resolver=care.orders, description="Orders within your scope, oldest first."
    )
    follow_ups: Connection[FollowUp] = strawberry.field(
        resolver=care.follow_ups_list,
        description="Follow-up tasks within your scope, by due date; "
        '`filter: {mine: true, dueToday: true}` is "my follow-ups due today".',
    )
    follow_up_rules: Connection[FollowUpRule] = strawberry.field(
        resolver=care.follow_up_rules, description="The rules that make follow-up tasks."
    )
    metrics: ChainMetrics = strawberry.field(
        resolver=care.metrics,
        description="Conversion metrics for a period (at most 366 days), in total and by "
        "branch: lead → visit, visit → deal, return visits, repurchase, referral, follow-ups.",
    )
    roles: Connection[Role] = strawberry.field(
        resolver=policies.roles, description="The chain's roles and their permissions."
    )
    permission_catalogue: Connection[Permission] = strawberry.field(
        resolver=policies.permission_catalogue,
        description="Every permission a rule may name.",
    )


@strawberry.type(description="Change the patient pool.")
class Mutation(ChainMutation, TwoFactorMutation, DoorMutation, GroupChatMutation, SurveyMutation):
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
    import_patients: Job = strawberry.field(
        resolver=imports.import_patients,
        description="HQ: bring patients in from a CSV or XLSX file (GraphQL multipart request "
        "spec); a background job whose `importReport` counts what it did and lists each "
        "rejected row. Rows matching a patient by phone, WeChat id or WeCom id never duplicate.",
    )
    merge_patients: Patient = strawberry.field(
        resolver=pool.merge_patients,
        description="Merge a duplicate record into another (one patient, one record).",
    )
    export_patients: exports.ExportPatientsPayload = strawberry.field(
        resolver=exports.export_patients,
        description="Export the patients of your scope (optionally filtered) as CSV or XLSX: "
        "a background job, then a download for you alone that expires; the file holds exactly "
        "the fields you may read, masked as you see them. HQ and branch managers.",
    )
    create_segment: pool.Segment = strawberry.field(
        resolver=pool.create_segment, description="Save a segment."
    )
    link_referral: Referral = strawberry.field(
        resolver=referrals.link_referral,
        description="Record who referred a patient, by the referrer's referral code; refuses "
        "a second referrer and cycles (CONFLICT).",
    )
    set_reward_rule: RewardRule = strawberry.field(
        resolver=referrals.set_reward_rule, description="Add or change a referral reward rule."
    )
    book_visit: Visit = strawberry.field(
        resolver=care.book_visit, description="Book an appointment (预约)."
    )
    reschedule_visit: Visit = strawberry.field(
        resolver=care.reschedule_visit, description="Move a booked appointment."
    )
    cancel_visit: Visit = strawberry.field(
        resolver=care.cancel_visit, description="Cancel a booked appointment."
    )
    mark_arrived: Visit = strawberry.field(
        resolver=care.mark_arrived,
        description="The patient arrived (到诊): first or return visit, post-visit follow-up, "
        "referral reward.",
    )
    mark_no_show: Visit = strawberry.field(
        resolver=care.mark_no_show, description="The patient did not come (爽约)."
    )
    create_order: Order = strawberry.field(
        resolver=care.create_order, description="Open an order with its service lines."
    )
    pay_order: Order = strawberry.field(
        resolver=care.pay_order,
        description="Mark an order paid: first order or repurchase, referral reward.",
    )
    cancel_order: Order = strawberry.field(
        resolver=care.cancel_order, description="Cancel an unpaid order."
    )
    refund_order: Order = strawberry.field(
        resolver=care.refund_order, description="Refund part or all of a paid order."
    )
    create_follow_up: FollowUp = strawberry.field(
        resolver=care.create_follow_up, description="Add a follow-up task."
    )
    complete_follow_up: FollowUp = strawberry.field(
        resolver=care.complete_follow_up, description="Close a follow-up with its outcome."
    )
    cancel_follow_up: FollowUp = strawberry.field(
        resolver=care.cancel_follow_up, description="Cancel a follow-up."
    )
    set_follow_up_rule: FollowUpRule = strawberry.field(
        resolver=care.set_follow_up_rule, description="Change a follow-up rule (HQ)."
    )
    export_access_log: AccessLogExport = strawberry.field(
        resolver=audit.export_access_log,
        description="Export access-log entries as JSON lines or CSV (the export is logged).",
    )
    create_campaign: Campaign = strawberry.field(
        resolver=campaign_api.create_campaign,
        description="Plan a campaign: a segment, a channel, a message and a send window. The "
        "audience is computed when the window opens (or at launchCampaign), not now.",
    )
    launch_campaign: Campaign = strawberry.field(
        resolver=campaign_api.launch_campaign,
        description="Compute the audience now (consenting, addressed, under the frequency cap) "
        "and queue one delivery per patient; the window must be open.",
    )
    cancel_campaign: Campaign = strawberry.field(
        resolver=campaign_api.cancel_campaign,
        description="Stop a campaign: deliveries still in the outbox are not sent.",
    )
    set_contact_rules: ContactRules = strawberry.field(
        resolver=campaign_api.set_contact_rules,
        description="Set the frequency cap (all channels together) and quiet hours (免打扰). HQ.",
    )
    record_consent: PatientConsents = strawberry.field(
        resolver=consent.record_consent,
        description="Record that a patient gave or withdrew consent for a purpose on a channel; "
        "a withdrawal holds from this moment for every audience and send.",
    )
    export_patient_data: PatientDataExport = strawberry.field(
        resolver=consent.export_patient_data,
        description="A copy of everything held on one patient, decrypted, for their access "
        "request under PIPL (个人信息副本); the export is logged.",
    )
    configure_wecom: WecomSettings = strawberry.field(
        resolver=wecom.configure_wecom,
        description="Set the WeCom app that sends external-contact callbacks: corp id, the "
        "callback token and EncodingAESKey (stored sealed), and the branch new contacts join.",
    )
    state_purpose: ReasonedAccess = strawberry.field(
        resolver=reasons.state_purpose,
        description="Say why you need a patient's health fields outside your own care: they "
        "open to you for the chain's window (default 30 minutes), on the record. Until then "
        "they answer FORBIDDEN with extensions.reason REASON_REQUIRED.",
    )
    flag_reasoned_access: ReasonedAccess = strawberry.field(
        resolver=reasons.flag_reasoned_access,
        description="Flag a stated purpose for follow-up, with a note (auditors; logged).",
    )
    set_reason_window: int = strawberry.field(
        resolver=reasons.set_reason_window_mutation,
        description="How many minutes a stated purpose opens health fields (1 to 480). HQ.",
    )
    set_access_log_retention: AccessLogArchive = strawberry.field(
        resolver=audit.set_access_log_retention,
        description="How many days the access log stays in the database before it is archived "
        "(at least 180; null keeps it for ever). HQ.",
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


def build_schema(settings: EdgeSettings | None = None) -> strawberry.Schema:
    introspection = settings is None or settings.introspection_enabled
    extensions: list[object] = [
        OperationBoundary,
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        ParseOnce,  # after the token limit, which sets the parse options it is keyed by
        # Before validation: an anonymous caller learns only that it must sign in.
        caller_first(PUBLIC_ROOT_FIELDS, ENROLMENT_ROOT_FIELDS, PATIENT_ROOT_FIELDS),
        *validation_extensions(introspection),
    ]
    schema = PatientPoolSchema(
        query=Query,
        mutation=Mutation,
        config=StrawberryConfig(auto_camel_case=True),
        extensions=extensions,  # type: ignore[arg-type]
        execution_context_class=Execution,
        scalar_overrides={Upload: UPLOAD},
    )
    describe_arguments(schema._schema)
    return schema


logging.getLogger("strawberry.execution").setLevel(logging.CRITICAL)
