"""Encrypted archives: a byte stream sealed with AES-256-GCM as it is written, in chunks.

One key per archive, random, handed to the caller and kept nowhere else. The stream is cut into
chunks of at most CHUNK bytes, each sealed on its own (the STREAM construction): the nonce is a
random per-archive prefix, the chunk's number and a last-chunk flag, and the file's header is
the associated data of every chunk. So a chunk moved, dropped, repeated or cut off, or an
archive ending early, fails to open; plaintext never reaches the disk, since each chunk is
sealed before it is written.

File: MAGIC, the 7-byte nonce prefix, then chunks as a 4-byte big-endian length and the sealed
bytes; the last chunk (possibly empty) carries the flag.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import struct
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"PPARCHIVE1\n"
PREFIX = 7
CHUNK = 64 * 1024
LENGTH = struct.Struct(">I")
TAG = 16


class ArchiveError(Exception):
    """The archive does not open: wrong key, altered, truncated, or not an archive."""


def new_archive_key() -> bytes:
    return secrets.token_bytes(32)


def key_text(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def key_from_text(text: str) -> bytes:
    text = text.strip()
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error):
        raise ArchiveError("the key is not urlsafe base64") from None
    if len(key) != 32:
        raise ArchiveError("the key must be 32 bytes (43 characters of urlsafe base64)")
    return key


def _nonce(prefix: bytes, number: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", number, 1 if last else 0)


class ArchiveWriter:
    """A write-only binary stream that seals what it is given into `raw`."""

    def __init__(self, raw: BinaryIO, key: bytes) -> None:
        self._raw = raw
        self._aead = AESGCM(key)
        self._prefix = secrets.token_bytes(PREFIX)
        self._header = MAGIC + self._prefix
        self._buffer = bytearray()
        self._number = 0
        self._closed = False
        raw.write(self._header)

    def write(self, data: bytes) -> int:
        if self._closed:
            raise ValueError("the archive is closed")
        self._buffer += data
        while len(self._buffer) > CHUNK:
            self._seal(bytes(self._buffer[:CHUNK]), last=False)
            del self._buffer[:CHUNK]
        return len(data)

    def close(self) -> None:
        """Seal the last chunk (which marks the end); the caller closes `raw`."""
        if not self._closed:
            self._seal(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._closed = True
            self._raw.flush()

    def _seal(self, chunk: bytes, *, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._number, last), chunk, self._header)
        self._raw.write(LENGTH.pack(len(sealed)) + sealed)
        self._number += 1


def open_chunks(raw: BinaryIO, key: bytes) -> Iterator[bytes]:
    """The plaintext of an archive, chunk by chunk; ArchiveError as soon as anything is off
    (so a caller writing the chunks out must treat what it wrote as void on error)."""
    header = raw.read(len(MAGIC) + PREFIX)
    if len(header) != len(MAGIC) + PREFIX or not header.startswith(MAGIC):
        raise ArchiveError("not a patientpool archive")
    aead = AESGCM(key)
    prefix = header[len(MAGIC) :]
    number = 0
    pending = _read_chunk(raw)
    if pending is None:
        raise ArchiveError("the archive ends before its last chunk")
    while pending is not None:
        following = _read_chunk(raw)
        last = following is None
        try:
            yield aead.decrypt(_nonce(prefix, number, last), pending, header)
        except InvalidTag:
            raise ArchiveError(
                "the archive does not open with this key (wrong key, altered or truncated)"
            ) from None
        number += 1
        pending = following


def _read_chunk(raw: BinaryIO) -> bytes | None:
    size = raw.read(LENGTH.size)
    if not size:
        return None
    if len(size) != LENGTH.size:
        raise ArchiveError("the archive is truncated")
    (length,) = LENGTH.unpack(size)
    if length < TAG or length > CHUNK + TAG:
        raise ArchiveError("the archive is malformed")
    sealed = raw.read(length)
    if len(sealed) != length:
        raise ArchiveError("the archive is truncated")
    return sealed
