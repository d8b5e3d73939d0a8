"""The offboarding archive's sealing (tenancy.archive): what reaches the file is ciphertext
from the first chunk on, it opens with its key only, and a chunk altered, dropped, repeated or
cut off, or an archive ending early, does not open."""

from __future__ import annotations

import io

import pytest

from tenancy.archive import (
    CHUNK,
    LENGTH,
    MAGIC,
    PREFIX,
    ArchiveError,
    ArchiveWriter,
    key_from_text,
    key_text,
    new_archive_key,
    open_chunks,
)

ROW = "测试患者archive 高血压 +8613900000000\n".encode()


def _sealed(rows: int) -> tuple[bytes, bytes, bytes]:
    key, raw = new_archive_key(), io.BytesIO()
    writer = ArchiveWriter(raw, key)
    plain = b""
    for _ in range(rows):
        writer.write(ROW)
        plain += ROW
        # encrypt as you write: whatever has reached the file is sealed
        assert ROW not in raw.getvalue()
    writer.close()
    return key, raw.getvalue(), plain


def _open(key: bytes, data: bytes) -> bytes:
    return b"".join(open_chunks(io.BytesIO(data), key))


def _chunks(data: bytes) -> tuple[bytes, list[bytes]]:
    header, rest, out = data[: len(MAGIC) + PREFIX], data[len(MAGIC) + PREFIX :], []
    while rest:
        (n,) = LENGTH.unpack(rest[: LENGTH.size])
        out.append(rest[: LENGTH.size + n])
        rest = rest[LENGTH.size + n :]
    return header, out


def test_round_trip_over_several_chunks() -> None:
    rows = 3 * CHUNK // len(ROW) + 7
    key, data, plain = _sealed(rows)
    header, chunks = _chunks(data)
    assert len(chunks) == 4 and header.startswith(MAGIC)
    assert ROW not in data
    assert _open(key, data) == plain
    assert key_from_text(key_text(key)) == key


def test_an_empty_archive_still_has_its_last_chunk() -> None:
    key, data, _ = _sealed(0)
    assert _open(key, data) == b""
    with pytest.raises(ArchiveError):
        _open(key, data[: len(MAGIC) + PREFIX])


def test_what_does_not_open() -> None:
    key, data, _ = _sealed(3 * CHUNK // len(ROW))
    header, chunks = _chunks(data)
    flipped = bytearray(data)
    flipped[len(header) + 40] ^= 1
    cases = {
        "wrong key": (new_archive_key(), data),
        "altered": (key, bytes(flipped)),
        "last chunk cut off": (key, header + b"".join(chunks[:-1])),
        "middle chunk dropped": (key, header + chunks[0] + b"".join(chunks[2:])),
        "chunk repeated": (key, header + chunks[0] + b"".join(chunks)),
        "chunks swapped": (key, header + chunks[1] + chunks[0] + b"".join(chunks[2:])),
        "truncated mid-chunk": (key, data[:-5]),
        "not an archive": (key, b"PK\x03\x04" + data[4:]),
    }
    for name, (k, d) in cases.items():
        with pytest.raises(ArchiveError):
            _open(k, d)
            pytest.fail(name)


def test_keys_as_text() -> None:
    for bad in ("", "short", "!" * 43, key_text(new_archive_key()) + "AAAA"):
        with pytest.raises(ArchiveError):
            key_from_text(bad)
