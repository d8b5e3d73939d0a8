"""Segment filters: a small typed language, stored as JSON and compiled to one SQL WHERE clause
(`domain.pool.repository.compile_filter`, with the rest of the feature's SQL).

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
from typing import Any

from domain.consent.models import ContactChannel
from domain.errors import BadInput

# The filter's SQL (`compile_filter`, and the date keys' columns) is the repository's; callers
# of the language find `compile_filter` here too.
from domain.pool.repository import DATE_KEYS, parse_id, parse_time

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
BOOL_KEYS = {"hasReferred", "consent"}
NEST_KEYS = {"and", "or", "not"}
KEYS = LIST_KEYS | INT_KEYS | set(DATE_KEYS) | BOOL_KEYS | NEST_KEYS
MAX_DEPTH = 6
MAX_NODES = 100


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
            yield from (parse_id(v, key) for v in value)
        elif key in ("and", "or"):
            for sub in value:
                yield from tag_ids(sub)
        elif key == "not":
            yield from tag_ids(value)


def group_chat_ids(flt: Mapping[str, Any]) -> Iterator[uuid.UUID]:
    """Every customer group a filter mentions, at any depth (to refuse unknown ones)."""
    for key, value in flt.items():
        if key == "inGroupChat":
            yield from (parse_id(v, key) for v in value)
        elif key in ("and", "or"):
            for sub in value:
                yield from group_chat_ids(sub)
        elif key == "not":
            yield from group_chat_ids(value)
