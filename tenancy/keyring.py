"""Envelope encryption: a master key wraps per-tenant data keys; data keys seal fields.

Field ciphertexts are AES-256-GCM, bound by associated data to tenant, table, column and row,
so a value copied anywhere else fails to decrypt. Their header carries the key version, which
is how rotation finds what to re-encrypt and how a shredded key is recognised.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
import uuid
from collections.abc import Mapping
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT = 0x01
NONCE = 12
HEADER = struct.Struct(">BI")  # format byte, key version


class CryptoError(Exception):
    code = "CRYPTO_ERROR"


class DecryptionError(CryptoError):
    code = "DECRYPTION_FAILED"


class KeyShreddedError(CryptoError):
    code = "KEY_SHREDDED"


class KeyProvider(Protocol):
    """Wraps and unwraps data keys; a KMS or Vault can stand in for the local master key."""

    provider_id: str

    def wrap(self, key: bytes, *, context: bytes) -> bytes: ...
    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes: ...


class LocalKeyProvider:
    """The default provider: a 32-byte master key from the environment or a file."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("the master key must be exactly 32 bytes")
        self._aead = AESGCM(master_key)
        self.provider_id = "local:" + hashlib.sha256(master_key).hexdigest()[:8]

    @classmethod
    def from_text(cls, text: str) -> LocalKeyProvider:
        text = text.strip()
        raw: bytes | None = None
        if re.fullmatch(r"[0-9a-fA-F]{64}", text):
            raw = bytes.fromhex(text)
        else:
            try:
                raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            except (ValueError, binascii.Error):
                raw = None
        if raw is None or len(raw) != 32:
            raise ValueError(
                "the master key must be 32 bytes as urlsafe base64 or 64 hex characters"
            )
        return cls(raw)

    def wrap(self, key: bytes, *, context: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE)
        return bytes([FORMAT]) + nonce + self._aead.encrypt(nonce, key, context)

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        if len(wrapped) < 1 + NONCE + 16 or wrapped[0] != FORMAT:
            raise DecryptionError("wrapped key is malformed")
        try:
            return self._aead.decrypt(wrapped[1 : 1 + NONCE], wrapped[1 + NONCE :], context)
        except InvalidTag:
            raise DecryptionError("wrapped key does not open with this master key") from None


def generate_master_key_text() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def new_data_key() -> bytes:
    return secrets.token_bytes(32)


def wrap_context(tenant_id: uuid.UUID, kind: str, version: int) -> bytes:
    return b"pp.key.v1\x00" + tenant_id.bytes + kind.encode() + b"\x00" + str(version).encode()


class FieldCipher:
    """Seals and opens one tenant's field values; built per request from unwrapped keys."""

    def __init__(
        self,
        tenant_id: uuid.UUID,
        data_keys: Mapping[int, bytes],
        active_version: int,
        index_key: bytes,
    ) -> None:
        if active_version not in data_keys:
            raise KeyShreddedError("the active data key is missing")
        self.tenant_id = tenant_id
        self.active_version = active_version
        self._aeads = {v: AESGCM(k) for v, k in data_keys.items()}
        self._index_key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=b"pp.blind-index.v1" + tenant_id.bytes,
        ).derive(index_key)

    def _aad(self, table: str, column: str, row_id: uuid.UUID) -> bytes:
        return (
            b"pp.field.v1\x00"
            + self.tenant_id.bytes
            + table.encode()
            + b"\x00"
            + column.encode()
            + b"\x00"
            + row_id.bytes
        )

    def encrypt(self, plaintext: str, *, table: str, column: str, row_id: uuid.UUID) -> bytes:
        nonce = secrets.token_bytes(NONCE)
        header = HEADER.pack(FORMAT, self.active_version)
        sealed = self._aeads[self.active_version].encrypt(
            nonce, plaintext.encode(), header + self._aad(table, column, row_id)
        )
        return header + nonce + sealed

    def key_version(self, blob: bytes) -> int:
        if len(blob) < HEADER.size + NONCE + 16 or blob[0] != FORMAT:
            raise DecryptionError("ciphertext is malformed")
        return HEADER.unpack_from(blob)[1]

    def decrypt(self, blob: bytes, *, table: str, column: str, row_id: uuid.UUID) -> str:
        version = self.key_version(blob)
        aead = self._aeads.get(version)
        if aead is None:
            raise KeyShreddedError("the key of this value has been destroyed")
        start = HEADER.size
        try:
            plain = aead.decrypt(
                blob[start : start + NONCE],
                blob[start + NONCE :],
                blob[:start] + self._aad(table, column, row_id),
            )
        except InvalidTag:
            raise DecryptionError(
                f"{table}.{column} does not decrypt here (moved, tampered or another tenant's)"
            ) from None
        return plain.decode()

    def blind_index(self, value: str, *, kind: str) -> bytes:
        return hmac.new(
            self._index_key, kind.encode() + b"\x00" + value.encode(), hashlib.sha256
        ).digest()[:16]


_SEPARATORS = re.compile(r"[\s\-().]")


def normalise_phone(raw: str) -> str:
    """Canonical form for matching: +86 and 11 digits for mainland mobiles."""
    text = _SEPARATORS.sub("", raw.strip())
    plus = text.startswith("+")
    digits = text[1:] if plus else text
    if not digits.isdigit() or len(digits) < 5:
        raise ValueError("not a phone number")
    if digits.startswith("00"):
        digits, plus = digits[2:], True
    if plus and digits.startswith("86") and re.fullmatch(r"861[3-9]\d{9}", digits):
        return "+" + digits
    if not plus and re.fullmatch(r"861[3-9]\d{9}", digits):
        return "+" + digits
    if not plus and re.fullmatch(r"1[3-9]\d{9}", digits):
        return "+86" + digits
    return ("+" if plus else "") + digits


def mask_phone(canonical: str) -> str:
    """138****8000 for a mainland mobile; otherwise only the last four digits show."""
    if canonical.startswith("+86") and re.fullmatch(r"1\d{10}", canonical[3:]):
        return f"{canonical[3:6]}****{canonical[-4:]}"
    digits = canonical.lstrip("+")
    return "*" * max(len(digits) - 4, 0) + digits[-4:]
