"""Background jobs of the served process (rescoring): started after the request that asked
for them commits, and resumed when a process starts, so a job cut off by a restart or a crash
finishes from its cursor. Batches take a lock on the job row, so two processes resuming the
same job work in turn and never rescore a batch twice."""

from __future__ import annotations

import asyncio
import logging
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.errors import describe_failure
from domain.pool.models import Job, JobStatus
from domain.pool.service import run_rescore
from domain.tenants.models import Tenant
from tenancy.session import bind_tenant

log = logging.getLogger(__name__)
RESUMED_BY = "system:resume"
_background: set[asyncio.Task[None]] = set()


async def _run(
    sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID, job_id: uuid.UUID, actor: str
) -> None:
    try:
        async with sessions() as session:
            await bind_tenant(session, tenant_id)
            await run_rescore(session, job_id, actor)
    except Exception as exc:  # noqa: BLE001  (a job's failure is logged, the process goes on)
        log.error("rescore job %s failed: %s", job_id, describe_failure(exc))


def start_rescore(
    sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID, job_id: uuid.UUID, actor: str
) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(_run(sessions, tenant_id, job_id, actor))
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def resume_jobs(sessions: async_sessionmaker[AsyncSession]) -> list[asyncio.Task[None]]:
    """Start every job left `running`, tenant by tenant (the app role sees one tenant at a
    time)."""
    started = []
    async with sessions() as session, session.begin():
        tenants = (await session.scalars(select(Tenant.id))).all()
    for tenant_id in tenants:
        async with sessions() as session:  # a session is bound to one tenant for its life
            await bind_tenant(session, tenant_id)
            async with session.begin():
                stmt = select(Job.id).where(Job.status == JobStatus.RUNNING)
                running = (await session.scalars(stmt)).all()
        for job_id in running:
            log.info("resuming job %s", job_id)
            started.append(start_rescore(sessions, tenant_id, job_id, RESUMED_BY))
    return started
