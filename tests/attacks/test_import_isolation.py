"""A bulk import never reaches another chain: an HQ admin of chain A uploads a file naming
chain B's branch codes and B's patients' phones; B's rows are unchanged, nothing of B appears
in the job's answer or report, and the file's rows land in A (matched only against A)."""

from __future__ import annotations

import csv
import io
import json

import httpx

from tests.attacks.test_isolation import _leaks, _snapshot, worlds  # noqa: F401
from tests.chain.imports import wait_for_job
from tests.support import World, codes, gql, ok, sign_in

IMPORT = """mutation Import($f: Upload!) { importPatients(file: $f) { id } }"""
REPORT = """query($id: ID!) { job(id: $id) { status importReport { created updated unchanged
  rejected rejections { row reason } } } }"""


async def test_an_import_naming_another_chain_stays_in_its_own(
    client: httpx.AsyncClient,
    worlds: tuple[World, World],  # noqa: F811
) -> None:
    a, b = worlds
    token_a = await sign_in(client, a, "hq_admin")
    token_b = await sign_in(client, b, "hq_admin")
    before = await _snapshot(client, token_b)
    out = io.StringIO()
    rows = [["姓名", "手机号", "门店"]]
    for values in b.plaintext.values():
        rows.append([values["name"], values["phone"], next(iter(b.branches))])
    csv.writer(out).writerows(rows)
    operations = {"query": IMPORT, "variables": {"f": None}}
    answer = await client.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.f"]})},
        files={"0": ("b.csv", out.getvalue().encode(), "text/csv")},
        headers={"authorization": f"Bearer {token_a}"},
    )
    assert answer.status_code == 200, answer.text
    job = await wait_for_job(client, token_a, ok(answer.json())["importPatients"]["id"])
    report = await gql(client, REPORT, {"id": job["id"]}, token=token_a)
    assert _leaks(report, b) == [] and _leaks(answer.json(), b) == []
    # B's phones are unknown in A: the rows are A's new patients, and B is untouched.
    assert ok(report)["job"]["importReport"]["created"] == len(rows) - 1
    assert await _snapshot(client, token_b) == before
    # A's job answers B as a missing one would.
    assert codes(await gql(client, REPORT, {"id": job["id"]}, token=token_b)) == ["NOT_FOUND"]
