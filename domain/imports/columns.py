"""Which column holds which field: headers in Chinese or English, or an explicit mapping."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from domain.errors import BadInput


class ImportField(StrEnum):
    NAME = "name"
    PHONE = "phone"
    GENDER = "gender"
    BIRTH_YEAR = "birth_year"
    BRANCH = "branch"
    CHANNEL = "channel"
    TAGS = "tags"
    MEDICAL_HISTORY = "medical_history"
    ALLERGIES = "allergies"
    DIAGNOSES = "diagnoses"
    NOTES = "notes"
    WECHAT_ID = "wechat_id"
    WECOM_EXTERNAL_ID = "wecom_external_id"
    NATIONAL_ID = "national_id"


# Headers as chains' spreadsheets and HIS / 领健 exports spell them (compared case-folded,
# without spaces).
KNOWN_HEADERS: dict[str, ImportField] = {
    "姓名": ImportField.NAME,
    "name": ImportField.NAME,
    "手机号": ImportField.PHONE,
    "手机": ImportField.PHONE,
    "电话": ImportField.PHONE,
    "phone": ImportField.PHONE,
    "性别": ImportField.GENDER,
    "gender": ImportField.GENDER,
    "出生年份": ImportField.BIRTH_YEAR,
    "birth_year": ImportField.BIRTH_YEAR,
    "birthyear": ImportField.BIRTH_YEAR,
    "门店": ImportField.BRANCH,
    "门店编码": ImportField.BRANCH,
    "branch": ImportField.BRANCH,
    "来源渠道": ImportField.CHANNEL,
    "渠道": ImportField.CHANNEL,
    "channel": ImportField.CHANNEL,
    "标签": ImportField.TAGS,
    "tags": ImportField.TAGS,
    "病史": ImportField.MEDICAL_HISTORY,
    "medical_history": ImportField.MEDICAL_HISTORY,
    "过敏史": ImportField.ALLERGIES,
    "allergies": ImportField.ALLERGIES,
    "诊断": ImportField.DIAGNOSES,
    "diagnosis": ImportField.DIAGNOSES,
    "diagnoses": ImportField.DIAGNOSES,
    "备注": ImportField.NOTES,
    "notes": ImportField.NOTES,
    "微信号": ImportField.WECHAT_ID,
    "wechat_id": ImportField.WECHAT_ID,
    "企微外部联系人id": ImportField.WECOM_EXTERNAL_ID,
    "wecom_external_id": ImportField.WECOM_EXTERNAL_ID,
    "身份证号": ImportField.NATIONAL_ID,
    "national_id": ImportField.NATIONAL_ID,
}


def _key(header: str) -> str:
    return "".join(header.split()).casefold()


def parse_mapping(given: Mapping[str, str]) -> dict[str, str]:
    """An explicit mapping {header as in the file: field}; an unknown field is refused."""
    out: dict[str, str] = {}
    for header, field in given.items():
        try:
            out[header.strip()] = str(ImportField(field))
        except ValueError:
            raise BadInput(
                f"mapping: {field!r} is not an import field "
                f"({', '.join(f.value for f in ImportField)})",
                field="mapping",
            ) from None
    return out


def columns(header: tuple[str, ...], mapping: Mapping[str, str]) -> dict[ImportField, int]:
    """Field → column index. The explicit mapping wins over the known headers; columns that
    name no field are ignored (kept in the rejected-rows file all the same)."""
    explicit = {_key(h): f for h, f in mapping.items()}
    out: dict[ImportField, int] = {}
    for index, name in enumerate(header):
        field = explicit.get(_key(name))
        found = ImportField(field) if field is not None else KNOWN_HEADERS.get(_key(name))
        if found is not None and found not in out:
            out[found] = index
    if ImportField.NAME not in out:
        raise BadInput("the file has no name column (姓名 / name)", field="file")
    return out
