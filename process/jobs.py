"""Background jobs of the served process: started after the request that asked for them
commits, and resumed when a process starts, so a job cut off by a restart or a crash finishes
from its cursor. Each kind of job has one runner in `RUNNERS`; a runner works in batches that
take a lock on the job row.

One process works a job at a time (domain/pool/leases.py): `run_leased` claims it, renews the
lease while the runner works and lets go at the end. Another process that starts the same job
meanwhile sees it held and waits; if the holder dies, its lease lapses and the waiting process
claims the job and goes on from the cursor."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.errors import describe_failure
from domain.pool.leases import HOLDER_INFO, LEASE, LEASE_INFO, Claim, JobLeases, new_holder
from domain.pool.models import Job
from domain.pool.repository import PoolRepository
from domain.pool.service import run_rescore
from domain.tenants.repository import TenantRepository
from process.export_job import run_export
from process.import_job import IMPORT_BATCH_INFO, KEY_PROVIDER_INFO, run_import_job
from process.settings import Settings
from tenancy.keyring import KeyProvider
from tenancy.session import tenant_session

log = logging.getLogger(__name__)
RESUMED_BY = "system:resume"

# a runner takes a session bound to the job's tenant, the job id and the acting subject
Runner = Callable[[AsyncSession, uuid.UUID, str], Awaitable[Any]]

RUNNERS: dict[str, Runner] = {
    "rescore": run_rescore,
    "export": run_export,
    "import": run_import_job,
}

_background: set[asyncio.Task[None]] = set()


def configure_job_sessions(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    key_provider: KeyProvider | None = None,
) -> None:
    """Put in the info of every session the factory opens what a job reads there: its lease,
    the import's batch size and (for jobs that load the cipher themselves) the key provider.
    A job gets a bare session, so this is how it reaches them. The factory's own info (the
    statement timeout) is kept: `configure` replaces the dict."""
    info: dict[str, object] = {
        **sessions.kw.get("info", {}),
        LEASE_INFO: timedelta(seconds=settings.job_lease_seconds),
        IMPORT_BATCH_INFO: settings.import_batch_rows,
    }
    if key_provider is not None:
        info[KEY_PROVIDER_INFO] = key_provider
    sessions.configure(info=info)


async def run_leased(
    sessions: async_sessionmaker[AsyncSession],
    job: Job,
    actor: str,
    runner: Runner,
    *,
    on_wait: Callable[[], None] = lambda: None,
) -> Claim:
    """Claim the job (waiting while another live process holds it), run it, let go. Returns
    how the claim ended: CLAIMED when this process ran it, ENDED or MISSING otherwise."""
    holder = new_holder()
    job_id = job.id
    # one session for the claim, the runner and the release
    async with tenant_session(sessions, job.tenant_id) as session:
        lease: timedelta = session.info.get(LEASE_INFO, LEASE)
        leases = JobLeases(session, lease)
        waited = False
        while True:
            async with session.begin():
                claim = await leases.claim(job_id, holder)
            if claim is not Claim.HELD:
                break
            if not waited:
                log.info("job %s is held by another process; waiting for its lease", job_id)
                on_wait()
                waited = True
            await asyncio.sleep(min(lease.total_seconds() / 3, 5.0))
        if claim is not Claim.CLAIMED:
            return claim
        if waited:
            log.info("job %s: the holder's lease lapsed; taking it over", job_id)
        session.info[HOLDER_INFO] = holder
        beat = asyncio.get_running_loop().create_task(_heartbeat(sessions, job, holder, lease))
        try:
            await runner(session, job_id, actor)
        finally:
            beat.cancel()
            session.info.pop(HOLDER_INFO, None)
            if session.in_transaction():
                await session.rollback()
            async with session.begin():
                await leases.release(job_id, holder)
    return Claim.CLAIMED


async def _heartbeat(
    sessions: async_sessionmaker[AsyncSession], job: Job, holder: str, lease: timedelta
) -> None:
    """Renew the lease a third of the way through it, in a session of its own (the runner's
    is busy with a batch)."""
    while True:
        await asyncio.sleep(lease.total_seconds() / 3)
        try:
            async with tenant_session(sessions, job.tenant_id) as session, session.begin():
                if not await JobLeases(session, lease).renew(job.id, holder):
                    log.error("job %s: the lease went to another process", job.id)
                    return
        except Exception as exc:  # noqa: BLE001  (the next beat tries again)
            log.error("job %s: lease renewal failed: %s", job.id, describe_failure(exc))


async def _run(sessions: async_sessionmaker[AsyncSession], job: Job, actor: str) -> None:
    try:
        await run_leased(sessions, job, actor, RUNNERS[job.kind])
    except Exception as exc:  # noqa: BLE001  (a job's failure is logged, the process goes on)
        log.error("%s job %s failed: %s", job.kind, job.id, describe_failure(exc))


def start_job(
    sessions: async_sessionmaker[AsyncSession], job: Job, actor: str
) -> asyncio.Task[None]:
    """Run `job` (a row its request flushed, or one left running) in the background, in a
    session bound to the job's tenant."""
    if job.kind not in RUNNERS:
        raise ValueError(f"no runner for job kind {job.kind!r}")
    task = asyncio.get_running_loop().create_task(_run(sessions, job, actor))
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def resume_jobs(sessions: async_sessionmaker[AsyncSession]) -> list[asyncio.Task[None]]:
    """Start every job left `running`, tenant by tenant (the app role sees one tenant at a
    time)."""
    started = []
    async with sessions() as session, session.begin():
        tenants = await TenantRepository(session).ids()
    for tenant_id in tenants:
        # a session is bound to one tenant for its life
        async with tenant_session(sessions, tenant_id) as session, session.begin():
            running = await PoolRepository(session).running_jobs()
        for job in running:
            if job.kind not in RUNNERS:
                log.error("job %s has unknown kind %s; left as it is", job.id, job.kind)
                continue
            log.info("resuming job %s (%s)", job.id, job.kind)
            started.append(start_job(sessions, job, RESUMED_BY))
    return started


@dataclass(frozen=True)
class ServedJobs:
    """The served app's background jobs (api.context.BackgroundJobs): a request's job starts
    in this process once the request commits; at start, one process resumes those left."""

    sessions: async_sessionmaker[AsyncSession]

    def start(self, job: Job, actor: str) -> asyncio.Task[None]:
        return start_job(self.sessions, job, actor)

    async def resume(self) -> list[asyncio.Task[None]]:
        return await resume_jobs(self.sessions)
