"""`exportPatients`: HQ and branch managers export the patients of their scope as a file.

The request decides everything (who, which scope, which filter) and starts a job that finds
the patients; the file is downloaded from `GET /exports/<job id>` by the same staff member,
until it expires (see api/exports/routes.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

import strawberry
from strawberry.types import Info

from api.ids import to_global_id
from api.patients.inputs import PatientFilter
from api.patients.resolvers import row_filter_of
from api.pool.types import Job
from auth.access_log import Action
from auth.guard import require, require_patient_scope, scope_to_json
from domain.exports import models as em
from domain.exports.repository import ExportRepository, filter_to_json
from domain.patients.repository import PatientRepository

ExportFormat = strawberry.enum(
    em.ExportFormat, description="File format of an export: CSV (UTF-8) or XLSX."
)


@strawberry.type(description="Result of exportPatients.")
class ExportPatientsPayload:
    job: Job = strawberry.field(
        description="The job finding the patients; poll `job(id:)` until its status is done."
    )
    download_path: str = strawberry.field(
        description="GET this path with your bearer token once the job is done: the file, "
        "made as you may read the patients then. Only you may download it."
    )
    expires_at: datetime = strawberry.field(
        description="After this, the download answers 410 with NOT_FOUND (reason EXPORT_EXPIRED)."
    )


async def export_patients(
    info: Info,
    format: ExportFormat,  # type: ignore[valid-type]
    filter: PatientFilter | None = None,
) -> ExportPatientsPayload:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "patients", "export")
    scope = require_patient_scope(principal, ctx.trail, "read", Action.EXPORT)
    row_filter = await row_filter_of(info, filter)
    total = await PatientRepository(ctx.session).count(scope, row_filter)
    plan = {"scope": scope_to_json(scope), "filter": filter_to_json(row_filter)}
    ttl = timedelta(hours=ctx.app.settings.export_ttl_hours)
    job, export = await ExportRepository(ctx.session).start(
        principal.subject, em.ExportFormat(format), plan, total, ttl
    )
    ctx.trail.admin("patients.export", "Job", job.id, str(format))
    ctx.after_commit(lambda: ctx.app.jobs.start(job, principal.subject))
    return ExportPatientsPayload(
        job=Job.of(job),
        download_path=f"/exports/{to_global_id('Job', job.id)}",
        expires_at=export.expires_at,
    )
