"""Stored referral figures: per referrer, the whole subtree's size, converted count and net paid
fen (domain.referrals.models.ReferralFigures), kept exact as the tree and the payments change.

Computing them on read pairs every node with every descendant, which on a 10,000-node tree
costs more than the whole answer may take. Instead each change adds its difference to every
ancestor of the patient it touches, in one statement (a recursive walk up, then an upsert):
- a link adds the newly referred patient (and whatever subtree they already had) to the
  referrer and the referrer's ancestors (`linked`);
- a change of a patient's net paid total adds the difference to their ancestors
  (`paid_total_changed`).

Concurrency (PostgreSQL): additions are relative (`x = x + d`), so payments in different
subtrees commute under row locks. A link reads the newly referred patient's figures and moves
the tree, so it holds the tenant's "referrals" lock exclusively; a payment holds it shared, so
it never runs between a link's read and its write. `rebuild` recomputes everything from the
tables (after a bulk load) and `check` compares without writing (`patientpool referrals
figures`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Select, case, delete, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from domain.patients.models import Patient
from domain.referrals.models import Referral, ReferralFigures
from domain.referrals.tree import referrers_above
from tenancy.session import TenantContextError, current_tenant, lock_tenant

LOCK = "referrals"


def _tenant(session: AsyncSession) -> uuid.UUID:
    tenant_id = current_tenant(session)
    if tenant_id is None:
        raise TenantContextError("referral figures need a bound tenant")
    return tenant_id


async def _add(
    session: AsyncSession, patient_id: uuid.UUID, descendants: int, converted: int, fen: int
) -> None:
    """Add the differences to every ancestor of `patient_id` (not to the patient)."""
    if not (descendants or converted or fen):
        return
    up = referrers_above(patient_id)
    rows = select(
        literal(_tenant(session), Referral.tenant_id.type),
        up.c.id,
        literal(descendants, Integer),
        literal(converted, Integer),
        literal(fen, ReferralFigures.converted_fen.type),
    ).where(up.c.hops > 0)  # SQLite parses INSERT … SELECT … ON CONFLICT only with a WHERE
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
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
    await session.execute(stmt)


async def linked(session: AsyncSession, referred_id: uuid.UUID) -> None:
    """After a link to `referred_id` was flushed (under the exclusive lock `link` takes):
    its referrer and their ancestors gain the patient and the patient's own subtree."""
    own = (
        await session.execute(
            select(
                Patient.order_total_fen,
                func.coalesce(ReferralFigures.descendants, 0),
                func.coalesce(ReferralFigures.converted, 0),
                func.coalesce(ReferralFigures.converted_fen, 0),
            )
            .outerjoin(ReferralFigures, ReferralFigures.patient_id == Patient.id)
            .where(Patient.id == referred_id)
        )
    ).one()
    fen, descendants, converted, converted_fen = (int(v) for v in own)
    await _add(session, referred_id, 1 + descendants, int(fen > 0) + converted, fen + converted_fen)


async def lock_paid_total(session: AsyncSession, patient_id: uuid.UUID) -> int:
    """Before a patient's net paid total changes: hold the tree still (shared lock) and the
    patient's row, and return the total as committed (the difference is taken from it)."""
    await lock_tenant(session, LOCK, shared=True)
    total = await session.scalar(
        select(Patient.order_total_fen).where(Patient.id == patient_id).with_for_update()
    )
    return int(total or 0)


async def paid_total_changed(
    session: AsyncSession, patient_id: uuid.UUID, old: int, new: int
) -> None:
    """The patient's net paid total went from `old` to `new` (after `lock_paid_total`)."""
    await _add(session, patient_id, 0, int(new > 0) - int(old > 0), new - old)


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


async def rebuild(session: AsyncSession) -> int:
    """Recompute the bound tenant's figures from the links and the paid totals (a bulk load
    writes links directly, then calls this). Returns how many referrers have figures."""
    await lock_tenant(session, LOCK)
    await session.execute(delete(ReferralFigures).execution_options(synchronize_session=False))
    result = await session.execute(
        ReferralFigures.__table__.insert().from_select(
            ["tenant_id", "patient_id", "descendants", "converted", "converted_fen"],
            _recomputed(session),
        )
    )
    return int(result.rowcount or 0)


@dataclass(frozen=True)
class Check:
    referrers: int  # referrers with figures, recomputed
    drifted: int  # referrers whose stored figures differ from the recomputation


async def check(session: AsyncSession) -> Check:
    """Compare the bound tenant's stored figures with a recomputation; changes nothing."""
    await lock_tenant(session, LOCK)  # no link moves the tree meanwhile
    want = {r[1]: tuple(map(int, r[2:])) for r in await session.execute(_recomputed(session))}
    have = {
        r[0]: tuple(map(int, r[1:]))
        for r in await session.execute(
            select(
                ReferralFigures.patient_id,
                ReferralFigures.descendants,
                ReferralFigures.converted,
                ReferralFigures.converted_fen,
            )
        )
        if tuple(r[1:]) != (0, 0, 0)
    }
    drifted = sum(1 for k in want.keys() | have.keys() if want.get(k) != have.get(k))
    return Check(len(want), drifted)
