"""Root fields of satisfaction surveys, kept apart from `api/schema.py`; `Query` and `Mutation`
there inherit these. `surveyForm` and `answerSurvey` are public (a survey link's page calls
them without a sign-in): the token is the credential."""

from __future__ import annotations

import strawberry

from api.pagination import Connection
from api.surveys import resolvers as surveys
from api.surveys.types import (
    AnswerSurveyPayload,
    MySurvey,
    SurveyAnswer,
    SurveyForm,
    SurveyRule,
    SurveyTemplate,
)

PUBLIC_SURVEY_FIELDS = frozenset({"surveyForm", "answerSurvey"})
# `mySurveys` answers a patient token only (it is listed in api.door.fields.PATIENT_ROOT_FIELDS).


@strawberry.type(description="Satisfaction surveys.")
class SurveyQuery:
    survey_templates: Connection[SurveyTemplate] = strawberry.field(
        resolver=surveys.survey_templates,
        description="Satisfaction survey templates (满意度调查), oldest first.",
    )
    survey_template: SurveyTemplate = strawberry.field(
        resolver=surveys.survey_template, description="One survey template by id."
    )
    survey_rules: Connection[SurveyRule] = strawberry.field(
        resolver=surveys.survey_rules, description="The rules that send surveys after visits."
    )
    survey_answers: Connection[SurveyAnswer] = strawberry.field(
        resolver=surveys.survey_answers_query,
        description="Survey answers of patients in your scope, oldest first (logged).",
    )
    my_surveys: list[MySurvey] = strawberry.field(
        resolver=surveys.my_surveys,
        description="Your surveys waiting for an answer (patient token), newest first.",
    )
    survey_form: SurveyForm = strawberry.field(
        resolver=surveys.survey_form,
        description="Public: the questions a survey link shows (BAD_USER_INPUT for a link "
        "that is used, expired or not ours).",
    )


@strawberry.type(description="Satisfaction surveys.")
class SurveyMutation:
    create_survey_template: SurveyTemplate = strawberry.field(
        resolver=surveys.create_survey_template, description="A new survey template (HQ)."
    )
    revise_survey_template: SurveyTemplate = strawberry.field(
        resolver=surveys.revise_survey_template,
        description="Edit a template: a new version; links already sent keep theirs (HQ).",
    )
    create_survey_rule: SurveyRule = strawberry.field(
        resolver=surveys.create_survey_rule,
        description="Send a template some days after arrived visits (HQ).",
    )
    set_survey_rule_active: SurveyRule = strawberry.field(
        resolver=surveys.set_survey_rule_active, description="Pause or resume a rule (HQ)."
    )
    answer_survey: AnswerSurveyPayload = strawberry.field(
        resolver=surveys.answer_survey,
        description="Public: answer the survey a link names, once. A used, expired or forged "
        "link is refused with BAD_USER_INPUT, all alike.",
    )
