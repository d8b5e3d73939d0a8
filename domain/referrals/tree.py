"""Referral trees in SQL: recursive CTEs walk the links on the database (SQLite and PostgreSQL
alike); Python never loads a whole tree. Each function is a fixed number of statements,
whatever the depth or size.

Per node: `subtree_size` counts everyone the node brought directly or indirectly (not the node
itself); `converted` counts those of them with net paid orders, `converted_fen` sums their net
paid amounts; `visible` says whether the caller's scope covers the node's patient.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.care.models import Order, OrderStatus
from domain.patients.models import Patient
from domain.patients.scope import PatientScope
from domain.referrals.models import Referral

# Links form a forest (cycles are refused when made); this bound only stops a runaway query.
MAX_DEPTH = 1000
PAID = (OrderStatus.PAID, OrderStatus.REFUNDED)


@dataclass(frozen=True)
class Node:
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

    One statement: walk the whole subtree once (with each node's paid total), then pair every
    returned node with its descendants by walking that walked set, not the tables again, so
    the work is the number of (ancestor, descendant) pairs, with no index probe per pair."""
    full = select(
        literal(root_id, Referral.referred_id.type).label("id"),
        literal(None, Referral.referrer_id.type).label("parent"),
        literal(0).label("depth"),
    ).cte("full_tree", recursive=True)
    full = full.union_all(
        select(Referral.referred_id, Referral.referrer_id, full.c.depth + 1)
        .join(full, Referral.referrer_id == full.c.id)
        .where(full.c.depth < MAX_DEPTH)
    )
    walked = (
        select(full.c.id, full.c.parent, full.c.depth, Patient.order_total_fen.label("fen"))
        .join(Patient, Patient.id == full.c.id)
        .cte("nodes")
    )
    # (ancestor, descendant) pairs, carrying what the answer needs, so that nothing is joined
    # afterwards (the planner cannot size a recursive result and would loop over it).
    pairs = (
        select(
            walked.c.id.label("anc"),
            walked.c.parent,
            walked.c.depth,
            walked.c.id.label("des"),
            walked.c.fen,
            literal(0).label("hops"),
        )
        .where(walked.c.depth <= depth)
        .cte("pairs", recursive=True)
    )
    child = walked.alias("child")
    pairs = pairs.union_all(
        select(
            pairs.c.anc, pairs.c.parent, pairs.c.depth, child.c.id, child.c.fen, pairs.c.hops + 1
        ).join(child, child.c.parent == pairs.c.des)
    )
    below = pairs.c.hops > 0
    figures = (
        select(
            pairs.c.anc,
            pairs.c.parent,
            pairs.c.depth,
            (func.count() - 1).label("size"),
            func.sum(case((below & (pairs.c.fen > 0), 1), else_=0)).label("converted"),
            func.sum(case((below, pairs.c.fen), else_=0)).label("fen"),
        )
        .group_by(pairs.c.anc, pairs.c.parent, pairs.c.depth)
        .subquery("figures")
    )
    rows = (
        await session.execute(
            select(
                figures.c.anc,
                figures.c.parent,
                figures.c.depth,
                figures.c.size,
                figures.c.converted,
                figures.c.fen,
                case((scope.clause(), True), else_=False).label("visible"),
            )
            .join(Patient, Patient.id == figures.c.anc)
            .order_by(figures.c.depth, figures.c.anc)
            .limit(max_nodes + 1)
        )
    ).all()
    nodes = [
        Node(r.anc, r.parent, r.depth, int(r.size), int(r.converted), int(r.fen), bool(r.visible))
        for r in rows[:max_nodes]
    ]
    return Subtree(nodes=nodes, truncated=len(rows) > max_nodes)


async def ancestors(
    session: AsyncSession, patient_id: uuid.UUID, scope: PatientScope
) -> list[tuple[uuid.UUID, bool]]:
    """The referrer chain from the patient's referrer up to the root: (id, visible), nearest
    first."""
    up = (
        select(Referral.referrer_id.label("id"), literal(1).label("hops"))
        .where(Referral.referred_id == patient_id)
        .cte("up", recursive=True)
    )
    up = up.union_all(
        select(Referral.referrer_id, up.c.hops + 1)
        .join(up, Referral.referred_id == up.c.id)
        .where(up.c.hops < MAX_DEPTH)
    )
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
    up = (
        select(Referral.referrer_id.label("id"), literal(1).label("hops"))
        .where(Referral.referred_id == of)
        .cte("up", recursive=True)
    )
    up = up.union_all(
        select(Referral.referrer_id, up.c.hops + 1)
        .join(up, Referral.referred_id == up.c.id)
        .where(up.c.hops < MAX_DEPTH)
    )
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
