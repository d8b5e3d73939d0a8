"""importPatients and a Job's import report: HQ only (rights over every patient and both
field groups), through the one import service the CLI uses too."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.file_uploads import Upload
from strawberry.types import Info

from api.imports.report import require_import
from api.imports.types import (
    ImportFormat,
    ImportOptionsInput,
)
from api.pool.types import Job
from domain.errors import BadInput
from domain.imports.reader import FileFormat
from domain.imports.service import ImportOptions, ImportService, OnMatch


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
