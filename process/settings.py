"""Configuration from the environment (prefix PATIENTPOOL_), validated once at start.

Development generates a master key and a signing key set into the data dir so the demo runs
with no setup; production refuses to start without both, with a one-line reason.
"""

from __future__ import annotations

import os
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from domain.imports.service import BATCH_ROWS
from tenancy.deployment import ROLE_NAME, default_app_role


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class SettingsError(ValueError):
    """Raised with a one-line reason; the CLI prints it and exits 2."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PATIENTPOOL_", extra="ignore")

    env: Environment = Environment.DEVELOPMENT
    data_dir: Path = Path(".patientpool")
    database_url: str | None = None
    migration_database_url: str | None = None
    master_key: str | None = Field(default=None, repr=False)
    master_key_file: Path | None = None
    signing_keys_file: Path | None = None
    graphiql: bool | None = None
    introspection: bool | None = None
    # Trusted queries run by their compiled plan (api/plans, decision 0006); off: every
    # document runs on graphql-core's stock path (the same answers, more CPU).
    compiled_plans: bool = True
    sql_echo: bool = False
    pool_size: int = Field(default=10, ge=1, le=200)
    # "only": trusted documents alone (the registry `patientpool documents push` fills);
    # "allow": any document, trusted ones also by hash, and automatic persisted queries.
    # Unset: "only" in production, "allow" in development.
    persisted_queries: Literal["allow", "only"] | None = None
    # Where `patientpool audit archive` writes the access log's archived segments.
    audit_archive_dir: Path | None = None
    # Campaign senders (`patientpool campaigns send`): the SMS gateway (JSON API, docs in
    # docs/campaigns.md) and WeCom's API host (a stand-in in tests).
    sms_api_url: str | None = None
    sms_api_key: str | None = Field(default=None, repr=False)
    wecom_api_url: str = "https://qyapi.weixin.qq.com"
    # Satisfaction surveys: the page a survey link opens (the token is appended as a path
    # segment); without it no survey link is sent.
    survey_url: str | None = None
    # WeChat's API host for mini-program sign-in (code2Session, getPhoneNumber).
    wechat_api_url: str = "https://api.weixin.qq.com"
    # PostgreSQL: the role the app's privileges are granted to (default `<db>_app`).
    app_role: str | None = None
    # "pgbouncer": a transaction-mode pooler sits between the app and PostgreSQL.
    database_pooler: Literal["pgbouncer"] | None = None
    # How long an export (`exportPatients`) may be downloaded, in hours.
    export_ttl_hours: int = Field(default=24, ge=1, le=24 * 30)
    # PostgreSQL: each transaction's statements may run this long (SET LOCAL, so it holds
    # under a transaction-mode pooler too); SQLite applies none.
    statement_timeout_ms: int = Field(default=5000, ge=100, le=600_000)
    # How long a process holds a background job it works before it must renew the claim; a
    # job whose holder died is taken over by another process once this has passed.
    job_lease_seconds: float = Field(default=30.0, ge=1, le=3600)
    # Rows an import commits at a time (one transaction, one access-log entry each).
    import_batch_rows: int = Field(default=BATCH_ROWS, ge=10, le=20_000)
    # How long a request waits for a pooled connection before it answers UNAVAILABLE.
    pool_timeout_s: float = Field(default=10.0, gt=0, le=300)
    # Log lines: "json" (one object a line) or "text"; unset: json in production.
    log_format: Literal["json", "text"] | None = None
    # Who may read /metrics: comma-separated addresses or CIDR networks; empty: no /metrics.
    metrics_allow: str = "127.0.0.1/32,::1/128"
    # The largest file a multipart `importPatients` request may carry (held in memory, never
    # spooled to disk: it is plaintext personal data).
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.env is Environment.PRODUCTION:
            if not (self.master_key or self.master_key_file):
                raise ValueError(
                    "production needs PATIENTPOOL_MASTER_KEY or PATIENTPOOL_MASTER_KEY_FILE"
                )
            if not self.signing_keys_file:
                raise ValueError("production needs PATIENTPOOL_SIGNING_KEYS_FILE")
        if self.master_key and self.master_key_file:
            raise ValueError("set PATIENTPOOL_MASTER_KEY or PATIENTPOOL_MASTER_KEY_FILE, not both")
        for name in ("sms_api_url", "wecom_api_url", "wechat_api_url", "survey_url"):
            value = getattr(self, name)
            if value and not value.startswith(("https://", "http://")):
                raise ValueError(f"PATIENTPOOL_{name.upper()} must be an http(s) URL")
        if self.sms_api_url and not self.sms_api_key:
            raise ValueError("PATIENTPOOL_SMS_API_URL needs PATIENTPOOL_SMS_API_KEY")
        if self.app_role is not None and not ROLE_NAME.match(self.app_role):
            raise ValueError(
                "PATIENTPOOL_APP_ROLE must be a lowercase role name "
                "(letters, digits and _, at most 63)"
            )
        try:
            self.metrics_networks  # noqa: B018  (parsed once here, so a typo stops the start)
        except ValueError:
            raise ValueError(
                "PATIENTPOOL_METRICS_ALLOW must be comma-separated addresses or CIDR networks"
            ) from None
        url = self.database_url
        if url and not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "PATIENTPOOL_DATABASE_URL must start with sqlite+aiosqlite:// "
                "or postgresql+asyncpg://"
            )
        return self

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @property
    def log_lines(self) -> str:
        return self.log_format or ("json" if self.is_production else "text")

    @property
    def metrics_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        parts = [p.strip() for p in self.metrics_allow.split(",") if p.strip()]
        return tuple(ip_network(p, strict=False) for p in parts)

    @property
    def graphiql_enabled(self) -> bool:
        return (not self.is_production) if self.graphiql is None else self.graphiql

    @property
    def introspection_enabled(self) -> bool:
        return (not self.is_production) if self.introspection is None else self.introspection

    @property
    def trusted_documents_only(self) -> bool:
        if self.persisted_queries is None:
            return self.is_production
        return self.persisted_queries == "only"

    @property
    def app_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'patientpool.db'}"

    @property
    def owner_database_url(self) -> str:
        return self.migration_database_url or self.app_database_url

    @property
    def on_postgres(self) -> bool:
        return self.app_database_url.startswith("postgresql")

    @property
    def deployment_app_role(self) -> str | None:
        """The role migrate grants to on PostgreSQL: the setting, else `<db>_app`."""
        if not self.owner_database_url.startswith("postgresql"):
            return None
        return self.app_role or default_app_role(make_url(self.owner_database_url).database or "")

    @property
    def app_login(self) -> str | None:
        """The login role of PATIENTPOOL_DATABASE_URL on PostgreSQL."""
        return make_url(self.app_database_url).username if self.on_postgres else None

    @property
    def archive_dir(self) -> Path:
        return self.audit_archive_dir or self.data_dir / "audit-archive"

    def master_key_text(self) -> str:
        if self.master_key:
            return self.master_key
        path = self.master_key_file or self.data_dir / "master.key"
        if not path.exists():
            if self.master_key_file or self.is_production:
                raise SettingsError(f"master key file not found: {path}")
            from tenancy.keyring import generate_master_key_text

            _write_secret(path, generate_master_key_text())
        return path.read_text().strip()

    def signing_keys_text(self) -> str:
        path = self.signing_keys_file or self.data_dir / "signing-keys.json"
        if not path.exists():
            if self.signing_keys_file or self.is_production:
                raise SettingsError(f"signing keys file not found: {path}")
            from auth.signing_keys import SigningKeys

            _write_secret(path, SigningKeys.generate_jwks_json())
        return path.read_text()


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; any problem becomes one SettingsError line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        raise SettingsError(f"{where}: {msg}" if where != "settings" else msg) from None
