"""The `import` job runner: the domain's batches, each with one bulk access-log entry naming
the patients it created, updated or matched (in the batch's own transaction, so the log and
the rows commit together)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from auth import access_log
from auth.access_log import AccessEvent, Action, Actor, RequestInfo
from auth.reasons import opens_to_staff
from domain.imports.models import ImportFile
from domain.imports.repository import ImportRepository
from domain.imports.service import BATCH_ROWS, run_import
from domain.patients.models import FieldGroup
from domain.pool.leases import HOLDER_INFO, LEASE, LEASE_INFO
from domain.pool.models import Job
from tenancy.keyring import FieldCipher, KeyProvider
from tenancy.keystore import load_cipher

# Where a session finds the process's key provider (process.serve puts it in every session's
# `info`), so a job resumed at start-up can open the tenant's keys like the request that
# started it.
KEY_PROVIDER_INFO = "patientpool.key_provider"
# Where a session finds the rows an import commits at a time (settings: import_batch_rows).
IMPORT_BATCH_INFO = "patientpool.import_batch_rows"
OPERATION = "importPatients"


def actor_of(subject: str) -> Actor:
    kind, _, ident = subject.partition(":")
    return Actor(kind or "system", ident or subject)


async def run_import_job(
    session: AsyncSession,
    job_id: uuid.UUID,
    actor: str,
    *,
    cipher: FieldCipher | None = None,
    batch: int | None = None,
    stop_after_batches: int | None = None,
    progress: Callable[[Job], None] = lambda _j: None,
) -> Job | None:
    if cipher is None:
        keys: KeyProvider = session.info[KEY_PROVIDER_INFO]
        async with session.begin():
            cipher = await load_cipher(session, keys)
            imp: ImportFile | None = await ImportRepository(session).file(job_id)
            # the job acts for whoever started it, also when a restart resumes it
            if imp is not None:
                actor = str(imp.options.get("actor") or actor)
    who = actor_of(actor)
    # A staff member's import changes health data only where updatePatient would let them;
    # the deployment's operator (the CLI) is no staff member and has no care to check.
    staff = uuid.UUID(who.id) if who.kind == "user" else None
    health_gate = None if staff is None else functools.partial(opens_to_staff, session, staff)

    info = RequestInfo(operation_name=OPERATION, request_id=f"job-{job_id}"[:64])

    async def log_batch(ids: list[uuid.UUID]) -> None:
        event = AccessEvent(
            Action.IMPORT,
            ids,
            (str(FieldGroup.CONTACT), str(FieldGroup.HEALTH)),
            reason=f"import Job:{job_id}",
        )
        await access_log.append(session, who, info, [event])

    return await run_import(
        session,
        cipher,
        job_id,
        log_batch,
        batch=batch or int(session.info.get(IMPORT_BATCH_INFO, BATCH_ROWS)),
        stop_after_batches=stop_after_batches,
        progress=progress,
        holder=session.info.get(HOLDER_INFO),
        lease=session.info.get(LEASE_INFO, LEASE),
        health_gate=health_gate,
    )
