"""Chain metrics (domain.care.metrics) through GraphQL against a Python oracle that applies the
definitions row by row, over a seeded history that straddles the periods asked for: leads who
joined before or after the period, visits and orders on both sides of its edges, first visits
whose deal came before or after, refunds, cancelled and booked rows, referred and merged
patients. Every figure, in total and per branch, for several periods and one branch."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select

from api.context import AppState
from domain.care.models import Order, OrderStatus, Visit, VisitStatus
from domain.patients.models import Patient
from domain.referrals import figures
from domain.referrals.models import Referral
from tenancy.session import bind_tenant, stamp_rows
from tests.support import World, build_world, gql, ok, sign_in

FIELDS = (
    "leads visitedLeads referredLeads firstVisits convertedVisitors visitors returnVisitors "
    "buyers repeatBuyers revenue referredRevenue"
)
METRICS = f"""query($f: DateTime!, $t: DateTime!, $b: ID) {{
  metrics(from: $f, to: $t, branchId: $b) {{
    total {{ {FIELDS} }} byBranch {{ branch {{ code }} figures {{ {FIELDS} }} }} }} }}"""
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass
class History:
    """What was written, as the oracle reads it."""

    joined: dict[uuid.UUID, datetime] = field(default_factory=dict)
    branch: dict[uuid.UUID, str] = field(default_factory=dict)
    merged: set[uuid.UUID] = field(default_factory=set)
    referred: set[uuid.UUID] = field(default_factory=set)
    visits: list[tuple[uuid.UUID, str, datetime | None, bool | None]] = field(default_factory=list)
    orders: list[tuple[uuid.UUID, str, datetime | None, bool | None, int]] = field(
        default_factory=list
    )


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"m-{unique}")


def _day(rng: random.Random) -> datetime:
    """A moment within two years before NOW, to the second."""
    return NOW - timedelta(seconds=rng.randint(0, 2 * 365 * 86400))


async def seed(owner: AppState, world: World, n: int = 120, seed: int = 11) -> History:
    rng = random.Random(seed)
    h = History()
    patients, visits, orders, links = [], [], [], []
    ids = [uuid.uuid4() for _ in range(n)]
    for i, pid in enumerate(ids):
        key = rng.choice(["b1", "b2"])
        h.joined[pid], h.branch[pid] = _day(rng), key
        merged_into = ids[0] if i > 10 and rng.random() < 0.08 else None
        if merged_into is not None:
            h.merged.add(pid)
        patients.append(
            {
                "id": pid,
                "home_branch_id": world.branches[key].id,
                "referral_code": pid.hex[:12].upper(),
                "created_at": h.joined[pid],
                "merged_into_id": merged_into,
                "order_total_fen": 0,  # set below from the paid orders
            }
        )
        if i and rng.random() < 0.3:  # referred by an earlier patient: links form a forest
            h.referred.add(pid)
            links.append({"referred_id": pid, "referrer_id": rng.choice(ids[:i])})
        # Visits: arrived ones in time order, the earliest marked first (初诊), as markArrived
        # does; booked, no-show and cancelled ones carry no arrival.
        arrivals = sorted(_day(rng) for _ in range(rng.choice([0, 0, 1, 2, 3, 4])))
        for k, at in enumerate(arrivals):
            h.visits.append((pid, VisitStatus.ARRIVED, at, k == 0))
        for _ in range(rng.choice([0, 0, 1])):
            status = rng.choice([VisitStatus.BOOKED, VisitStatus.NO_SHOW, VisitStatus.CANCELLED])
            h.visits.append((pid, status, None, None))
        # Orders: paid ones in time order, the earliest first (首单); some refunded in part or in
        # full; pending and cancelled ones carry no payment.
        payments = sorted(_day(rng) for _ in range(rng.choice([0, 0, 1, 1, 2, 3])))
        for k, at in enumerate(payments):
            total = rng.randint(1, 900_000)
            refunded = rng.choice([0, 0, 0, rng.randint(1, total), total])
            status = OrderStatus.REFUNDED if refunded == total else OrderStatus.PAID
            h.orders.append((pid, status, at, k == 0, total - refunded))
            patients[-1]["order_total_fen"] += total - refunded
            orders.append((pid, key, status, at, k == 0, total, refunded))
        for _ in range(rng.choice([0, 0, 1])):
            status = rng.choice([OrderStatus.PENDING, OrderStatus.CANCELLED])
            orders.append((pid, key, status, None, None, rng.randint(1, 9_000), 0))
    for pid, status, at, first in h.visits:
        visits.append(
            {
                "patient_id": pid,
                "branch_id": world.branches[h.branch[pid]].id,
                "scheduled_at": at or _day(rng),
                "status": status,
                "arrived_at": at,
                "is_first": first,
            }
        )
    async with owner.sessions() as session, session.begin():
        await bind_tenant(session, world.tenant_id)
        await session.execute(insert(Patient), stamp_rows(session, patients))
        await session.execute(insert(Referral), stamp_rows(session, links))
        await session.execute(insert(Visit), stamp_rows(session, visits))
        await session.execute(
            insert(Order),
            stamp_rows(
                session,
                [
                    {
                        "patient_id": pid,
                        "branch_id": world.branches[key].id,
                        "status": status,
                        "paid_at": at,
                        "is_first": first,
                        "total_fen": total,
                        "refunded_fen": refunded,
                        "created_by": "seed",
                    }
                    for pid, key, status, at, first, total, refunded in orders
                ],
            ),
        )
        await figures.rebuild(session)
        # The world's own patients too (they joined today, with no visits or orders).
        code = {b.id: key for key, b in world.branches.items()}
        for pid, joined, branch_id in await session.execute(
            select(Patient.id, Patient.created_at, Patient.home_branch_id)
        ):
            h.joined.setdefault(pid, joined)
            h.branch.setdefault(pid, code[branch_id])
    return h


def oracle(h: History, since: datetime, until: datetime, only: str | None) -> dict[str, Any]:
    """{branch code or "total": figures}, each by its definition in domain.care.metrics."""

    def inside(at: datetime | None) -> bool:
        return at is not None and since <= at < until

    arrived: dict[uuid.UUID, list[tuple[datetime, bool]]] = defaultdict(list)
    for pid, status, at, first in h.visits:
        if status == VisitStatus.ARRIVED and at is not None and first is not None:
            arrived[pid].append((at, first))
    paid: dict[uuid.UUID, list[tuple[datetime, bool, int]]] = defaultdict(list)
    for pid, status, at, first, net in h.orders:
        if status in (OrderStatus.PAID, OrderStatus.REFUNDED) and at and first is not None:
            paid[pid].append((at, first, net))
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for pid, joined in h.joined.items():
        if pid in h.merged or (only is not None and h.branch[pid] != only):
            continue
        f = out[h.branch[pid]]
        visits_in = [(at, first) for at, first in arrived[pid] if inside(at)]
        paid_in = [(at, first, net) for at, first, net in paid[pid] if inside(at)]
        if inside(joined):
            f["leads"] += 1
            f["visitedLeads"] += bool(arrived[pid])
            f["referredLeads"] += pid in h.referred
        firsts = [at for at, first in visits_in if first]
        if firsts:
            f["firstVisits"] += 1
            f["convertedVisitors"] += any(at >= min(firsts) for at, _, _ in paid[pid])
        if visits_in:
            f["visitors"] += 1
            f["returnVisitors"] += any(not first for _, first in visits_in)
        if paid_in:
            f["buyers"] += 1
            f["repeatBuyers"] += any(not first for _, first, _ in paid_in)
            net = sum(n for _, _, n in paid_in)
            f["revenue"] += net
            f["referredRevenue"] += net if pid in h.referred else 0
    total: dict[str, int] = defaultdict(int)
    for figures_ in out.values():
        for name, value in figures_.items():
            total[name] += value
    return {"total": _shown(total), **{k: _shown(v) for k, v in out.items() if any(v.values())}}


def _shown(f: dict[str, int]) -> dict[str, Any]:
    """Figures as the API shows them (money in yuan, two places)."""
    money = ("revenue", "referredRevenue")
    return {n: f"{Decimal(f[n]) / 100:.2f}" if n in money else f[n] for n in FIELDS.split()}


async def test_metrics_match_their_definitions_over_any_period(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    h = await seed(owner_state, world)
    hq = await sign_in(client, world, "hq_admin")
    periods = [
        (NOW - timedelta(days=365), NOW),
        (NOW - timedelta(days=500), NOW - timedelta(days=200)),
        (NOW - timedelta(days=90), NOW - timedelta(days=60)),
        (NOW - timedelta(days=730), NOW - timedelta(days=400)),
    ]
    seen_figures = set()
    for since, until in periods:
        for only in (None, "b1"):
            variables = {"f": since.isoformat(), "t": until.isoformat()}
            if only:
                variables["b"] = world.branch_gid(only)
            got = ok(await gql(client, METRICS, variables, token=hq))["metrics"]
            answer = {"total": got["total"]} | {
                b["branch"]["code"]: b["figures"]
                for b in got["byBranch"]
                if any(v not in (0, "0.00") for v in b["figures"].values())
            }
            assert answer == oracle(h, since, until, only), (since, until, only)
            seen_figures.add(tuple(sorted(got["total"].items())))
    # The periods tell the history apart (a seed where every period looks the same would
    # prove little), and each figure is non-zero somewhere.
    assert len(seen_figures) >= 6
    for name in FIELDS.split():
        assert any(dict(t)[name] not in (0, "0.00") for t in seen_figures), name
