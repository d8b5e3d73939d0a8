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
        # The same file again, overwriting: its notes (health data) would be compared with
        # records outside HQ's care, so those rows wait for a stated purpose; nothing changes.
        again = await _imported(
            api,
            chain.hq,
            await _upload(api, chain.hq, make(rows), "p.bin", {"onMatch": "OVERWRITE"}),
        )
        assert again["importReport"]["rejections"] == [
            {"row": 2, "reason": "reason_required"},
            {"row": 3, "reason": "reason_required"},
            {"row": 4, "reason": "bad_phone"},
        ], encoding
        assert again["importReport"]["created"] == 0


STATE = """mutation($id: ID!) { statePurpose(patientId: $id, purpose: CARE,
  note: "moving the clinic system's records") { id } }"""
NOTES = "query($id: ID!) { patient(id: $id) { name notes } }"


async def test_health_columns_of_records_outside_care_need_a_stated_purpose(
    api: httpx.AsyncClient, operator: Operator, unique: str
):
    """HQ's import changes (or compares) health data of an existing record only where
    updatePatient would let HQ: under a purpose they stated for it. Decided by the row, not
    the record, so fill-empty and overwrite refuse alike and the report tells nothing of what
    the record holds; contact columns alone, and `SKIP`, need no reason."""
    slug = f"imr-{unique}"
    chain = await chain_for_import(api, operator, slug, existing=3)
    (p0, id0), (p1, id1), (p2, _) = chain.existing.items()
    SEEDED.update({f"note-{slug}-new0", f"note-{slug}-new1"})

    def file(*rows: list[str]) -> bytes:
        out = io.StringIO()
        csv.writer(out).writerows([["姓名", "手机号", "备注"], *rows])
        return out.getvalue().encode()

    def name(k: int) -> str:
        return f"测试患者{slug}-existing{k}"

    health = file(
        [name(0), p0, f"note-{slug}-new0"], [name(1), p1, f"note-{slug}-new1"], [name(2), p2, ""]
    )
    for on_match in ("FILL_EMPTY", "OVERWRITE"):
        job = await _imported(
            api, chain.hq, await _upload(api, chain.hq, health, "h.csv", {"onMatch": on_match})
        )
        assert job["importReport"]["rejections"] == [
            {"row": 2, "reason": "reason_required"},
            {"row": 3, "reason": "reason_required"},
        ], on_match
        assert job["importReport"]["unchanged"] == 1  # the row without a note: contact only
    skipped = await _imported(
        api, chain.hq, await _upload(api, chain.hq, health, "h.csv", {"onMatch": "SKIP"})
    )
    assert skipped["importReport"]["unchanged"] == 3 and skipped["importReport"]["rejected"] == 0
    # A tag of a health group is health data too.
    group = """mutation { createTagGroup(name: "诊断", isHealth: true) { id } }"""
    made = ok(await gql(api, group, token=chain.hq))["createTagGroup"]["id"]
    tag = 'mutation($g: ID!) { createTag(groupId: $g, name: "牙周炎") { id } }'
    ok(await gql(api, tag, {"g": made}, token=chain.hq))
    out = io.StringIO()
    csv.writer(out).writerows([["姓名", "手机号", "标签"], [name(2), p2, "牙周炎"]])
    tagged = await _upload(api, chain.hq, out.getvalue().encode(), "t.csv")
    assert tagged.status_code == 200
    started = ok(tagged.json())["importPatients"]
    job = await wait_for_job(api, chain.hq, started["id"])
    assert job["importReport"]["rejections"] == [{"row": 2, "reason": "reason_required"}]
    # A purpose for the first record opens it to the import, and to it alone.
    ok(await gql(api, STATE, {"id": id0}, token=chain.hq))
    job = await _imported(
        api, chain.hq, await _upload(api, chain.hq, health, "h.csv", {"onMatch": "OVERWRITE"})
    )
    assert job["importReport"]["rejections"] == [{"row": 3, "reason": "reason_required"}]
    assert job["importReport"]["updated"] == 1
    read = await gql(api, NOTES, {"id": id0}, token=chain.hq)
    assert read["data"]["patient"]["notes"] == f"note-{slug}-new0"
    ok(await gql(api, STATE, {"id": id1}, token=chain.hq))
    assert ok(await gql(api, NOTES, {"id": id1}, token=chain.hq))["patient"]["notes"] is None


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
