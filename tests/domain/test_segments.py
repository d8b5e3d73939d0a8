"""Segment filters compiled to SQL agree with a plain-Python oracle, on SQLite and PostgreSQL.

The data is generated once per database (seeded); hypothesis generates the filters. The oracle
uses SQL's three-valued logic: a comparison with a missing value is unknown, and NOT unknown is
still unknown, so such a patient matches neither a filter nor its negation.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from domain.patients.models import Gender, LifecycleStage, Patient, PoolTier
from domain.patients.scope import PatientScope
from domain.pool.models import PatientTag, Tag, TagGroup
from domain.pool.repository import compile_filter
from domain.tenants.models import Branch, Tenant
from tenancy.session import bind_tenant, make_engine, session_factory
from tests.conftest import Database

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CHANNELS = ["xiaohongshu", "douyin", "referral"]
DATE_KEYS = [
    "lastInteractionBefore",
    "lastInteractionAfter",
    "lastVisitBefore",
    "lastVisitAfter",
    "createdBefore",
    "createdAfter",
]


@dataclass
class Row:
    id: uuid.UUID
    branch: uuid.UUID
    lead_score: int
    stage: str
    tier: str
    channel: str
    gender: str
    birth_year: int | None
    last_interaction_at: datetime | None
    last_visit_at: datetime | None
    created_at: datetime
    consent: bool
    referral_count: int
    order_total_fen: int
    tags: set[uuid.UUID] = field(default_factory=set)


@dataclass
class Dataset:
    tenant_id: uuid.UUID
    branches: list[uuid.UUID]
    tags: list[uuid.UUID]
    rows: list[Row]


_datasets: dict[str, Dataset] = {}


def _maybe_time(rng: random.Random) -> datetime | None:
    return None if rng.random() < 0.25 else NOW - timedelta(days=rng.randrange(0, 400))


async def _build(db: Database) -> Dataset:
    rng = random.Random(7)
    engine = make_engine(db.owner_url)
    try:
        async with session_factory(engine)() as s, s.begin():
            tenant = Tenant(slug=f"seg-{uuid.uuid4().hex[:8]}", name="segments")
            s.add(tenant)
            await s.flush()
            await bind_tenant(s, tenant.id)
            branches = [Branch(code=f"b{i}", name=f"b{i}") for i in range(3)]
            group = TagGroup(name="g")
            s.add_all([*branches, group])
            await s.flush()
            tags = [Tag(group_id=group.id, name=f"t{i}") for i in range(4)]
            s.add_all(tags)
            await s.flush()
            rows: list[Row] = []
            for i in range(80):
                row = Row(
                    id=uuid.uuid4(),
                    branch=rng.choice(branches).id,
                    lead_score=rng.randrange(0, 150),
                    stage=rng.choice(list(LifecycleStage)).value,
                    tier=rng.choice(list(PoolTier)).value,
                    channel=rng.choice(CHANNELS),
                    gender=rng.choice(list(Gender)).value,
                    birth_year=None if rng.random() < 0.2 else rng.randrange(1950, 2015),
                    last_interaction_at=_maybe_time(rng),
                    last_visit_at=_maybe_time(rng),
                    created_at=NOW - timedelta(days=rng.randrange(0, 400), minutes=i),
                    consent=rng.random() < 0.6,
                    referral_count=rng.choice([0, 0, 1, 3]),
                    order_total_fen=rng.choice([0, 9900, 150000, 2000000]),
                    tags={t.id for t in tags if rng.random() < 0.35},
                )
                rows.append(row)
                s.add(
                    Patient(
                        id=row.id,
                        home_branch_id=row.branch,
                        referral_code=f"S{i:05d}",
                        lead_score=row.lead_score,
                        lifecycle_stage=row.stage,
                        pool_tier=row.tier,
                        source_channel=row.channel,
                        gender=row.gender,
                        birth_year=row.birth_year,
                        last_interaction_at=row.last_interaction_at,
                        last_visit_at=row.last_visit_at,
                        created_at=row.created_at,
                        consent_at=NOW if row.consent else None,
                        referral_count=row.referral_count,
                        order_total_fen=row.order_total_fen,
                    )
                )
            await s.flush()
            for row in rows:
                s.add_all(PatientTag(patient_id=row.id, tag_id=t) for t in row.tags)
    finally:
        await engine.dispose()
    return Dataset(tenant.id, [b.id for b in branches], [t.id for t in tags], rows)


async def _sql(db: Database, data: Dataset, flt: dict[str, Any]) -> set[uuid.UUID]:
    engine = make_engine(db.app_url)
    try:
        async with session_factory(engine)() as s, s.begin():
            await bind_tenant(s, data.tenant_id)
            stmt = select(Patient.id).where(
                PatientScope(chain=True).clause(), compile_filter(flt, NOW)
            )
            return set((await s.scalars(stmt)).all())
    finally:
        await engine.dispose()


def oracle(row: Row, flt: dict[str, Any]) -> bool | None:
    """Three-valued: True, False or None (unknown)."""
    results: list[bool | None] = []
    for key, v in flt.items():
        if key == "and":
            results.append(_and([oracle(row, f) for f in v]))
        elif key == "or":
            results.append(_or([oracle(row, f) for f in v]))
        elif key == "not":
            inner = oracle(row, v)
            results.append(None if inner is None else not inner)
        elif key == "tagsAny":
            results.append(bool(row.tags & {uuid.UUID(t) for t in v}))
        elif key == "tagsAll":
            results.append({uuid.UUID(t) for t in v} <= row.tags)
        elif key == "scoreMin":
            results.append(row.lead_score >= v)
        elif key == "scoreMax":
            results.append(row.lead_score <= v)
        elif key == "stages":
            results.append(row.stage in v)
        elif key == "tiers":
            results.append(row.tier in v)
        elif key == "channels":
            results.append(row.channel in v)
        elif key == "genders":
            results.append(row.gender in v)
        elif key == "branchIds":
            results.append(str(row.branch) in v)
        elif key == "ageMin":
            results.append(None if row.birth_year is None else row.birth_year <= NOW.year - v)
        elif key == "ageMax":
            results.append(None if row.birth_year is None else row.birth_year >= NOW.year - v)
        elif key.endswith(("Before", "After")):
            attr = {
                "lastInteraction": "last_interaction_at",
                "lastVisit": "last_visit_at",
                "created": "created_at",
            }[key.removesuffix("Before").removesuffix("After")]
            moment = datetime.fromisoformat(v)
            value = getattr(row, attr)
            if value is None:
                results.append(None)
            else:
                results.append(value < moment if key.endswith("Before") else value >= moment)
        elif key == "hasReferred":
            results.append((row.referral_count > 0) == v)
        elif key == "consent":
            results.append(row.consent == v)
        elif key == "orderTotalMinFen":
            results.append(row.order_total_fen >= v)
        elif key == "orderTotalMaxFen":
            results.append(row.order_total_fen <= v)
    return _and(results)


def _and(values: list[bool | None]) -> bool | None:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def _or(values: list[bool | None]) -> bool | None:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def leaves(data: Dataset) -> st.SearchStrategy[dict[str, Any]]:
    ids = lambda xs: st.lists(st.sampled_from([str(x) for x in xs]), min_size=1, max_size=3)  # noqa: E731
    moment = st.integers(0, 400).map(lambda d: (NOW - timedelta(days=d)).isoformat())
    return st.one_of(
        st.fixed_dictionaries({"tagsAny": ids(data.tags)}),
        st.fixed_dictionaries({"tagsAll": ids(data.tags)}),
        st.fixed_dictionaries({"scoreMin": st.integers(0, 150)}),
        st.fixed_dictionaries({"scoreMax": st.integers(0, 150)}),
        st.fixed_dictionaries(
            {"stages": st.lists(st.sampled_from([s.value for s in LifecycleStage]), min_size=1)}
        ),
        st.fixed_dictionaries(
            {"tiers": st.lists(st.sampled_from([t.value for t in PoolTier]), min_size=1)}
        ),
        st.fixed_dictionaries({"channels": st.lists(st.sampled_from(CHANNELS), min_size=1)}),
        st.fixed_dictionaries(
            {"genders": st.lists(st.sampled_from([g.value for g in Gender]), min_size=1)}
        ),
        st.fixed_dictionaries({"branchIds": ids(data.branches)}),
        st.fixed_dictionaries({"ageMin": st.integers(10, 80)}),
        st.fixed_dictionaries({"ageMax": st.integers(10, 80)}),
        st.sampled_from(DATE_KEYS).flatmap(lambda k: st.fixed_dictionaries({k: moment})),
        st.fixed_dictionaries({"hasReferred": st.booleans()}),
        st.fixed_dictionaries({"consent": st.booleans()}),
        st.fixed_dictionaries({"orderTotalMinFen": st.sampled_from([0, 9900, 150000, 2000000])}),
        st.fixed_dictionaries({"orderTotalMaxFen": st.sampled_from([0, 9900, 150000, 2000000])}),
    )


def filters(data: Dataset) -> st.SearchStrategy[dict[str, Any]]:
    def extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        return st.one_of(
            st.lists(children, min_size=1, max_size=3).map(lambda fs: {"and": fs}),
            st.lists(children, min_size=1, max_size=3).map(lambda fs: {"or": fs}),
            children.map(lambda f: {"not": f}),
            st.tuples(children, children).map(lambda p: {**p[0], **p[1]}),
        )

    return st.recursive(leaves(data), extend, max_leaves=6)


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_segment_filters_match_the_oracle(kind: str, request: pytest.FixtureRequest) -> None:
    db: Database = request.getfixturevalue(f"{kind}_db")
    if kind not in _datasets:
        _datasets[kind] = asyncio.run(_build(db))
    data = _datasets[kind]

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(filters(data))
    def check(flt: dict[str, Any]) -> None:
        expected = {r.id for r in data.rows if oracle(r, flt) is True}
        assert asyncio.run(_sql(db, data, flt)) == expected, flt

    check()
