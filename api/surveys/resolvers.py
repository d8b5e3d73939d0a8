"""Root fields of satisfaction surveys: templates and rules (HQ), answers (roles holding
`survey_answers:read`, free text only with `fields:health:read`), and the two public fields a
survey link's page calls, `surveyForm(token)` and `answerSurvey(token, answers)`.

The public fields need no sign-in: the token names its tenant, whose key verifies it, in a
session of their own bound to that tenant (as `signInPatient` does). Every refusal of a link
(forged, expired, used, unknown, another tenant's) is the same BAD_USER_INPUT with the same
message. The answer is logged as the patient's own change; a complaint callback it opens as
the system actor `surveys`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry
from strawberry.types import Info

from api.ids import parse_global_id
from api.pagination import Connection, keyset_connection, keyset_position
from api.surveys.types import (
    AnswerSurveyPayload,
    MySurvey,
    SurveyAnswer,
    SurveyAnswerInput,
    SurveyForm,
    SurveyRule,
    SurveyRuleInput,
    SurveyTemplate,
    SurveyTemplateInput,
    questions_of,
)
from api.times import to_utc
from auth import access_log
from auth.access_log import AccessEvent, Action, Actor
from auth.guard import (
    Visibility,
    field_visibility,
    own_record_scope,
    record_field,
    require,
    require_patient_scope,
)
from auth.patient_sessions import patient_actor
from auth.principal import Principal
from auth.reasons import IN_CARE, check_grant, grants
from auth.sessions import AuthError
from domain.errors import BadInput, NotFound, ReasonRequired
from domain.patients.models import FieldGroup
from domain.surveys import answers as survey_answers
from domain.surveys import models as m
from domain.surveys import templates
from domain.surveys.models import QuestionKind
from domain.surveys.repository import SurveyRepository
from domain.surveys.sender import SENDER, open_for
from domain.surveys.templates import Question, RuleDraft, TemplateDraft
from domain.surveys.tokens import BadLink, issue, peek
from tenancy.keyring import CryptoError, DecryptionError
from tenancy.keystore import load_cipher
from tenancy.session import tenant_session


def _now() -> datetime:
    return datetime.now(UTC)


def _draft(input: SurveyTemplateInput) -> TemplateDraft:
    return TemplateDraft(
        name=input.name,
        title=input.title,
        intro=input.intro,
        questions=[
            Question(q.key, QuestionKind(q.kind), q.text, tuple(q.options), q.required)
            for q in input.questions
        ],
    )


async def _template(info: Info, row: m.SurveyTemplate) -> SurveyTemplate:
    version = await templates.version(info.context.session, row.id, row.current_version)
    assert version is not None
    return SurveyTemplate.of(row, _version=version)


async def survey_templates(
    info: Info, first: int | None = None, after: str | None = None
) -> Connection[SurveyTemplate]:
    require(await info.context.principal(), "surveys", "read")
    limit, key = keyset_position(first, after)
    page = await SurveyRepository(info.context.session).template_page(limit, key)
    return keyset_connection(page, [await _template(info, r) for r in page.rows])


async def survey_template(info: Info, id: strawberry.ID) -> SurveyTemplate:
    require(await info.context.principal(), "surveys", "read")
    row = await templates.template(info.context.session, parse_global_id(id, "SurveyTemplate"))
    return await _template(info, row)


async def create_survey_template(info: Info, input: SurveyTemplateInput) -> SurveyTemplate:
    principal = await info.context.principal()
    require(principal, "surveys", "write")
    row = await templates.create_template(info.context.session, _draft(input), principal.subject)
    info.context.trail.admin("survey_template.create", "SurveyTemplate", str(row.id))
    return await _template(info, row)


async def revise_survey_template(
    info: Info, id: strawberry.ID, input: SurveyTemplateInput
) -> SurveyTemplate:
    """A new version of the template; links already sent keep theirs."""
    principal = await info.context.principal()
    require(principal, "surveys", "write")
    session = info.context.session
    row = await templates.template(session, parse_global_id(id, "SurveyTemplate"))
    await templates.revise_template(session, row, _draft(input), principal.subject)
    info.context.trail.admin("survey_template.revise", "SurveyTemplate", str(row.id))
    return await _template(info, row)


async def survey_rules(
    info: Info, first: int | None = None, after: str | None = None
) -> Connection[SurveyRule]:
    require(await info.context.principal(), "surveys", "read")
    limit, key = keyset_position(first, after)
    page = await SurveyRepository(info.context.session).rule_page(limit, key)
    return keyset_connection(page, [SurveyRule.of(r) for r in page.rows])


async def create_survey_rule(info: Info, input: SurveyRuleInput) -> SurveyRule:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "surveys", "write")
    if not ctx.app.settings.survey_url:
        raise BadInput("no survey page is configured (PATIENTPOOL_SURVEY_URL)", field="channels")
    template = await templates.template(
        ctx.session, parse_global_id(input.template_id, "SurveyTemplate", "templateId")
    )
    draft = RuleDraft(
        name=input.name,
        template=template,
        delay_days=input.delay_days,
        visit_kind=m.VisitKind(input.visit_kind),
        branch_id=parse_global_id(input.branch_id, "Branch", "branchId")
        if input.branch_id
        else None,
        channels=[str(c.value) for c in input.channels],
        starts_at=to_utc(input.starts_at, "startsAt") if input.starts_at else _now(),
        answer_days=input.answer_days,
        low_rating=input.low_rating,
        low_nps=input.low_nps,
    )
    row = await templates.create_rule(ctx.session, draft, principal.subject)
    ctx.trail.admin("survey_rule.create", "SurveyRule", str(row.id))
    return SurveyRule.of(row)


async def set_survey_rule_active(info: Info, id: strawberry.ID, active: bool) -> SurveyRule:
    principal = await info.context.principal()
    require(principal, "surveys", "write")
    row = await templates.rule(info.context.session, parse_global_id(id, "SurveyRule"))
    row.active = active
    await info.context.session.flush()
    info.context.trail.admin("survey_rule.active", "SurveyRule", str(row.id))
    return SurveyRule.of(row)


async def survey_answers_query(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    branch_id: strawberry.ID | None = None,
) -> Connection[SurveyAnswer]:
    """Answers whose patient is in your scope, oldest first; every answer returned is a read
    of its patient in the access log, free text a read of health data."""
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "survey_answers", "read")
    scope = require_patient_scope(principal, ctx.trail, "read", Action.LIST)
    branch = parse_global_id(branch_id, "Branch", "branchId") if branch_id else None
    limit, key = keyset_position(first, after)
    page = await SurveyRepository(ctx.session).answer_page(scope, branch, limit, key)
    rows = page.rows
    ctx.trail.returned(Action.LIST, [r.patient_id for r in rows])
    deliveries = await survey_answers.deliveries(ctx.session, [r.delivery_id for r in rows])
    texts = await _free_texts(info, principal, [r for r in rows if r.free_text_ct is not None])
    out = [
        SurveyAnswer.of(
            r, _delivery=deliveries[r.delivery_id], _text=texts.get(r.delivery_id, None)
        )
        for r in rows
    ]
    return keyset_connection(page, out)


async def _free_texts(
    info: Info, principal: Principal, rows: list[m.SurveyAnswer]
) -> dict[object, dict[str, str] | ReasonRequired | None]:
    """The free text of each answer, under the rules of health fields: Casbin's
    `fields:health`, then the care/reason gate (auth.reasons): a patient outside the caller's
    own care opens only under a purpose they stated. Every read or refusal is on the trail."""
    ctx = info.context
    visibility = field_visibility(principal, FieldGroup.HEALTH)
    out: dict[object, dict[str, str] | ReasonRequired | None] = {}
    if not rows:
        return out
    if visibility is not Visibility.FULL:
        for r in rows:
            record_field(ctx.trail, r.patient_id, FieldGroup.HEALTH, visibility)
            out[r.delivery_id] = None
        return out
    patients = await survey_answers.patients(ctx.session, [r.patient_id for r in rows])
    found = await grants(ctx.session, principal, list(patients.values()))
    cipher = await ctx.cipher()
    for r in rows:
        grant = found.get(r.patient_id, IN_CARE)
        try:
            if grant.in_care:
                record_field(ctx.trail, r.patient_id, FieldGroup.HEALTH, visibility)
            else:
                check_grant(ctx.trail, r.patient_id, grant)  # or REASON_REQUIRED
        except ReasonRequired as refused:
            out[r.delivery_id] = refused
            continue
        try:
            out[r.delivery_id] = survey_answers.free_text(cipher, r)
        except DecryptionError:
            ctx.trail.integrity_failed(r.patient_id, str(FieldGroup.HEALTH))
            out[r.delivery_id] = None
    return out


async def my_surveys(info: Info) -> list[MySurvey]:
    """The signed-in patient's surveys waiting for an answer (patient token only)."""
    ctx = info.context
    principal = await ctx.principal()
    scope = own_record_scope(principal)
    patient = await survey_answers.own(ctx.session, scope)
    if patient is None:
        raise NotFound("no such patient")
    cipher = await ctx.cipher()
    ctx.trail.returned(Action.READ, [patient.id])
    return [
        MySurvey(
            title=version.title,
            token=issue(cipher, d.id, d.expires_at),
            expires_at=d.expires_at,
        )
        for d, version in await open_for(ctx.session, patient, _now())
    ]


# --- the public link ---


def _refused() -> BadInput:
    return BadInput(survey_answers.REFUSED, field="token")


async def _admit(info: Info) -> None:
    """The public link's endpoints count each call per client address (RATE_LIMITED past
    the window's limit), before the token is looked at."""
    ctx = info.context
    limit = ctx.app.sign_in_limits.survey_link
    if not await limit.hit(ctx.app.sessions, ctx.request_info.client_addr):
        raise AuthError("too many survey link requests; try again later", "RATE_LIMITED")


async def survey_form(info: Info, token: str) -> SurveyForm:
    """What the link's page shows: the questions of the version it was sent with."""
    await _admit(info)
    try:
        link = peek(token)
        sessions = info.context.app.sessions
        async with tenant_session(sessions, link.tenant_id) as session, session.begin():
            cipher = await load_cipher(session, info.context.app.key_provider)
            opened = await survey_answers.open_link(session, cipher, token, _now(), lock=False)
            return SurveyForm(
                title=opened.version.title,
                questions=questions_of(opened.version),
                expires_at=link.expires_at,
            )
    except (BadLink, CryptoError):
        raise _refused() from None


async def answer_survey(
    info: Info, token: str, answers: list[SurveyAnswerInput]
) -> AnswerSurveyPayload:
    await _admit(info)
    if len(answers) > templates.MAX_QUESTIONS:
        raise BadInput("too many answers", field="answers")
    given = [survey_answers.Given(a.key, a.score, tuple(a.choices), a.text) for a in answers]
    ctx = info.context
    now = _now()
    try:
        link = peek(token)
        async with tenant_session(ctx.app.sessions, link.tenant_id) as session, session.begin():
            cipher = await load_cipher(session, ctx.app.key_provider)
            done = await survey_answers.answer(session, cipher, token, given, now)
            pid = done.patient.id
            groups = [str(FieldGroup.HEALTH)] if done.answer.free_text_ct is not None else []
            await access_log.append(
                session,
                patient_actor(pid),
                ctx.request_info,
                [AccessEvent(Action.CREATE, [pid], groups)],
            )
            if done.follow_up is not None:
                await access_log.append(
                    session,
                    Actor("system", SENDER),
                    access_log.RequestInfo(
                        request_id=ctx.request_info.request_id,
                        operation_name=f"survey:{done.answer.delivery_id}:complaint-callback",
                    ),
                    [AccessEvent(Action.CREATE, [pid])],
                )
    except (BadLink, CryptoError):
        raise _refused() from None
    except NotFound:
        raise _refused() from None
    return AnswerSurveyPayload(accepted=True)
