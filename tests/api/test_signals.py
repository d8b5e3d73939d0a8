"""The signals operators watch: one JSON log line per request (ids and codes only), the
request id answered as `x-request-id`, and /metrics for the allowed addresses alone."""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.context import AppState
from api.ids import to_global_id
from process.logs import JsonFormatter
from process.settings import Settings
from tests.support import SEEDED, build_world, codes, gql, sign_in

KEYS = {
    "time",
    "level",
    "logger",
    "message",
    "request_id",
    "path",
    "operation",
    "tenant_id",
    "principal_id",
    "status",
    "code",
    "duration_ms",
    "sql_statements",
}
PATIENT = "query Chart($id: ID!) { patient(id: $id) { name phone medicalHistory } }"


class JsonLines(logging.Handler):
    """The request logger's records, formatted as production writes them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def request_lines() -> Iterator[JsonLines]:
    handler = JsonLines()
    logger = logging.getLogger("patientpool.requests")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def test_one_json_line_per_request_with_ids_and_codes_only(
    client: httpx.AsyncClient, owner_state: AppState, unique: str, request_lines: JsonLines
) -> None:
    world = await build_world(owner_state, f"sig-{unique}")
    token = await sign_in(client, world, "doctor")
    response = await client.post(
        "/graphql",
        json={"query": PATIENT, "variables": {"id": world.gid("assigned")}},
        headers={"Authorization": f"Bearer {token}", "x-request-id": "trace-0123456789"},
    )
    assert response.json()["data"]["patient"]["name"] == world.plaintext["assigned"]["name"]
    assert response.headers["x-request-id"] == "trace-0123456789"
    # A request id that is not one is replaced, and the new one answered.
    refused = await client.post(
        "/graphql",
        json={"query": PATIENT, "variables": {"id": to_global_id("Patient", uuid.uuid4())}},
        headers={"Authorization": f"Bearer {token}", "x-request-id": "no spaces allowed here"},
    )
    assert codes(refused.json()) == ["NOT_FOUND"], refused.text
    generated = refused.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    broken = await client.post(
        "/graphql", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400

    lines = [json.loads(line) for line in request_lines.lines]
    assert len(lines) == 4  # sign-in, the chart, the refused id, the broken body
    for line in lines:
        assert set(line) == KEYS, line
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    sign_in_line, chart, missing, body = lines
    assert sign_in_line["code"] == "OK" and sign_in_line["principal_id"] is None
    assert chart["request_id"] == "trace-0123456789"
    assert chart["operation"] == "Chart"
    assert chart["tenant_id"] == str(world.tenant_id)
    assert chart["principal_id"] == str(world.staff["doctor"].id)
    assert (chart["status"], chart["code"]) == (200, "OK")
    assert chart["sql_statements"] >= 2  # at least the principal and the patient
    assert (missing["request_id"], missing["code"]) == (generated, "NOT_FOUND")
    assert (body["status"], body["code"], body["operation"]) == (400, "BAD_USER_INPUT", None)
    # Nothing personal: not the variables, not the answer, not an e-mail.
    text = "\n".join(request_lines.lines)
    assert not [v for v in SEEDED if v in text]
    assert world.email("doctor") not in text


def _sample(metrics_text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def test_metrics_count_requests_and_are_refused_elsewhere(
    client: httpx.AsyncClient, state: AppState, owner_state: AppState, unique: str
) -> None:
    world = await build_world(owner_state, f"met-{unique}")
    before = (await client.get("/metrics")).text
    token = await sign_in(client, world, "doctor")
    chart = await gql(client, PATIENT, {"id": world.gid("assigned")}, token=token)
    assert "errors" not in chart, chart
    scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    after = scraped.text
    counted = {"operation": "Chart", "code": "OK"}
    total = "patientpool_requests_total"
    assert _sample(after, total, **counted) == _sample(before, total, **counted) + 1
    hist = "patientpool_request_duration_seconds_count"
    assert _sample(after, hist, operation="Chart") == _sample(before, hist, operation="Chart") + 1
    appended = "patientpool_access_log_append_seconds_count"
    assert _sample(after, appended) > _sample(before, appended)
    if state.sessions.kw["bind"].dialect.name == "postgresql":  # SQLite's pool keeps no counts
        assert _sample(after, "patientpool_db_pool_connections", state="size") == 5
        assert 'patientpool_db_pool_connections{state="in_use"}' in after

    # From an address the setting does not allow: the answer of a path that does not exist.
    app = create_app(state.settings, state)
    outside = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=outside, base_url="http://test") as elsewhere:
        refused = await elsewhere.get("/metrics")
        missing = await elsewhere.get("/no-such-path")
    assert refused.status_code == 404
    assert (refused.content, refused.headers["content-type"]) == (
        missing.content,
        missing.headers["content-type"],
    )

    # An empty allow-list turns /metrics off, for everyone.
    closed = Settings(data_dir=state.settings.data_dir, metrics_allow="")
    shut = httpx.ASGITransport(app=create_app(closed, state))
    async with httpx.AsyncClient(transport=shut, base_url="http://test") as local:
        assert (await local.get("/metrics")).status_code == 404


def test_metrics_allow_list_is_validated() -> None:
    from process.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="PATIENTPOOL_METRICS_ALLOW"):
        load_settings(metrics_allow="10.0.0.0/8, not-an-address")
    networks = load_settings(metrics_allow="10.0.0.0/8, 192.0.2.1").metrics_networks
    assert [str(n) for n in networks] == ["10.0.0.0/8", "192.0.2.1/32"]


def test_json_lines_carry_no_exception_message() -> None:
    """A traceback in a JSON line names the exception's classes and frames, never its message
    (which may quote a statement's parameters)."""
    secret = "测试患者日志" + uuid.uuid4().hex[:6]
    SEEDED.add(secret)
    try:
        raise ValueError(f"bad value {secret}")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert (line["level"], line["logger"], line["message"]) == ("ERROR", "x", "failed")
    assert "builtins.ValueError" in line["exception"]
    assert secret not in json.dumps(line, ensure_ascii=False)
