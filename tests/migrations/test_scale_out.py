"""docs/decisions/0003-scale-out.md held in code: every tenant-owned table's primary key, unique
constraints, indexes and foreign keys lead with tenant_id (what Citus distribution by tenant
needs), and the tables that are not tenant-owned are exactly the record's reference tables.

Checked on the models' metadata and on migrated databases (SQLite and PostgreSQL, read back
from their catalogues, so an index a migration made by hand counts too); and the check is shown
to fail on a deliberately bad schema."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    MetaData,
    Table,
    UniqueConstraint,
    Uuid,
    inspect,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from migrations.registry import target_metadata
from tests.conftest import Database

RECORD = Path(__file__).resolve().parents[2] / "docs" / "decisions" / "0003-scale-out.md"
TENANT = "tenant_id"


def reference_tables() -> set[str]:
    """The backticked names of the bullets under "## Reference tables" in the record."""
    section = RECORD.read_text().split("## Reference tables", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^- `([a-z_]+)`", section, flags=re.MULTILINE))


@dataclass(frozen=True)
class Key:
    """One primary key, unique constraint, index or foreign key of a table."""

    kind: str
    name: str
    columns: tuple[str, ...]
    referred_table: str = ""
    referred_columns: tuple[str, ...] = ()


def keys_of_metadata(metadata: MetaData) -> dict[str, list[Key]]:
    out: dict[str, list[Key]] = {}
    for table in metadata.tables.values():
        keys = [Key("primary key", "pk", tuple(c.name for c in table.primary_key.columns))]
        for c in table.constraints:
            if isinstance(c, UniqueConstraint):
                keys.append(Key("unique", str(c.name), tuple(col.name for col in c.columns)))
        for fk in table.foreign_key_constraints:
            keys.append(
                Key(
                    "foreign key",
                    str(fk.name),
                    tuple(fk.column_keys),
                    fk.referred_table.name,
                    tuple(e.column.name for e in fk.elements),
                )
            )
        for ix in table.indexes:
            cols = tuple(getattr(e, "name", str(e)) for e in ix.expressions)
            keys.append(Key("index", str(ix.name), cols))
        out[table.name] = keys
    return out


def keys_of_database(conn: Connection) -> dict[str, list[Key]]:
    db = inspect(conn)
    out: dict[str, list[Key]] = {}
    for name in db.get_table_names():
        pk = db.get_pk_constraint(name)
        keys = [Key("primary key", "pk", tuple(pk["constrained_columns"]))]
        keys += [
            Key("unique", str(u["name"]), tuple(u["column_names"]))
            for u in db.get_unique_constraints(name)
        ]
        keys += [
            Key(
                "foreign key",
                str(fk["name"]),
                tuple(fk["constrained_columns"]),
                fk["referred_table"],
                tuple(fk["referred_columns"]),
            )
            for fk in db.get_foreign_keys(name)
        ]
        for ix in db.get_indexes(name):
            # an expression names no column (None): it does not count as tenant_id
            cols = tuple(c or "<expression>" for c in ix["column_names"])
            keys.append(Key("index", str(ix["name"]), cols))
        out[name] = keys
    return out


def distribution_problems(tables: dict[str, list[Key]], references: set[str]) -> list[str]:
    """One line per way the schema cannot be distributed by tenant as the record says."""
    problems: list[str] = []
    owned = {name for name, keys in tables.items() if _has_tenant_column(keys)}
    for name in sorted(set(tables) - owned - references):
        problems.append(f"{name}: not tenant-owned and not a listed reference table")
    for name in sorted(references & owned):
        problems.append(f"{name}: listed as a reference table but has tenant_id")
    for name in sorted(references - set(tables)):
        problems.append(f"{name}: listed as a reference table but does not exist")
    for name in sorted(owned):
        for key in tables[name]:
            if not key.columns or key.columns[0] != TENANT:
                problems.append(
                    f"{name}: {key.kind} {key.name} {key.columns} does not lead with tenant_id"
                )
            elif (
                key.kind == "foreign key"
                and key.referred_table not in references
                and key.referred_columns[:1] != (TENANT,)
            ):
                problems.append(
                    f"{name}: foreign key {key.name} to {key.referred_table} "
                    "does not reach it by tenant_id"
                )
    for name in sorted(references & set(tables)):
        for key in tables[name]:
            if key.kind == "foreign key" and key.referred_table in owned:
                problems.append(
                    f"{name}: reference table points at tenant table {key.referred_table}"
                )
    return problems


def _has_tenant_column(keys: list[Key]) -> bool:
    return any(TENANT in key.columns for key in keys)


def test_the_record_lists_the_reference_tables() -> None:
    assert reference_tables() == {
        "tenants",
        "trusted_documents",
        "sign_in_windows",
        "alembic_version",
    }


def test_models_can_be_distributed_by_tenant() -> None:
    tables = keys_of_metadata(target_metadata)
    # alembic_version is the one table no model declares
    assert distribution_problems(tables, reference_tables() - {"alembic_version"}) == []


async def test_migrated_database_can_be_distributed_by_tenant(db: Database) -> None:
    engine = create_async_engine(db.owner_url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(keys_of_database)
    finally:
        await engine.dispose()
    assert set(tables) >= {"patients", "access_log", "tenants"}
    assert distribution_problems(tables, reference_tables()) == []


def test_the_check_finds_what_would_break_distribution() -> None:
    """A deliberately bad schema: every kind of mistake is reported, one line each."""
    bad = MetaData()
    Table("tenants", bad, Column("id", Uuid, primary_key=True))
    Table(
        "things",
        bad,
        Column(TENANT, Uuid, ForeignKey("tenants.id"), primary_key=True),
        Column("id", Uuid, primary_key=True),
        Column("code", Uuid),
        Column("owner_id", Uuid),
        UniqueConstraint("code", name="uq_things_code"),
        Index("ix_things_owner", "owner_id"),
    )
    Table(
        "others",
        bad,
        Column("id", Uuid, primary_key=True),  # tenant_id not leading
        Column(TENANT, Uuid, primary_key=True),
        Column("thing_id", Uuid, ForeignKey("things.id")),
    )
    Table(
        "links",
        bad,
        Column(TENANT, Uuid, primary_key=True),
        Column("id", Uuid, primary_key=True),
        Column("code", Uuid),
        # leads with tenant_id, but reaches `things` by a column that is not its tenant
        ForeignKeyConstraint([TENANT, "code"], ["things.code", "things.id"], name="fk_links"),
    )
    Table("lookups", bad, Column("id", Uuid, primary_key=True))
    Table(
        "settings",
        bad,
        Column("id", Uuid, primary_key=True),
        Column("thing", Uuid),
        ForeignKeyConstraint(["thing", "id"], ["things.tenant_id", "things.id"], name="fk_s"),
    )
    problems = distribution_problems(keys_of_metadata(bad), {"tenants", "settings"})
    assert problems == [
        "lookups: not tenant-owned and not a listed reference table",
        "links: foreign key fk_links to things does not reach it by tenant_id",
        "others: primary key pk ('id', 'tenant_id') does not lead with tenant_id",
        "others: foreign key None ('thing_id',) does not lead with tenant_id",
        "things: unique uq_things_code ('code',) does not lead with tenant_id",
        "things: index ix_things_owner ('owner_id',) does not lead with tenant_id",
        "settings: reference table points at tenant table things",
    ]
    # and the good parts of it pass: only the listed problems, none for `tenants`
    assert not any(p.startswith("tenants") for p in problems)
