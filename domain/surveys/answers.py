"""Answering a survey through its link, and reading answers back.

The link is checked first (tokens.verify), then the delivery is locked and must still be
`delivered`: a used, forged, expired or unknown link is refused alike, so a caller learns
nothing about which. The answer's primary key is the delivery id, so a race of two answers
leaves one. Free text is sealed with the tenant key, bound to the answer's row; a low score
opens one complaint callback (投诉回访) for the visit's branch.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.care import follow_ups
from domain.errors import BadInput
from domain.patients.models import Patient
from domain.patients.scope import PatientScope
from domain.pool.models import FollowUp
from domain.surveys import tokens
from domain.surveys.models import (
    QuestionKind,
    SurveyAnswer,
    SurveyDelivery,
    SurveyDeliveryStatus,
    SurveyRule,
    SurveyTemplateVersion,
)
from domain.surveys.repository import SurveyRepository
from domain.surveys.templates import Question
from tenancy.keyring import FieldCipher

TABLE, COLUMN = "survey_answers", "free_text"
MAX_TEXT = 1000
REFUSED = "this survey link is not valid: it was used already, has expired or is mistyped"


@dataclass(frozen=True)
class Given:
    key: str
    value: int | None = None
    choices: tuple[str, ...] = ()
    text: str | None = None


@dataclass(frozen=True)
class Open:
    delivery: SurveyDelivery
    version: SurveyTemplateVersion
    patient: Patient


@dataclass(frozen=True)
class Answered:
    answer: SurveyAnswer
    patient: Patient
    follow_up: FollowUp | None


async def open_link(
    session: AsyncSession, cipher: FieldCipher, token: str, now: datetime, *, lock: bool
) -> Open:
    """The delivery a valid, unused link names (locked when about to be answered)."""
    link = tokens.verify(cipher, token, now)
    row = await SurveyRepository(session).link(link.delivery_id, lock=lock)
    if row is None or row[0].status != SurveyDeliveryStatus.DELIVERED:
        raise tokens.BadLink()
    return Open(*row)


def _read(questions: list[Question], given: list[Given]) -> tuple[dict, dict, list, int | None]:
    by_key = {q.key: q for q in questions}
    seen: set[str] = set()
    choices: dict[str, object] = {}
    texts: dict[str, str] = {}
    ratings: list[int] = []
    nps: int | None = None
    for g in given:
        q = by_key.get(g.key)
        if q is None or g.key in seen:
            raise BadInput("answer each question of the survey once, by its key", field="answers")
        seen.add(g.key)
        if q.kind in (QuestionKind.RATING, QuestionKind.NPS):
            low, high = (1, 5) if q.kind is QuestionKind.RATING else (0, 10)
            if g.value is None or not low <= g.value <= high or g.choices or g.text:
                raise BadInput(f"{q.key}: give a value {low}-{high}", field="answers")
            choices[q.key] = g.value
            if q.kind is QuestionKind.RATING:
                ratings.append(g.value)
            elif nps is None:
                nps = g.value
        elif q.kind in (QuestionKind.SINGLE, QuestionKind.MULTIPLE):
            picked = list(dict.fromkeys(g.choices))
            ok = set(picked) <= set(q.options) and (
                len(picked) == 1 if q.kind is QuestionKind.SINGLE else len(picked) >= 1
            )
            if not ok or g.value is not None or g.text:
                raise BadInput(f"{q.key}: choose among its options", field="answers")
            choices[q.key] = picked
        else:
            text = (g.text or "").strip()
            if not 1 <= len(text) <= MAX_TEXT or g.value is not None or g.choices:
                raise BadInput(f"{q.key}: write 1-{MAX_TEXT} characters", field="answers")
            texts[q.key] = text
    missing = [q.key for q in questions if q.required and q.key not in seen]
    if missing:
        raise BadInput(f"{missing[0]}: this question needs an answer", field="answers")
    return choices, texts, ratings, nps


def is_low(rule: SurveyRule, ratings: list[int], nps: int | None) -> bool:
    low_rating = rule.low_rating is not None and any(r <= rule.low_rating for r in ratings)
    low_nps = rule.low_nps is not None and nps is not None and nps <= rule.low_nps
    return low_rating or low_nps


async def answer(
    session: AsyncSession, cipher: FieldCipher, token: str, given: list[Given], now: datetime
) -> Answered:
    opened = await open_link(session, cipher, token, now, lock=True)
    d = opened.delivery
    questions = [Question.from_json(q) for q in opened.version.questions]
    choices, texts, ratings, nps = _read(questions, given)
    rule = await SurveyRepository(session).rule(d.rule_id)
    assert rule is not None
    low = is_low(rule, ratings, nps)
    row = SurveyAnswer(
        delivery_id=d.id,
        patient_id=d.patient_id,
        answered_at=now,
        rating_sum=sum(ratings),
        rating_count=len(ratings),
        nps=nps,
        choices=choices,
        free_text_ct=(
            cipher.encrypt(
                json.dumps(texts, ensure_ascii=False), table=TABLE, column=COLUMN, row_id=d.id
            )
            if texts
            else None
        ),
        low_score=low,
    )
    session.add(row)
    d.status = SurveyDeliveryStatus.ANSWERED
    await session.flush()
    task = None
    if low:
        task = await follow_ups.complaint_callback(session, opened.patient, d.id, d.branch_id, now)
    return Answered(row, opened.patient, task)


def free_text(cipher: FieldCipher, answer: SurveyAnswer) -> dict[str, str]:
    """The sealed free-text answers (DecryptionError when the value was moved or tampered)."""
    if answer.free_text_ct is None:
        return {}
    plain = cipher.decrypt(
        answer.free_text_ct, table=TABLE, column=COLUMN, row_id=answer.delivery_id
    )
    return dict(json.loads(plain))


async def deliveries(
    session: AsyncSession, ids: list[uuid.UUID]
) -> dict[uuid.UUID, SurveyDelivery]:
    rows = await SurveyRepository(session).deliveries(ids)
    return {r.id: r for r in rows}


async def patients(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, Patient]:
    rows = await SurveyRepository(session).patients(set(ids))
    return {p.id: p for p in rows}


async def own(session: AsyncSession, scope: PatientScope) -> Patient | None:
    """The signed-in patient's own record."""
    return await SurveyRepository(session).own(scope)
