"""An export's file: one row per patient, one column per field the caller may read, each value
exactly as `patients` answers it to the same caller (masked where their role sees it masked;
the columns of a field group they may not read are left out). Made in memory on download:
CSV (UTF-8 with a BOM, so spreadsheet programs read the Chinese right) or XLSX (XlsxWriter in
its in-memory mode: openpyxl writes each sheet to a temporary file first, which would put the
plaintext on disk)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import xlsxwriter
from strawberry.utils.str_converters import to_camel_case

from api.ids import to_global_id
from auth.guard import Visibility, field_visibility, mask_value
from auth.principal import Principal
from domain.exports.models import ExportFormat
from domain.patients import models as m
from domain.patients.models import SEALED_FIELDS, FieldGroup
from domain.patients.models import Patient as PatientRow
from domain.patients.service import unseal
from tenancy.keyring import DecryptionError, FieldCipher

Cell = str | int | bool | None

# (GraphQL field name, value of a row) for the fields every reader of the list may read.
PLAIN: list[tuple[str, Callable[[PatientRow], Cell]]] = [
    ("id", lambda p: to_global_id("Patient", p.id)),
    ("gender", lambda p: m.Gender(p.gender).name),
    ("birthYear", lambda p: p.birth_year),
    ("sourceChannel", lambda p: p.source_channel),
    ("poolTier", lambda p: m.PoolTier(p.pool_tier).name),
    ("lifecycleStage", lambda p: m.LifecycleStage(p.lifecycle_stage).name),
    ("trustLevel", lambda p: m.TrustLevel(p.trust_level).name),
    ("leadScore", lambda p: p.lead_score),
    ("consented", lambda p: p.consent_at is not None),
    ("homeBranchId", lambda p: to_global_id("Branch", p.home_branch_id)),
    ("createdAt", lambda p: p.created_at.isoformat()),
]
SEALED_COLUMNS = {name: to_camel_case(name) for name in SEALED_FIELDS}


@dataclass
class Sheet:
    """What one download holds, and what the access log must say about it."""

    headers: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    groups: set[FieldGroup] = field(default_factory=set)  # revealed in full or masked
    integrity_failed: set[uuid.UUID] = field(default_factory=set)
    # patients whose health cells stay empty: outside the caller's care with no stated purpose
    health_withheld: set[uuid.UUID] = field(default_factory=set)


def sheet_for(
    principal: Principal,
    cipher: FieldCipher,
    patients: Iterable[PatientRow],
    health_opens: Callable[[uuid.UUID], bool] = lambda _id: True,
) -> Sheet:
    """`health_opens` is the reason gate (auth/reasons.py): a patient's health cells are
    filled only where it opens, as `patients` would answer REASON_REQUIRED elsewhere."""
    seen = {g: field_visibility(principal, g) for g in FieldGroup}
    sealed = [n for n, g in SEALED_FIELDS.items() if seen[g] is not Visibility.DENIED]
    sheet = Sheet(headers=[h for h, _ in PLAIN] + [SEALED_COLUMNS[n] for n in sealed])
    sheet.groups = {g for g, v in seen.items() if v is not Visibility.DENIED}
    for patient in patients:
        row: list[Cell] = [get(patient) for _, get in PLAIN]
        withheld = FieldGroup.HEALTH in sheet.groups and not health_opens(patient.id)
        if withheld:
            sheet.health_withheld.add(patient.id)
        for name in sealed:
            if withheld and SEALED_FIELDS[name] is FieldGroup.HEALTH:
                row.append(None)
                continue
            try:
                value = unseal(cipher, patient, name)
            except DecryptionError:
                # as in the API: that value is left out, the rest stands, the log says so
                sheet.integrity_failed.add(patient.id)
                value = None
            if seen[SEALED_FIELDS[name]] is Visibility.MASKED:
                value = mask_value(name, value)
            row.append(value)
        sheet.rows.append(row)
    return sheet


def _csv_cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render(sheet: Sheet, fmt: ExportFormat) -> bytes:
    if fmt is ExportFormat.CSV:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(sheet.headers)
        writer.writerows([_csv_cell(c) for c in row] for row in sheet.rows)
        return out.getvalue().encode("utf-8-sig")
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_numbers": False})
    page: Any = book.add_worksheet("patients")
    page.write_row(0, 0, sheet.headers)
    for n, row in enumerate(sheet.rows, start=1):
        for col, value in enumerate(row):
            if value is None:
                continue
            if isinstance(value, bool):
                page.write_boolean(n, col, value)
            elif isinstance(value, int):
                page.write_number(n, col, value)
            else:
                page.write_string(n, col, value)  # never a formula, whatever the text
    book.close()
    return buffer.getvalue()
