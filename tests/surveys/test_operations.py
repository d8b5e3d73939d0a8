"""frontend-schema/operations/survey.graphql as its clients send it: HQ's admin screens, the
survey page (no sign-in) and the figures, each operation by name, against the served API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from api.context import AppState
from tests.campaigns.standin import StandIn
from tests.support import SEEDED, World, gql, ok, sign_in
from tests.surveys.conftest import add_patients, tick, tokens_by_phone
from tests.surveys.test_surveys import RULES, Scripted, _answers, _questions, _visit

OPS = (
    Path(__file__).resolve().parents[2] / "frontend-schema" / "operations" / "survey.graphql"
).read_text(encoding="utf-8")


async def test_the_survey_operations_run_as_written(
    sclient: httpx.AsyncClient,
    owner_state: AppState,
    survey_state: AppState,
    world: World,
    provider: tuple[StandIn, str],
) -> None:
    fake, url = provider

    async def call(name: str, variables: dict, token: str | None = None) -> dict:
        return ok(await gql(sclient, OPS, variables, token, operation_name=name))

    admin = await sign_in(sclient, world, "hq_admin")
    ok(await gql(sclient, RULES, None, admin))
    made = (await call("CreateSurveyTemplate", {"input": _questions("体验")}, admin))[
        "createSurveyTemplate"
    ]
    now = datetime.now(UTC)
    rule = {
        "name": "诊后",
        "templateId": made["id"],
        "channels": ["SMS", "WECOM"],
        "startsAt": (now - timedelta(days=5)).isoformat(),
    }
    assert (await call("CreateSurveyRule", {"input": rule}, admin))["createSurveyRule"]["active"]
    (who,) = await add_patients(owner_state, world, ["b1"])
    s = Scripted("b1", True, 0, None, None)
    await _visit(sclient, admin, world, who.patient, s, now - timedelta(days=2))
    await tick(survey_state, world, url)
    token = tokens_by_phone(fake)[who.phone]

    words = f"note-{uuid.uuid4().hex[:6]} 很好"  # health text: checked against logs
    SEEDED.add(words)
    form = (await call("SurveyForm", {"token": token}))["surveyForm"]
    assert [q["key"] for q in form["questions"]] == ["service", "recommend", "came_for", "words"]
    answered = await call("AnswerSurvey", {"token": token, "answers": _answers(4, 9, words)})
    assert answered["answerSurvey"]["accepted"] is True
    # The doctor of the visit reads the free text: the patient is in their own care.
    doctor = await sign_in(sclient, world, "doctor")
    listed = (await call("SurveyAnswers", {"first": 10}, doctor))["surveyAnswers"]
    assert listed["totalCount"] == 1
    assert listed["edges"][0]["node"]["freeText"] == [{"key": "words", "text": words}]
    period = {
        "from": (now - timedelta(days=1)).isoformat(),
        "to": (now + timedelta(hours=1)).isoformat(),
    }
    figures = (await call("Satisfaction", period, admin))["metrics"]["satisfaction"]
    assert figures["total"] == {
        "sent": 1,
        "answered": 1,
        "responseRate": 1.0,
        "averageRating": 4.0,
        "nps": 100.0,
        "promoters": 1,
        "detractors": 0,
    }
