"""Opaque global ids (Relay): base64url of "<Type>:<uuid>". Ids carry no tenant: a foreign
tenant's id decodes fine and then finds nothing, exactly like an id that never existed."""

from __future__ import annotations

import base64
import binascii
import uuid

from domain.errors import BadInput


def to_global_id(type_name: str, raw: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{raw}".encode()).decode().rstrip("=")


def parse_global_id(value: str, expected: str | None = None, field: str = "id") -> uuid.UUID:
    """Decode an id; a malformed one is BAD_USER_INPUT, a well-formed unknown one NOT_FOUND."""
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        type_name, raw = text.split(":", 1)
        parsed = uuid.UUID(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadInput(f"{field} is not a valid id", field=field) from None
    if expected is not None and type_name != expected:
        raise BadInput(f"{field} is not a {expected} id", field=field)
    return parsed


def type_of_global_id(value: str) -> str:
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadInput("id is not a valid id") from None
    return text.split(":", 1)[0]
