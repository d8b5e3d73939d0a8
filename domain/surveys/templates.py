"""Survey templates (versioned: an edit adds a version, deliveries keep theirs) and the rules
that send them after arrived visits."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.door.repository import DoorRepository
from domain.errors import BadInput, NotFound
from domain.surveys.models import (
    QuestionKind,
    SurveyRule,
    SurveyTemplate,
    SurveyTemplateVersion,
    VisitKind,
)
from domain.surveys.repository import SurveyRepository

MAX_QUESTIONS = 30
MAX_OPTIONS = 10
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,29}$")
# Channels a survey link can travel on: the campaign back-ends' (domain.campaigns.backends),
# and the mini-program, where a signed-in patient finds it (`mySurveys`).
CHANNELS = ("sms", "wecom", "mini_program")


@dataclass(frozen=True)
class Question:
    key: str
    kind: QuestionKind
    text: str
    options: tuple[str, ...] = ()
    required: bool = True

    def as_json(self) -> dict[str, object]:
        return {
            "key": self.key,
            "kind": str(self.kind),
            "text": self.text,
            "options": list(self.options),
            "required": self.required,
        }

    @staticmethod
    def from_json(data: dict[str, object]) -> Question:
        return Question(
            str(data["key"]),
            QuestionKind(str(data["kind"])),
            str(data["text"]),
            tuple(str(o) for o in data.get("options") or ()),  # type: ignore[attr-defined]
            bool(data.get("required", True)),
        )


@dataclass(frozen=True)
class TemplateDraft:
    name: str
    title: str
    intro: str
    questions: list[Question] = field(default_factory=list)


def _check(draft: TemplateDraft) -> None:
    if not 1 <= len(draft.name.strip()) <= 100:
        raise BadInput("name must be 1-100 characters", field="name")
    if not 1 <= len(draft.title.strip()) <= 100:
        raise BadInput("title must be 1-100 characters", field="title")
    if not 1 <= len(draft.intro.strip()) <= 120:
        raise BadInput("intro must be 1-120 characters (the link follows it)", field="intro")
    if not 1 <= len(draft.questions) <= MAX_QUESTIONS:
        raise BadInput(f"a survey has 1-{MAX_QUESTIONS} questions", field="questions")
    keys: set[str] = set()
    for q in draft.questions:
        if not _KEY.match(q.key) or q.key in keys:
            raise BadInput(
                "question keys are unique, lower case letters, digits and _ (1-30)",
                field="questions",
            )
        keys.add(q.key)
        if not 1 <= len(q.text.strip()) <= 200:
            raise BadInput("a question's text is 1-200 characters", field="questions")
        choice = q.kind in (QuestionKind.SINGLE, QuestionKind.MULTIPLE)
        if choice:
            labels = [o.strip() for o in q.options]
            if not 2 <= len(labels) <= MAX_OPTIONS or len(set(labels)) != len(labels):
                raise BadInput(
                    f"a choice question has 2-{MAX_OPTIONS} different options", field="questions"
                )
            if any(not 1 <= len(o) <= 50 for o in labels):
                raise BadInput("an option is 1-50 characters", field="questions")
        elif q.options:
            raise BadInput("only choice questions have options", field="questions")


def _version(template: SurveyTemplate, draft: TemplateDraft, actor: str) -> SurveyTemplateVersion:
    return SurveyTemplateVersion(
        template_id=template.id,
        version=template.current_version,
        title=draft.title.strip(),
        intro=draft.intro.strip(),
        questions=[
            Question(
                q.key, q.kind, q.text.strip(), tuple(o.strip() for o in q.options), q.required
            ).as_json()
            for q in draft.questions
        ],
        created_by=actor,
    )


async def create_template(
    session: AsyncSession, draft: TemplateDraft, actor: str
) -> SurveyTemplate:
    _check(draft)
    template = SurveyTemplate(name=draft.name.strip(), current_version=1, created_by=actor)
    session.add(template)
    await session.flush()
    session.add(_version(template, draft, actor))
    await session.flush()
    return template


async def revise_template(
    session: AsyncSession, template: SurveyTemplate, draft: TemplateDraft, actor: str
) -> SurveyTemplate:
    """A new version; deliveries already made keep the version they were sent with."""
    _check(draft)
    template.name = draft.name.strip()
    template.current_version += 1
    session.add(_version(template, draft, actor))
    await session.flush()
    return template


async def template(session: AsyncSession, template_id: uuid.UUID) -> SurveyTemplate:
    row = await SurveyRepository(session).template(template_id)
    if row is None:
        raise NotFound("no such survey template")
    return row


async def version(
    session: AsyncSession, template_id: uuid.UUID, number: int
) -> SurveyTemplateVersion | None:
    return await SurveyRepository(session).version(template_id, number)


async def versions(
    session: AsyncSession, keys: list[tuple[uuid.UUID, int]]
) -> dict[tuple[uuid.UUID, int], SurveyTemplateVersion]:
    if not keys:
        return {}
    rows = await SurveyRepository(session).versions_of({k[0] for k in keys})
    wanted = set(keys)
    return {(r.template_id, r.version): r for r in rows if (r.template_id, r.version) in wanted}


@dataclass(frozen=True)
class RuleDraft:
    name: str
    template: SurveyTemplate
    delay_days: int
    visit_kind: VisitKind
    branch_id: uuid.UUID | None
    channels: list[str]
    starts_at: datetime
    answer_days: int = 14
    low_rating: int | None = 2
    low_nps: int | None = 6


async def create_rule(session: AsyncSession, draft: RuleDraft, actor: str) -> SurveyRule:
    if not 1 <= len(draft.name.strip()) <= 100:
        raise BadInput("name must be 1-100 characters", field="name")
    if not 0 <= draft.delay_days <= 90:
        raise BadInput("delayDays must be 0-90", field="delayDays")
    if not 1 <= draft.answer_days <= 60:
        raise BadInput("answerDays must be 1-60", field="answerDays")
    if not draft.channels or len(set(draft.channels)) != len(draft.channels):
        raise BadInput("give one or more different channels", field="channels")
    if any(c not in CHANNELS for c in draft.channels):
        raise BadInput("survey links go by SMS, WECOM or MINI_PROGRAM", field="channels")
    if draft.low_rating is not None and not 1 <= draft.low_rating <= 5:
        raise BadInput("lowRating is 1-5", field="lowRating")
    if draft.low_nps is not None and not 0 <= draft.low_nps <= 10:
        raise BadInput("lowNps is 0-10", field="lowNps")
    if draft.branch_id is not None and not await DoorRepository(session).branch_exists(
        draft.branch_id
    ):
        raise BadInput("no such branch", field="branchId")
    rule = SurveyRule(
        name=draft.name.strip(),
        template_id=draft.template.id,
        delay_days=draft.delay_days,
        visit_kind=str(draft.visit_kind),
        branch_id=draft.branch_id,
        channels=list(draft.channels),
        starts_at=draft.starts_at,
        answer_days=draft.answer_days,
        low_rating=draft.low_rating,
        low_nps=draft.low_nps,
        active=True,
        created_by=actor,
    )
    session.add(rule)
    await session.flush()
    return rule


async def rule(session: AsyncSession, rule_id: uuid.UUID) -> SurveyRule:
    row = await SurveyRepository(session).rule(rule_id)
    if row is None:
        raise NotFound("no such survey rule")
    return row
