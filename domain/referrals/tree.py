"""Referral trees: a subtree with figures per node, the chain above a patient, cycle checks and
the referrers ranked for a period. The recursive CTEs that walk the links are in
domain.referrals.repository; each function here is a fixed number of statements, whatever the
depth or size.

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

from sqlalchemy.ext.asyncio import AsyncSession

from domain.patients.scope import PatientScope
from domain.referrals.repository import ReferralRepository


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
    """The root and its descendants down to `depth`, with whole-subtree figures per node."""
    rows = await ReferralRepository(session).subtree(root_id, depth, scope, max_nodes + 1)
    nodes = list(map(Node._make, rows[:max_nodes]))  # the columns are typed: ints, a bool
    return Subtree(nodes=nodes, truncated=len(rows) > max_nodes)


async def ancestors(
    session: AsyncSession, patient_id: uuid.UUID, scope: PatientScope
) -> list[tuple[uuid.UUID, bool]]:
    """The referrer chain from the patient's referrer up to the root: (id, visible), nearest
    first."""
    rows = await ReferralRepository(session).ancestors(patient_id, scope)
    return [(r[0], bool(r[1])) for r in rows]


async def is_ancestor_or_self(session: AsyncSession, candidate: uuid.UUID, of: uuid.UUID) -> bool:
    """Whether `candidate` is `of` or one of its referrers up the chain (a link
    `of → candidate` would then close a cycle)."""
    if candidate == of:
        return True
    return await ReferralRepository(session).in_referrer_chain(candidate, of)


@dataclass(frozen=True)
class ReferrerFigures:
    referrer_id: uuid.UUID
    branch_id: uuid.UUID
    referred: int
    converted: int
    converted_fen: int
    visible: bool


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
    rows = await ReferralRepository(session).top_referrers(scope, since, until, branch_id, limit)
    return [ReferrerFigures(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), bool(r[5])) for r in rows]


async def count_referrers(
    session: AsyncSession,
    scope: PatientScope,
    since: datetime,
    until: datetime,
    branch_id: uuid.UUID | None,
) -> int:
    return await ReferralRepository(session).count_referrers(scope, since, until, branch_id)
