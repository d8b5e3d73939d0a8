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

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.pool.models import Job, JobStatus

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
    """All SQL of job leases; the session's tenant filter (and RLS) keeps it to one tenant."""

    def __init__(self, session: AsyncSession, lease: timedelta = LEASE) -> None:
        self.session = session
        self.lease = lease

    async def claim(self, job_id: uuid.UUID, holder: str) -> Claim:
        now = _now()
        result = await self.session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status == JobStatus.RUNNING,
                or_(
                    Job.claimed_by.is_(None),
                    Job.claimed_by == holder,
                    Job.lease_until.is_(None),
                    Job.lease_until < now,
                ),
            )
            .values(claimed_by=holder, lease_until=now + self.lease)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            return Claim.CLAIMED
        status = await self.session.scalar(select(Job.status).where(Job.id == job_id))
        if status is None:
            return Claim.MISSING
        return Claim.HELD if status == JobStatus.RUNNING else Claim.ENDED

    async def renew(self, job_id: uuid.UUID, holder: str) -> bool:
        """Hold the job for another lease; False when it is no longer this holder's."""
        result = await self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.claimed_by == holder)
            .values(lease_until=_now() + self.lease)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    async def release(self, job_id: uuid.UUID, holder: str) -> None:
        await self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.claimed_by == holder)
            .values(claimed_by=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )


def holds(job: Job, holder: str | None) -> bool:
    """A locked job row still belongs to `holder` (None: a run outside the lease, as the
    domain's tests drive one)."""
    return holder is None or job.claimed_by == holder
