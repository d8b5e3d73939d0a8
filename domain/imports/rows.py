"""One data row checked and made ready to store, or the one reason it is rejected. A reason
is a code, never a value: the report and every log line hold row numbers and codes only."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from domain.imports.columns import ImportField
from domain.imports.reader import Row
from domain.patients.models import BLIND_INDEXED, Gender
from domain.patients.service import MAX_HEALTH_TEXT, MAX_TEXT
from tenancy.keyring import FieldCipher, normalise_phone


class Reason(StrEnum):
    BAD_ENCODING = "bad_encoding"
    MISSING_NAME = "missing_name"
    TOO_LONG = "too_long"
    BAD_PHONE = "bad_phone"
    BAD_GENDER = "bad_gender"
    BAD_BIRTH_YEAR = "bad_birth_year"
    UNKNOWN_BRANCH = "unknown_branch"
    CLOSED_BRANCH = "closed_branch"
    UNKNOWN_TAG = "unknown_tag"
    NO_IDENTIFIER = "no_identifier"
    DUPLICATE_IN_FILE = "duplicate_in_file"
    AMBIGUOUS_MATCH = "ambiguous_match"
    # the row would change health data of a record outside the importer's care (auth.reasons)
    REASON_REQUIRED = "reason_required"


# Import field → the patient's sealed field of the same meaning.
SEALED: dict[ImportField, str] = {
    ImportField.NAME: "name",
    ImportField.PHONE: "phone",
    ImportField.WECHAT_ID: "wechat_id",
    ImportField.WECOM_EXTERNAL_ID: "wecom_external_id",
    ImportField.NATIONAL_ID: "national_id",
    ImportField.MEDICAL_HISTORY: "medical_history",
    ImportField.ALLERGIES: "allergies",
    ImportField.DIAGNOSES: "diagnoses",
    ImportField.NOTES: "notes",
}
# The identifiers a row is matched by: those with a blind index (national ids join as soon as
# the patient model indexes them).
IDENTITY = tuple(
    f for f in ("phone", "wechat_id", "wecom_external_id", "national_id") if f in BLIND_INDEXED
)
MAX_CHANNEL = 64
GENDERS: dict[str, str] = {
    "男": Gender.MALE,
    "male": Gender.MALE,
    "m": Gender.MALE,
    "女": Gender.FEMALE,
    "female": Gender.FEMALE,
    "f": Gender.FEMALE,
    "其他": Gender.OTHER,
    "other": Gender.OTHER,
    "未知": Gender.UNKNOWN,
    "unknown": Gender.UNKNOWN,
}
TAG_SEPARATORS = re.compile(r"[,，;；|、]")


@dataclass
class Checked:
    """A valid row: values to store and the identifiers to match it by."""

    number: int
    sealed: dict[str, str] = field(default_factory=dict)
    gender: str | None = None
    birth_year: int | None = None
    channel: str | None = None
    branch_id: uuid.UUID | None = None
    branch_given: bool = False
    tag_ids: frozenset[uuid.UUID] = frozenset()
    identity: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Lookups:
    """What rows are checked against, loaded once per run: branches by code (open or not) and
    manual tags by name (None: a name several groups share)."""

    branches: Mapping[str, tuple[uuid.UUID, bool]]
    tags: Mapping[str, uuid.UUID | None]
    default_branch: str


def _limit(name: str) -> int:
    return MAX_TEXT.get(name, MAX_HEALTH_TEXT)


def check_row(
    row: Row, cols: Mapping[ImportField, int], lookups: Lookups, cipher: FieldCipher
) -> Checked | Reason:
    if row.bad_encoding:
        return Reason.BAD_ENCODING

    def cell(f: ImportField) -> str:
        i = cols.get(f)
        return row.cells[i].strip() if i is not None and i < len(row.cells) else ""

    out = Checked(row.number)
    for f, name in SEALED.items():
        value = cell(f)
        if value and len(value) > _limit(name):
            return Reason.TOO_LONG
        if value:
            out.sealed[name] = value
    channel = cell(ImportField.CHANNEL)
    if len(channel) > MAX_CHANNEL:
        return Reason.TOO_LONG
    if "name" not in out.sealed:
        return Reason.MISSING_NAME
    if "phone" in out.sealed:
        try:
            out.sealed["phone"] = normalise_phone(out.sealed["phone"])
        except ValueError:
            return Reason.BAD_PHONE
    gender = cell(ImportField.GENDER)
    if gender:
        found = GENDERS.get(gender.casefold())
        if found is None:
            return Reason.BAD_GENDER
        out.gender = str(found)
    year = cell(ImportField.BIRTH_YEAR)
    if year:
        if not year.isdigit() or not 1900 <= int(year) <= datetime.now(UTC).year:
            return Reason.BAD_BIRTH_YEAR
        out.birth_year = int(year)
    out.channel = channel or None
    code = cell(ImportField.BRANCH)
    out.branch_given = bool(code)
    branch = lookups.branches.get(code or lookups.default_branch)
    if branch is None:
        return Reason.UNKNOWN_BRANCH
    if not branch[1]:
        return Reason.CLOSED_BRANCH
    out.branch_id = branch[0]
    tags: set[uuid.UUID] = set()
    for name in (t.strip() for t in TAG_SEPARATORS.split(cell(ImportField.TAGS))):
        if not name:
            continue
        tag = lookups.tags.get(name)
        if tag is None:
            return Reason.UNKNOWN_TAG
        tags.add(tag)
    out.tag_ids = frozenset(tags)
    out.identity = {
        kind: cipher.blind_index(out.sealed[kind], kind=kind)
        for kind in IDENTITY
        if kind in out.sealed
    }
    if not out.identity:
        return Reason.NO_IDENTIFIER
    return out
