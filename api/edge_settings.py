"""What the GraphQL edge reads of the process's settings.

The settings themselves (`process.settings.Settings`: read from the environment, validated at
start) belong to the process that serves; the edge is handed them as a value and names here the
few it reads, so nothing in `api/` imports the process above it."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network
from typing import Protocol


class EdgeSettings(Protocol):
    @property
    def is_production(self) -> bool: ...
    @property
    def introspection_enabled(self) -> bool: ...
    @property
    def graphiql_enabled(self) -> bool: ...
    @property
    def trusted_documents_only(self) -> bool: ...
    @property
    def metrics_networks(self) -> Sequence[IPv4Network | IPv6Network]: ...

    compiled_plans: bool
    database_pooler: str | None
    max_upload_bytes: int
    export_ttl_hours: int
    sms_api_url: str | None
    survey_url: str | None
    wechat_api_url: str
