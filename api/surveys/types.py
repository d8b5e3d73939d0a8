"""GraphQL types of satisfaction surveys: templates (versioned), rules, answers, figures."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import strawberry
from strawberry.types import Info

from api.ids import to_global_id
from api.node import Node
from api.rows import RowType
from api.tenants.loaders import branch_loader, staff_loader
from api.tenants.types import Branch, Staff
from domain.errors import NotFound, ReasonRequired
from domain.surveys import figures as sf
from domain.surveys import models as m
from domain.surveys.templates import Question

SurveyQuestionKind = strawberry.enum(
    m.QuestionKind,
    description="RATING (1-5), NPS (0-10), SINGLE or MULTIPLE choice, TEXT (free text, kept "
    "sealed like health data).",
)
SurveyVisitKind = strawberry.enum(
    m.VisitKind,
    description="Which arrived visits a rule surveys: ANY, FIRST (初诊), RETURN (复诊).",
)


class _SurveyChannel(StrEnum):
    SMS = "sms"
    WECOM = "wecom"
    MINI_PROGRAM = "mini_program"


SurveyChannelEnum = strawberry.enum(
    _SurveyChannel,
    name="SurveyChannel",
    description="SMS (a link in a text message), WECOM (a WeCom message task a staff member "
    "confirms) or MINI_PROGRAM (shown to the signed-in patient: mySurveys).",
)


@strawberry.input(description="One question of a survey.")
class SurveyQuestionInput:
    key: str = strawberry.field(description="Its key (a-z, 0-9, _; unique in the survey).")
    kind: SurveyQuestionKind = strawberry.field(  # type: ignore[valid-type]
        description="What kind of answer it takes."
    )
    text: str = strawberry.field(description="The question as the patient reads it.")
    options: list[str] = strawberry.field(
        default_factory=list, description="The options of a SINGLE or MULTIPLE question (2-10)."
    )
    required: bool = strawberry.field(default=True, description="Must it be answered?")


@strawberry.input(description="A survey template, or its next version.")
class SurveyTemplateInput:
    name: str = strawberry.field(description="Name for staff (1-100 characters).")
    title: str = strawberry.field(description="Title the patient sees (1-100 characters).")
    intro: str = strawberry.field(
        description="The message the link follows, e.g. 感谢您今天到诊，请为我们的服务打分："
    )
    questions: list[SurveyQuestionInput] = strawberry.field(description="1-30 questions.")


@strawberry.input(description="When and how a survey is sent after a visit.")
class SurveyRuleInput:
    name: str = strawberry.field(description="Name for staff (1-100 characters).")
    template_id: strawberry.ID = strawberry.field(description="The template (global id).")
    channels: list[SurveyChannelEnum] = strawberry.field(  # type: ignore[valid-type]
        description="In order of preference: the first one the patient has marketing consent "
        "and an address on is used."
    )
    delay_days: int = strawberry.field(default=1, description="Days after the arrival (0-90).")
    visit_kind: SurveyVisitKind = strawberry.field(  # type: ignore[valid-type]
        default=m.VisitKind.ANY, description="Which visits."
    )
    branch_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only visits at this branch (default: every branch)."
    )
    starts_at: datetime | None = strawberry.field(
        default=None, description="Survey visits that arrived from then on (default: now)."
    )
    answer_days: int = strawberry.field(default=14, description="How long a link answers.")
    low_rating: int | None = strawberry.field(
        default=2, description="A rating at or below this opens a complaint callback (投诉回访)."
    )
    low_nps: int | None = strawberry.field(
        default=6, description="An NPS score at or below this opens a complaint callback."
    )


@strawberry.input(description="The answer to one question, by its key.")
class SurveyAnswerInput:
    key: str = strawberry.field(description="The question's key.")
    score: int | None = strawberry.field(default=None, description="RATING 1-5 or NPS 0-10.")
    choices: list[str] = strawberry.field(
        default_factory=list, description="The chosen options (SINGLE: exactly one)."
    )
    text: str | None = strawberry.field(default=None, description="TEXT: 1-1000 characters.")


@strawberry.type(description="One question of a survey version.")
class SurveyQuestion:
    key: str = strawberry.field(description="Its key, which answers name.")
    kind: SurveyQuestionKind = strawberry.field(  # type: ignore[valid-type]
        description="What kind of answer it takes."
    )
    text: str = strawberry.field(description="The question as the patient reads it.")
    options: list[str] = strawberry.field(description="Options of a choice question.")
    required: bool = strawberry.field(description="Must it be answered?")

    @staticmethod
    def of(q: Question) -> SurveyQuestion:
        return SurveyQuestion(
            key=q.key, kind=q.kind, text=q.text, options=list(q.options), required=q.required
        )


def questions_of(version: m.SurveyTemplateVersion) -> list[SurveyQuestion]:
    return [SurveyQuestion.of(Question.from_json(q)) for q in version.questions]


@strawberry.type(description="A survey template (满意度调查) at its current version.")
class SurveyTemplate(RowType, Node):
    _row: strawberry.Private[m.SurveyTemplate]
    _version: strawberry.Private[m.SurveyTemplateVersion]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("SurveyTemplate", self._row.id))

    name: str = strawberry.field(description="Name for staff.")

    @strawberry.field(description="The current version (editing adds one).")
    def version(self) -> int:
        return self._row.current_version

    @strawberry.field(description="Title the patient sees.")
    def title(self) -> str:
        return self._version.title

    @strawberry.field(description="The message the link follows.")
    def intro(self) -> str:
        return self._version.intro

    @strawberry.field(description="The questions of the current version.")
    def questions(self) -> list[SurveyQuestion]:
        return questions_of(self._version)


@strawberry.type(description="A rule that sends a survey after arrived visits.")
class SurveyRule(RowType, Node):
    _row: strawberry.Private[m.SurveyRule]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("SurveyRule", self._row.id))

    name: str = strawberry.field(description="Name for staff.")

    @strawberry.field(description="The template (global id).")
    def template_id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("SurveyTemplate", self._row.template_id))

    @strawberry.field(description="Channels in order of preference.")
    def channels(self) -> list[SurveyChannelEnum]:  # type: ignore[valid-type]
        return [SurveyChannelEnum(c) for c in self._row.channels]  # type: ignore[misc]

    delay_days: int = strawberry.field(description="Days after the arrival.")

    @strawberry.field(description="Which visits.")
    def visit_kind(self) -> SurveyVisitKind:  # type: ignore[valid-type]
        return m.VisitKind(self._row.visit_kind)

    @strawberry.field(description="Only visits at this branch (null: every branch).")
    async def branch(self, info: Info) -> Branch | None:
        if self._row.branch_id is None:
            return None
        return await _branch(info, self._row.branch_id)

    starts_at: datetime = strawberry.field(
        description="Visits that arrived from then on are surveyed."
    )

    answer_days: int = strawberry.field(description="How long a link answers.")
    low_rating: int | None = strawberry.field(
        description="A rating at or below this opens a complaint callback."
    )

    low_nps: int | None = strawberry.field(
        description="An NPS score at or below this opens a complaint callback."
    )

    active: bool = strawberry.field(description="Whether the rule sends.")


async def _branch(info: Info, branch_id: object) -> Branch:
    row = await info.context.loader("branch", lambda: branch_loader(info.context.session)).load(
        branch_id
    )
    if row is None:
        raise NotFound("no such branch")
    return Branch.of(row)


@strawberry.type(description="One question's answer.")
class SurveyAnswerItem:
    key: str = strawberry.field(description="The question's key.")
    score: int | None = strawberry.field(default=None, description="RATING or NPS score.")
    choices: list[str] = strawberry.field(
        default_factory=list, description="Options chosen (choice questions)."
    )


@strawberry.type(description="A free-text answer (sealed at rest like health data).")
class SurveyTextAnswer:
    key: str = strawberry.field(description="The question's key.")
    text: str = strawberry.field(description="What the patient wrote.")


@strawberry.type(description="A patient's answer to one survey link.")
class SurveyAnswer(RowType, Node):
    _row: strawberry.Private[m.SurveyAnswer]
    _delivery: strawberry.Private[m.SurveyDelivery]
    # The free text, None (not a reader of health data, or none written) or the refusal of
    # the care/reason gate, raised when the field is asked for.
    _text: strawberry.Private[dict[str, str] | ReasonRequired | None]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("SurveyAnswer", self._row.delivery_id))

    @strawberry.field(description="The patient (global id).")
    def patient_id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Patient", self._row.patient_id))

    @strawberry.field(description="The visit surveyed (global id).")
    def visit_id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Visit", self._delivery.visit_id))

    @strawberry.field(description="The template version it was sent with.")
    def template_version(self) -> int:
        return self._delivery.template_version

    answered_at: datetime = strawberry.field(description="When it was answered.")

    @strawberry.field(description="The visit's branch.")
    async def branch(self, info: Info) -> Branch:
        return await _branch(info, self._delivery.branch_id)

    @strawberry.field(description="The visit's doctor.")
    async def doctor(self, info: Info) -> Staff | None:
        if self._delivery.doctor_id is None:
            return None
        row = await info.context.loader("staff", lambda: staff_loader(info.context.session)).load(
            self._delivery.doctor_id
        )
        return None if row is None else Staff.of(row)

    low_score: bool = strawberry.field(description="Did it open a complaint callback (投诉回访)?")
    nps: int | None = strawberry.field(description="The NPS answer (0-10), if any.")

    @strawberry.field(description="Ratings, scores and chosen options, by question.")
    def items(self) -> list[SurveyAnswerItem]:
        out = []
        for key, value in self._row.choices.items():
            if isinstance(value, list):
                out.append(SurveyAnswerItem(key=key, choices=[str(v) for v in value]))
            else:
                out.append(SurveyAnswerItem(key=key, score=int(value)))  # type: ignore[call-overload]
        return out

    @strawberry.field(
        description="Free-text answers, under the rules of health fields: null for roles that "
        "may not read health data; outside your own care FORBIDDEN (reason REASON_REQUIRED) "
        "until statePurpose; each read is in the access log."
    )
    def free_text(self) -> list[SurveyTextAnswer] | None:
        if isinstance(self._text, ReasonRequired):
            raise self._text
        if self._text is None:
            return None
        return [SurveyTextAnswer(key=k, text=v) for k, v in self._text.items()]


@strawberry.type(description="Satisfaction figures (满意度) of the surveys delivered in a period.")
class SatisfactionFigures:
    _f: strawberry.Private[sf.Figures]

    @strawberry.field(description="Links delivered in the period.")
    def sent(self) -> int:
        return self._f.sent

    @strawberry.field(description="Those of them answered.")
    def answered(self) -> int:
        return self._f.answered

    @strawberry.field(description="answered / sent (null when none was sent).")
    def response_rate(self) -> float | None:
        return self._f.response_rate

    @strawberry.field(description="Mean of every 1-5 rating answer (null without one).")
    def average_rating(self) -> float | None:
        return self._f.average_rating

    @strawberry.field(
        description="Net promoter score: (promoters 9-10 - detractors 0-6) / NPS answers x 100."
    )
    def nps(self) -> float | None:
        return self._f.nps

    @strawberry.field(description="Answers with an NPS score.")
    def nps_answers(self) -> int:
        return self._f.nps_answers

    @strawberry.field(description="NPS answers of 9-10.")
    def promoters(self) -> int:
        return self._f.promoters

    @strawberry.field(description="NPS answers of 0-6.")
    def detractors(self) -> int:
        return self._f.detractors


@strawberry.type(description="One branch's satisfaction figures (the visit's branch).")
class BranchSatisfaction:
    branch: Branch = strawberry.field(description="The branch of the visits.")
    figures: SatisfactionFigures = strawberry.field(description="Its figures.")


@strawberry.type(description="One doctor's satisfaction figures (the visit's doctor).")
class DoctorSatisfaction:
    doctor: Staff = strawberry.field(description="The doctor of the visits.")
    figures: SatisfactionFigures = strawberry.field(description="Their figures.")


@strawberry.type(description="Satisfaction surveys' figures for the period, in your scope.")
class SatisfactionMetrics:
    total: SatisfactionFigures = strawberry.field(description="All surveys in your scope.")
    by_branch: list[BranchSatisfaction] = strawberry.field(
        description="Per branch of the visit, by name."
    )
    by_doctor: list[DoctorSatisfaction] = strawberry.field(
        description="Per doctor of the visit (visits without a doctor are in none)."
    )


@strawberry.type(description="A survey as its link shows it to the patient.")
class SurveyForm:
    title: str = strawberry.field(description="The survey's title.")
    questions: list[SurveyQuestion] = strawberry.field(
        description="The questions of the version the link was sent with."
    )
    expires_at: datetime = strawberry.field(description="Until when the link answers.")


@strawberry.type(description="answerSurvey's result.")
class AnswerSurveyPayload:
    accepted: bool = strawberry.field(description="The answer is stored; the link is used up.")


@strawberry.type(description="A survey waiting for the signed-in patient's answer.")
class MySurvey:
    title: str = strawberry.field(description="The survey's title.")
    token: str = strawberry.field(
        description="Its link's token, for surveyForm and answerSurvey (one answer)."
    )
    expires_at: datetime = strawberry.field(description="Until when it answers.")
