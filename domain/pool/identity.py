"""One patient, one record: duplicate candidates by blind index, and merging two records."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.campaigns.models import Delivery
from domain.care.models import Order, Visit
from domain.consent.models import ConsentRecord, ConsentState
from domain.door.service import move_identities
from domain.errors import BadInput
from domain.patients.models import SEALED_FIELDS, ChannelTouch, LifecycleStage, Patient
from domain.patients.scope import PatientScope
from domain.patients.service import seal, unseal
from domain.pool.models import FollowUp, InteractionEvent, PatientTag, StageChange
from domain.pool.repository import IdentityRepository
from domain.referrals import figures
from domain.referrals.models import Referral
from domain.referrals.tree import is_ancestor_or_self
from domain.wecom.models import WecomCallback
from tenancy.keyring import FieldCipher
from tenancy.session import lock_tenant

MATCHED_ON = ("phone", "wechat_id", "wecom_external_id", "national_id")


@dataclass(frozen=True)
class DuplicateGroup:
    matched_on: str
    patient_ids: list[uuid.UUID]


# Scopes narrowing the look-up for some identifiers (`possible_duplicates`' `narrowed`).
Narrowed = Mapping[str, PatientScope]


async def possible_duplicates(
    session: AsyncSession,
    scope: PatientScope,
    limit: int,
    names: Sequence[str] = MATCHED_ON,
    narrowed: Narrowed | None = None,
) -> list[DuplicateGroup]:
    """Groups of live records (within scope) sharing an exact identifier (one of `names`;
    for a name in `narrowed`, only records within that scope too). OneID makes such pairs on
    purpose: a caller who could not see the known person got a new lead with the same
    identifier, listed here for HQ to merge."""
    narrowed = narrowed or {}
    repo = IdentityRepository(session)
    groups: list[DuplicateGroup] = []
    for name in names:
        digests = await repo.shared_digests(scope, name, narrowed, limit)
        if not digests:
            continue
        rows = await repo.digest_holders(scope, name, narrowed, digests)
        by_digest: dict[bytes, list[uuid.UUID]] = {}
        for digest, pid in rows:
            by_digest.setdefault(digest, []).append(pid)
        groups += [DuplicateGroup(name, ids) for ids in by_digest.values()]
    return groups[:limit]


async def count_duplicate_groups(
    session: AsyncSession,
    scope: PatientScope,
    names: Sequence[str] = MATCHED_ON,
    narrowed: Narrowed | None = None,
) -> int:
    """How many groups `possible_duplicates` would list with no limit."""
    repo = IdentityRepository(session)
    total = 0
    for name in names:
        total += await repo.count_shared_digests(scope, name, narrowed or {})
    return total


# Lifecycle stages in the order a patient moves through them; a merged record takes the
# further of the two (LOST ranks below every other stage).
_STAGE_RANK = {stage: rank for rank, stage in enumerate(LifecycleStage)}
_STAGE_RANK[LifecycleStage.LOST] = -1


async def merge(session: AsyncSession, cipher: FieldCipher, keep: Patient, other: Patient) -> None:
    """One transaction's worth: move everything `other` owns onto `keep` (visits, orders and
    their refunds, follow-ups, events, stage history, tags, consents, referral links in both
    directions, rewards, campaign deliveries, WeCom callbacks, the WeChat identities the
    patient signs in with), fill `keep`'s empty sealed
    fields from `other` (re-sealed for keep's row), then retire `other`.

    The books stay whole: revenue moves with the orders, the earliest visit and the earliest
    paid order of the two records become the person's first (初诊, 首单), and the referral
    figures are recomputed from the links (see `_relink`)."""
    if keep.id == other.id:
        raise BadInput("cannot merge a patient with itself", field="mergeId")
    if other.merged_into_id is not None or other.erased_at is not None:
        raise BadInput("that record was already merged or erased", field="mergeId")
    if keep.merged_into_id is not None or keep.erased_at is not None:
        raise BadInput("that record was already merged or erased", field="keepId")
    # No payment, refund or link moves the tree or the totals while the books are moved.
    await lock_tenant(session, figures.LOCK)
    await session.refresh(keep, with_for_update=True)
    await session.refresh(other, with_for_update=True)
    repo = IdentityRepository(session)
    for model in (
        InteractionEvent,
        FollowUp,
        StageChange,
        Visit,
        Order,
        ConsentRecord,
        ChannelTouch,
    ):
        await repo.move_rows(model, other.id, keep.id)
    await repo.move_rows(WecomCallback, other.id, keep.id)
    await move_identities(session, cipher, other, keep)
    await repo.move_unique_rows(Delivery, "campaign_id", other.id, keep.id)
    await _merge_consent_states(session, repo, other.id, keep.id)
    keep_tags = set(await repo.tag_ids_of(keep.id))
    for tag in await repo.patient_tags(other.id):
        if tag.tag_id not in keep_tags:
            session.add(PatientTag(patient_id=keep.id, tag_id=tag.tag_id, source=tag.source))
        await session.delete(tag)
    await _reflag_firsts(repo, keep.id)
    for name in SEALED_FIELDS:
        if getattr(keep, f"{name}_ct") is None and getattr(other, f"{name}_ct") is not None:
            seal(cipher, keep, name, unseal(cipher, other, name))
        seal(cipher, other, name, None)
    if keep.consent_at is None:
        keep.consent_at = other.consent_at
    keep.last_visit_at = _later(keep.last_visit_at, other.last_visit_at)
    keep.last_interaction_at = _later(keep.last_interaction_at, other.last_interaction_at)
    if (
        _STAGE_RANK[LifecycleStage(other.lifecycle_stage)]
        > _STAGE_RANK[LifecycleStage(keep.lifecycle_stage)]
    ):
        keep.lifecycle_stage = other.lifecycle_stage
    keep.order_total_fen += other.order_total_fen
    other.order_total_fen = 0
    other.merged_into_id = keep.id
    # Records merged into `other` before now point at `keep`: one hop from any retired id.
    await repo.repoint_merged(other.id, keep.id)
    await session.flush()
    await _relink(session, repo, keep, other)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return max((t for t in (a, b) if t is not None), default=None)


async def _merge_consent_states(
    session: AsyncSession, repo: IdentityRepository, old: uuid.UUID, new: uuid.UUID
) -> None:
    """Per (purpose, channel) the consent in force is the later of the two records'."""
    kept = {(s.purpose, s.channel): s for s in await repo.consent_states(new)}
    for state in await repo.consent_states(old):
        mine = kept.get((state.purpose, state.channel))
        if mine is None:
            session.add(
                ConsentState(
                    patient_id=new,
                    purpose=state.purpose,
                    channel=state.channel,
                    granted=state.granted,
                    text_version=state.text_version,
                    since=state.since,
                    record_id=state.record_id,
                )
            )
        elif state.since > mine.since:
            mine.granted, mine.text_version = state.granted, state.text_version
            mine.since, mine.record_id = state.since, state.record_id
        await session.delete(state)
    await session.flush()


async def _reflag_firsts(repo: IdentityRepository, patient_id: uuid.UUID) -> None:
    """One person has one first visit and one first paid order: the earliest of each."""
    for model in (Visit, Order):
        first = await repo.earliest(model, patient_id)
        if first is None:
            continue
        await repo.flag_first(model, patient_id, first)


async def _relink(
    session: AsyncSession, repo: IdentityRepository, keep: Patient, other: Patient
) -> None:
    """Referral links of the retired record, both ways, onto the kept one, with no cycle and at
    most one referrer; then the stored figures and referral counts recomputed from the links.

    - keep brought in by `other` or by someone in other's subtree: that link would close a
      cycle once the two are one person, so it goes;
    - other's own referrer becomes keep's, unless keep already has one or the referrer is in
      keep's subtree (or keep itself);
    - everyone other brought is now brought by keep."""
    counted: set[uuid.UUID] = {keep.id, other.id}
    mine = await repo.referral_of(keep.id)
    if mine is not None and await is_ancestor_or_self(session, other.id, keep.id):
        counted.add(mine.referrer_id)
        await session.delete(mine)
        mine = None
        await session.flush()
    theirs = await repo.referral_of(other.id)
    if theirs is not None:
        counted.add(theirs.referrer_id)
        if mine is None and not await is_ancestor_or_self(session, keep.id, theirs.referrer_id):
            session.add(
                Referral(
                    referred_id=keep.id,
                    referrer_id=theirs.referrer_id,
                    channel=theirs.channel,
                    created_at=theirs.created_at,
                    eligible=theirs.eligible,
                    ineligible_reason=theirs.ineligible_reason,
                )
            )
        await session.delete(theirs)
        await session.flush()
    await repo.move_referrals(other.id, keep.id)
    await repo.move_rewards(other.id, keep.id)
    await session.flush()
    links = await repo.referral_counts(sorted(counted))
    for patient in await repo.patients(sorted(counted)):
        patient.referral_count = int(links.get(patient.id, 0))
    await session.flush()
    await figures.rebuild(session)
