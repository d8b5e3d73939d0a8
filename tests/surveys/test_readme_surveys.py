"""The README's survey operations, run as written: HQ makes the template, the sender sends a
link after a visit, and the README's answer goes through that link."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from api.context import AppState
from tests.campaigns.standin import StandIn
from tests.readme import blocks
from tests.support import World, gql, ok, sign_in
from tests.surveys.conftest import add_patients, tick, tokens_by_phone
from tests.surveys.test_surveys import RULE, RULES, Scripted, _visit

SECTION = "## Satisfaction surveys (满意度调查)"


async def test_the_readme_makes_a_survey_and_answers_it(
    sclient: httpx.AsyncClient,
    owner_state: AppState,
    survey_state: AppState,
    world: World,
    provider: tuple[StandIn, str],
) -> None:
    fake, url = provider
    make, answer = blocks("graphql", SECTION)
    admin = await sign_in(sclient, world, "hq_admin")
    ok(await gql(sclient, RULES, None, admin))
    made = ok(await gql(sclient, make, None, admin))["createSurveyTemplate"]
    assert made["version"] == 1
    now = datetime.now(UTC)
    rule = {
        "name": "诊后一天",
        "templateId": made["id"],
        "channels": ["SMS"],
        "startsAt": (now - timedelta(days=7)).isoformat(),
    }
    ok(await gql(sclient, RULE, {"i": rule}, admin))
    (who,) = await add_patients(owner_state, world, ["b1"])
    await _visit(
        sclient,
        admin,
        world,
        who.patient,
        Scripted("b1", True, 0, None, None),
        now - timedelta(days=2),
    )
    await tick(survey_state, world, url)
    token = tokens_by_phone(fake)[who.phone]
    assert ok(await gql(sclient, answer, {"token": token}))["answerSurvey"]["accepted"] is True
    again = await gql(sclient, answer, {"token": token})
    assert again["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
