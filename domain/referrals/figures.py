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
figures`). The statements are domain.referrals.repository's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from domain.referrals.repository import ReferralRepository
from tenancy.session import lock_tenant

LOCK = "referrals"


async def _add(
    session: AsyncSession, patient_id: uuid.UUID, descendants: int, converted: int, fen: int
) -> None:
    """Add the differences to every ancestor of `patient_id` (not to the patient)."""
    if not (descendants or converted or fen):
        return
    await ReferralRepository(session).add_to_ancestors(patient_id, descendants, converted, fen)


async def linked(session: AsyncSession, referred_id: uuid.UUID) -> None:
    """After a link to `referred_id` was flushed (under the exclusive lock `link` takes):
    its referrer and their ancestors gain the patient and the patient's own subtree."""
    own = await ReferralRepository(session).own_figures(referred_id)
    fen, descendants, converted, converted_fen = (int(v) for v in own)
    await _add(session, referred_id, 1 + descendants, int(fen > 0) + converted, fen + converted_fen)


async def lock_paid_total(session: AsyncSession, patient_id: uuid.UUID) -> int:
    """Before a patient's net paid total changes: hold the tree still (shared lock) and the
    patient's row, and return the total as committed (the difference is taken from it)."""
    await lock_tenant(session, LOCK, shared=True)
    return await ReferralRepository(session).paid_total_for_update(patient_id)


async def paid_total_changed(
    session: AsyncSession, patient_id: uuid.UUID, old: int, new: int
) -> None:
    """The patient's net paid total went from `old` to `new` (after `lock_paid_total`)."""
    await _add(session, patient_id, 0, int(new > 0) - int(old > 0), new - old)


async def rebuild(session: AsyncSession) -> int:
    """Recompute the bound tenant's figures from the links and the paid totals (a bulk load
    writes links directly, then calls this). Returns how many referrers have figures."""
    await lock_tenant(session, LOCK)
    return await ReferralRepository(session).rewrite_figures()


@dataclass(frozen=True)
class Check:
    referrers: int  # referrers with figures, recomputed
    drifted: int  # referrers whose stored figures differ from the recomputation


async def check(session: AsyncSession) -> Check:
    """Compare the bound tenant's stored figures with a recomputation; changes nothing."""
    await lock_tenant(session, LOCK)  # no link moves the tree meanwhile
    repo = ReferralRepository(session)
    want = {r[1]: tuple(map(int, r[2:])) for r in await repo.recomputed_figures()}
    have = {
        r[0]: tuple(map(int, r[1:]))
        for r in await repo.stored_figures()
        if tuple(r[1:]) != (0, 0, 0)
    }
    drifted = sum(1 for k in want.keys() | have.keys() if want.get(k) != have.get(k))
    return Check(len(want), drifted)
