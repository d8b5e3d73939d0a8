"""Reading an uploaded spreadsheet into numbered rows of text cells, in memory.

CSV comes in UTF-8, UTF-8 with a BOM (Excel's "CSV UTF-8") or GB18030 (Excel's default on
Chinese Windows, a superset of GBK): a BOM decides; else the file is UTF-8 when most of its
lines are strict UTF-8, else GB18030. A line that does not decode in the file's encoding
makes its row `bad_encoding` and the other rows go on. XLSX is read with openpyxl in
read-only mode (streamed, row by row). Rows are numbered as a spreadsheet shows them: the
header is row 1.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

XLSX_MAGIC = b"PK\x03\x04"
# A cell longer than this is refused by the csv module itself: far past every field's limit,
# so such a row is simply `too_long`.
csv.field_size_limit(1_000_000)


class FileFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"


class UnreadableFile(ValueError):
    """The file as a whole cannot be read (no header row, not a spreadsheet)."""


@dataclass(frozen=True)
class Row:
    number: int
    cells: tuple[str, ...]
    bad_encoding: bool = False


def detect_format(data: bytes) -> FileFormat:
    return FileFormat.XLSX if data.startswith(XLSX_MAGIC) else FileFormat.CSV


def csv_encoding(data: bytes) -> str:
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    lines = data.split(b"\n")
    utf8 = sum(1 for line in lines if _decodes(line, "utf-8"))
    return "utf-8" if utf8 * 2 > len(lines) else "gb18030"


def _decodes(line: bytes, encoding: str) -> bool:
    try:
        line.decode(encoding)
        return True
    except UnicodeDecodeError:
        return False


def read_rows(data: bytes, fmt: FileFormat) -> tuple[tuple[str, ...], Iterator[Row]]:
    """The header's cells and an iterator over the data rows (empty rows skipped)."""
    rows = _xlsx_rows(data) if fmt is FileFormat.XLSX else _csv_rows(data)
    try:
        header = next(rows)
    except StopIteration:
        raise UnreadableFile("the file has no header row") from None
    if header.bad_encoding:
        raise UnreadableFile("the header row does not decode")
    return tuple(c.strip() for c in header.cells), (r for r in rows if any(c for c in r.cells))


def _csv_rows(data: bytes) -> Iterator[Row]:
    encoding = csv_encoding(data)
    if encoding == "utf-8-sig":
        data, encoding = data[len(codecs.BOM_UTF8) :], "utf-8"
    # Neither UTF-8 nor GB18030 ever has 0x0A inside a multi-byte character, so lines can be
    # split as bytes and decoded one by one; a quoted cell may still span lines (csv joins them).
    bad: set[int] = set()

    def lines() -> Iterator[str]:
        for n, raw in enumerate(data.split(b"\n"), start=1):
            try:
                yield raw.decode(encoding) + "\n"
            except UnicodeDecodeError:
                bad.add(n)
                yield raw.decode(encoding, "replace") + "\n"

    reader = csv.reader(lines())
    number, last_line = 0, 0
    try:
        for cells in reader:
            number += 1
            spanned = range(last_line + 1, reader.line_num + 1)
            last_line = reader.line_num
            yield Row(number, tuple(cells), any(n in bad for n in spanned))
    except csv.Error:
        # an unterminated quote or a NUL: what follows cannot be told apart into rows
        raise UnreadableFile(f"the CSV is malformed after row {number}") from None


def _xlsx_rows(data: bytes) -> Iterator[Row]:
    from openpyxl import load_workbook  # only for XLSX files

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:  # noqa: BLE001 - zip, XML and openpyxl's own errors all mean "not XLSX"
        raise UnreadableFile("the file is not a readable XLSX workbook") from None
    try:
        sheet = book.worksheets[0]
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield Row(number, tuple(_cell_text(v) for v in values))
    finally:
        book.close()


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a phone or a year typed as a number
    return str(value)
