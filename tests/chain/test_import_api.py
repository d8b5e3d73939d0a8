"""importPatients over the GraphQL multipart request spec, through the ASGI app, on a chain
made by `tenant create` with a branch made through the API: CSV with a BOM, GB18030 and XLSX
each imported; the report and the rejected rows; malformed multipart bodies answer coded
errors (never INTERNAL); a caller who is not HQ is refused."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import httpx
from openpyxl import Workbook

from api.app import create_app
from api.context import AppState
from tests.chain.conftest import Operator, sign_in_pair
from tests.chain.imports import JOB, chain_for_import, wait_for_job
from tests.support import SEEDED, codes, gql, ok

IMPORT = """mutation Import($f: Upload!, $o: ImportOptionsInput) {
  importPatients(file: $f, options: $o) { id kind status total } }"""
REJECTED = """query($id: ID!) { job(id: $id) { rejectedRowsCsv } }"""
ACCEPT = """mutation($t: String!, $p: String!) { acceptInvitation(token: $t, password: $p) }"""
HEADER = ["姓名", "手机号", "门店", "性别", "标签", "备注"]


def _rows(tag: str) -> list[list[str]]:
    rows = [
        [f"测试患者{tag}甲", "139 1111 2222", "hz1", "女", "VIP", f"note-{tag}-1"],
        [f"测试患者{tag}乙", "+86 139-1111-3333", "", "男", "", f"note-{tag}-2"],
        [f"测试患者{tag}丙", "not a phone", "hz1", "", "", f"note-{tag}-3"],
    ]
    SEEDED.update(c for r in rows for c in (r[0], r[5]))
    SEEDED.update({"+8613911112222", "+8613911113333"})
    return rows


def _csv(rows: list[list[str]], encoding: str) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows([HEADER, *rows])
    return out.getvalue().encode(encoding)


def _xlsx(rows: list[list[str]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in [HEADER, *rows]:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def _upload(
    api: httpx.AsyncClient,
    token: str,
    data: bytes,
    filename: str,
    options: dict[str, Any] | None = None,
) -> httpx.Response:
    operations = {"query": IMPORT, "variables": {"f": None, "o": options}}
    return await api.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.f"]})},
        files={"0": (filename, data, "application/octet-stream")},
        headers={"authorization": f"Bearer {token}"},
    )


async def _imported(api: httpx.AsyncClient, token: str, response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    started = ok(response.json())["importPatients"]
    assert started["kind"] == "import" and started["total"] == 3
    return await wait_for_job(api, token, started["id"])


async def test_csv_bom_gb18030_and_xlsx_are_imported(
    api: httpx.AsyncClient, operator: Operator, unique: str
):
    for n, (encoding, make) in enumerate(
        [
            ("utf-8-sig", lambda rows: _csv(rows, "utf-8-sig")),
            ("gb18030", lambda rows: _csv(rows, "gb18030")),
            ("xlsx", _xlsx),
        ]
    ):
        slug = f"imq{n}-{unique}"
        chain = await chain_for_import(api, operator, slug, existing=0)
        rows = _rows(slug)
        job = await _imported(api, chain.hq, await _upload(api, chain.hq, make(rows), "p.bin"))
        assert job["status"] == "done", encoding
        assert job["importReport"] == {
            "created": 2,
            "updated": 0,
            "unchanged": 0,
            "rejected": 1,
            "rejections": [{"row": 4, "reason": "bad_phone"}],
        }, encoding
        listed = ok(
            await gql(
                api,
                "{ patients(first: 10) { edges { node { name phone homeBranch { code } "
                "tags { name } } } } }",
                token=chain.hq,
            )
        )["patients"]["edges"]
        got = sorted(
            (e["node"]["name"], e["node"]["phone"], e["node"]["homeBranch"]["code"],
             [t["name"] for t in e["node"]["tags"]])
            for e in listed
        )  # fmt: skip
        assert got == sorted(
            [
                (rows[0][0], "+8613911112222", "hz1", ["VIP"]),
                (rows[1][0], "+8613911113333", "main", []),
            ]
        ), encoding
        back = ok(await gql(api, REJECTED, {"id": job["id"]}, token=chain.hq))
        assert list(csv.reader(io.StringIO(back["job"]["rejectedRowsCsv"]))) == [
            [*HEADER, "reason"],
            [*rows[2], "bad_phone"],
        ]
        # The same file again, overwriting: nothing differs, so nothing changes.
        again = await _imported(
            api,
            chain.hq,
            await _upload(api, chain.hq, make(rows), "p.bin", {"onMatch": "OVERWRITE"}),
        )
        assert again["importReport"]["unchanged"] == 2 and again["importReport"]["created"] == 0


async def test_a_column_mapping_names_unknown_headers(
    api: httpx.AsyncClient, operator: Operator, unique: str
):
    slug = f"imm-{unique}"
    chain = await chain_for_import(api, operator, slug, existing=0)
    rows = _rows(slug)
    out = io.StringIO()
    csv.writer(out).writerows([["客户", "联系方式", "分店", "性别", "标签", "备注"], *rows])
    mapping = [
        {"column": "客户", "field": "NAME"},
        {"column": "联系方式", "field": "PHONE"},
        {"column": "分店", "field": "BRANCH"},
    ]
    job = await _imported(
        api,
        chain.hq,
        await _upload(api, chain.hq, out.getvalue().encode(), "p.csv", {"mapping": mapping}),
    )
    assert job["importReport"]["created"] == 2


async def test_malformed_multipart_answers_coded_errors(
    api: httpx.AsyncClient, operator: Operator, chain_state: AppState, unique: str
):
    slug = f"imx-{unique}"
    chain = await chain_for_import(api, operator, slug, existing=0)
    auth = {"authorization": f"Bearer {chain.hq}"}
    good_ops = json.dumps({"query": IMPORT, "variables": {"f": None}})
    part = '--b\r\ncontent-disposition: form-data; name="{}"{}\r\n\r\n{}\r\n'

    def body(*parts: tuple[str, str, str]) -> bytes:
        return ("".join(part.format(*p) for p in parts) + "--b--\r\n").encode()

    multipart = {**auth, "content-type": "multipart/form-data; boundary=b"}
    file_part = ("0", '; filename="p.csv"', "姓名,手机号\r\nx,13911114444")
    cases = {
        "no boundary": ({**auth, "content-type": "multipart/form-data"}, body(file_part)),
        "garbage": (multipart, b"--b\r\nthis is not a part"),
        "no map": (multipart, body(("operations", "", good_ops), file_part)),
        "map first": (multipart, body(("map", "", '{"0": ["variables.f"]}'), file_part)),
        "operations not JSON": (
            multipart,
            body(("operations", "", "{nope"), ("map", "", '{"0": ["variables.f"]}'), file_part),
        ),
        "map names a missing file": (
            multipart,
            body(("operations", "", good_ops), ("map", "", '{"1": ["variables.f"]}'), file_part),
        ),
        "map path outside the variables": (
            multipart,
            body(("operations", "", good_ops), ("map", "", '{"0": ["query"]}'), file_part),
        ),
        "another operation": (
            multipart,
            body(
                ("operations", "", json.dumps({"query": "mutation { signOut }"})),
                ("map", "", "{}"),
            ),
        ),
        "a batch": (
            multipart,
            body(
                ("operations", "", f"[{good_ops}]"),
                ("map", "", '{"0": ["variables.f"]}'),
                file_part,
            ),
        ),
    }
    for name, (headers, content) in cases.items():
        response = await api.post("/graphql", content=content, headers=headers)
        assert response.status_code == 400, (name, response.text)
        assert codes(response.json()) == ["BAD_USER_INPUT"], (name, response.text)

    # The file sent as a JSON value instead of a file part: a coded error, not INTERNAL.
    as_json = await gql(api, IMPORT, {"f": "upload:0"}, token=chain.hq)
    assert codes(as_json) == ["BAD_USER_INPUT"]
    # A file without the header the import needs.
    headless = await _upload(api, chain.hq, "手机号\r\n13911114444\r\n".encode(), "p.csv")
    assert codes(headless.json()) == ["BAD_USER_INPUT"]

    # Over the upload limit (a setting): 413 with a code, before the file is all read.
    small = chain_state.settings.model_copy(update={"max_upload_bytes": 2048})
    app = create_app(small, chain_state)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        big = await _upload(client, chain.hq, b"x" * 5000, "p.csv")
    assert big.status_code == 413 and codes(big.json()) == ["BAD_USER_INPUT"]


async def test_only_hq_imports(api: httpx.AsyncClient, operator: Operator, unique: str):
    slug = f"imf-{unique}"
    chain = await chain_for_import(api, operator, slug, existing=0)
    email = f"bm@{slug}.test"
    out = await operator.run(
        "staff", "invite", "--tenant", slug, "--email", email,
        "--role", "branch_manager", "--branch", "main",
    )  # fmt: skip
    password = "a long password for bm 1"
    ok(await gql(api, ACCEPT, {"t": out.strip().splitlines()[-1], "p": password}))
    manager = (await sign_in_pair(api, slug, email, password))["accessToken"]
    refused = await _upload(api, manager, _csv(_rows(slug), "utf-8"), "p.csv")
    assert refused.status_code == 200 and codes(refused.json()) == ["FORBIDDEN"]
    # nor may they read an import's report
    job = await _imported(
        api, chain.hq, await _upload(api, chain.hq, _csv(_rows(slug), "utf-8"), "p.csv")
    )
    report = await gql(api, JOB, {"id": job["id"]}, token=manager)
    assert "FORBIDDEN" in codes(report)
