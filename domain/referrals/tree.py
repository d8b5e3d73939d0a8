"""Referral trees in SQL: recursive CTEs walk the links on the database (SQLite and PostgreSQL
alike); Python never loads a whole tree. Each function is a fixed number of statements,
whatever the depth or size.

Per node: `subtree_size` counts everyone the node brought directly or indirectly (not the node
itself); `converted` counts those of them with net paid orders, `converted_fen` sums their net
paid amounts (stored, see domain.referrals.figures); `visible` says whether the caller's scope
covers the node's patient.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import CTE, Select, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.care.models import Order, OrderStatus
from domain.patients.models import Patient
from domain.patients.scope import PatientScope
from domain.referrals.models import Referral, ReferralFigures

# Links form a forest (cycles are refused when made); this bound only stops a runaway query.
MAX_DEPTH = 1000
PAID = (OrderStatus.PAID, OrderStatus.REFUNDED)


class Node(NamedTuple):  # a tuple: a big tree builds 10,000 of them from its rows
    patient_id: uuid.UUID
    parent_id: uuid.UUID | None
    depth: int
    subtree_size: int
    converted: int
    converted_fen: int
    visible: bool


@dataclass(frozen=True)
class Subtree:
    nodes: list[Node]  # breadth first: the root, then depth 1, …
    truncated: bool


async def subtree(
    session: AsyncSession,
    root_id: uuid.UUID,
    depth: int,
    scope: PatientScope,
    max_nodes: int,
) -> Subtree:
    """The root and its descendants down to `depth`, with whole-subtree figures per node.

    One statement: walk down to `depth` and read each node's stored figures (kept by
    domain.referrals.figures), so the work is the nodes returned, not every pair of a node and
    a descendant."""
    walk = select(
        literal(root_id, Referral.referred_id.type).label("id"),
        literal(None, Referral.referrer_id.type).label("parent"),
        literal(0).label("depth"),
    ).cte("walk", recursive=True)
    walk = walk.union_all(
        select(Referral.referred_id, Referral.referrer_id, walk.c.depth + 1)
        .join(walk, Referral.referrer_id == walk.c.id)
        .where(walk.c.depth < min(depth, MAX_DEPTH))
    )
    figures = ReferralFigures
    stmt = select(
        walk.c.id,
        walk.c.parent,
        walk.c.depth,
        func.coalesce(figures.descendants, 0),
        func.coalesce(figures.converted, 0),
        func.coalesce(figures.converted_fen, 0),
        literal(True) if scope.chain else case((scope.clause(), True), else_=False),
    )
    if not scope.chain:  # whole-chain callers see every node: no patient row to look up
        stmt = stmt.join(Patient, Patient.id == walk.c.id)
    rows = (
        await session.execute(
            stmt.outerjoin(figures, figures.patient_id == walk.c.id)
            .order_by(walk.c.depth, walk.c.id)
            .limit(max_nodes + 1)
        )
    ).all()
    nodes = list(map(Node._make, rows[:max_nodes]))  # the columns are typed: ints, a bool
    return Subtree(nodes=nodes, truncated=len(rows) > max_nodes)


def referrers_above(patient_id: uuid.UUID) -> CTE:
    """The patient's referrer, theirs, … up to the root: columns `id` and `hops` (1 = the
    referrer). The session's tenant filter reaches it in selects and INSERT … SELECT alike."""
    up = (
        select(Referral.referrer_id.label("id"), literal(1).label("hops"))
        .where(Referral.referred_id == patient_id)
        .cte("up", recursive=True)
    )
    return up.union_all(
        select(Referral.referrer_id, up.c.hops + 1)
        .join(up, Referral.referred_id == up.c.id)
        .where(up.c.hops < MAX_DEPTH)
    )


async def ancestors(
    session: AsyncSession, patient_id: uuid.UUID, scope: PatientScope
) -> list[tuple[uuid.UUID, bool]]:
    """The referrer chain from the patient's referrer up to the root: (id, visible), nearest
    first."""
    up = referrers_above(patient_id)
    rows = await session.execute(
        select(up.c.id, case((scope.clause(), True), else_=False))
        .join(Patient, Patient.id == up.c.id)
        .order_by(up.c.hops)
    )
    return [(r[0], bool(r[1])) for r in rows]


async def is_ancestor_or_self(session: AsyncSession, candidate: uuid.UUID, of: uuid.UUID) -> bool:
    """Whether `candidate` is `of` or one of its referrers up the chain (a link
    `of → candidate` would then close a cycle)."""
    if candidate == of:
        return True
    up = referrers_above(of)
    found = await session.scalar(select(func.count()).select_from(up).where(up.c.id == candidate))
    return bool(found)


@dataclass(frozen=True)
class ReferrerFigures:
    referrer_id: uuid.UUID
    branch_id: uuid.UUID
    referred: int
    converted: int
    converted_fen: int
    visible: bool


def _referrer_figures(
    scope: PatientScope, since: datetime, until: datetime, branch_id: uuid.UUID | None
) -> Select:
    """One row per referrer with eligible referrals made in [since, until): referred, of
    whom paid in the period, what they paid (net of refunds), and whether the referrer is
    within the caller's scope."""
    paid = (
        select(
            Order.patient_id.label("pid"),
            func.sum(Order.total_fen - Order.refunded_fen).label("fen"),
        )
        .where(Order.status.in_(PAID), Order.paid_at >= since, Order.paid_at < until)
        .group_by(Order.patient_id)
        .subquery("paid")
    )
    stmt = (
        select(
            Referral.referrer_id,
            Patient.home_branch_id,
            func.count().label("referred"),
            func.count(paid.c.pid).label("converted"),
            func.coalesce(func.sum(paid.c.fen), 0).label("fen"),
            case((scope.clause(), True), else_=False).label("visible"),
        )
        .join(Patient, Patient.id == Referral.referrer_id)
        .outerjoin(paid, paid.c.pid == Referral.referred_id)
        .where(
            Referral.created_at >= since,
            Referral.created_at < until,
            Referral.eligible.is_(True),
        )
        .group_by(Referral.referrer_id, Patient.home_branch_id, "visible")
    )
    if branch_id is not None:
        stmt = stmt.where(Patient.home_branch_id == branch_id)
    return stmt


async def top_referrers(
    session: AsyncSession,
    scope: PatientScope,
    since: datetime,
    until: datetime,
    branch_id: uuid.UUID | None,
    limit: int,
) -> list[ReferrerFigures]:
    """Referrers ranked by the patients they brought in [since, until) who paid in that period,
    then by what those patients paid (net of refunds) in it. Only eligible referrals count."""
    figures = _referrer_figures(scope, since, until, branch_id).subquery()
    stmt = (
        select(figures)
        .order_by(figures.c.converted.desc(), figures.c.fen.desc(), figures.c.referrer_id)
        .limit(limit)
    )
    return [
        ReferrerFigures(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), bool(r[5]))
        for r in await session.execute(stmt)
    ]


async def count_referrers(
    session: AsyncSession,
    scope: PatientScope,
    since: datetime,
    until: datetime,
    branch_id: uuid.UUID | None,
) -> int:
    figures = _referrer_figures(scope, since, until, branch_id).subquery()
    return int(await session.scalar(select(func.count()).select_from(figures)) or 0)
