"""All SQL of the referral feature: the tree's recursive walks (domain.referrals.tree), the
stored figures' upserts and recomputation (domain.referrals.figures), the links and rewards
(domain.referrals.service), and the reads behind the referral GraphQL fields (reward rules and
the rewards recorded on a referrer).

Recursive CTEs walk the links on the database (SQLite and PostgreSQL alike); Python never loads
a whole tree. The session's tenant filter reaches every statement, their CTEs and INSERT …
SELECT included.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import CTE, Integer, Row, Select, case, delete, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from domain.care.models import Order, OrderStatus
from domain.paging import Keyset, KeysetPage, keyset_rows
from domain.patients.models import Patient
from domain.patients.scope import PatientScope
from domain.referrals.models import (
    Referral,
    ReferralFigures,
    Reward,
    RewardRule,
    RewardTrigger,
)
from tenancy.session import TenantContextError, current_tenant

# Links form a forest (cycles are refused when made); this bound only stops a runaway query.
MAX_DEPTH = 1000
PAID = (OrderStatus.PAID, OrderStatus.REFUNDED)


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


def _tenant(session: AsyncSession) -> uuid.UUID:
    tenant_id = current_tenant(session)
    if tenant_id is None:
        raise TenantContextError("referral figures need a bound tenant")
    return tenant_id


def _recomputed(session: AsyncSession) -> Select[Any]:
    """(tenant, referrer, descendants, converted, fen) from the links and the paid totals:
    every (ancestor, descendant) pair, walked up one link at a time, summed per ancestor.
    The session's tenant filter reaches every part of it (the select and the INSERT … SELECT)."""
    pairs = select(Referral.referrer_id.label("anc"), Referral.referred_id.label("des")).cte(
        "pairs", recursive=True
    )
    above = aliased(Referral, name="above")
    pairs = pairs.union_all(
        select(above.referrer_id, pairs.c.des).join(pairs, above.referred_id == pairs.c.anc)
    )
    fen = Patient.order_total_fen
    return (
        select(
            literal(_tenant(session), Referral.tenant_id.type),
            pairs.c.anc,
            func.count(),
            func.sum(case((fen > 0, 1), else_=0)),
            func.sum(fen),
        )
        .join(Patient, Patient.id == pairs.c.des)
        .group_by(pairs.c.anc)
    )


class ReferralRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- the tree ---

    async def subtree(
        self, root_id: uuid.UUID, depth: int, scope: PatientScope, limit: int
    ) -> Sequence[Row[Any]]:
        """The root and its descendants down to `depth`, breadth first, at most `limit` rows:
        (id, parent, depth, descendants, converted, converted fen, visible).

        One statement: walk down to `depth` and read each node's stored figures (kept by
        domain.referrals.figures), so the work is the nodes returned, not every pair of a node
        and a descendant."""
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
        return (
            await self.session.execute(
                stmt.outerjoin(figures, figures.patient_id == walk.c.id)
                .order_by(walk.c.depth, walk.c.id)
                .limit(limit)
            )
        ).all()

    async def ancestors(
        self, patient_id: uuid.UUID, scope: PatientScope
    ) -> Sequence[Row[tuple[uuid.UUID, bool]]]:
        """The referrer chain from the patient's referrer up to the root: (id, visible),
        nearest first."""
        up = referrers_above(patient_id)
        rows = await self.session.execute(
            select(up.c.id, case((scope.clause(), True), else_=False))
            .join(Patient, Patient.id == up.c.id)
            .order_by(up.c.hops)
        )
        return rows.all()

    async def in_referrer_chain(self, candidate: uuid.UUID, of: uuid.UUID) -> bool:
        """Whether `candidate` is one of `of`'s referrers up the chain."""
        up = referrers_above(of)
        found = await self.session.scalar(
            select(func.count()).select_from(up).where(up.c.id == candidate)
        )
        return bool(found)

    async def top_referrers(
        self,
        scope: PatientScope,
        since: datetime,
        until: datetime,
        branch_id: uuid.UUID | None,
        limit: int,
    ) -> Sequence[Row[Any]]:
        """(referrer, branch, referred, converted, fen, visible), ranked by converted, then
        fen."""
        figures = _referrer_figures(scope, since, until, branch_id).subquery()
        stmt = (
            select(figures)
            .order_by(figures.c.converted.desc(), figures.c.fen.desc(), figures.c.referrer_id)
            .limit(limit)
        )
        return (await self.session.execute(stmt)).all()

    async def count_referrers(
        self,
        scope: PatientScope,
        since: datetime,
        until: datetime,
        branch_id: uuid.UUID | None,
    ) -> int:
        figures = _referrer_figures(scope, since, until, branch_id).subquery()
        return int(await self.session.scalar(select(func.count()).select_from(figures)) or 0)

    # --- stored figures ---

    async def add_to_ancestors(
        self, patient_id: uuid.UUID, descendants: int, converted: int, fen: int
    ) -> None:
        """Add the differences to every ancestor of `patient_id` (not to the patient), in one
        statement: a recursive walk up, then an upsert."""
        up = referrers_above(patient_id)
        rows = select(
            literal(_tenant(self.session), Referral.tenant_id.type),
            up.c.id,
            literal(descendants, Integer),
            literal(converted, Integer),
            literal(fen, ReferralFigures.converted_fen.type),
        ).where(up.c.hops > 0)  # SQLite parses INSERT … SELECT … ON CONFLICT only with a WHERE
        dialect = postgresql if self.session.get_bind().dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(ReferralFigures).from_select(
            ["tenant_id", "patient_id", "descendants", "converted", "converted_fen"], rows
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "patient_id"],
            set_={
                "descendants": ReferralFigures.descendants + stmt.excluded.descendants,
                "converted": ReferralFigures.converted + stmt.excluded.converted,
                "converted_fen": ReferralFigures.converted_fen + stmt.excluded.converted_fen,
            },
        )
        await self.session.execute(stmt)

    async def own_figures(self, patient_id: uuid.UUID) -> Row[tuple[int, int, int, int]]:
        """(net paid total, descendants, converted, converted fen) of the patient itself."""
        return (
            await self.session.execute(
                select(
                    Patient.order_total_fen,
                    func.coalesce(ReferralFigures.descendants, 0),
                    func.coalesce(ReferralFigures.converted, 0),
                    func.coalesce(ReferralFigures.converted_fen, 0),
                )
                .outerjoin(ReferralFigures, ReferralFigures.patient_id == Patient.id)
                .where(Patient.id == patient_id)
            )
        ).one()

    async def paid_total_for_update(self, patient_id: uuid.UUID) -> int:
        """The patient's net paid total as committed, its row locked until the transaction
        ends (the difference of a change is taken from it)."""
        total = await self.session.scalar(
            select(Patient.order_total_fen).where(Patient.id == patient_id).with_for_update()
        )
        return int(total or 0)

    async def rewrite_figures(self) -> int:
        """Delete the bound tenant's figures and insert them recomputed from the links and the
        paid totals (two statements); returns how many referrers have figures."""
        await self.session.execute(
            delete(ReferralFigures).execution_options(synchronize_session=False)
        )
        result = await self.session.execute(
            ReferralFigures.__table__.insert().from_select(
                ["tenant_id", "patient_id", "descendants", "converted", "converted_fen"],
                _recomputed(self.session),
            )
        )
        return int(result.rowcount or 0)

    async def recomputed_figures(self) -> Sequence[Row[Any]]:
        """(tenant, referrer, descendants, converted, fen) recomputed; writes nothing."""
        return (await self.session.execute(_recomputed(self.session))).all()

    async def stored_figures(self) -> Sequence[Row[tuple[uuid.UUID, int, int, int]]]:
        """(referrer, descendants, converted, converted fen) as stored."""
        return (
            await self.session.execute(
                select(
                    ReferralFigures.patient_id,
                    ReferralFigures.descendants,
                    ReferralFigures.converted,
                    ReferralFigures.converted_fen,
                )
            )
        ).all()

    # --- links ---

    async def patient_by_referral_code(self, code: str) -> Patient | None:
        return await self.session.scalar(select(Patient).where(Patient.referral_code == code))

    async def others_with_identifier(
        self, name: str, digest: bytes, referrer: Patient, referred: Patient
    ) -> int:
        """How many patients besides these two carry the blind index `digest` of `name`
        (another record of the same person)."""
        column = getattr(Patient, f"{name}_bidx")
        return int(
            await self.session.scalar(
                select(func.count())
                .select_from(Patient)
                .where(column == digest, Patient.id != referred.id, Patient.id != referrer.id)
            )
            or 0
        )

    async def referrer_id_of(self, referred: Patient) -> uuid.UUID | None:
        return await self.session.scalar(
            select(Referral.referrer_id).where(Referral.referred_id == referred.id)
        )

    async def link_of(self, referred_id: uuid.UUID) -> Referral | None:
        return await self.session.scalar(
            select(Referral).where(Referral.referred_id == referred_id)
        )

    async def eligible_referrals(self, referrer: Patient) -> int:
        return int(
            await self.session.scalar(
                select(func.count())
                .select_from(Referral)
                .where(Referral.referrer_id == referrer.id, Referral.eligible.is_(True))
            )
            or 0
        )

    # --- reward rules and rewards ---

    async def reward_rules(self) -> Sequence[RewardRule]:
        return (await self.session.scalars(select(RewardRule))).all()

    async def reward_rule(self, rule_id: uuid.UUID) -> RewardRule | None:
        return await self.session.scalar(select(RewardRule).where(RewardRule.id == rule_id))

    async def active_rules(self, trigger: RewardTrigger) -> list[RewardRule]:
        """The active rules for `trigger`, lowest threshold first."""
        return list(
            (
                await self.session.scalars(
                    select(RewardRule)
                    .where(RewardRule.trigger == trigger, RewardRule.active.is_(True))
                    .order_by(RewardRule.threshold, RewardRule.id)
                )
            ).all()
        )

    async def has_reward(self, dedupe_key: str) -> bool:
        """Whether a reward with this dedupe key is recorded."""
        found = await self.session.scalar(select(Reward.id).where(Reward.dedupe_key == dedupe_key))
        return found is not None

    @staticmethod
    def rewards_of(referrer: Patient) -> Select[Any]:
        """The rewards recorded on `referrer`."""
        return select(Reward).where(Reward.referrer_id == referrer.id)

    async def reward_page(
        self, referrer: Patient, limit: int, after: Keyset | None
    ) -> KeysetPage[Reward]:
        """A page of the rewards recorded on `referrer`, by creation time."""
        stmt = self.rewards_of(referrer)
        return await keyset_rows(self.session, stmt, Reward, Reward.created_at, limit, after)
