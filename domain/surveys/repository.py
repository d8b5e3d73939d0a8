"""The surveys' list statements that the API pages (templates and rules, newest first by the
caller's keyset)."""

from __future__ import annotations

from sqlalchemy import Select, select

from domain.surveys.models import SurveyRule, SurveyTemplate


class SurveyRepository:
    def templates(self) -> Select[tuple[SurveyTemplate]]:
        return select(SurveyTemplate)

    def rules(self) -> Select[tuple[SurveyRule]]:
        return select(SurveyRule)
