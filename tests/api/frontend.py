"""The frontend toolchain as a frontend team runs it: `npm ci` with the pinned versions in
frontend-schema/package.json, graphql-codegen's client preset over the SDL and the operations,
and `tsc --strict` over the generated types, the typed client and the README's TypeScript."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from tests.readme import blocks

FRONTEND = Path(__file__).resolve().parents[2] / "frontend-schema"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _npm(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["npm", *args], cwd=FRONTEND, capture_output=True, text=True, timeout=timeout
    )


@cache
def _generated() -> tuple[dict[str, str], str]:
    if shutil.which("npm") is None:
        return {}, "npm is not installed"
    # The suite runs in several processes (pytest-xdist): one `npm ci` and codegen at a time in
    # frontend-schema/, or one process deletes node_modules under the other's feet.
    with (FRONTEND / ".toolchain.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _generate()


def _generate() -> tuple[dict[str, str], str]:
    if not (FRONTEND / "node_modules" / ".package-lock.json").exists() or IN_CI:
        installed = _npm("ci", "--no-audit", "--no-fund")
        if installed.returncode != 0:
            return {}, f"npm ci failed: {installed.stderr[-2000:]}"
    made = _npm("run", "codegen")
    if made.returncode != 0:
        return {}, f"codegen failed: {made.stdout[-3000:]}{made.stderr[-2000:]}"
    # The README's TypeScript, compiled with the rest (it speaks of ./generated and a token).
    readme = FRONTEND / "client" / "readme.generated.ts"
    snippets = blocks("ts", "### Trusted documents: what production runs")
    body = "\n".join(
        f"export async function snippet{n}(token: string) {{\n{s}\n}}" if "import" not in s else s
        for n, s in enumerate(snippets)
    )
    imports = [line for line in body.splitlines() if line.startswith("import ")]
    rest = [line for line in body.splitlines() if not line.startswith("import ")]
    readme.write_text(
        "\n".join(imports).replace("'./generated/", "'../generated/")
        + "\ndeclare const token: string\nexport {}\n"
        + "\n".join(rest)
        + "\n",
        encoding="utf-8",
    )
    try:
        checked = _npm("run", "typecheck")
    finally:
        readme.unlink()
    if checked.returncode != 0:
        return {}, f"tsc --strict failed: {checked.stdout[-4000:]}"
    manifest = json.loads((FRONTEND / "generated" / "persisted-documents.json").read_text())
    return manifest, ""


def codegen_manifest() -> dict[str, str]:
    """{"sha256:<hash>": document} as the client preset wrote it, after tsc passed."""
    manifest, problem = _generated()
    if problem:
        if "not installed" in problem and not IN_CI:
            pytest.skip(problem)
        pytest.fail(problem)
    return manifest
