"""The codebase keeps its shape: layers import one way, ruff is clean, the SDL is current."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# who may import whom: api → auth, domain, tenancy; auth → domain, tenancy; domain → tenancy
ALLOWED = {
    "tenancy": {"tenancy"},
    "domain": {"domain", "tenancy"},
    "auth": {"auth", "domain", "tenancy"},
    "api": {"api", "auth", "domain", "tenancy", "migrations"},
    "migrations": {"migrations", "auth", "domain", "tenancy"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_one_way(layer: str) -> None:
    bad = {
        str(p.relative_to(ROOT)): sorted(_imports(p) - ALLOWED[layer])
        for p in (ROOT / layer).rglob("*.py")
        if _imports(p) - ALLOWED[layer]
    }
    assert bad == {}


def test_ruff_clean() -> None:
    for args in (["check", "."], ["format", "--check", "."]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_frontend_sdl_is_current() -> None:
    from api.sdl import export_sdl

    committed = (ROOT / "frontend-schema" / "schema.graphql").read_text()
    assert committed == export_sdl(), (
        "frontend-schema/schema.graphql is stale: run `uv run patientpool export-schema`"
    )


def test_every_type_and_field_is_described() -> None:
    """Frontend developers live by the SDL: each type, field, input field and argument says
    what it is."""
    from graphql import GraphQLInputObjectType, GraphQLObjectType

    from api.schema import build_schema

    schema = build_schema()._schema
    builtin = {"String", "Int", "Float", "Boolean", "ID"}
    missing: list[str] = []
    for name, gql_type in schema.type_map.items():
        if name.startswith("__") or name in builtin:
            continue
        if not gql_type.description:
            missing.append(name)
        if isinstance(gql_type, GraphQLObjectType | GraphQLInputObjectType):
            missing += [f"{name}.{f}" for f, v in gql_type.fields.items() if not v.description]
        if isinstance(gql_type, GraphQLObjectType):
            missing += [
                f"{name}.{f}({a})"
                for f, v in gql_type.fields.items()
                for a, arg in v.args.items()
                if not arg.description
            ]
    assert missing == [], f"describe these in the schema: {missing}"


def test_example_operations_validate() -> None:
    """Every example operation in frontend-schema/operations is valid against the schema."""
    from graphql import parse, validate

    from api.schema import build_schema

    schema = build_schema()._schema
    files = sorted((ROOT / "frontend-schema" / "operations").glob("*.graphql"))
    assert len(files) >= 5
    for path in files:
        errors = validate(schema, parse(path.read_text(encoding="utf-8")))
        assert errors == [], f"{path.name}: {errors}"


def test_no_undeclared_breaking_changes() -> None:
    """The SDL may grow; removing or changing what frontends use must be declared."""
    from graphql import build_schema as parse_sdl
    from graphql import find_breaking_changes

    from api.schema import build_schema

    folder = ROOT / "frontend-schema"
    released = parse_sdl((folder / "released.graphql").read_text(encoding="utf-8"))
    declared = {
        line.strip()
        for line in (folder / "declared-breaking-changes.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    breaking = [c.description for c in find_breaking_changes(released, build_schema()._schema)]
    undeclared = [b for b in breaking if b not in declared]
    assert undeclared == [], (
        "breaking changes against frontend-schema/released.graphql; undo them, or declare "
        f"them in frontend-schema/declared-breaking-changes.txt: {undeclared}"
    )


def test_every_amount_is_decimal_yuan() -> None:
    """Money has one kind in the contract: Decimal yuan, in answers, inputs and arguments; no
    name carries fen. (Counts such as totalCount, Job.total and the metrics' `total` figures
    are not amounts.)"""
    import re

    from graphql import GraphQLInputObjectType, GraphQLInterfaceType, GraphQLObjectType
    from graphql import get_named_type as named

    from api.schema import build_schema

    money = re.compile(r"(revenue|amount|price|value|refunded|fen)$|^total$", re.I)
    not_money = {
        ("Job", "total"),
        ("PoolMetrics", "total"),
        ("ChainMetrics", "total"),
        ("SatisfactionMetrics", "total"),
    }
    seen, wrong = [], []
    for t in build_schema()._schema.type_map.values():
        if t.name.startswith("__"):
            continue
        if not isinstance(t, GraphQLObjectType | GraphQLInputObjectType | GraphQLInterfaceType):
            continue
        for name, field in t.fields.items():
            places = [(name, field.type)] + [
                (f"{name}({a})", arg.type) for a, arg in getattr(field, "args", {}).items()
            ]
            for where, type_ in places:
                leaf = where.split("(")[-1].rstrip(")")
                if money.search(leaf) and (t.name, leaf) not in not_money:
                    seen.append(f"{t.name}.{where}")
                    if named(type_).name != "Decimal" or "fen" in leaf.lower():
                        wrong.append(f"{t.name}.{where}: {type_}")
    assert len(seen) > 10
    assert wrong == []


# docs/decisions/0004-engine-pins.md: what leans on more than public API is pinned exactly.
ENGINE_PINS = ("strawberry-graphql", "graphql-core")


def test_engine_versions_are_pinned_exactly() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    specs = {
        re.split(r"[<>=!~\[ ]", d, maxsplit=1)[0]: d for d in project["project"]["dependencies"]
    }
    for name in ENGINE_PINS:
        spec = specs.get(name, "")
        assert re.fullmatch(rf"{re.escape(name)}==[0-9][0-9.]*", spec), (name, spec)
        assert metadata.version(name) == spec.split("==")[1], name
