"""A generated patient spreadsheet for the import's tests and benchmark, with the outcome of
every row computed as it is generated (the oracle the tests compare the job's report with).

Good rows are new patients; among them, at fixed odds, rows of every kind the import rejects
(a bad phone, an unknown branch, a phone already used higher up in the file, an unknown tag, a
field over its limit, a line in another encoding) and rows whose phone is an existing
patient's (updated when the file brings a field the patient lacks).
"""

from __future__ import annotations

import csv
import io
import random
import zlib
from dataclasses import dataclass, field

HEADER = [
    "姓名",
    "手机号",
    "性别",
    "出生年份",
    "门店",
    "来源渠道",
    "标签",
    "病史",
    "过敏史",
    "诊断",
    "备注",
    "微信号",
]
BAD_KINDS = (
    "bad_phone",
    "unknown_branch",
    "duplicate_in_file",
    "unknown_tag",
    "too_long",
    "bad_encoding",
)


@dataclass
class Generated:
    data: bytes
    rows: int
    created: int = 0
    updated: int = 0
    rejections: list[tuple[int, str]] = field(default_factory=list)
    # Every personal value written, for scans and the log check.
    values: set[str] = field(default_factory=set)

    @property
    def rejected(self) -> int:
        return len(self.rejections)


def phone_of(tag: str, n: int) -> str:
    """A mainland mobile for row `n` of file `tag` (+86139…, one of the marked seeded forms)."""
    return f"139{zlib.crc32(tag.encode()) % 1000:03d}{n:05d}"


def generate(
    n: int,
    tag: str,
    *,
    branches: tuple[str, ...] = ("main",),
    tags: tuple[str, ...] = (),
    existing_phones: tuple[str, ...] = (),
    bad_every: int = 25,
    seed: int = 7,
) -> Generated:
    """`n` data rows. One row in `bad_every` is bad (the kinds in turn); each existing phone is
    used once, spread over the file. UTF-8, as Excel's "CSV UTF-8" without the BOM."""
    rng = random.Random(seed)
    out = io.BytesIO()
    text = io.StringIO()
    csv.writer(text).writerow(HEADER)
    out.write(text.getvalue().encode())
    gen = Generated(b"", n)
    good_phones: list[str] = []
    existing = list(existing_phones)
    existing_at = {max(1, (i + 1) * n // (len(existing) + 1)): p for i, p in enumerate(existing)}
    bad_turn = 0
    for i in range(n):
        number = i + 2
        name = f"测试患者{tag}{i}"
        phone = phone_of(tag, i)
        cells = [
            name,
            phone,
            rng.choice(["男", "女", ""]),
            str(rng.randint(1950, 2015)),
            rng.choice(branches),
            rng.choice(["小红书", "抖音", "老带新", ""]),
            rng.choice([*tags, ""]) if tags else "",
            f"history-{tag}-{i} 高血压",
            f"allergy-{tag}-{i}" if i % 3 else "",
            f"diagnosis-{tag}-{i}",
            f"note-{tag}-{i}",
            f"wx-{tag}-{i}" if i % 4 == 0 else "",
        ]
        kind = "good"
        if i in existing_at:
            kind = "existing"
            cells[1] = existing_at[i]
        elif i % bad_every == bad_every - 1:
            kind = BAD_KINDS[bad_turn % len(BAD_KINDS)]
            bad_turn += 1
        if kind == "duplicate_in_file" and not good_phones:
            kind = "good"
        line_encoding = "utf-8"
        if kind == "bad_phone":
            cells[1] = f"13x{i}"
        elif kind == "unknown_branch":
            cells[4] = "no-such-branch"
        elif kind == "duplicate_in_file":
            cells[1] = rng.choice(good_phones)
            cells[11] = ""
        elif kind == "unknown_tag":
            cells[6] = "没有这个标签"
        elif kind == "too_long":
            cells[10] = "note-" + "长" * 10_001
        elif kind == "bad_encoding":
            line_encoding = "gb18030"
        text = io.StringIO()
        csv.writer(text).writerow(cells)
        out.write(text.getvalue().encode(line_encoding))
        if kind == "good":
            gen.created += 1
            good_phones.append(phone)
        elif kind == "existing":
            gen.updated += 1
        else:
            gen.rejections.append((number, kind))
        if kind != "too_long":
            gen.values.update(v for v in (name, cells[7], cells[9], cells[10]) if v)
            gen.values.add("+86" + cells[1] if kind == "good" else cells[1])
    gen.data = out.getvalue()
    return gen
