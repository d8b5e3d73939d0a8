"""The survey root fields aimed at tenant B, for the attack suite (tests/attacks): merged into
its ATTACKS so every new root field stays attacked."""

from __future__ import annotations

import base64
import secrets
import struct
import time
from collections.abc import Callable
from typing import Any

from api.ids import to_global_id
from tests.support import World

Attack = Callable[[World], tuple[str, dict[str, Any]]]


def b_link(b: World) -> str:
    """A link claiming B's tenant and a delivery of it (a random one, a made-up tag)."""
    body = struct.pack(
        ">16s16sI", b.tenant_id.bytes, secrets.token_bytes(16), int(time.time()) + 3600
    )
    return base64.urlsafe_b64encode(body + secrets.token_bytes(16)).rstrip(b"=").decode()


_TEMPLATE = (
    '{name: "x", title: "x", intro: "请打分", '
    'questions: [{key: "s", kind: RATING, text: "满意吗"}]}'
)
SURVEY_ATTACKS: dict[str, Attack] = {
    "surveyTemplates": lambda b: ("{ surveyTemplates { totalCount edges { node { id } } } }", {}),
    "surveyTemplate": lambda b: (
        "query($id: ID!) { surveyTemplate(id: $id) { id name } }",
        {"id": to_global_id("SurveyTemplate", b.tenant_id)},
    ),
    "surveyRules": lambda b: ("{ surveyRules { totalCount edges { node { id } } } }", {}),
    "surveyAnswers": lambda b: (
        "query($b: ID) { surveyAnswers(branchId: $b) { totalCount edges { node { patientId "
        "freeText { text } } } } }",
        {"b": b.branch_gid("b1")},
    ),
    "surveyForm": lambda b: (
        "query($t: String!) { surveyForm(token: $t) { title } }",
        {"t": b_link(b)},
    ),
    "createSurveyTemplate": lambda b: (
        f"mutation {{ createSurveyTemplate(input: {_TEMPLATE}) {{ id }} }}",
        {},
    ),
    "reviseSurveyTemplate": lambda b: (
        f"mutation($id: ID!) {{ reviseSurveyTemplate(id: $id, input: {_TEMPLATE}) {{ id }} }}",
        {"id": to_global_id("SurveyTemplate", b.tenant_id)},
    ),
    "createSurveyRule": lambda b: (
        'mutation($t: ID!, $b: ID) { createSurveyRule(input: {name: "r", templateId: $t, '
        "channels: [SMS], branchId: $b}) { id } }",
        {"t": to_global_id("SurveyTemplate", b.tenant_id), "b": b.branch_gid("b1")},
    ),
    "setSurveyRuleActive": lambda b: (
        "mutation($id: ID!) { setSurveyRuleActive(id: $id, active: false) { id } }",
        {"id": to_global_id("SurveyRule", b.tenant_id)},
    ),
    "mySurveys": lambda b: ("{ mySurveys { title token } }", {}),
    "answerSurvey": lambda b: (
        'mutation($t: String!) { answerSurvey(token: $t, answers: [{key: "s", score: 1}]) '
        "{ accepted } }",
        {"t": b_link(b)},
    ),
}
