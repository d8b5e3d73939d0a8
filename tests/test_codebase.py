"""The codebase keeps its shape: layers import one way, ruff is clean, the SDL is current."""

from __future__ import annotations

import ast
import subprocess
import sys
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
