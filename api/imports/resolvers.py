"""importPatients and a Job's import report: HQ only (rights over every patient and both
field groups), through the one import service the CLI uses too."""

from __future__ import annotations

import uuid
from typing import Annotated

import strawberry
from strawberry.file_uploads import Upload
from strawberry.types import Info

from api.imports.types import (
    ImportFormat,
    ImportOptionsInput,
    ImportRejection,
    ImportReport,
)
from api.pool.types import Job
from auth.guard import require
from auth.principal import Principal
from domain.errors import BadInput
from domain.imports.reader import FileFormat
from domain.imports.service import ImportOptions, ImportService, OnMatch

# The rights an import needs: it reads, creates and changes any patient, contact and health.
REQUIRED = (
    ("patients:chain", "write"),
    ("fields:contact", "write"),
    ("fields:health", "write"),
)


def require_import(principal: Principal) -> None:
    for obj, act in REQUIRED:
        require(principal, obj, act)


def _options(given: ImportOptionsInput | None) -> ImportOptions:
    given = given or ImportOptionsInput()
    mapping = {c.column: c.field.value for c in given.mapping or []}
    if len(mapping) != len(given.mapping or []):
        raise BadInput("mapping names a column twice", field="options.mapping")
    fmt = None if given.format is None else FileFormat(ImportFormat(given.format).value)
    return ImportOptions(
        mapping=mapping,
        on_match=OnMatch(given.on_match.value),
        branch=given.branch.strip(),
        format=fmt,
    )


async def import_patients(
    info: Info,
    file: Annotated[
        Upload,
        strawberry.argument(
            description="The CSV (UTF-8, with or without BOM, or GB18030) or XLSX file: a "
            "multipart file part, as the GraphQL multipart request spec sends it."
        ),
    ],
    options: Annotated[
        ImportOptionsInput | None,
        strawberry.argument(description="Column mapping, what a match does, default branch."),
    ] = None,
) -> Job:
    """Start a bulk import of the uploaded CSV or XLSX; follow it with `job(id)`."""
    ctx = info.context
    principal = await ctx.principal()
    require_import(principal)
    data = ctx.upload(file)
    if data is None:
        raise BadInput(
            "send the file as a multipart upload (GraphQL multipart request spec)", field="file"
        )
    service = ImportService(ctx.session, await ctx.cipher())
    job = await service.start(data, _options(options), principal.subject)
    ctx.after_commit(lambda: ctx.app.jobs.start(job, principal.subject))
    return Job.of(job)


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
