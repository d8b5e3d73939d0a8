"""Field crypto with real AES-GCM: round trips, binding to tenant/table/column/row, tampering,
key versions, the blind index, master-key wrapping and phone normalisation."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenancy.keyring import (
    DecryptionError,
    FieldCipher,
    KeyShreddedError,
    LocalKeyProvider,
    generate_master_key_text,
    mask_phone,
    new_data_key,
    normalise_phone,
    wrap_context,
)

TENANT = uuid.UUID(int=1)
ROW = uuid.UUID(int=2)
INDEX_KEY = new_data_key()


def cipher(
    tenant: uuid.UUID = TENANT, keys: dict[int, bytes] | None = None, active: int = 1
) -> FieldCipher:
    return FieldCipher(tenant, keys or {1: KEY_1}, active, INDEX_KEY)


KEY_1, KEY_2 = new_data_key(), new_data_key()


@settings(max_examples=300)
@given(st.text())
def test_round_trip_any_unicode(value: str) -> None:
    c = cipher()
    blob = c.encrypt(value, table="patients", column="notes", row_id=ROW)
    if len(value.encode()) >= 8:  # shorter runs can occur in random bytes by chance
        assert value.encode() not in blob
    assert c.decrypt(blob, table="patients", column="notes", row_id=ROW) == value


@pytest.mark.parametrize(
    ("table", "column", "row", "tenant"),
    [
        ("patients", "notes", uuid.UUID(int=3), TENANT),  # another row
        ("patients", "diagnoses", ROW, TENANT),  # another column
        ("visits", "notes", ROW, TENANT),  # another table
        ("patients", "notes", ROW, uuid.UUID(int=9)),  # another tenant, same key material
    ],
)
def test_moved_ciphertext_fails(table: str, column: str, row: uuid.UUID, tenant: uuid.UUID) -> None:
    blob = cipher().encrypt("青霉素过敏", table="patients", column="notes", row_id=ROW)
    with pytest.raises(DecryptionError) as err:
        cipher(tenant).decrypt(blob, table=table, column=column, row_id=row)
    assert "青霉素" not in str(err.value)


@settings(max_examples=100)
@given(st.data())
def test_any_flipped_byte_fails(data: st.DataObject) -> None:
    c = cipher()
    blob = bytearray(c.encrypt("高血压 5 年", table="patients", column="notes", row_id=ROW))
    i = data.draw(st.integers(0, len(blob) - 1))
    blob[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises((DecryptionError, KeyShreddedError)):
        c.decrypt(bytes(blob), table="patients", column="notes", row_id=ROW)


def test_truncated_and_garbage_fail() -> None:
    c = cipher()
    blob = c.encrypt("x", table="patients", column="notes", row_id=ROW)
    for bad in (b"", blob[:10], blob[:-1], b"\x02" + blob[1:]):
        with pytest.raises((DecryptionError, KeyShreddedError)):
            c.decrypt(bad, table="patients", column="notes", row_id=ROW)


def test_key_versions_and_shredding() -> None:
    old = cipher()
    blob_v1 = old.encrypt("v1", table="patients", column="name", row_id=ROW)
    rotated = cipher(keys={1: KEY_1, 2: KEY_2}, active=2)
    blob_v2 = rotated.encrypt("v2", table="patients", column="name", row_id=ROW)
    assert (rotated.key_version(blob_v1), rotated.key_version(blob_v2)) == (1, 2)
    assert rotated.decrypt(blob_v1, table="patients", column="name", row_id=ROW) == "v1"
    retired = cipher(keys={2: KEY_2}, active=2)
    assert retired.decrypt(blob_v2, table="patients", column="name", row_id=ROW) == "v2"
    with pytest.raises(KeyShreddedError):
        retired.decrypt(blob_v1, table="patients", column="name", row_id=ROW)


def test_blind_index() -> None:
    a, b = cipher(), cipher(uuid.UUID(int=7))
    phone = "+8613800138000"
    assert a.blind_index(phone, kind="phone") == a.blind_index(phone, kind="phone")
    assert a.blind_index(phone, kind="phone") != b.blind_index(phone, kind="phone")
    assert a.blind_index(phone, kind="phone") != a.blind_index(phone, kind="wechat_id")
    assert len(a.blind_index(phone, kind="phone")) == 16


def test_master_key_wrapping() -> None:
    master = LocalKeyProvider.from_text(generate_master_key_text())
    other = LocalKeyProvider.from_text(generate_master_key_text())
    ctx = wrap_context(TENANT, "data", 1)
    wrapped = master.wrap(KEY_1, context=ctx)
    assert KEY_1 not in wrapped
    assert master.unwrap(wrapped, context=ctx) == KEY_1
    with pytest.raises(DecryptionError):
        other.unwrap(wrapped, context=ctx)
    with pytest.raises(DecryptionError):
        master.unwrap(wrapped, context=wrap_context(TENANT, "data", 2))
    with pytest.raises(DecryptionError):
        master.unwrap(wrapped, context=wrap_context(uuid.UUID(int=5), "data", 1))


def test_master_key_text_forms() -> None:
    raw = bytes(range(32))
    assert LocalKeyProvider.from_text(raw.hex()).provider_id == LocalKeyProvider(raw).provider_id
    import base64

    b64 = base64.urlsafe_b64encode(raw).decode()
    assert (
        LocalKeyProvider.from_text(b64.rstrip("=")).provider_id == LocalKeyProvider(raw).provider_id
    )
    for bad in ("", "short", "zz" * 32, base64.b64encode(b"x" * 31).decode()):
        with pytest.raises(ValueError, match="32 bytes"):
            LocalKeyProvider.from_text(bad)


@pytest.mark.parametrize(
    "raw",
    ["138 0013 8000", "+86-138-0013-8000", "008613800138000", "(138) 0013.8000", "8613800138000"],
)
def test_phone_normalisation(raw: str) -> None:
    assert normalise_phone(raw) == "+8613800138000"


def test_phone_rejects_and_masks() -> None:
    for bad in ("", "abc", "12", "138-abcd-0000"):
        with pytest.raises(ValueError):
            normalise_phone(bad)
    assert normalise_phone("+1 415 555 0100") == "+14155550100"
    assert mask_phone("+8613800138000") == "138****8000"
    assert mask_phone("+14155550100") == "*******0100"
