"""Tenant A tries to reach tenant B: through every GraphQL operation, crafted ids and cursors,
counts, error messages, concurrency, and raw SQL under row-level security."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from api.context import AppState
from api.ids import to_global_id
from api.pagination import encode_cursor
from api.schema import build_schema
from domain.patients.models import Patient
from process.serve import app_state
from tenancy.orm import tenant_tables
from tenancy.session import TenantContextError, bind_tenant
from tests.conftest import Database
from tests.support import World, build_world, codes, gql, sign_in
from tests.surveys.attacks import SURVEY_ATTACKS

# Every root field, with an operation that aims it at tenant B. A new root field fails
# `test_every_root_field_is_attacked` until it is added here.
Attack = Callable[[World], tuple[str, dict[str, Any]]]
ATTACKS: dict[str, Attack] = {
    "referralTree": lambda b: (
        "query($p: ID!) { referralTree(patientId: $p, depth: 5) { nodes { patient { id name } "
        "subtreeSize } referrers { patient { id } } } }",
        {"p": b.gid("b1")},
    ),
    "topReferrers": lambda b: (
        'query($b: ID) { topReferrers(from: "2020-01-01T00:00:00Z", '
        'to: "2020-12-31T00:00:00Z", branchId: $b) { edges { node { patient { id name } '
        "referredCount } } } }",
        {"b": b.branch_gid("b1")},
    ),
    "rewardRules": lambda b: ("{ rewardRules { edges { node { id trigger points } } } }", {}),
    "rewards": lambda b: (
        "query($p: ID!) { rewards(patientId: $p) { edges { node { status points } } } }",
        {"p": b.gid("b1")},
    ),
    "visits": lambda b: (
        "query($f: VisitFilter) { visits(filter: $f) { totalCount edges { node { id "
        "patient { id name } } } } }",
        {"f": {"patientId": b.gid("b1"), "branchId": b.branch_gid("b1")}},
    ),
    "orders": lambda b: (
        "query($f: OrderFilter) { orders(filter: $f) { totalCount edges { node { id net "
        "patient { id } } } } }",
        {"f": {"patientId": b.gid("b1")}},
    ),
    "followUps": lambda b: (
        "query($p: ID) { followUps(filter: {patientId: $p, statuses: [OPEN, DONE]}) { "
        "totalCount edges { node { id patient { id name } } } } }",
        {"p": b.gid("b1")},
    ),
    "followUpRules": lambda b: ("{ followUpRules { edges { node { trigger delayDays } } } }", {}),
    "metrics": lambda b: (
        'query($b: ID) { metrics(from: "2026-01-01T00:00:00Z", to: "2026-12-31T00:00:00Z", '
        "branchId: $b) { total { leads revenue } byBranch { branch { id } } } }",
        {"b": b.branch_gid("b1")},
    ),
    "linkReferral": lambda b: (
        "mutation($p: ID!, $c: String!) { linkReferral(patientId: $p, referralCode: $c) { "
        "eligible } }",
        {"p": b.gid("b2"), "c": b.patients["b1"].referral_code},
    ),
    "setRewardRule": lambda b: (
        "mutation($id: ID) { setRewardRule(input: {id: $id, trigger: FIRST_VISIT, points: 5}) "
        "{ id } }",
        {"id": to_global_id("RewardRule", b.tenant_id)},
    ),
    "bookVisit": lambda b: (
        "mutation($p: ID!, $br: ID!) { bookVisit(patientId: $p, branchId: $br, "
        'scheduledAt: "2026-12-01T09:00:00+08:00") { id } }',
        {"p": b.gid("b1"), "br": b.branch_gid("b1")},
    ),
    "rescheduleVisit": lambda b: (
        "mutation($id: ID!) { rescheduleVisit(id: $id, "
        'scheduledAt: "2026-12-01T09:00:00+08:00") { id } }',
        {"id": to_global_id("Visit", b.patients["b1"].id)},
    ),
    "cancelVisit": lambda b: (
        "mutation($id: ID!) { cancelVisit(id: $id) { id } }",
        {"id": to_global_id("Visit", b.patients["b1"].id)},
    ),
    "markArrived": lambda b: (
        "mutation($id: ID!) { markArrived(id: $id) { id } }",
        {"id": to_global_id("Visit", b.patients["b1"].id)},
    ),
    "markNoShow": lambda b: (
        "mutation($id: ID!) { markNoShow(id: $id) { id } }",
        {"id": to_global_id("Visit", b.patients["b1"].id)},
    ),
    "createOrder": lambda b: (
        "mutation($p: ID!, $br: ID!) { createOrder(patientId: $p, branchId: $br, "
        'lines: [{service: "x", unitPrice: "1.00"}]) { id } }',
        {"p": b.gid("b1"), "br": b.branch_gid("b1")},
    ),
    "payOrder": lambda b: (
        "mutation($id: ID!) { payOrder(id: $id) { id } }",
        {"id": to_global_id("Order", b.patients["b1"].id)},
    ),
    "cancelOrder": lambda b: (
        "mutation($id: ID!) { cancelOrder(id: $id) { id } }",
        {"id": to_global_id("Order", b.patients["b1"].id)},
    ),
    "refundOrder": lambda b: (
        'mutation($id: ID!) { refundOrder(id: $id, amount: "1.00") { id } }',
        {"id": to_global_id("Order", b.patients["b1"].id)},
    ),
    "createFollowUp": lambda b: (
        "mutation($p: ID!) { createFollowUp(patientId: $p, kind: HEALTH_EDUCATION, "
        'dueAt: "2026-12-01T09:00:00+08:00") { id } }',
        {"p": b.gid("b1")},
    ),
    "completeFollowUp": lambda b: (
        'mutation($id: ID!) { completeFollowUp(id: $id, outcome: "done") { id } }',
        {"id": to_global_id("FollowUp", b.patients["b1"].id)},
    ),
    "cancelFollowUp": lambda b: (
        "mutation($id: ID!) { cancelFollowUp(id: $id) { id } }",
        {"id": to_global_id("FollowUp", b.patients["b1"].id)},
    ),
    "setFollowUpRule": lambda b: (
        "mutation { setFollowUpRule(trigger: VISIT_ARRIVED, delayDays: 9) { delayDays } }",
        {},
    ),
    "accessLog": lambda b: (
        "query($f: AccessLogFilter) { accessLog(filter: $f) { totalCount edges { node { "
        "actorId patientIds action } } } }",
        {"f": {"patientId": b.gid("b1")}},
    ),
    "patientAccessHistory": lambda b: (
        "query($p: ID!) { patientAccessHistory(patientId: $p) { totalCount edges { node { "
        "patientIds } } } }",
        {"p": b.gid("b1")},
    ),
    "node": lambda b: (
        "query($id: ID!) { node(id: $id) { id ... on Patient { name phone } } }",
        {"id": b.gid("b1")},
    ),
    "patientConsents": lambda b: (
        "query($p: ID!) { patientConsents(patientId: $p) { current { granted } } }",
        {"p": b.gid("b1")},
    ),
    "recordConsent": lambda b: (
        "mutation($p: ID!) { recordConsent(patientId: $p, purpose: MARKETING, channel: SMS, "
        'granted: true, textVersion: "v1", method: "paper_form") { current { granted } } }',
        {"p": b.gid("b1")},
    ),
    "exportPatientData": lambda b: (
        "mutation($p: ID!) { exportPatientData(patientId: $p) { content } }",
        {"p": b.gid("b1")},
    ),
    # The JSON form (the edge refuses a file outside multipart); the multipart attack with B's
    # branch codes and phones in the file is tests/attacks/test_import_isolation.py.
    "importPatients": lambda b: (
        "mutation($f: Upload!) { importPatients(file: $f) { id } }",
        {"f": b.slug},
    ),
    "exportPatients": lambda b: (
        "mutation($b: [ID!]) { exportPatients(format: CSV, filter: {branchIds: $b}) "
        "{ job { total } downloadPath } }",
        {"b": [b.branch_gid("b1")]},
    ),
    "wecomSettings": lambda b: ("{ wecomSettings { corpId callbackPath } }", {}),
    "configureWecom": lambda b: (
        'mutation($b: ID!) { configureWecom(corpId: "ww1", token: "tok3n", '
        'encodingAesKey: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", '
        "defaultBranchId: $b) { corpId callbackPath } }",
        {"b": b.branch_gid("b1")},
    ),
    "groupChats": lambda b: (
        "query($b: ID) { groupChats(filter: {branchId: $b}) { totalCount edges { node { id "
        "name memberCount members { totalCount edges { node { id name } } } } } } }",
        {"b": b.branch_gid("b1")},
    ),
    "groupChat": lambda b: (
        "query($id: ID!) { groupChat(id: $id) { name members { edges { node { id } } } } }",
        {"id": to_global_id("GroupChat", b.tenant_id)},
    ),
    "linkWecomStaff": lambda b: (
        'mutation($s: ID!) { linkWecomStaff(staffId: $s, wecomUserId: "zhangsan") { id } }',
        {"s": b.staff_gid("doctor")},
    ),
    "createGroupChatCampaign": lambda b: (
        'mutation($g: ID!) { createGroupChatCampaign(input: {groupChatId: $g, name: "x", '
        'content: "x", windowStart: "2026-12-01T00:00:00Z", windowEnd: "2099-01-01T00:00:00Z"}) '
        "{ id } }",
        {"g": to_global_id("GroupChat", b.tenant_id)},
    ),
    "campaigns": lambda b: (
        "{ campaigns { totalCount edges { node { id name reach { audience delivered } } } } }",
        {},
    ),
    "campaign": lambda b: (
        "query($id: ID!) { campaign(id: $id) { name reach { audience } } }",
        {"id": to_global_id("Campaign", b.tenant_id)},
    ),
    "contactRules": lambda b: ("{ contactRules { frequencyCap quietStart } }", {}),
    "createCampaign": lambda b: (
        'mutation($s: ID!) { createCampaign(input: {name: "x", segmentId: $s, '
        'channel: SMS, content: "x", windowStart: "2026-12-01T00:00:00Z", '
        'windowEnd: "2099-01-01T00:00:00Z"}) { id } }',
        {"s": to_global_id("Segment", b.tenant_id)},
    ),
    "launchCampaign": lambda b: (
        "mutation($id: ID!) { launchCampaign(id: $id) { id matched } }",
        {"id": to_global_id("Campaign", b.tenant_id)},
    ),
    "cancelCampaign": lambda b: (
        "mutation($id: ID!) { cancelCampaign(id: $id) { id } }",
        {"id": to_global_id("Campaign", b.tenant_id)},
    ),
    "setContactRules": lambda b: (
        'mutation { setContactRules(frequencyCap: 3, frequencyDays: 7, quietStart: "22:00", '
        'quietEnd: "08:00") { frequencyCap } }',
        {},
    ),
    "accessLogArchive": lambda b: (
        "{ accessLogArchive { retentionDays segments { number fileName lastHash } } }",
        {},
    ),
    "setAccessLogRetention": lambda b: (
        "mutation { setAccessLogRetention(days: 400) { retentionDays } }",
        {},
    ),
    "statePurpose": lambda b: (
        'mutation($id: ID!) { statePurpose(patientId: $id, purpose: CARE, note: "x") '
        "{ id patientId note } }",
        {"id": b.gid("b1")},
    ),
    "reasonedAccess": lambda b: (
        "query($s: ID) { reasonedAccess(filter: {staffId: $s}) { totalCount "
        "edges { node { id patientId note branch { id } } } } }",
        {"s": b.staff_gid("hq_admin")},
    ),
    "flagReasonedAccess": lambda b: (
        'mutation($id: ID!) { flagReasonedAccess(id: $id, note: "x") { id flagged } }',
        {"id": to_global_id("ReasonedAccess", b.tenant_id)},
    ),
    "setReasonWindow": lambda b: ("mutation { setReasonWindow(minutes: 5) }", {}),
    "exportAccessLog": lambda b: (
        "mutation { exportAccessLog { entries content } }",
        {},
    ),
    "tags": lambda b: ("{ tags { edges { node { id name group { name } } } } }", {}),
    "tagGroups": lambda b: ("{ tagGroups { edges { node { id name } } } }", {}),
    "channels": lambda b: ("{ channels { edges { node { id code } } } }", {}),
    "segments": lambda b: ("{ segments { totalCount edges { node { id name count } } } }", {}),
    "segment": lambda b: (
        "query($id: ID!) { segment(id: $id) { name count } }",
        {"id": to_global_id("Segment", b.tenant_id)},
    ),
    "previewSegment": lambda b: (
        "query($f: SegmentFilterInput!) { previewSegment(filter: $f) { count "
        "members { edges { node { id name } } } } }",
        {"f": {"branchIds": [b.branch_gid("b1")]}},
    ),
    "scoringRules": lambda b: ("{ scoringRules { threshold } }", {}),
    "job": lambda b: (
        "query($id: ID!) { job(id: $id) { status } }",
        {"id": to_global_id("Job", b.tenant_id)},
    ),
    "possibleDuplicates": lambda b: (
        "{ possibleDuplicates { edges { node { matchedOn patients { id name } } } } }",
        {},
    ),
    "poolMetrics": lambda b: ("{ poolMetrics { total byBranch { key count } } }", {}),
    "createChannel": lambda b: ('mutation { createChannel(code: "x1", name: "x") { id } }', {}),
    "createTagGroup": lambda b: ('mutation { createTagGroup(name: "g") { id } }', {}),
    "createTag": lambda b: (
        'mutation($g: ID!) { createTag(groupId: $g, name: "t") { id } }',
        {"g": to_global_id("TagGroup", b.tenant_id)},
    ),
    "tagPatients": lambda b: (
        "mutation($t: ID!, $p: [ID!]!) { tagPatients(tagId: $t, patientIds: $p) { added } }",
        {"t": to_global_id("Tag", b.tenant_id), "p": [b.gid("b1")]},
    ),
    "untagPatients": lambda b: (
        "mutation($t: ID!, $p: [ID!]!) { untagPatients(tagId: $t, patientIds: $p) { removed } }",
        {"t": to_global_id("Tag", b.tenant_id), "p": [b.gid("b1")]},
    ),
    "applyAutoTag": lambda b: (
        "mutation($t: ID!) { applyAutoTag(tagId: $t) { added } }",
        {"t": to_global_id("Tag", b.tenant_id)},
    ),
    "recordEvents": lambda b: (
        "mutation($e: [EventInput!]!) { recordEvents(events: $e) { inserted } }",
        {
            "e": [
                {
                    "clientEventId": "x",
                    "patientId": b.gid("b1"),
                    "type": "INTERACTION",
                    "occurredAt": "2026-01-01T00:00:00Z",
                }
            ]
        },
    ),
    "setScoringRules": lambda b: (
        "mutation { setScoringRules(input: {rules: [], threshold: 1}) { id } }",
        {},
    ),
    "changeStage": lambda b: (
        'mutation($p: ID!) { changeStage(patientId: $p, stage: "lost") { id } }',
        {"p": b.gid("b1")},
    ),
    "mergePatients": lambda b: (
        "mutation($k: ID!, $m: ID!) { mergePatients(keepId: $k, mergeId: $m) { id name } }",
        {"k": b.gid("b1"), "m": b.gid("b2")},
    ),
    "createSegment": lambda b: (
        'mutation($f: SegmentFilterInput!) { createSegment(name: "s", filter: $f) { id } }',
        {"f": {"branchIds": [b.branch_gid("b1")]}},
    ),
    "erasePatient": lambda b: (
        "mutation($id: ID!) { erasePatient(id: $id) { patient { id erased } } }",
        {"id": b.gid("b1")},
    ),
    "roles": lambda b: ("{ roles { edges { node { name permissions { object action } } } } }", {}),
    "permissionCatalogue": lambda b: (
        "{ permissionCatalogue { edges { node { object action } } } }",
        {},
    ),
    "changePassword": lambda b: (
        'mutation { changePassword(currentPassword: "x", newPassword: "yyyyyyyyyyyy") }',
        {},
    ),
    "setStaffRoles": lambda b: (
        'mutation($s: ID!) { setStaffRoles(staffId: $s, roles: ["auditor"]) { roles } }',
        {"s": b.staff_gid("operator")},
    ),
    "setRolePermissions": lambda b: (
        'mutation { setRolePermissions(role: "operator", permissions: '
        '[{object: "fields:health", action: "read"}]) { name } }',
        {},
    ),
    "setStaffActive": lambda b: (
        "mutation($s: ID!) { setStaffActive(staffId: $s, active: false) }",
        {"s": b.staff_gid("doctor")},
    ),
    "createServiceToken": lambda b: (
        'mutation { createServiceToken(name: "x", permissions: []) { id } }',
        {},
    ),
    "me": lambda b: ("{ me { tenant { slug } roles branches { id name } } }", {}),
    "tenant": lambda b: ("{ tenant { id slug name } }", {}),
    "branches": lambda b: ("{ branches { edges { node { id name code } } } }", {}),
    "patient": lambda b: (
        "query($id: ID!) { patient(id: $id) { id name phone medicalHistory } }",
        {"id": b.gid("b1")},
    ),
    "patients": lambda b: (
        "query($f: PatientFilter) { patients(first: 100, filter: $f) { totalCount "
        "edges { node { id name phone notes } } } }",
        {"f": {"phone": b.plaintext["b1"]["phone"], "branchIds": [b.branch_gid("b1")]}},
    ),
    "signIn": lambda b: (
        "mutation($t: String!, $e: String!) { signIn(tenant: $t, email: $e, "
        'password: "correct horse battery wrong") { accessToken } }',
        {"t": b.slug, "e": b.email("hq_admin")},
    ),
    "refreshTokens": lambda b: (
        "mutation($r: String!) { refreshTokens(refreshToken: $r) { accessToken } }",
        {"r": f"ppr_{b.tenant_id.hex}_forged"},
    ),
    "signOut": lambda b: ("mutation { signOut }", {}),
    "createPatient": lambda b: (
        "mutation($in: CreatePatientInput!) { createPatient(input: $in) { patient { id } } }",
        {"in": {"name": "intruder", "homeBranchId": b.branch_gid("b1")}},
    ),
    "updatePatient": lambda b: (
        "mutation($id: ID!, $in: UpdatePatientInput!) { updatePatient(id: $id, input: $in) "
        "{ patient { id name } } }",
        {"id": b.gid("b1"), "in": {"name": "changed by A", "notes": "A was here"}},
    ),
    # Setting up a chain: B's branches, regions and staff are out of A's reach.
    "regions": lambda b: ("{ regions { totalCount edges { node { id name } } } }", {}),
    "staff": lambda b: (
        "query($br: ID!) { staff(filter: {branchIds: [$br]}) { totalCount edges { node { id "
        "email roles } } } }",
        {"br": b.branch_gid("b1")},
    ),
    "createBranch": lambda b: (
        'mutation { createBranch(input: {code: "b1", name: "x"}) { id code } }',
        {},
    ),
    "updateBranch": lambda b: (
        'mutation($id: ID!) { updateBranch(id: $id, input: {name: "A was here"}) { id } }',
        {"id": b.branch_gid("b1")},
    ),
    "closeBranch": lambda b: (
        "mutation($id: ID!) { closeBranch(id: $id) { id isOpen } }",
        {"id": b.branch_gid("b1")},
    ),
    "reopenBranch": lambda b: (
        "mutation($id: ID!) { reopenBranch(id: $id) { id isOpen } }",
        {"id": b.branch_gid("b2")},
    ),
    "createRegion": lambda b: (
        'mutation($br: ID!) { createRegion(name: "r", branchIds: [$br]) { id } }',
        {"br": b.branch_gid("b1")},
    ),
    "updateRegion": lambda b: (
        'mutation($id: ID!) { updateRegion(id: $id, name: "x") { id } }',
        {"id": to_global_id("Region", b.tenant_id)},
    ),
    "inviteStaff": lambda b: (
        'mutation($br: ID!) { inviteStaff(input: {email: "x@a.test", name: "x", '
        'roles: ["operator"], branchIds: [$br]}) { invitationToken } }',
        {"br": b.branch_gid("b1")},
    ),
    "resendInvitation": lambda b: (
        "mutation($s: ID!) { resendInvitation(staffId: $s) { invitationToken } }",
        {"s": b.staff_gid("doctor")},
    ),
    "revokeInvitation": lambda b: (
        "mutation($s: ID!) { revokeInvitation(staffId: $s) { id } }",
        {"s": b.staff_gid("doctor")},
    ),
    "acceptInvitation": lambda b: (
        'mutation($t: String!) { acceptInvitation(token: $t, password: "long enough pw") }',
        {"t": f"ppi_{b.tenant_id.hex}_forged"},
    ),
    "updateStaff": lambda b: (
        'mutation($s: ID!) { updateStaff(staffId: $s, input: {name: "A"}) { id } }',
        {"s": b.staff_gid("doctor")},
    ),
    "resetStaffPassword": lambda b: (
        "mutation($s: ID!) { resetStaffPassword(staffId: $s) { resetToken } }",
        {"s": b.staff_gid("doctor")},
    ),
    "completePasswordReset": lambda b: (
        'mutation($t: String!) { completePasswordReset(token: $t, password: "long enough pw") }',
        {"t": f"ppw_{b.tenant_id.hex}_forged"},
    ),
    "reassignPatients": lambda b: (
        "mutation($f: ID!, $t: ID!) { reassignPatients(fromStaffId: $f, toStaffId: $t) { moved } }",
        {"f": b.staff_gid("doctor"), "t": b.staff_gid("health_manager")},
    ),
    # Second factors: A's own (enrolment, policy), or B's out of reach (reset, challenges).
    "twoFactorPolicy": lambda b: ("{ twoFactorPolicy { enforced requiredRoles } }", {}),
    "setTwoFactorPolicy": lambda b: (
        "mutation { setTwoFactorPolicy(roles: []) { enforced } }",
        {},
    ),
    "startTotpEnrolment": lambda b: ("mutation { startTotpEnrolment { otpauthUri } }", {}),
    "confirmTotp": lambda b: ('mutation { confirmTotp(code: "123456") { recoveryCodes } }', {}),
    "resetTotp": lambda b: (
        "mutation($s: ID!) { resetTotp(staffId: $s) }",
        {"s": b.staff_gid("doctor")},
    ),
    # The patient's door: B's mini-program is B's; A's staff token reaches no patient field.
    "signInPatient": lambda b: (
        'mutation($t: String!) { signInPatient(tenant: $t, code: "forged") { accessToken } }',
        {"t": b.slug},
    ),
    "configureMiniProgram": lambda b: (
        'mutation($b: ID!) { configureMiniProgram(appId: "wx1", secret: "s", '
        "defaultBranchId: $b) { appId } }",
        {"b": b.branch_gid("b1")},
    ),
    "myRecord": lambda b: ("{ myRecord { id name phone } }", {}),
    "myVisits": lambda b: ("{ myVisits { id } }", {}),
    "myOrders": lambda b: ("{ myOrders { id total } }", {}),
    "myFollowUps": lambda b: ("{ myFollowUps { id } }", {}),
    "myConsents": lambda b: ("{ myConsents { current { granted } } }", {}),
    "myReferral": lambda b: ("{ myReferral { code friendsJoined } }", {}),
    "myAccessHistory": lambda b: ("{ myAccessHistory { totalCount } }", {}),
    "bookMyVisit": lambda b: (
        'mutation($b: ID!) { bookMyVisit(branchId: $b, at: "2030-01-01T09:00:00+08:00") { id } }',
        {"b": b.branch_gid("b1")},
    ),
    "cancelMyVisit": lambda b: (
        "mutation($id: ID!) { cancelMyVisit(id: $id) { id } }",
        {"id": to_global_id("Visit", b.tenant_id)},
    ),
    "grantMyConsent": lambda b: (
        'mutation { grantMyConsent(purpose: MARKETING, channel: SMS, textVersion: "1") '
        "{ current { granted } } }",
        {},
    ),
    "withdrawMyConsent": lambda b: (
        "mutation { withdrawMyConsent(purpose: MARKETING, channel: SMS) { current { granted } } }",
        {},
    ),
    "exportMyData": lambda b: ("mutation { exportMyData { content } }", {}),
    "verifyTotp": lambda b: (
        'mutation($c: String!) { verifyTotp(challenge: $c, code: "123456") { accessToken } }',
        {"c": f"ppc_{b.tenant_id.hex}_forged"},
    ),
}


ATTACKS.update(SURVEY_ATTACKS)


def root_fields() -> set[str]:
    schema = build_schema()._schema
    return set(schema.query_type.fields) | set(schema.mutation_type.fields)


def test_every_root_field_is_attacked() -> None:
    assert root_fields() == set(ATTACKS), "add an attack for each new root field"


async def _snapshot(client: httpx.AsyncClient, token: str) -> Any:
    q = (
        "{ patients(first: 100) { totalCount edges { node { id name phone notes updatedAt } } }"
        " roles { edges { node { name permissions { object action } } } } }"
    )
    return (await gql(client, q, token=token))["data"]


@pytest.fixture
async def worlds(owner_state: AppState, unique: str) -> tuple[World, World]:
    return (
        await build_world(owner_state, f"a-{unique}"),
        await build_world(owner_state, f"b-{unique}"),
    )


def _leaks(result: dict[str, Any], b: World) -> list[str]:
    body = json.dumps(result, ensure_ascii=False)
    secrets = [b.slug, str(b.tenant_id), *(b.gid(k) for k in b.patients)]
    secrets += [v for values in b.plaintext.values() for v in values.values()]
    secrets += [b.branch_gid(k) for k in b.branches]
    return [s for s in secrets if s in body]


@pytest.mark.parametrize("field", sorted(ATTACKS))
async def test_tenant_a_cannot_reach_tenant_b(
    client: httpx.AsyncClient, worlds: tuple[World, World], field: str
) -> None:
    a, b = worlds
    token_a = await sign_in(client, a, "hq_admin")
    token_b = await sign_in(client, b, "hq_admin")
    before = await _snapshot(client, token_b)
    query, variables = ATTACKS[field](b)
    result = await gql(client, query, variables, token=token_a)
    leaks = _leaks(result, b)
    # signIn/refreshTokens name B's slug in the request, never in the answer
    assert leaks == [], f"{field} leaked {leaks}: {result}"
    assert await _snapshot(client, token_b) == before


async def test_foreign_id_answers_like_a_missing_one(
    client: httpx.AsyncClient, worlds: tuple[World, World]
) -> None:
    a, b = worlds
    token = await sign_in(client, a, "hq_admin")
    q = "query($id: ID!) { patient(id: $id) { id } }"
    foreign = await gql(client, q, {"id": b.gid("b1")}, token=token)
    missing = await gql(client, q, {"id": to_global_id("Patient", uuid.uuid4())}, token=token)
    strip = [{k: v for k, v in e.items()} for e in foreign["errors"]]
    assert strip == missing["errors"]
    assert codes(foreign) == ["NOT_FOUND"]


async def test_counts_and_cursors_stay_in_tenant(
    client: httpx.AsyncClient, worlds: tuple[World, World]
) -> None:
    a, b = worlds
    token = await sign_in(client, a, "hq_admin")
    q = (
        "query($after: String) { patients(first: 100, after: $after) { totalCount "
        "edges { node { id } } } }"
    )
    own = await gql(client, q, token=token)
    assert own["data"]["patients"]["totalCount"] == len(a.patients)
    # A cursor forged from B's newest patient pages A's rows only.
    pb = b.patients["b2"]
    forged = encode_cursor([pb.created_at.isoformat(), str(pb.id)])
    paged = await gql(client, q, {"after": forged}, token=token)
    ids = {e["node"]["id"] for e in paged["data"]["patients"]["edges"]}
    assert ids <= {a.gid(k) for k in a.patients}
    assert paged["data"]["patients"]["totalCount"] == len(a.patients)


async def test_interleaved_requests_never_leak(
    db: Database, state: AppState, owner_state: AppState, unique: str
) -> None:
    """Many concurrent requests for two tenants over a two-connection pool."""
    from api.app import create_app
    from tenancy.session import make_engine, session_factory

    engine = make_engine(db.app_url, pool_size=1)  # 1 + 1 overflow on PostgreSQL
    small = app_state(
        state.settings,
        session_factory(engine),
        state.key_provider,
        state.signing_keys,
        state.sign_in_limits,
    )
    a = await build_world(owner_state, f"ca-{unique}")
    b = await build_world(owner_state, f"cb-{unique}")
    transport = httpx.ASGITransport(app=create_app(small.settings, small))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            tokens = {"a": await sign_in(c, a, "hq_admin"), "b": await sign_in(c, b, "hq_admin")}
            q = "{ tenant { slug } patients(first: 100) { edges { node { id name } } } }"

            async def one(which: str) -> tuple[str, dict[str, Any]]:
                return which, await gql(c, q, token=tokens[which])

            results = await asyncio.gather(*(one("ab"[i % 2]) for i in range(40)))
    finally:
        await engine.dispose()
    for which, result in results:
        world, other = (a, b) if which == "a" else (b, a)
        assert result["data"]["tenant"]["slug"] == world.slug
        ids = {e["node"]["id"] for e in result["data"]["patients"]["edges"]}
        assert ids == {world.gid(k) for k in world.patients}
        assert _leaks(result, other) == []


async def test_orm_filter_alone_protects(
    state: AppState, owner_state: AppState, unique: str
) -> None:
    """The ORM layer by itself (SQLite has nothing else): another tenant's rows never load,
    and a query without a tenant raises instead of returning everything."""
    a = await build_world(owner_state, f"oa-{unique}")
    b = await build_world(owner_state, f"ob-{unique}")
    async with state.sessions() as session, session.begin():
        with pytest.raises(TenantContextError):
            await session.scalars(select(Patient))
    async with state.sessions() as session, session.begin():
        await bind_tenant(session, a.tenant_id)
        rows = (await session.scalars(select(Patient))).all()
        assert {r.tenant_id for r in rows} == {a.tenant_id}
        assert await session.get(Patient, (b.tenant_id, b.patients["b1"].id)) is None
        # Writing a row stamped with B's tenant is refused before it reaches the database.
        session.add(
            Patient(
                tenant_id=b.tenant_id,
                id=uuid.uuid4(),
                referral_code="X",
                home_branch_id=b.branches["b1"].id,
            )
        )
        with pytest.raises(TenantContextError):
            await session.flush()
        session.expunge_all()


# --- PostgreSQL only: row-level security as the application role, without the ORM's help ---


@pytest.fixture
async def pg_worlds(pg_owner_state: AppState, unique: str) -> tuple[World, World]:
    return (
        await build_world(pg_owner_state, f"ra-{unique}"),
        await build_world(pg_owner_state, f"rb-{unique}"),
    )


async def _raw(db: Database, tenant: uuid.UUID | None, sql: str, **params: Any) -> Any:
    """One statement through the app role on a plain connection (no ORM, no filter)."""
    engine = create_async_engine(db.app_url)
    try:
        async with engine.begin() as conn:
            if tenant is not None:
                await conn.execute(
                    text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tenant)}
                )
            result = await conn.execute(text(sql), params)
            return result.all() if result.returns_rows else result.rowcount
    finally:
        await engine.dispose()


async def test_rls_stops_raw_sql(postgres_db: Database, pg_worlds: tuple[World, World]) -> None:
    a, b = pg_worlds
    bid = b.patients["b1"].id
    seen = await _raw(postgres_db, a.tenant_id, "SELECT tenant_id FROM patients")
    assert {r[0] for r in seen} == {a.tenant_id}
    assert await _raw(postgres_db, a.tenant_id, "SELECT * FROM patients WHERE id = :i", i=bid) == []
    assert (
        await _raw(
            postgres_db, a.tenant_id, "UPDATE patients SET notes_ct = NULL WHERE id = :i", i=bid
        )
        == 0
    )
    assert await _raw(postgres_db, a.tenant_id, "DELETE FROM patients WHERE id = :i", i=bid) == 0
    with pytest.raises((DBAPIError, ProgrammingError)):
        await _raw(
            postgres_db,
            a.tenant_id,
            "INSERT INTO branches (tenant_id, id, code, name, city, created_at) "
            "VALUES (:t, :i, 'x', 'x', 'x', now())",
            t=b.tenant_id,
            i=uuid.uuid4(),
        )
    assert await _raw(postgres_db, None, "SELECT * FROM patients") == []
    assert await _raw(postgres_db, None, "SELECT * FROM staff_users") == []
    still = await _raw(
        postgres_db, b.tenant_id, "SELECT notes_ct FROM patients WHERE id = :i", i=bid
    )
    assert still and still[0][0] is not None


async def test_every_tenant_table_is_under_forced_rls(
    postgres_db: Database, pg_worlds: tuple[World, World]
) -> None:
    """A tenant-owned table added without RLS fails here: each one has RLS enabled and forced
    with the tenant policy, and read through the app role shows no other tenant's rows."""
    a, b = pg_worlds
    tables = sorted(tenant_tables())
    catalog = await _raw(
        postgres_db,
        None,
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, p.polname, "
        "has_table_privilege(c.oid, 'SELECT') FROM pg_class c LEFT JOIN pg_policy p "
        "ON p.polrelid = c.oid AND p.polname = 'tenant_isolation' "
        "WHERE c.relkind = 'r' AND c.relname = ANY(:names)",
        names=tables,
    )
    assert sorted(r[0] for r in catalog) == tables
    unguarded = [r[0] for r in catalog if not (r[1] and r[2] and r[3])]
    assert unguarded == []
    readable = [r[0] for r in catalog if r[4]]
    assert "referral_figures" in readable and "patients" in readable
    for table in readable:
        foreign = await _raw(
            postgres_db,
            a.tenant_id,
            f"SELECT count(*) FROM {table} WHERE tenant_id <> :t",
            t=a.tenant_id,
        )
        assert foreign == [(0,)], table
    # and the check can fail: bound to b, b's patients are there
    assert await _raw(postgres_db, b.tenant_id, "SELECT count(*) FROM patients") != [(0,)]


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE patients DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE patients NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON patients",
        "SET row_security = off; SELECT * FROM patients",
        "SET ROLE postgres",
    ],
)
async def test_app_role_cannot_turn_rls_off(
    postgres_db: Database, pg_worlds: tuple[World, World], sql: str
) -> None:
    engine = create_async_engine(postgres_db.app_url)
    try:
        with pytest.raises((DBAPIError, ProgrammingError)):
            async with engine.begin() as conn:
                for statement in sql.split(";"):
                    await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()


async def test_rls_alone_protects_without_orm_filter(
    postgres_db: Database, pg_worlds: tuple[World, World]
) -> None:
    """A plain AsyncSession (not the tenant session: no ORM filter at all) still sees only
    the tenant set for the transaction."""
    a, _b = pg_worlds
    engine = create_async_engine(postgres_db.app_url)
    try:
        async with AsyncSession(engine) as session, session.begin():
            await session.execute(
                text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(a.tenant_id)}
            )
            rows = (await session.scalars(select(Patient))).all()
            assert rows and {r.tenant_id for r in rows} == {a.tenant_id}
        async with AsyncSession(engine) as session, session.begin():
            # The previous transaction's setting does not survive on the pooled connection.
            assert (await session.scalars(select(Patient))).all() == []
    finally:
        await engine.dispose()
