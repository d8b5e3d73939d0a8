"""Who works a background job: one process at a time, by lease.

A process claims a running job with one conditional UPDATE: it gets the job when nobody holds
it, when it holds it already, or when the holder's lease has run out (the holder died: killed,
crashed, cut off). While it works it renews the lease; when it stops it lets go. A second
process that tries meanwhile is told the job is held and waits for the lease to lapse, then
takes the job over from its cursor. A runner that batches checks the claim inside each batch's
locked transaction (`holds`), so a holder whose lease lapsed while it stalled stops at its next
batch instead of working beside the new one.

Times are the claiming process's clock (UTC); the processes of one deployment share a clock
within far less than a lease.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from domain.pool.models import Job, JobStatus
from domain.pool.repository import PoolRepository

LEASE = timedelta(seconds=30)
# Where a session finds the lease its process's jobs hold (AppState sets it from settings).
LEASE_INFO = "patientpool.job_lease"
# Where a runner finds the holder it runs for (a batching runner checks it in each batch).
HOLDER_INFO = "patientpool.job_holder"


class Claim(StrEnum):
    CLAIMED = "claimed"  # this process works the job now
    HELD = "held"  # another process holds a live lease: it is running
    ENDED = "ended"  # done or failed: nothing to do
    MISSING = "missing"


def new_holder() -> str:
    """A name for one run of a job in this process (host, pid, a random part)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _now() -> datetime:
    return datetime.now(UTC)


class JobLeases:
    """Claims, renewals and releases of job leases (their SQL is `PoolRepository`'s); the
    session's tenant filter (and RLS) keeps them to one tenant."""

    def __init__(self, session: AsyncSession, lease: timedelta = LEASE) -> None:
        self.session = session
        self.lease = lease
        self.repo = PoolRepository(session)

    async def claim(self, job_id: uuid.UUID, holder: str) -> Claim:
        now = _now()
        if await self.repo.claim_job(job_id, holder, now, now + self.lease):
            return Claim.CLAIMED
        status = await self.repo.job_status(job_id)
        if status is None:
            return Claim.MISSING
        return Claim.HELD if status == JobStatus.RUNNING else Claim.ENDED

    async def renew(self, job_id: uuid.UUID, holder: str) -> bool:
        """Hold the job for another lease; False when it is no longer this holder's."""
        return await self.repo.renew_job_lease(job_id, holder, _now() + self.lease)

    async def release(self, job_id: uuid.UUID, holder: str) -> None:
        await self.repo.release_job(job_id, holder)


def holds(job: Job, holder: str | None) -> bool:
    """A locked job row still belongs to `holder` (None: a run outside the lease, as the
    domain's tests drive one)."""
    return holder is None or job.claimed_by == holder
