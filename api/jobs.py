"""Background jobs of the served process: started after the request that asked for them
commits, and resumed when a process starts, so a job cut off by a restart or a crash finishes
from its cursor. Each kind of job has one runner in `RUNNERS`; a runner works in batches that
take a lock on the job row, so two processes resuming the same job work in turn and never do a
batch twice."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.errors import describe_failure
from api.exports.job import run_export
from api.imports.runner import run_import_job
from domain.pool.models import Job
from domain.pool.repository import PoolRepository
from domain.pool.service import run_rescore
from domain.tenants.repository import TenantRepository
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


async def _run(sessions: async_sessionmaker[AsyncSession], job: Job, actor: str) -> None:
    try:
        async with tenant_session(sessions, job.tenant_id) as session:
            await RUNNERS[job.kind](session, job.id, actor)
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
