"""Run Alembic from code (the CLI and the tests), with the script folder inside the package."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

HERE = Path(__file__).parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _deployment_config(url: str, app_role: str | None, app_login: str | None) -> Config:
    cfg = alembic_config(url)
    cfg.attributes.update(app_role=app_role, app_login=app_login, notes=[])
    return cfg


def upgrade(
    url: str, revision: str = "head", *, app_role: str | None = None, app_login: str | None = None
) -> list[str]:
    """Upgrade; on PostgreSQL the app's privileges go to `app_role` (default `<db>_app`), or
    straight to `app_login` when the owner may not create that role. Returns what was done
    about roles, one line each."""
    cfg = _deployment_config(url, app_role, app_login)
    command.upgrade(cfg, revision)
    return list(cfg.attributes["notes"])


def downgrade(
    url: str, revision: str = "base", *, app_role: str | None = None, app_login: str | None = None
) -> None:
    command.downgrade(_deployment_config(url, app_role, app_login), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def recorded_revision(session: AsyncSession) -> str | None:
    """The revision the database says it is at, as the app role reads it (raises when the
    database is unreachable or was never migrated)."""
    return await session.scalar(text("SELECT version_num FROM alembic_version"))
