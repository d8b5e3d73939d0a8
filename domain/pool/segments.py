"""Segment filters: a small typed language, stored as JSON and compiled to one SQL WHERE clause.

A filter is a dict; every key present must hold (AND). Keys:
  and / or: [filter, …]      not: filter
  tagsAny / tagsAll: [tag uuid, …]
  scoreMin / scoreMax: int (inclusive)
  stages / tiers / channels / genders: [value, …]
  branchIds: [branch uuid, …]
  ageMin / ageMax: int (from birth year, as of the evaluation moment; unknown age never matches)
  lastInteractionBefore / lastInteractionAfter, lastVisitBefore / lastVisitAfter,
  createdBefore / createdAfter: ISO datetime (before: strictly earlier; after: at or later;
  a patient with no such date never matches)
  hasReferred: bool        consent: bool
  reachableBy: [channel, …]  (marketing consent in force on any of them: domain/consent)
  orderTotalMinFen / orderTotalMaxFen: int (fen, inclusive)
  inGroupChat: [group chat uuid, …]  (a customer in any of these WeCom groups now)
Nothing is evaluated in Python: counts and members come straight from SQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, not_, or_, select, true

from domain.consent.models import ContactChannel, Purpose
from domain.consent.service import reachable
from domain.errors import BadInput
from domain.patients.models import Patient
from domain.pool.models import PatientTag
from domain.wecom.group_queries import in_groups

LIST_KEYS = {
    "stages",
    "tiers",
    "channels",
    "genders",
    "branchIds",
    "tagsAny",
    "tagsAll",
    "reachableBy",
    "inGroupChat",
}
CONTACT_CHANNELS = {c.value for c in ContactChannel} - {ContactChannel.ANY.value}
INT_KEYS = {"scoreMin", "scoreMax", "ageMin", "ageMax", "orderTotalMinFen", "orderTotalMaxFen"}
DATE_KEYS = {
    "lastInteractionBefore": ("last_interaction_at", "before"),
    "lastInteractionAfter": ("last_interaction_at", "after"),
    "lastVisitBefore": ("last_visit_at", "before"),
    "lastVisitAfter": ("last_visit_at", "after"),
    "createdBefore": ("created_at", "before"),
    "createdAfter": ("created_at", "after"),
}
BOOL_KEYS = {"hasReferred", "consent"}
NEST_KEYS = {"and", "or", "not"}
KEYS = LIST_KEYS | INT_KEYS | set(DATE_KEYS) | BOOL_KEYS | NEST_KEYS
MAX_DEPTH = 6
MAX_NODES = 100


def _uuid(value: Any, key: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise BadInput(f"{key} holds an invalid id", field=key) from None


def parse_time(value: Any, key: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise BadInput(f"{key} must be an ISO date-time", field=key) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def validate(flt: Mapping[str, Any], depth: int = 0, budget: list[int] | None = None) -> None:
    budget = budget if budget is not None else [MAX_NODES]
    budget[0] -= 1
    if depth > MAX_DEPTH or budget[0] < 0:
        raise BadInput("segment filter is too deep or too large", field="filter")
    if not isinstance(flt, Mapping):
        raise BadInput("segment filter must be an object", field="filter")
    for key, value in flt.items():
        if key not in KEYS:
            raise BadInput(f"unknown filter key {key}", field="filter")
        if key in ("and", "or"):
            if not isinstance(value, list):
                raise BadInput(f"{key} takes a list", field=key)
            for sub in value:
                validate(sub, depth + 1, budget)
        elif key == "not":
            validate(value, depth + 1, budget)
        elif key in LIST_KEYS and not isinstance(value, list):
            raise BadInput(f"{key} takes a list", field=key)
        elif key == "reachableBy" and not set(map(str, value)) <= CONTACT_CHANNELS:
            allowed = ", ".join(sorted(CONTACT_CHANNELS))
            raise BadInput(f"reachableBy takes channels among {allowed}", field=key)
        elif key in INT_KEYS and (not isinstance(value, int) or isinstance(value, bool)):
            raise BadInput(f"{key} takes a whole number", field=key)
        elif key in BOOL_KEYS and not isinstance(value, bool):
            raise BadInput(f"{key} takes true or false", field=key)
        elif key in DATE_KEYS:
            parse_time(value, key)


def tag_ids(flt: Mapping[str, Any]) -> Iterator[uuid.UUID]:
    """Every tag a filter mentions, at any depth (for the health-tag check)."""
    for key, value in flt.items():
        if key in ("tagsAny", "tagsAll"):
            yield from (_uuid(v, key) for v in value)
        elif key in ("and", "or"):
            for sub in value:
                yield from tag_ids(sub)
        elif key == "not":
            yield from tag_ids(value)


def group_chat_ids(flt: Mapping[str, Any]) -> Iterator[uuid.UUID]:
    """Every customer group a filter mentions, at any depth (to refuse unknown ones)."""
    for key, value in flt.items():
        if key == "inGroupChat":
            yield from (_uuid(v, key) for v in value)
        elif key in ("and", "or"):
            for sub in value:
                yield from group_chat_ids(sub)
        elif key == "not":
            yield from group_chat_ids(value)


def _has_tag(tag_id: uuid.UUID) -> ColumnElement[bool]:
    return exists(
        select(PatientTag.patient_id).where(
            PatientTag.patient_id == Patient.id, PatientTag.tag_id == tag_id
        )
    )


def compile_filter(flt: Mapping[str, Any], now: datetime) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    for key, value in flt.items():
        if key == "and":
            parts.append(and_(true(), *(compile_filter(sub, now) for sub in value)))
        elif key == "or":
            parts.append(or_(*(compile_filter(sub, now) for sub in value)) if value else true())
        elif key == "not":
            parts.append(not_(compile_filter(value, now)))
        elif key == "tagsAny":
            ids = sorted({_uuid(v, key) for v in value})
            parts.append(
                exists(
                    select(PatientTag.patient_id).where(
                        PatientTag.patient_id == Patient.id, PatientTag.tag_id.in_(ids)
                    )
                )
            )
        elif key == "tagsAll":
            parts.extend(_has_tag(t) for t in sorted({_uuid(v, key) for v in value}))
        elif key == "scoreMin":
            parts.append(Patient.lead_score >= value)
        elif key == "scoreMax":
            parts.append(Patient.lead_score <= value)
        elif key == "stages":
            parts.append(Patient.lifecycle_stage.in_([str(v) for v in value]))
        elif key == "tiers":
            parts.append(Patient.pool_tier.in_([str(v) for v in value]))
        elif key == "channels":
            parts.append(Patient.source_channel.in_([str(v) for v in value]))
        elif key == "genders":
            parts.append(Patient.gender.in_([str(v) for v in value]))
        elif key == "branchIds":
            parts.append(Patient.home_branch_id.in_(sorted({_uuid(v, key) for v in value})))
        elif key == "ageMin":  # age ≥ n  ⇔  birth_year ≤ year − n
            parts.append(Patient.birth_year <= now.year - value)
        elif key == "ageMax":
            parts.append(Patient.birth_year >= now.year - value)
        elif key in DATE_KEYS:
            column, side = DATE_KEYS[key]
            col = getattr(Patient, column)
            moment = parse_time(value, key)
            parts.append(col < moment if side == "before" else col >= moment)
        elif key == "hasReferred":
            parts.append(Patient.referral_count > 0 if value else Patient.referral_count == 0)
        elif key == "consent":
            parts.append(Patient.consent_at.is_not(None) if value else Patient.consent_at.is_(None))
        elif key == "reachableBy":
            channels = [ContactChannel(str(v)) for v in value]
            parts.append(reachable(Purpose.MARKETING, channels))
        elif key == "inGroupChat":
            parts.append(in_groups(sorted({_uuid(v, key) for v in value})))
        elif key == "orderTotalMinFen":
            parts.append(Patient.order_total_fen >= value)
        elif key == "orderTotalMaxFen":
            parts.append(Patient.order_total_fen <= value)
    return and_(true(), *parts)
