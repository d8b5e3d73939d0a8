"""A Job's import report and its rejected rows (Job.importReport, Job.rejectedRowsCsv), and
the rights every import needs: apart from the import mutation, which returns the Job type
that reads these."""

from __future__ import annotations

import uuid

from strawberry.types import Info

from api.imports.types import ImportRejection, ImportReport
from auth.guard import require
from auth.principal import Principal
from domain.imports.service import ImportService

# The rights an import needs: it reads, creates and changes any patient, contact and health.
REQUIRED = (
    ("patients:chain", "write"),
    ("fields:contact", "write"),
    ("fields:health", "write"),
)


def require_import(principal: Principal) -> None:
    for obj, act in REQUIRED:
        require(principal, obj, act)


async def import_report(info: Info, job_id: uuid.UUID) -> ImportReport | None:
    ctx = info.context
    require_import(await ctx.principal())
    report = await ImportService(ctx.session, await ctx.cipher()).report(job_id)
    if report is None:
        return None
    return ImportReport(
        created=report.created,
        updated=report.updated,
        unchanged=report.unchanged,
        rejected=report.rejected,
        rejections=[ImportRejection(row=n, reason=r) for n, r in report.rejections],
    )


async def rejected_file(info: Info, job_id: uuid.UUID) -> str | None:
    ctx = info.context
    require_import(await ctx.principal())
    text = await ImportService(ctx.session, await ctx.cipher()).rejected_file(job_id)
    if text is not None:
        ctx.trail.exported([])  # personal data leaves: logged, though it names no patient yet
    return text
