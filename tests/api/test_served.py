"""The real thing: `patientpool demo` in a fresh directory, and a uvicorn process serving it."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.api.frontend import codegen_manifest
from tests.campaigns.standin import SMS_KEY, Served, StandIn
from tests.readme import blocks
from tests.support import SIGN_IN


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("server did not become ready")


def test_demo_command_serves_and_stops(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATIENTPOOL_")}
    provider = StandIn()
    sms = Served(provider.app()).__enter__()
    env.update(PATIENTPOOL_SMS_API_URL=sms.url, PATIENTPOOL_SMS_API_KEY=SMS_KEY)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "process.cli",
            "demo",
            "--data-dir",
            str(tmp_path),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_ready(url, proc)
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        accounts = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "process.cli",
                    "demo-accounts",
                    "--data-dir",
                    str(tmp_path),
                    "--json",
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert {a["tenant"] for a in accounts} == {"smile-dental", "renhe-tcm"}
        assert all(set(a) == {"tenant", "email", "password", "roles", "branches"} for a in accounts)
        roles = {r for a in accounts for r in a["roles"]}
        assert roles == {
            "hq_admin",
            "branch_manager",
            "doctor",
            "health_manager",
            "operator",
            "marketing",
            "auditor",
            "region_manager",
        }
        admin = next(a for a in accounts if a["roles"] == ["hq_admin"])
        signed = httpx.post(
            f"{url}/graphql",
            json={
                "query": SIGN_IN,
                "variables": {"t": admin["tenant"], "e": admin["email"], "p": admin["password"]},
            },
        ).json()
        token = signed["data"]["signIn"]["accessToken"]
        result = httpx.post(
            f"{url}/graphql",
            json={"query": "{ patients(first: 3) { totalCount edges { node { name } } } }"},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        assert result["data"]["patients"]["totalCount"] >= 300
        assert all(e["node"]["name"] for e in result["data"]["patients"]["edges"])
        bad = httpx.post(
            f"{url}/graphql",
            json={"query": "{ patients(first: 1000) { totalCount } }"},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert httpx.get(f"{url}/graphql", headers={"accept": "text/html"}).status_code == 200
        _run_example_operations(url, accounts)
        _run_by_hash(url, accounts, env, tmp_path)
        _run_the_readme(url, accounts)
        _run_a_campaign(url, accounts, {**env, "PATIENTPOOL_DATA_DIR": str(tmp_path)}, provider)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        sms.__exit__()
    assert proc.returncode is not None


OPERATIONS = Path(__file__).resolve().parents[2] / "frontend-schema" / "operations"


def _account(accounts: list[dict], role: str) -> dict:
    return next(a for a in accounts if a["tenant"] == "smile-dental" and role in a["roles"])


OPERATION = re.compile(r"^(query|mutation) (\w+)", re.M)


def _caller(url: str, hashes: dict[str, str] | None = None, sent: list[str] | None = None):  # type: ignore[no-untyped-def]
    """Runs a document by its text; with `hashes` (operation name → the SHA-256 codegen gave
    it), an operation codegen knows goes by hash alone instead, as a generated client sends it:
    a query by GET (urql's persisted exchange), falling back to POST where the server refuses
    the URL (personal data), a mutation by POST `documentId`."""

    def call(doc: str, variables: dict, token: str | None = None, op: str | None = None) -> dict:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        found = OPERATION.findall(doc)
        name = op or (found[0][1] if len(found) == 1 else None)
        kind = dict((n, k) for k, n in found).get(name or "")
        digest = (hashes or {}).get(name or "")
        if digest is None:
            body = {"query": doc, "variables": variables, "operationName": op}
            result = httpx.post(f"{url}/graphql", json=body, headers=headers, timeout=30).json()
        else:
            result = None
            if kind == "query":
                params = {
                    "extensions": json.dumps(
                        {"persistedQuery": {"version": 1, "sha256Hash": digest}}
                    ),
                    "variables": json.dumps(variables),
                }
                got = httpx.get(f"{url}/graphql", params=params, headers=headers, timeout=30)
                if got.status_code != 405:
                    result = got.json()
                    (sent if sent is not None else []).append(f"GET {name}")
            if result is None:
                body = {"documentId": f"sha256:{digest}", "variables": variables}
                result = httpx.post(f"{url}/graphql", json=body, headers=headers, timeout=30).json()
                (sent if sent is not None else []).append(f"POST {name}")
        assert "errors" not in result, (op, result)
        return result["data"]

    return call


def _run_example_operations(
    url: str, accounts: list[dict], hashes: dict[str, str] | None = None
) -> list[str]:
    """Every example operation for frontend developers runs on the demo data, as the role
    it is written for, without errors (by hash where `hashes` are given)."""

    def account(role: str) -> dict:
        return _account(accounts, role)

    sent: list[str] = []
    call = _caller(url, hashes, sent)
    ops = {p.name: p.read_text(encoding="utf-8") for p in OPERATIONS.glob("*.graphql")}
    tokens = {}
    for role in ("hq_admin", "health_manager", "auditor"):
        who = account(role)
        signed = call(
            ops["sign-in.graphql"],
            {"tenant": who["tenant"], "email": who["email"], "password": who["password"]},
        )
        tokens[role] = signed["signIn"]["accessToken"]
    hq = tokens["hq_admin"]
    ids = call(
        "{ patients(first: 1) { edges { node { id referralCode } } } "
        "branches { edges { node { id } } } }",
        {},
        hq,
    )
    patient = ids["patients"]["edges"][0]["node"]
    branch = ids["branches"]["edges"][0]["node"]["id"]
    now = datetime.now(UTC)
    year = {"from": (now - timedelta(days=365)).isoformat(), "to": now.isoformat()}
    listed = call(ops["patient-list.graphql"], {"first": 50}, hq)
    assert len(listed["patients"]["edges"]) == 50
    call(ops["my-follow-ups-today.graphql"], {}, tokens["health_manager"])
    tree = call(ops["referral-tree.graphql"], {"patientId": patient["id"]}, hq)
    assert tree["referralTree"]["nodes"][0]["depth"] == 0
    chart = call(ops["referral-chart.graphql"], {"patientId": patient["id"], "depth": 3}, hq)
    columns = chart["referralTree"]["columns"]
    assert columns["subtreeSize"] == [n["subtreeSize"] for n in tree["referralTree"]["nodes"]]
    call(ops["top-referrers.graphql"], year, hq)
    metrics = call(ops["chain-metrics.graphql"], year, hq)
    assert metrics["metrics"]["byBranch"]
    created = call(
        ops["sign-up-with-referral.graphql"],
        {
            "input": {
                "name": "新朋友",
                "homeBranchId": branch,
                "referralCode": patient["referralCode"],
            }
        },
        hq,
    )
    new_id = created["createPatient"]["patient"]["id"]
    # The same person again through another channel: the record they have (OneID).
    again = call(
        ops["register-patient.graphql"],
        {"input": {"name": "新朋友", "homeBranchId": branch, "sourceChannel": "douyin"}},
        hq,
    )
    assert again["createPatient"]["existing"] is False  # no identifier given: a new record
    export = call(ops["export-patients.graphql"], {"format": "CSV"}, hq, "ExportPatients")
    job = call(
        ops["export-patients.graphql"],
        {"id": export["exportPatients"]["job"]["id"]},
        hq,
        "ExportJob",
    )
    assert job["job"]["total"] == export["exportPatients"]["job"]["total"]
    booked = call(
        ops["book-and-arrive.graphql"],
        {"patientId": new_id, "branchId": branch, "at": (now + timedelta(days=1)).isoformat()},
        hq,
        "BookVisit",
    )
    call(ops["book-and-arrive.graphql"], {"visitId": booked["bookVisit"]["id"]}, hq, "MarkArrived")
    history = call(
        ops["who-saw-this-patient.graphql"], {"patientId": new_id, **year}, tokens["auditor"]
    )
    assert history["patientAccessHistory"]["totalCount"] >= 2
    # HQ opens a patient's health fields outside its own care: it states why first.
    stated = {"patientId": patient["id"], "purpose": "QUALITY_REVIEW", "note": "月度质控"}
    call(ops["state-purpose.graphql"], stated, hq)
    detail = call(ops["patient-detail.graphql"], {"id": patient["id"]}, hq)
    assert detail["patient"]["name"]
    period = {**year, "to": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()}
    reviewed = call(ops["reasoned-access.graphql"], period, tokens["auditor"])
    assert reviewed["reasonedAccess"]["totalCount"] >= 1
    preview = call(
        ops["segment-preview.graphql"], {"filter": {"reachableBy": ["WECOM"]}, "first": 5}, hq
    )
    assert preview["previewSegment"]["count"] > 0  # the demo has consents
    consent = {"patientId": new_id, "purpose": "MARKETING", "channel": "SMS"}
    call(
        ops["consent.graphql"],
        {**consent, "granted": True, "textVersion": "2026-09", "method": "mini_program"},
        hq,
        "RecordConsent",
    )
    held = call(ops["consent.graphql"], {"patientId": new_id}, hq, "PatientConsents")
    assert held["patientConsents"]["current"][0]["granted"] is True
    # importPatients is a multipart request (operations, map, the file), by hash when given.
    text = ops["import-patients.graphql"]
    digest = (hashes or {}).get("ImportPatients")
    operation: dict = {"variables": {"file": None}, "operationName": "ImportPatients"}
    operation.update({"documentId": f"sha256:{digest}"} if digest else {"query": text})
    started = httpx.post(
        f"{url}/graphql",
        data={"operations": json.dumps(operation), "map": json.dumps({"0": ["variables.file"]})},
        files={"0": ("p.csv", "姓名,手机号\r\n新朋友,13900002222\r\n".encode(), "text/csv")},
        headers={"Authorization": f"Bearer {hq}"},
        timeout=30,
    ).json()
    assert "errors" not in started, started
    job_id = started["data"]["importPatients"]["id"]
    call(text, {"id": job_id}, hq, "ImportProgress")
    call(text, {"id": job_id}, hq, "ImportRejectedRows")
    assert (
        set(ops)
        == {
            "patient-detail.graphql",
            "segment-preview.graphql",
            "consent.graphql",
            "sign-in.graphql",
            "patient-list.graphql",
            "my-follow-ups-today.graphql",
            "referral-tree.graphql",
            "referral-chart.graphql",
            "top-referrers.graphql",
            "chain-metrics.graphql",
            "sign-up-with-referral.graphql",
            "book-and-arrive.graphql",
            "who-saw-this-patient.graphql",
            "campaign.graphql",  # in _run_a_campaign
            "import-patients.graphql",
            "state-purpose.graphql",
            "reasoned-access.graphql",
            "register-patient.graphql",
            "export-patients.graphql",
        }
        | RUN_ELSEWHERE.keys()
    ), "a new example operation needs a run here"
    return sent


# Example operations run by other tests, as their clients send them (set-up needs a chain
# of its own; the patient's screens need a patient token from a stand-in WeChat).
RUN_ELSEWHERE = {
    "chain-setup.graphql": "tests/chain/test_production_setup.py",
    "staff.graphql": "tests/chain/test_production_setup.py",
    "two-factor.graphql": "tests/chain/test_production_setup.py",
    "patient-door.graphql": "tests/door/test_patient_door.py",
    "survey.graphql": "tests/surveys/test_operations.py",
}


def _run_by_hash(url: str, accounts: list[dict], env: dict, data_dir: Path) -> None:
    """graphql-codegen's manifest for the example operations, pushed with `patientpool
    documents push`, then every operation sent by the hash codegen gave it."""
    manifest = codegen_manifest()
    path = data_dir / "persisted-documents.json"
    path.write_text(json.dumps(manifest, ensure_ascii=False))
    pushed = subprocess.run(
        [
            sys.executable,
            "-m",
            "process.cli",
            "documents",
            "push",
            "--client",
            "admin-web",
            str(path),
        ],
        env={**env, "PATIENTPOOL_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pushed.returncode == 0, pushed.stderr
    hashes = {
        OPERATION.search(text).group(2): digest.removeprefix("sha256:")  # type: ignore[union-attr]
        for digest, text in manifest.items()
    }
    sent = _run_example_operations(url, accounts, hashes)
    assert any(s.startswith("GET ") for s in sent) and any(s.startswith("POST ") for s in sent)
    # The patient list takes a filter that can hold a phone: never by GET, by POST instead.
    assert "POST PatientList" in sent and "GET PatientList" not in sent
    assert "GET MyFollowUpsToday" in sent and "POST SignUpWithReferral" in sent


def _run_the_readme(url: str, accounts: list[dict]) -> None:
    """The README's first query (shell) and its mini-program call (JavaScript, with `wx`
    standing in for the mini-program runtime), exactly as written but for host and password."""
    admin = _account(accounts, "hq_admin")
    assert admin["email"] == "admin@smile-dental.demo"
    first = blocks("sh", "## A first query")[0]
    script = first.replace("localhost:8000", url.removeprefix("http://")).replace(
        "<from demo-accounts>", admin["password"]
    )
    ran = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    answer = json.loads(ran.stdout)
    assert answer["data"]["me"]["roles"] == ["hq_admin"], answer
    assert len(answer["data"]["patients"]["edges"]) == 5
    token = _caller(url)(
        SIGN_IN, {"t": admin["tenant"], "e": admin["email"], "p": admin["password"]}
    )
    call = blocks("js", "## For frontend developers")[0].replace(
        "https://api.example.com/graphql", f"{url}/graphql"
    )
    runtime = """
const token = process.argv[1]
let shown = null
const page = { setData(d) { shown = d } }
function handle(codes) { shown = { codes } }
const wx = { request(o) {
  fetch(o.url, { method: o.method, headers: o.header, body: JSON.stringify(o.data) })
    .then((r) => r.json())
    .then((data) => { o.success.call(page, { data }); console.log(JSON.stringify(shown)) })
} }
"""
    node = subprocess.run(
        ["node", "-e", runtime + call, token["signIn"]["accessToken"]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert node.returncode == 0, node.stderr
    assert "tasks" in json.loads(node.stdout), node.stdout


def _run_a_campaign(url: str, accounts: list[dict], env: dict, provider: StandIn) -> None:
    """An SMS campaign on the demo chain through the example operations, sent by the real
    `patientpool campaigns send --once` process to the stand-in gateway."""
    call = _caller(url)
    ops = (OPERATIONS / "campaign.graphql").read_text(encoding="utf-8")
    who = _account(accounts, "hq_admin")
    hq = call(SIGN_IN, {"t": who["tenant"], "e": who["email"], "p": who["password"]})
    hq = hq["signIn"]["accessToken"]
    call(
        'mutation { setContactRules(frequencyCap: 3, frequencyDays: 7, quietStart: "00:00", '
        'quietEnd: "00:00") { frequencyCap } }',
        {},
        hq,
    )
    segment = call(
        'mutation($f: SegmentFilterInput!) { createSegment(name: "短信可达", filter: $f) { id } }',
        {"f": {"reachableBy": ["SMS"]}},
        hq,
    )["createSegment"]["id"]
    now = datetime.now(UTC)
    campaign = {
        "name": "冬季洁牙季",
        "segmentId": segment,
        "channel": "SMS",
        "content": "冬季洁牙季：本周到店洁牙8折，回复TD退订",
        "windowStart": (now - timedelta(minutes=1)).isoformat(),
        "windowEnd": (now + timedelta(days=2)).isoformat(),
    }
    created = call(ops, {"input": campaign}, hq, "CreateCampaign")["createCampaign"]
    launched = call(ops, {"id": created["id"]}, hq, "LaunchCampaign")["launchCampaign"]
    assert launched["status"] == "SENDING" and launched["matched"] > 0
    send = [sys.executable, "-m", "process.cli", "campaigns", "send", "--once"]
    sent = subprocess.run(send, env=env, capture_output=True, text=True, timeout=300)
    assert sent.returncode == 0, sent.stderr
    listed = call(ops, {"first": 10}, hq, "Campaigns")["campaigns"]
    reach = listed["edges"][0]["node"]["reach"]
    assert reach["delivered"] == len(provider.messages) > 0
    assert reach["audience"] == reach["delivered"] + reach["withdrawn"] + reach["failed"]
    assert listed["edges"][0]["node"]["status"] == "DONE"
    # One tenant's failure (its keys destroyed) is one line and exit 1; the others go on.
    shred = [sys.executable, "-m", "process.cli", "keys", "shred", "--tenant", "renhe-tcm", "--yes"]
    subprocess.run(shred, env=env, check=True, capture_output=True, timeout=120)
    again = subprocess.run(send, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1, again.stderr
    lines = again.stderr.splitlines()
    assert [x for x in lines if ": pass failed" in x] == [
        "renhe-tcm: pass failed: KeyShreddedError: this tenant's keys have been destroyed"
    ]
    assert lines[-1].startswith("patientpool: a tenant's pass failed")
    assert "Traceback" not in again.stderr


def test_production_refuses_to_start_without_keys(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATIENTPOOL_")}
    env.update(PATIENTPOOL_ENV="production", PATIENTPOOL_DATA_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "process.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "MASTER_KEY" in done.stderr
    env.update(PATIENTPOOL_ENV="staging")
    done = subprocess.run(
        [sys.executable, "-m", "process.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "env" in done.stderr


def test_the_sender_refuses_bad_provider_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATIENTPOOL_")}
    env.update(PATIENTPOOL_DATA_DIR=str(tmp_path))
    for bad, reason in (
        ({"PATIENTPOOL_SMS_API_URL": "http://127.0.0.1:9"}, "SMS_API_KEY"),
        ({"PATIENTPOOL_SMS_API_URL": "ftp://x", "PATIENTPOOL_SMS_API_KEY": "k"}, "http(s)"),
        ({"PATIENTPOOL_WECOM_API_URL": "qyapi.weixin.qq.com"}, "WECOM_API_URL"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "process.cli", "campaigns", "send", "--once"],
            env={**env, **bad},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().count("\n") == 0 and reason in done.stderr


def test_production_as_served_shows_no_schema_and_logs_no_personal_value(tmp_path: Path) -> None:
    """`patientpool migrate`, `tenant create`, then `patientpool serve` with
    PATIENTPOOL_ENV=production: bad variables full of personal values, protocol mistakes and
    introspection from a signed-in HQ admin and from nobody. Every answer is coded, none shows
    the schema, and nothing the server process wrote holds a seeded value."""
    from auth.signing_keys import SigningKeys
    from tenancy.keyring import generate_master_key_text

    (tmp_path / "master.key").write_text(generate_master_key_text())
    (tmp_path / "jwks.json").write_text(SigningKeys.generate_jwks_json())
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATIENTPOOL_")}
    env.update(
        PATIENTPOOL_ENV="production",
        PATIENTPOOL_DATA_DIR=str(tmp_path),
        PATIENTPOOL_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'prod.db'}",
        PATIENTPOOL_MASTER_KEY_FILE=str(tmp_path / "master.key"),
        PATIENTPOOL_SIGNING_KEYS_FILE=str(tmp_path / "jwks.json"),
    )

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "process.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("migrate")
    created = cli(
        "tenant", "create", "--slug", "acme-dental", "--name", "Acme", "--admin-email", "hq@acme.cn"
    )
    password = created.strip().rsplit(" ", 1)[-1]
    log_file = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "process.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
    )
    canaries = ["王小明canary", "13800138000", "HIV阳性canary", "110101199003077777"]
    try:
        _wait_ready(url, proc)

        def post(body: object, token: str | None = None, **kw: object) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return httpx.post(f"{url}/graphql", json=body, headers=headers, timeout=30, **kw)

        # Production runs trusted documents only: the project's own, by their exact text or
        # hash, as `migrate` published them.
        sign_in_text = (OPERATIONS / "sign-in.graphql").read_text(encoding="utf-8")
        signed = post(
            {
                "query": sign_in_text,
                "variables": {"tenant": "acme-dental", "email": "hq@acme.cn", "password": password},
            }
        ).json()
        token = signed["data"]["signIn"]["accessToken"]
        create = (OPERATIONS / "sign-up-with-referral.graphql").read_text(encoding="utf-8")
        person = {
            "name": canaries[0],
            "phone": canaries[1],
            "medicalHistory": canaries[2],
            "nationalId": canaries[3],
        }
        ad_hoc = (
            "mutation C($i: CreatePatientInput!) { createPatient(input: $i) { patient { id } } }"
        )
        answers = [
            post({"query": create, "variables": {"input": person}}, token),
            post(
                {"query": create, "variables": {"input": {**person, "tenantId": canaries[0]}}},
                token,
            ),
            post(
                {"query": create, "variables": {"input": {**person, "gender": canaries[2]}}}, token
            ),
            post({"query": create, "variables": {"input": {**person, "birthYear": canaries[1]}}}),
            post({"query": ad_hoc, "variables": {"i": person}}, token),
            post({"query": "{ __schema { types { name } } }"}, token),
            post({"query": '{ __type(name: "Patient") { fields { name } } }'}),
            post([{"query": create, "variables": {"input": person}}]),
            httpx.post(
                f"{url}/graphql",
                content=json.dumps({"query": create, "variables": {"input": person}})[:-5],
                headers={"content-type": "application/json"},
            ),
        ]
        expected = [
            {"BAD_USER_INPUT"},
            {"BAD_USER_INPUT"},
            {"BAD_USER_INPUT"},
            {"UNAUTHENTICATED"},
            {"FORBIDDEN"},
            {"FORBIDDEN"},
            {"FORBIDDEN"},
            {"BAD_USER_INPUT"},
            {"BAD_USER_INPUT"},
        ]
        for answer, codes_expected in zip(answers, expected, strict=True):
            got = {e["extensions"]["code"] for e in answer.json()["errors"]}
            assert got == codes_expected, answer.text
        for answer in answers:
            body = answer.json()
            assert body.get("data") is None, body
            assert not any(c in answer.text for c in canaries), answer.text
        assert httpx.get(f"{url}/graphql", headers={"accept": "text/html"}).status_code == 405
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log_file.close()
    written = (tmp_path / "server.log").read_text()
    assert "Uvicorn running" in written or "Application startup complete" in written
    assert [line for line in written.splitlines() if any(c in line for c in canaries)] == []
