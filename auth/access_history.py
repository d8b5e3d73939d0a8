"""A patient's own view of the access log ("who read my record"): the entries about them, read
through the index of touched patients, with what a patient may know of each actor: the kind
(staff, the patient, a service, the system), the staff member's roles and branches, and their
display name only where the chain allows it (configureMiniProgram's showStaffNames)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from auth import access_log_queries as queries
from auth.access_log import AccessLogEntry, Action
from auth.reasons import stated_id_in
from auth.repository import StaffRepository
from domain.reasons.repository import ReasonRepository


@dataclass(frozen=True)
class StaffFacts:
    display_name: str
    branch_ids: tuple[uuid.UUID, ...]


async def entries(
    session: AsyncSession, patient_id: uuid.UUID, limit: int, before_seq: int | None
) -> Sequence[AccessLogEntry]:
    return await queries.page(session, queries.LogFilter(patient_id=patient_id), limit, before_seq)


async def count(session: AsyncSession, patient_id: uuid.UUID) -> int:
    return await queries.count(session, queries.LogFilter(patient_id=patient_id))


async def purposes(
    session: AsyncSession, patient_id: uuid.UUID, rows: Sequence[AccessLogEntry]
) -> dict[int, str]:
    """The purpose stated behind each of `rows` that has one (by the entry's seq): read from
    the statement itself, not from the entry's text, and only for statements about this
    patient. An auditor's flag is the auditor's business: it names no purpose here."""
    wanted = {
        r.seq: sid
        for r in rows
        if (sid := stated_id_in(r.reason)) is not None and r.action != Action.FLAG_PURPOSE
    }
    found = await ReasonRepository(session).purposes(list(wanted.values()), patient_id)
    return {seq: found[sid] for seq, sid in wanted.items() if sid in found}


async def staff_facts(
    session: AsyncSession, rows: Sequence[AccessLogEntry]
) -> dict[str, StaffFacts]:
    """Display name and current branches of each staff actor of `rows`, by actor id."""
    ids = {uuid.UUID(r.actor_id) for r in rows if r.actor_type == "user"}
    if not ids:
        return {}
    found = await StaffRepository(session).names_and_branches(list(ids))
    names: dict[str, str] = {}
    branches: dict[str, list[uuid.UUID]] = {}
    for sid, name, branch in found:
        names[str(sid)] = name
        if branch is not None:
            branches.setdefault(str(sid), []).append(branch)
    return {k: StaffFacts(v, tuple(branches.get(k, ()))) for k, v in names.items()}
