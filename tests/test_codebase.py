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
# who may import whom: process → api and below (the CLI, the demo loader, background jobs, the
# senders, the settings); api → auth, domain, tenancy (only the GraphQL and HTTP edge);
# auth → domain, tenancy; domain → tenancy
ALLOWED = {
    "process": {"process", "api", "auth", "domain", "tenancy", "migrations"},
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


# --- SQL lives in repositories (domain/<feature>/repository.py, auth/repository.py) ---

# sqlalchemy's statement builders and expression constructs: api/ never builds a statement.
STATEMENT_BUILDERS = frozenset(
    {
        "select", "insert", "update", "delete", "text", "func", "and_", "or_", "not_",
        "exists", "case", "literal", "literal_column", "column", "table", "union",
        "union_all", "intersect", "except_", "cast", "type_coerce", "tuple_", "null", "true",
        "false", "values", "lateral", "bindparam", "any_", "all_", "extract", "distinct",
        "asc", "desc", "nulls_first", "nulls_last", "between", "over", "within_group",
        "join", "outerjoin", "alias", "aliased", "subquery", "cte", "label", "collate",
        "from_dml_column", "selectinload", "joinedload", "contains_eager", "with_loader_criteria",
        "load_only", "defer", "undefer", "raiseload", "noload", "lazyload", "immediateload",
    }
)  # fmt: skip
EXECUTES = frozenset(
    {"execute", "scalar", "scalars", "stream", "stream_scalars", "exec_driver_sql"}
)


def _built(node: ast.expr, builders: set[str]) -> bool:
    """Whether `node` builds a statement: a builder's call, a method chain on one, or SQL text."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    while isinstance(node, ast.Call | ast.Attribute | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return isinstance(node, ast.Name) and node.id in builders


def statement_offences(source: str) -> list[str]:
    """What in a module of api/ builds SQL: an import of a statement builder from sqlalchemy,
    a builder used through the module (`sa.select`), or an execute call on a statement built
    (or SQL text written) right there."""
    tree = ast.parse(source)
    found: list[str] = []
    builders: set[str] = set()
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
            for alias in node.names:
                if alias.name in STATEMENT_BUILDERS:
                    builders.add(alias.asname or alias.name)
                    found.append(f"{node.lineno}: imports {alias.name} from {node.module}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sqlalchemy":
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr in STATEMENT_BUILDERS
        ):
            found.append(f"{node.lineno}: uses {node.value.id}.{node.attr}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in EXECUTES
            and node.args
            and _built(node.args[0], builders | {f"{m}" for m in modules})
        ):
            found.append(f"{node.lineno}: {node.func.attr}() on a statement built here")
    return found


# Modules of api/ and process/ whose statements have not moved to a repository yet. This list
# only shrinks: a module leaves it when its SQL moves, and the test fails when a listed module
# is already clean (so it cannot be forgotten here) or when any other module builds SQL.
STATEMENTS_NOT_YET_MOVED: frozenset[str] = frozenset()


def _offences(paths: list[Path]) -> dict[str, list[str]]:
    found = {str(p.relative_to(ROOT)): statement_offences(p.read_text()) for p in paths}
    return {path: lines for path, lines in found.items() if lines}


def test_edge_and_processes_build_no_statements() -> None:
    """api/ (the GraphQL edge) and process/ (commands, jobs, senders) call repositories."""
    modules = [p for pkg in ("api", "process") for p in sorted((ROOT / pkg).rglob("*.py"))]
    offences = _offences(modules)
    building = set(offences)
    new = {path: lines for path, lines in offences.items() if path not in STATEMENTS_NOT_YET_MOVED}
    assert new == {}, "move these statements into the feature's repository (domain/…)"
    assert STATEMENTS_NOT_YET_MOVED - building == set(), "clean now: drop from the list"


# Where a domain feature's SQL may be written besides its repository.py: its models (table
# definitions: defaults, indexes, constraints), the patient scope's clause (the one rule auth
# builds and every repository applies) and the keyset step repositories share.
DOMAIN_SQL_OUTSIDE_REPOSITORIES = frozenset({"domain/patients/scope.py", "domain/paging.py"})


def test_domain_sql_lives_in_repositories() -> None:
    """A newcomer finds every statement of a feature in domain/<feature>/repository.py."""
    modules = [
        p
        for p in sorted((ROOT / "domain").rglob("*.py"))
        if p.name not in ("repository.py", "models.py")
        and not p.name.endswith("_models.py")
        and str(p.relative_to(ROOT)) not in DOMAIN_SQL_OUTSIDE_REPOSITORIES
    ]
    assert _offences(modules) == {}, "move these statements into the feature's repository.py"


# auth/'s own tables (staff, sessions, second factors, rules, rate limits) are read and written
# by auth/repository.py; the access log keeps its storage in its own modules (the hash chain's
# append, its queries, its archive), which are what an auditor reviews.
AUTH_SQL_MODULES = frozenset(
    {
        "auth/repository.py",
        "auth/access_log.py",
        "auth/access_log_queries.py",
        "auth/access_log_archive.py",
        "auth/models.py",
    }
)


def test_auth_sql_lives_in_its_repository() -> None:
    modules = [
        p
        for p in sorted((ROOT / "auth").rglob("*.py"))
        if str(p.relative_to(ROOT)) not in AUTH_SQL_MODULES
    ]
    assert _offences(modules) == {}, "move these statements into auth/repository.py"


@pytest.mark.parametrize(
    ("source", "caught"),
    [
        ("from sqlalchemy import select\n", True),
        ("from sqlalchemy import func as f\n", True),
        ("from sqlalchemy.orm import selectinload\n", True),
        ("import sqlalchemy as sa\nq = sa.select(1)\n", True),
        ("async def f(s):\n    await s.execute('DELETE FROM patients')\n", True),
        ("async def f(c):\n    await c.exec_driver_sql('SELECT 1')\n", True),
        ("from sqlalchemy import select as pick\nasync def f(s):\n"
         "    await s.scalar(pick(1).where(True))\n", True),
        ("from sqlalchemy.ext.asyncio import AsyncSession\n", False),
        ("from sqlalchemy.exc import IntegrityError\n", False),
        ("async def f(repo):\n    await repo.execute(plan)\n", False),
    ],
)  # fmt: skip
def test_statement_check_catches_what_it_should(source: str, caught: bool) -> None:
    assert bool(statement_offences(source)) is caught


# --- every rule in auth/: a caller's patient scope is built there and nowhere else ---


def test_patient_scopes_are_built_only_in_auth() -> None:
    """api/, domain/ and process/ take the PatientScope auth/ built and never make one (a
    scope made elsewhere would be a rule auth/ does not know of)."""
    built = {
        str(p.relative_to(ROOT)): _calls(ast.parse(p.read_text()), "PatientScope")
        for pkg in ("api", "domain", "process")
        for p in sorted((ROOT / pkg).rglob("*.py"))
    }
    assert {path: lines for path, lines in built.items() if lines} == {}, (
        "build the scope in auth.guard"
    )


# --- tenant binding: one context manager, and no tenant_id passed around by hand ---

# The request boundary: these bind the request's own session once its token or sign-in is
# verified (api.context opens the session before the tenant is known). Everything else opens a
# tenant-bound session with tenancy.session.tenant_session.
BIND_TENANT_CALLERS = frozenset(
    {
        "tenancy/session.py",
        "auth/sessions.py",
        "auth/provisioning.py",
        "auth/second_factor.py",
        "auth/patient_principal.py",
        "auth/staff_tokens.py",
        "auth/patient_sessions.py",
    }
)
APP_PACKAGES = ("process", "api", "auth", "domain", "tenancy", "migrations")


def _calls(tree: ast.AST, name: str) -> list[int]:
    return [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Name) and n.func.id == name)
            or (isinstance(n.func, ast.Attribute) and n.func.attr == name)
        )
    ]


def _app_modules() -> list[Path]:
    return [p for pkg in APP_PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def test_bind_tenant_only_at_the_entry_points() -> None:
    calls = {
        str(p.relative_to(ROOT)): _calls(ast.parse(p.read_text()), "bind_tenant")
        for p in _app_modules()
    }
    outside = {path: lines for path, lines in calls.items() if lines}.keys() - BIND_TENANT_CALLERS
    assert outside == set(), "open the session with tenancy.session.tenant_session instead"


def tenant_id_parameters(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            args = node.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
            if any(a is not None and a.arg == "tenant_id" for a in every):
                found.append(f"{node.lineno}: {getattr(node, 'name', 'lambda')}")
    return found


# Where a tenant id is data rather than a binding: a token's `tid` claim is written from it, an
# archive segment's path is named by it. Nothing here picks the tenant a session works in.
TENANT_ID_AS_DATA = {
    "auth/tokens.py": ["38: issue_access_token", "87: issue_patient_token"],
    "auth/access_log_archive.py": ["62: segment_path"],
}


def test_no_tenant_id_parameter_outside_tenancy() -> None:
    found = {
        str(p.relative_to(ROOT)): tenant_id_parameters(p.read_text())
        for p in _app_modules()
        if p.parts[len(ROOT.parts)] != "tenancy"
    }
    assert {path: f for path, f in found.items() if f} == TENANT_ID_AS_DATA


def test_tenant_id_parameter_check_catches_one() -> None:
    assert tenant_id_parameters("def f(s, *, tenant_id):\n    pass\n") == ["1: f"]
    assert tenant_id_parameters("async def f(s, tenant):\n    pass\n") == []
