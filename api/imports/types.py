"""GraphQL types of bulk imports: the options, and the report a Job of kind import carries."""

from __future__ import annotations

from enum import Enum

import strawberry

from domain.imports.columns import ImportField as DomainImportField
from domain.imports.reader import FileFormat
from domain.imports.service import OnMatch

ImportField = strawberry.enum(
    Enum("ImportField", {f.name: f.value for f in DomainImportField}),  # type: ignore[misc]
    description="A patient field a spreadsheet column can hold.",
)


@strawberry.enum(description="What a row that matches an existing patient does.")
class ImportOnMatch(Enum):
    SKIP = OnMatch.SKIP.value
    FILL_EMPTY = OnMatch.FILL_EMPTY.value
    OVERWRITE = OnMatch.OVERWRITE.value


@strawberry.enum(description="The file's format (detected when not given).")
class ImportFormat(Enum):
    CSV = FileFormat.CSV.value
    XLSX = FileFormat.XLSX.value


@strawberry.input(description="One column of the file and the field it holds.")
class ImportColumnInput:
    column: str = strawberry.field(description="The column's header, as in the file.")
    field: ImportField = strawberry.field(description="The field it holds.")  # type: ignore[valid-type]


@strawberry.input(description="How to read the file and what a match does.")
class ImportOptionsInput:
    mapping: list[ImportColumnInput] | None = strawberry.field(
        default=None,
        description="Columns whose header is not one of the known ones (姓名/name, 手机号/phone…).",
    )
    on_match: ImportOnMatch = strawberry.field(
        default=ImportOnMatch.FILL_EMPTY,
        description="A row whose phone, WeChat id or WeCom id is a patient's already: skip "
        "it, fill only the patient's empty fields, or overwrite with the row's non-empty ones.",
    )
    branch: str = strawberry.field(
        default="main", description="Branch code for rows without a 门店/branch cell."
    )
    format: ImportFormat | None = strawberry.field(
        default=None, description="CSV or XLSX; detected from the file when null."
    )


@strawberry.type(description="A rejected row: its number (the header is row 1) and why.")
class ImportRejection:
    row: int = strawberry.field(description="The row's number, as a spreadsheet shows it.")
    reason: str = strawberry.field(
        description="bad_encoding, missing_name, too_long, bad_phone, bad_gender, "
        "bad_birth_year, unknown_branch, closed_branch, unknown_tag, no_identifier, "
        "duplicate_in_file or ambiguous_match."
    )


@strawberry.type(description="What an import did so far: counts, and each rejected row.")
class ImportReport:
    created: int = strawberry.field(description="New patients.")
    updated: int = strawberry.field(description="Matched patients that changed.")
    unchanged: int = strawberry.field(description="Matched patients left as they were.")
    rejected: int = strawberry.field(description="Rows refused (see rejections).")
    rejections: list[ImportRejection] = strawberry.field(
        description="Every rejected row, by number and reason code (no values)."
    )
