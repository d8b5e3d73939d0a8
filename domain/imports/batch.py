"""One batch of an import's rows in one transaction: rows checked, matched by blind index,
new patients in one multi-row insert, matches updated as the option says, rejected rows sealed
for the file offered back, the cursor and counts moved, one access-log entry."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.imports.models import ImportRejection
from domain.imports.reader import Row
from domain.imports.repository import ImportRepository
from domain.imports.rows import IDENTITY, Checked, Reason
from domain.patients.models import BLIND_INDEXED, SEALED_FIELDS, FieldGroup, Gender, Patient
from domain.patients.repository import PatientRepository
from domain.patients.service import TABLE, seal, unseal
from domain.pool.leases import LEASE, holds
from domain.pool.models import Job, JobStatus
from tenancy.keyring import DecryptionError, FieldCipher

BatchLogger = Callable[[list[uuid.UUID]], Awaitable[None]]
# Of these existing patients, those whose health data opens to whoever runs the import (their
# own care, or a purpose they stated: auth.reasons); None when no staff member runs it.
HealthGate = Callable[[list[uuid.UUID]], Awaitable[set[uuid.UUID]]]
HEALTH_FIELDS = frozenset(n for n, g in SEALED_FIELDS.items() if g is FieldGroup.HEALTH)


class OnMatch(StrEnum):
    SKIP = "skip"
    FILL_EMPTY = "fill-empty"
    OVERWRITE = "overwrite"


def chunk_row_id(job_id: uuid.UUID, seq: int) -> uuid.UUID:
    return uuid.uuid5(job_id, f"chunk:{seq}")


def rejection_row_id(job_id: uuid.UUID, number: int) -> uuid.UUID:
    return uuid.uuid5(job_id, f"row:{number}")


class Batch:
    """One batch of rows, one transaction."""

    def __init__(
        self,
        session: AsyncSession,
        cipher: FieldCipher,
        job_id: uuid.UUID,
        on_match: OnMatch,
        log_batch: BatchLogger,
        holder: str | None = None,
        lease: timedelta = LEASE,
        health_gate: HealthGate | None = None,
        health_tags: frozenset[uuid.UUID] = frozenset(),
    ) -> None:
        self.session = session
        self.health_gate = health_gate
        self.health_tags = health_tags
        self.holder = holder
        self.lease = lease
        self.cipher = cipher
        self.job_id = job_id
        self.on_match = on_match
        self.log_batch = log_batch
        self.repo = ImportRepository(session)
        self.patients = PatientRepository(session)

    async def commit(self, pending: list[tuple[Row, Checked | Reason]]) -> Job | None:
        async with self.session.begin():
            await self.repo.relax_commit()
            locked = await self.repo.lock_job(self.job_id)
            if (
                locked is None
                or locked[0].status != JobStatus.RUNNING
                or not holds(locked[0], self.holder)
            ):
                return None  # finished elsewhere, or the lease went to another process
            job, imp = locked
            if self.holder is not None:
                # each batch renews the lease too: the heartbeat's own write may queue behind
                # batches (SQLite has one writer)
                job.lease_until = datetime.now(UTC) + self.lease
            # A process that held the job before may have done some of these rows (it
            # moved the cursor): only the rest is ours.
            todo = [(r, c) for r, c in pending if r.number > imp.row_cursor]
            if not todo:
                return job
            matches = await self._matches([c for _, c in todo if isinstance(c, Checked)])
            closed = await self._health_closed(todo, matches)
            rejected: list[tuple[Row, Reason]] = []
            created: list[Checked] = []
            matched: list[uuid.UUID] = []  # the record each matched row names, in row order
            changed: set[uuid.UUID] = set()
            tags_wanted: list[tuple[uuid.UUID, frozenset[uuid.UUID]]] = []
            for row, checked in todo:
                if isinstance(checked, Reason):
                    rejected.append((row, checked))
                    continue
                found = matches.get(checked.number, set())
                if len(found) > 1:
                    rejected.append((row, Reason.AMBIGUOUS_MATCH))
                elif not found:
                    created.append(checked)
                elif checked.number in closed:
                    rejected.append((row, Reason.REASON_REQUIRED))
                else:
                    patient = next(iter(found))
                    matched.append(patient.id)
                    if self._update(patient, checked):
                        changed.add(patient.id)
                    tags_wanted.append((patient.id, checked.tag_ids))
            new_ids = await self._create(created)
            tags_wanted.extend(zip(new_ids, (c.tag_ids for c in created), strict=True))
            changed |= await self._tags(tags_wanted, set(new_ids))
            updated = sum(1 for pid in matched if pid in changed)
            await self._reject(rejected)
            imp.row_cursor = todo[-1][0].number
            imp.created += len(created)
            imp.updated += updated
            imp.unchanged += len(matched) - updated
            imp.rejected += len(rejected)
            job.done += len(todo)
            await self.session.flush()
            touched = sorted({*matched, *new_ids})
            if touched:
                await self.log_batch(touched)
            return job

    async def _matches(self, rows: list[Checked]) -> dict[int, set[Patient]]:
        """Row number → the live records its identifiers name (a merged record counts as the
        record it was merged into)."""
        by_digest: dict[tuple[str, bytes], set[Patient]] = {}
        retired: dict[uuid.UUID, list[tuple[str, bytes]]] = {}
        wanted = {kind: {c.identity[kind] for c in rows if kind in c.identity} for kind in IDENTITY}
        for p in await self.patients.find_by_identifiers(wanted):
            for kind in IDENTITY:
                digest = getattr(p, f"{kind}_bidx")
                if digest is None or digest not in wanted[kind]:
                    continue
                key = (kind, digest)
                if p.merged_into_id is None:
                    by_digest.setdefault(key, set()).add(p)
                else:
                    retired.setdefault(p.merged_into_id, []).append(key)
        for kept in (await self.repo.patients(list(retired))).values():
            if kept.erased_at is None:
                for key in retired[kept.id]:
                    by_digest.setdefault(key, set()).add(kept)
        out: dict[int, set[Patient]] = {}
        for c in rows:
            found: set[Patient] = set()
            for key in c.identity.items():
                found |= by_digest.get(key, set())
            out[c.number] = found
        return out

    def _touches_health(self, patient: Patient, c: Checked) -> bool:
        """Whether applying the row to this record would compare or write health data (a
        health field, a health tag; a national id other than the one it holds). Decided from
        the row alone, never from the record's health values, so a refusal tells nothing of
        them."""
        if self.on_match is OnMatch.SKIP:
            return False
        if c.tag_ids & self.health_tags:
            return True
        wanted = HEALTH_FIELDS & set(c.sealed)
        if "national_id" in wanted and c.identity.get("national_id") == patient.national_id_bidx:
            wanted.discard("national_id")  # the identifier it was matched by: no change
        return bool(wanted)

    async def _health_closed(
        self, todo: list[tuple[Row, Checked | Reason]], matches: dict[int, set[Patient]]
    ) -> set[int]:
        """Row numbers to refuse with REASON_REQUIRED: matched rows that would touch the
        health data of a record outside the care of the staff member running the import (and
        with no purpose of theirs open for it), as `updatePatient` refuses the same change."""
        if self.health_gate is None:
            return set()
        asking: dict[int, uuid.UUID] = {}
        for _row, c in todo:
            if not isinstance(c, Checked):
                continue
            found = matches.get(c.number, set())
            if len(found) == 1 and self._touches_health(patient := next(iter(found)), c):
                asking[c.number] = patient.id
        if not asking:
            return set()
        opens = await self.health_gate(sorted(set(asking.values())))
        return {number for number, pid in asking.items() if pid not in opens}

    def _update(self, patient: Patient, c: Checked) -> bool:
        """Apply a matched row as the option says; True when a stored value changed."""
        if self.on_match is OnMatch.SKIP:
            return False
        fill = self.on_match is OnMatch.FILL_EMPTY
        changed = False
        for name, value in c.sealed.items():
            if getattr(patient, f"{name}_ct") is not None and (
                fill or self._same(patient, name, value)
            ):
                continue
            seal(self.cipher, patient, name, value)
            changed = True
        plain: list[tuple[str, Any, bool]] = [
            ("gender", c.gender, patient.gender == Gender.UNKNOWN),
            ("birth_year", c.birth_year, patient.birth_year is None),
            ("source_channel", c.channel, not patient.source_channel),
        ]
        if c.branch_given:
            plain.append(("home_branch_id", c.branch_id, False))
        for name, value, empty in plain:
            if value is None or getattr(patient, name) == value or (fill and not empty):
                continue
            setattr(patient, name, value)
            changed = True
        return changed

    def _same(self, patient: Patient, name: str, value: str) -> bool:
        try:
            return unseal(self.cipher, patient, name) == value
        except DecryptionError:
            return False  # a value that no longer opens is replaced by the file's

    async def _create(self, rows: list[Checked]) -> list[uuid.UUID]:
        if not rows:
            return []
        codes = await self._referral_codes(len(rows))
        now = datetime.now(UTC)
        records: list[dict[str, Any]] = []
        for c, code in zip(rows, codes, strict=True):
            pid = uuid.uuid4()
            record: dict[str, Any] = {
                "id": pid,
                "home_branch_id": c.branch_id,
                "referral_code": code,
                "gender": c.gender or str(Gender.UNKNOWN),
                "birth_year": c.birth_year,
                "source_channel": c.channel or "",
                "created_at": now,
                "updated_at": now,
            }
            for name in SEALED_FIELDS:
                value = c.sealed.get(name)
                record[f"{name}_ct"] = (
                    None
                    if value is None
                    else self.cipher.encrypt(value, table=TABLE, column=name, row_id=pid)
                )
            for name in BLIND_INDEXED:
                value = c.sealed.get(name)
                record[f"{name}_bidx"] = (
                    None if value is None else self.cipher.blind_index(value, kind=name)
                )
            records.append(record)
        await self.repo.insert_patients(records)
        return [r["id"] for r in records]

    async def _referral_codes(self, n: int) -> list[str]:
        codes: list[str] = []
        while len(codes) < n:
            fresh = {secrets.token_hex(4).upper() for _ in range(n - len(codes))} - set(codes)
            codes.extend(sorted(fresh - await self.patients.referral_codes_taken(list(fresh))))
        return codes

    async def _tags(
        self, wanted: list[tuple[uuid.UUID, frozenset[uuid.UUID]]], new: set[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Add the rows' tags each patient lacks; the existing patients that gained one (they
        count as updated). `skip` leaves a matched patient's tags as they are."""
        skip = self.on_match is OnMatch.SKIP
        wanted = [(p, t) for p, t in wanted if t and (p in new or not skip)]
        have = await self.repo.tags_of([p for p, _ in wanted if p not in new])
        pairs = [(p, t) for p, tags in wanted for t in tags if (p, t) not in have]
        await self.repo.add_tags(pairs)
        return {p for p, _ in pairs if p not in new}

    async def _reject(self, rejected: list[tuple[Row, Reason]]) -> None:
        await self.repo.add_rejections(
            [
                {
                    "job_id": self.job_id,
                    "row_number": row.number,
                    "reason": str(reason),
                    "row_ct": self.cipher.encrypt(
                        json.dumps(list(row.cells), ensure_ascii=False),
                        table=ImportRejection.__tablename__,
                        column="row_ct",
                        row_id=rejection_row_id(self.job_id, row.number),
                    ),
                }
                for row, reason in rejected
            ]
        )
