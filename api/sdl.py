"""The SDL handed to frontend developers (frontend-schema/schema.graphql)."""

from __future__ import annotations

from api.schema import build_schema


def export_sdl() -> str:
    return build_schema().as_str().rstrip() + "\n"
