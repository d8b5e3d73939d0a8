"""PostgreSQL roles of one deployment: who gets the app's privileges, and what is wrong.

One database is one deployment. Its privileges go to a role named for it (`<db>_app` unless
PATIENTPOOL_APP_ROLE names another), never to a cluster-wide name two deployments would share.
`resolve_grantee` runs before the migrations: it uses the role if it exists (a DBA made it),
creates it when the migrating owner may create roles, and otherwise grants straight to the
app's login role. `secure_database` runs after them: CONNECT is taken from PUBLIC and given to
the grantee. `check_deployment` (as the app's login) lists what a deployment gets wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import Connection

GRANTEE_KEY = "pp_app_grantee"
LEGACY_GROUP_ROLE = "patientpool_app"
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class DeploymentError(RuntimeError):
    """The migration cannot tell whom to grant the app's privileges to."""


@dataclass
class Grantee:
    role: str
    direct: bool = False  # privileges go straight to the login role (no group role)
    notes: list[str] = field(default_factory=list)


def default_app_role(database: str) -> str:
    """`<db>_app`, folded to a plain identifier of at most 63 characters."""
    base = re.sub(r"[^a-z0-9_]", "_", database.lower())
    if not base or base[0].isdigit():
        base = f"db_{base}"
    return f"{base[: 63 - len('_app')]}_app"


def quote(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def _scalar(conn: Connection, sql: str, **params: object) -> object:
    return conn.execute(text(sql), params).scalar()


def _role_exists(conn: Connection, role: str) -> bool:
    return bool(_scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = :r", r=role))


def resolve_grantee(conn: Connection, app_role: str | None, app_login: str | None) -> Grantee:
    """Whom the migrations grant to, creating the group role when the owner may."""
    database = str(_scalar(conn, "SELECT current_database()"))
    owner = str(_scalar(conn, "SELECT current_user"))
    role = app_role or default_app_role(database)
    login = app_login if app_login and app_login != owner else None
    may_create = bool(
        _scalar(conn, "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
    )
    if not _role_exists(conn, role):
        if not may_create:
            if login is None or not _role_exists(conn, login):
                raise DeploymentError(
                    f"role {role} does not exist and {owner} may not create roles: have a DBA "
                    f"create it (NOLOGIN) or set PATIENTPOOL_DATABASE_URL to the app's login role"
                )
            return Grantee(
                login,
                direct=True,
                notes=[
                    f"{owner} may not create role {role} (no CREATEROLE): privileges granted "
                    f"directly to the login role {login}"
                ],
            )
        conn.execute(
            text(
                f"CREATE ROLE {quote(role)} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE "
                "NOCREATEDB NOREPLICATION"
            )
        )
        grantee = Grantee(role, notes=[f"created the group role {role}"])
    else:
        grantee = Grantee(role, notes=[f"privileges granted to the role {role}"])
    if login is not None and role != login:
        _join(conn, grantee, login, may_create)
    return grantee


def _join(conn: Connection, grantee: Grantee, login: str, may_grant: bool) -> None:
    if not _role_exists(conn, login):
        grantee.notes.append(f"login role {login} does not exist yet: GRANT {grantee.role} TO it")
        return
    if _scalar(conn, "SELECT pg_has_role(:l, :r, 'MEMBER')", l=login, r=grantee.role):
        return
    if may_grant:
        conn.execute(text(f"GRANT {quote(grantee.role)} TO {quote(login)}"))
        grantee.notes.append(f"{login} joined {grantee.role}")
    else:
        grantee.notes.append(
            f"{login} is not a member of {grantee.role}: GRANT {grantee.role} TO {login}"
        )


def secure_database(conn: Connection, grantee: str) -> None:
    """CONNECT for this deployment's role alone (and the owner, implicitly)."""
    database = quote(str(_scalar(conn, "SELECT current_database()")))
    conn.execute(text(f"REVOKE CONNECT ON DATABASE {database} FROM PUBLIC"))
    conn.execute(text(f"GRANT CONNECT ON DATABASE {database} TO {quote(grantee)}"))
    conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {quote(grantee)}"))


def move_privileges(conn: Connection, old: str, new: str) -> int:
    """Re-grant to `new` what `old` holds in this database (tables, columns, sequences,
    schema public, CONNECT), then revoke it from `old`. Returns how many grants moved."""
    if old == new or not _role_exists(conn, old):
        return 0
    moved = 0
    relations = conn.execute(
        text(
            """SELECT c.relname, a.privilege_type
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
                    aclexplode(c.relacl) a
               WHERE n.nspname = 'public' AND a.grantee = to_regrole(:old)"""
        ),
        {"old": old},
    ).all()
    for relname, privilege in relations:
        conn.execute(text(f"GRANT {privilege} ON {quote(relname)} TO {quote(new)}"))
        conn.execute(text(f"REVOKE {privilege} ON {quote(relname)} FROM {quote(old)}"))
        moved += 1
    columns = conn.execute(
        text(
            """SELECT c.relname, att.attname, a.privilege_type
               FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid
                    JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(att.attacl) a
               WHERE n.nspname = 'public' AND a.grantee = to_regrole(:old)"""
        ),
        {"old": old},
    ).all()
    for relname, column, privilege in columns:
        target = f"({quote(column)}) ON {quote(relname)}"
        conn.execute(text(f"GRANT {privilege} {target} TO {quote(new)}"))
        conn.execute(text(f"REVOKE {privilege} {target} FROM {quote(old)}"))
        moved += 1
    conn.execute(text(f"REVOKE ALL ON SCHEMA public FROM {quote(old)}"))
    database = quote(str(_scalar(conn, "SELECT current_database()")))
    conn.execute(text(f"REVOKE ALL ON DATABASE {database} FROM {quote(old)}"))
    return moved


# The roles the connected login acts as: itself and every role it belongs to, transitively.
_MINE = """WITH RECURSIVE mine(oid) AS (
      SELECT oid FROM pg_roles WHERE rolname = current_user
      UNION SELECT m.roleid FROM pg_auth_members m JOIN mine ON m.member = mine.oid)"""


def check_deployment(conn: Connection, app_role: str | None = None) -> list[str]:
    """What this deployment gets wrong, one line each, seen from the app's login role."""
    problems: list[str] = []
    for name, superuser, bypass in conn.execute(
        text(
            f"""{_MINE} SELECT rolname, rolsuper, rolbypassrls FROM pg_roles
                WHERE oid IN (SELECT oid FROM mine) AND (rolsuper OR rolbypassrls)
                ORDER BY rolname"""
        )
    ).all():
        if superuser:
            problems.append(f"app role {name} is a superuser")
        if bypass:
            problems.append(f"app role {name} has BYPASSRLS (row-level security does not apply)")
    owned = conn.execute(
        text(
            f"""{_MINE} SELECT c.relname FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relowner IN (SELECT oid FROM mine) AND n.nspname NOT LIKE 'pg\\_%'
                  AND n.nspname <> 'information_schema'
                UNION ALL SELECT nspname FROM pg_namespace
                WHERE nspowner IN (SELECT oid FROM mine) AND nspname NOT LIKE 'pg\\_%'
                UNION ALL SELECT datname FROM pg_database
                WHERE datname = current_database() AND datdba IN (SELECT oid FROM mine)
                ORDER BY 1"""
        )
    ).scalars()
    owned = list(owned)
    if owned:
        problems.append(
            f"app role owns {len(owned)} objects (e.g. {', '.join(owned[:3])}): "
            "the owner is not bound by the grants"
        )
    for table in conn.execute(
        text(
            """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
                 AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid
                             AND a.attname = 'tenant_id' AND NOT a.attisdropped)
                 AND NOT (c.relrowsecurity AND c.relforcerowsecurity
                          AND EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid))
               ORDER BY 1"""
        )
    ).scalars():
        problems.append(f"table {table} has tenant rows without forced row-level security")
    public_connect = bool(
        _scalar(
            conn,
            """SELECT datacl IS NULL OR EXISTS (
                   SELECT FROM aclexplode(datacl) a
                   WHERE a.grantee = 0 AND a.privilege_type = 'CONNECT')
               FROM pg_database WHERE datname = current_database()""",
        )
    )
    if public_connect:
        problems.append(
            "CONNECT on this database is open to PUBLIC: every role of the cluster may connect"
        )
        return problems
    others = list(
        conn.execute(
            text(
                f"""{_MINE} SELECT r.rolname FROM pg_roles r
                    WHERE r.rolcanlogin AND NOT r.rolsuper
                      AND has_database_privilege(r.oid, current_database(), 'CONNECT')
                      AND r.oid NOT IN (SELECT oid FROM mine)
                      AND r.oid <> (SELECT datdba FROM pg_database
                                    WHERE datname = current_database())
                      AND r.oid NOT IN (SELECT c.relowner FROM pg_class c
                                        JOIN pg_namespace n ON n.oid = c.relnamespace
                                        WHERE n.nspname = 'public')
                      AND r.rolname <> :role
                    ORDER BY 1"""
            ),
            {"role": app_role or ""},
        ).scalars()
    )
    if others:
        problems.append(
            f"{len(others)} other login roles may connect (e.g. {', '.join(others[:3])}): "
            "another deployment's role reaches this database"
        )
    return problems
