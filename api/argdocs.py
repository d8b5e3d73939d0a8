"""Descriptions of resolver arguments, for the SDL frontend developers read.

Most arguments mean the same wherever they appear (`first`, `after`, `id`, `patientId`), so
they are described once here by name; `Field.argument` entries say what differs for one field.
`build_schema` applies them; a test fails when an argument has no description.
"""

from __future__ import annotations

from graphql import GraphQLObjectType, GraphQLSchema

BY_NAME: dict[str, str] = {
    "active": "Whether the rule is in force.",
    "after": "Cursor from the previous page's `pageInfo.endCursor`; omit for the first page.",
    "amount": 'Amount in yuan as a decimal string with at most two places, e.g. "99.50".',
    "arrivedAt": (
        "When the patient arrived (with a timezone offset); default now; more than 5 minutes "
        "ahead of the server's clock is refused."
    ),
    "assigneeId": "Staff member who should do it (global id).",
    "autoRule": "A segment filter: the tag then follows the patients who match it.",
    "branchId": "A branch (global id).",
    "branchIds": "Branches (global ids).",
    "fromStaffId": "The staff member whose patients move (global id).",
    "toStaffId": "The staff member who takes them (global id), active.",
    "channel": "Campaign or channel code (渠道).",
    "code": "Short unique code: letters, digits, - or _ (at most 64).",
    "corpId": "The WeCom corp id (企业ID).",
    "currentPassword": "Your password now.",
    "days": "Retention in days (180-36500), or null to keep the access log for ever.",
    "delayDays": "Days from the trigger to the task's due date (0-365).",
    "defaultBranchId": "Branch new WeCom contacts join (global id).",
    "depth": "Levels below the patient to return (0-50).",
    "doctorId": "The doctor (global id of a staff member).",
    "dueAt": "When it is due (with a timezone offset).",
    "email": "Sign-in email.",
    "encodingAesKey": "The callback EncodingAESKey WeCom generated (43 characters).",
    "events": "Events to record (at most 1000); each is idempotent by its clientEventId.",
    "filter": "Only items matching every part given.",
    "frequencyCap": "At most this many campaign messages per patient (1-50)…",
    "frequencyDays": "…within this many days (1-90), all channels together.",
    "quietStart": "Quiet hours start, local time HH:MM (equal to quietEnd: none).",
    "quietEnd": "Quiet hours end, local time HH:MM.",
    "timezone": "IANA time zone of the quiet hours, e.g. Asia/Shanghai.",
    "first": "Page size: 0-100 (default 20); past 100 answers BAD_USER_INPUT.",
    "format": "JSON_LINES or CSV.",
    "granted": "True when consent is given, false when it is withdrawn.",
    "groupId": "The tag group (global id).",
    "id": "Opaque global id (from an `id` field).",
    "input": "The values to set.",
    "isHealth": "Tags in this group reveal health data (hidden from roles without it).",
    "keepId": "The record that stays.",
    "kind": "The kind (see the enum).",
    "method": "How consent was given or withdrawn: paper_form, mini_program, wecom_chat…",
    "lines": "Service lines (1-100).",
    "maxNodes": "At most this many nodes in the answer (1-10000); figures still count all.",
    "mergeId": "The duplicate record that is merged into `keepId` and retired.",
    "name": "Display name.",
    "newPassword": "The new password (at least 10 characters).",
    "outcome": "What came of it (required to complete).",
    "password": "Password.",
    "purpose": "What the consent is for: CARE, MARKETING or HEALTH_DATA.",
    "patientId": "A patient (global id); another tenant's answers NOT_FOUND like a missing one.",
    "patientIds": "Patients (global ids), at most 10,000.",
    "permissions": "Permissions as object and action pairs, from `permissionCatalogue`.",
    "reason": "Why (kept in history).",
    "referralCode": "The referrer's referral code (推荐码), case-insensitive.",
    "refreshToken": "The refresh token from signIn or the previous refresh.",
    "role": "Role name, e.g. branch_manager.",
    "roles": "Role names; replaces the current ones.",
    "scheduledAt": "Appointment time (with a timezone offset).",
    "staffId": "A staff member (global id).",
    "stage": "Lifecycle stage, e.g. qualified.",
    "textVersion": "Version of the consent text shown to the patient, e.g. 2026-09.",
    "tagId": "The tag (global id).",
    "tenant": "Your chain's slug, e.g. smile-dental.",
    "token": "The callback Token WeCom generated.",
    "trigger": "What makes the task.",
}

BY_FIELD: dict[str, str] = {
    "Query.surveyForm.token": "The token of a survey link (the last segment of its URL).",
    "Mutation.answerSurvey.token": "The token of a survey link (the last segment of its URL).",
    "Mutation.answerSurvey.answers": "One answer per question, by its key.",
    "Mutation.acceptInvitation.token": "The invitation token from inviteStaff (ppi_…).",
    "Mutation.acceptInvitation.password": "Your new password (at least 10 characters).",
    "Mutation.completePasswordReset.token": "The reset token from resetStaffPassword (ppw_…).",
    "Mutation.completePasswordReset.password": "Your new password (at least 10 characters).",
    "Mutation.createRegion.name": "Region name, unique in the chain.",
    "Mutation.updateRegion.name": "The new name, unique in the chain.",
    "Mutation.reassignPatients.branchId": "Only patients whose home branch is this one.",
    "Query.topReferrers.first": "How many referrers (1-100, default 20).",
    "Query.possibleDuplicates.first": "How many groups (0-100, default 20).",
    "Mutation.createTagGroup.name": "Group name, unique in the chain.",
    "Mutation.createSegment.name": "Segment name, unique in the chain (1-100 characters).",
    "Mutation.linkReferral.patientId": "The referred patient (global id), in your scope.",
    "Query.rewards.patientId": "The referrer (global id).",
    "Mutation.createChannel.kind": "platform, campaign, offline_event, referral or qr_code.",
    "Mutation.recordConsent.channel": "The channel it covers (ANY for HEALTH_DATA).",
    "Mutation.configureWecom.secret": "The customer-contact Secret (客户联系 Secret) for "
    "group-message tasks; stored sealed; omit to keep the current one.",
    "Mutation.createCampaign.input": "The campaign.",
    "Mutation.signInPatient.code": "The code from wx.login() in the mini-program (one use).",
    "Mutation.signInPatient.phoneCode": "Optional: the code from a getPhoneNumber button, so "
    "the patient is linked to the record that holds that phone.",
    "Mutation.signInPatient.referralCode": "Optional: the referral code of the friend whose "
    "poster brought a new patient (the `ref` of the poster's page); links them as referrer.",
    "Mutation.configureMiniProgram.appId": "The mini-program's AppID (wx…).",
    "Mutation.configureMiniProgram.secret": "The mini-program's AppSecret; stored sealed.",
    "Mutation.configureMiniProgram.defaultBranchId": "Branch new patients from the "
    "mini-program join (global id).",
    "Mutation.configureMiniProgram.showStaffNames": "Whether patients see the staff member's "
    "display name in myAccessHistory (default false: roles and branches only).",
    "Mutation.bookMyVisit.at": "Appointment time (with a timezone offset), in the future.",
    "Mutation.cancelMyVisit.id": "One of your visits (global id from myVisits).",
    "Mutation.grantMyConsent.channel": "The channel it covers (ANY for HEALTH_DATA).",
    "Mutation.withdrawMyConsent.channel": "The channel it covers (ANY for HEALTH_DATA).",
    "Mutation.withdrawMyConsent.textVersion": "Version of the text shown on withdrawal.",
    "Query.myFollowUps.withinDays": "Also those due within this many days (0-90, default 0).",
}


def describe_arguments(schema: GraphQLSchema) -> None:
    for type_name, gql_type in schema.type_map.items():
        if type_name.startswith("__") or not isinstance(gql_type, GraphQLObjectType):
            continue
        for field_name, field in gql_type.fields.items():
            for arg_name, arg in field.args.items():
                if arg.description:
                    continue
                key = f"{type_name}.{field_name}.{arg_name}"
                arg.description = BY_FIELD.get(key) or BY_NAME.get(arg_name)
