"""Break the glass: health fields outside the caller's own care answer FORBIDDEN with
REASON_REQUIRED until they state a purpose, which opens that one patient for the chain's
window, on the record; auditors review and flag it. A chain made by `tenant create` and the
API, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine

from domain.reasons.models import StatedPurpose
from tests.chain.conftest import Chain, Operator, new_chain, sign_in_pair
from tests.conftest import Database
from tests.support import SEEDED, codes, ok, patient_values

CREATE = """mutation($b: ID!, $n: String!, $notes: String!, $s: ID) {
  createPatient(input: {name: $n, homeBranchId: $b, notes: $notes, assignedStaffId: $s}) {
    patient { id } } }"""
READ = "query($id: ID!) { patient(id: $id) { id name notes } }"
STATE = """mutation($id: ID!, $p: AccessPurpose!, $n: String!) {
  statePurpose(patientId: $id, purpose: $p, note: $n) { id purpose statedAt expiresAt } }"""
BOOK = """mutation($p: ID!, $b: ID!, $d: ID!) {
  bookVisit(patientId: $p, branchId: $b, doctorId: $d, scheduledAt: "2026-01-05T09:00:00+08:00")
  { id } }"""
ARRIVED = "mutation($id: ID!) { markArrived(id: $id) { id } }"
LOG = """query($a: [Action!]) { accessLog(filter: {actions: $a}, first: 50) {
  edges { node { action outcome reason fieldGroups patientIds } } } }"""
REVIEW = """query($f: ReasonedAccessFilter) { reasonedAccess(filter: $f) { totalCount
  edges { node { id patientId purpose note flagged flagNote staff { id } branch { id } } } } }"""
FLAG = """mutation($id: ID!, $n: String!) { flagReasonedAccess(id: $id, note: $n) {
  flagged flagNote } }"""

NOTE = "note-glass-1 复核投诉"  # a seeded value: the log scanner proves it never reaches a log
SEEDED.add(NOTE)
SEEDED.add("wx-glass-w")


async def _patient(c: Chain, tag: str, staff: str | None = None) -> tuple[str, str]:
    values = patient_values(1, tag)
    variables = {"b": c.branches["main"], "n": values["name"], "notes": values["notes"]}
    created = ok(await c.q(CREATE, {**variables, "s": staff}))
    return created["createPatient"]["patient"]["id"], values["notes"]


def _reason_required(result: dict[str, Any]) -> None:
    (error,) = result["errors"]
    assert error["extensions"] == {"code": "FORBIDDEN", "reason": "REASON_REQUIRED"}
    assert error["path"] == ["patient", "notes"]
    assert result["data"]["patient"]["notes"] is None
    assert result["data"]["patient"]["name"] is not None  # the rest of the answer stands


async def test_health_fields_open_only_after_a_stated_purpose(
    chain: Chain,
    db: Database,
) -> None:
    patient, notes = await _patient(chain, "glass-a")
    other, _ = await _patient(chain, "glass-b")
    _reason_required(await chain.q(READ, {"id": patient}))

    stated = ok(await chain.q(STATE, {"id": patient, "p": "QUALITY_REVIEW", "n": NOTE}))
    stated = stated["statePurpose"]
    at = datetime.fromisoformat(stated["statedAt"])
    assert datetime.fromisoformat(stated["expiresAt"]) - at == timedelta(minutes=30)

    assert ok(await chain.q(READ, {"id": patient}))["patient"]["notes"] == notes
    _reason_required(await chain.q(READ, {"id": other}))  # that patient only

    entries = ok(await chain.q(LOG, {"a": ["STATE_PURPOSE", "READ"]}, token=chain.auditor))
    nodes = [e["node"] for e in entries["accessLog"]["edges"]]
    states = [n for n in nodes if n["action"] == "STATE_PURPOSE"]
    assert [n["reason"].split()[0] for n in states] == ["QUALITY_REVIEW"]
    reads = [n for n in nodes if n["action"] == "READ" and "QUALITY_REVIEW" in n["reason"]]
    assert len(reads) == 1 and reads[0]["fieldGroups"] == ["health"]
    assert NOTE not in str(nodes)

    review = ok(await chain.q(REVIEW, {"f": {"purpose": "QUALITY_REVIEW"}}, token=chain.auditor))
    (item,) = [e["node"] for e in review["reasonedAccess"]["edges"]]
    assert (item["patientId"], item["note"], item["flagged"]) == (patient, NOTE, False)
    assert item["staff"]["id"] == chain.hq_id
    assert item["branch"]["id"] == chain.branches["main"]
    assert codes(await chain.q(REVIEW, {})) == ["FORBIDDEN"]  # HQ does not review itself

    flagged = ok(await chain.q(FLAG, {"id": item["id"], "n": "ask why"}, token=chain.auditor))
    assert flagged["flagReasonedAccess"] == {"flagged": True, "flagNote": "ask why"}
    log = ok(await chain.q(LOG, {"a": ["FLAG_PURPOSE"]}, token=chain.auditor))
    assert len(log["accessLog"]["edges"]) == 1

    # The window ends: the fields close again.
    engine = create_async_engine(db.owner_url)
    async with engine.begin() as conn:
        past = datetime.now(UTC) - timedelta(seconds=1)
        await conn.execute(update(StatedPurpose.__table__).values(expires_at=past))
    await engine.dispose()
    _reason_required(await chain.q(READ, {"id": patient}))


async def test_a_doctor_reads_their_own_patients_without_a_reason(chain: Chain) -> None:
    doctor, pair = await chain.member("doctor", [chain.branches["main"]])
    token = pair["accessToken"]
    assigned, assigned_notes = await _patient(chain, "glass-c", staff=doctor)
    assert ok(await chain.q(READ, {"id": assigned}, token=token))["patient"]["notes"] == (
        assigned_notes
    )
    seen, seen_notes = await _patient(chain, "glass-d")
    visit = ok(await chain.q(BOOK, {"p": seen, "b": chain.branches["main"], "d": doctor}))
    ok(await chain.q(ARRIVED, {"id": visit["bookVisit"]["id"]}))
    assert ok(await chain.q(READ, {"id": seen}, token=token))["patient"]["notes"] == seen_notes


async def test_a_branch_manager_needs_a_reason_too(chain: Chain) -> None:
    _, pair = await chain.member("branch_manager", [chain.branches["main"]])
    patient, _ = await _patient(chain, "glass-e")
    _reason_required(await chain.q(READ, {"id": patient}, token=pair["accessToken"]))


async def test_bad_input_and_foreign_ids(chain: Chain, operator: Operator) -> None:
    patient, _ = await _patient(chain, "glass-f")
    bad = await chain.q(STATE, {"id": patient, "p": "CURIOSITY", "n": "x"})
    assert codes(bad) == ["BAD_USER_INPUT"]
    blank = await chain.q(STATE, {"id": patient, "p": "CARE", "n": "  "})
    assert codes(blank) == ["BAD_USER_INPUT"]
    # An operator may not read health fields at all: a purpose never widens Casbin's rules.
    _, pair = await chain.member("operator", [chain.branches["main"]])
    refused = await chain.q(
        STATE, {"id": patient, "p": "CARE", "n": "x"}, token=pair["accessToken"]
    )
    assert codes(refused) == ["FORBIDDEN"]
    # Another chain's patient answers as a missing one.
    slug = f"{chain.slug}-x"
    password = await new_chain(operator, slug, "--branch-name", "店", "--branch-city", "京")
    other_hq = await sign_in_pair(chain.client, slug, f"admin@{slug}.test", password)
    token = other_hq["accessToken"]
    assert codes(await chain.q(STATE, {"id": patient, "p": "CARE", "n": "x"}, token=token)) == [
        "NOT_FOUND"
    ]


UPDATE = """mutation($id: ID!, $i: UpdatePatientInput!) { updatePatient(id: $id, input: $i) {
  patient { id } } }"""
NAME = "query($id: ID!) { patient(id: $id) { name } }"
WRITE_LOG = """{ accessLog(filter: {actions: [UPDATE]}, first: 50) {
  edges { node { reason fieldGroups patientIds } } } }"""


def _refused(result: dict[str, Any], field: str) -> None:
    (error,) = result["errors"]
    assert error["extensions"] == {"code": "FORBIDDEN", "reason": "REASON_REQUIRED"}
    assert error["path"] == [field]
    assert result["data"] is None


async def _notes(c: Chain, patient: str) -> str:
    """The stored notes, read by the auditor-free way: HQ under a purpose of its own."""
    ok(await c.q(STATE, {"id": patient, "p": "QUALITY_REVIEW", "n": "check the write"}))
    return ok(await c.q(READ, {"id": patient}))["patient"]["notes"]


async def test_health_writes_outside_ones_care_need_a_stated_purpose(
    chain: Chain, operator: Operator
) -> None:
    patient, notes = await _patient(chain, "glass-w")
    changed = patient_values(2, "glass-w")["notes"]
    # Health fields refused, alone or with a contact field (the whole change: nothing moves).
    _refused(await chain.q(UPDATE, {"id": patient, "i": {"notes": changed}}), "updatePatient")
    mixed = {"name": patient_values(3, "glass-w")["name"], "diagnoses": changed}
    _refused(await chain.q(UPDATE, {"id": patient, "i": mixed}), "updatePatient")
    # Taking the patient into one's own care in the same change does not open the gate.
    mine = {"assignedStaffId": chain.hq_id, "notes": changed}
    _refused(await chain.q(UPDATE, {"id": patient, "i": mine}), "updatePatient")
    name = patient_values(1, "glass-w")["name"]
    assert ok(await chain.q(NAME, {"id": patient}))["patient"]["name"] == name
    # Contact fields stay as they are: no reason needed.
    ok(await chain.q(UPDATE, {"id": patient, "i": {"wechatId": "wx-glass-w"}}))
    # Another chain's HQ: the patient answers as a missing one, reason or not.
    slug = f"{chain.slug}-w"
    password = await new_chain(operator, slug, "--branch-name", "店", "--branch-city", "京")
    other = (await sign_in_pair(chain.client, slug, f"admin@{slug}.test", password))["accessToken"]
    foreign = await chain.q(UPDATE, {"id": patient, "i": {"notes": changed}}, token=other)
    assert codes(foreign) == ["NOT_FOUND"]

    assert await _notes(chain, patient) == notes  # nothing was written
    # Under the purpose just stated the write goes through, on the record with the purpose.
    ok(await chain.q(UPDATE, {"id": patient, "i": {"notes": changed}}))
    assert ok(await chain.q(READ, {"id": patient}))["patient"]["notes"] == changed
    log = ok(await chain.q(WRITE_LOG, token=chain.auditor))["accessLog"]["edges"]
    reasoned = [e["node"] for e in log if "QUALITY_REVIEW" in e["node"]["reason"]]
    assert [(n["fieldGroups"], n["patientIds"]) for n in reasoned] == [(["health"], [patient])]


async def test_a_doctor_writes_their_own_patients_health_without_a_reason(chain: Chain) -> None:
    doctor, pair = await chain.member("doctor", [chain.branches["main"]])
    patient, _ = await _patient(chain, "glass-dw", staff=doctor)
    changed = patient_values(2, "glass-dw")["notes"]
    token = pair["accessToken"]
    ok(await chain.q(UPDATE, {"id": patient, "i": {"notes": changed}}, token=token))
    assert ok(await chain.q(READ, {"id": patient}, token=token))["patient"]["notes"] == changed


GROUP = """mutation($n: String!, $h: Boolean!) { createTagGroup(name: $n, isHealth: $h) { id } }"""
TAG = """mutation($g: ID!, $n: String!) { createTag(groupId: $g, name: $n) { id } }"""
TAGGING = """mutation($t: ID!, $p: [ID!]!) { %s(tagId: $t, patientIds: $p) { added removed } }"""
TAGS = "query($id: ID!) { patient(id: $id) { tags { name } } }"
LISTED = "{ patients(first: 100) { edges { node { id tags { name } } } } }"


async def _tag(c: Chain, group: str, name: str, health: bool) -> str:
    made = ok(await c.q(GROUP, {"n": group, "h": health}))["createTagGroup"]["id"]
    return ok(await c.q(TAG, {"g": made, "n": name}))["createTag"]["id"]


async def test_health_tags_open_like_health_fields(chain: Chain) -> None:  # reads and writes
    health = await _tag(chain, "诊断-glass", "牙周炎-glass", health=True)
    plain = await _tag(chain, "意向-glass", "正畸意向-glass", health=False)
    patient, _ = await _patient(chain, "glass-t")
    tag_health = {"t": health, "p": [patient]}
    # Tagging (or untagging) with a health tag outside one's care: refused, nothing tagged.
    _refused(await chain.q(TAGGING % "tagPatients", tag_health), "tagPatients")
    _refused(await chain.q(TAGGING % "untagPatients", tag_health), "untagPatients")
    ok(await chain.q(TAGGING % "tagPatients", {"t": plain, "p": [patient]}))  # no reason needed
    ok(await chain.q(STATE, {"id": patient, "p": "CARE", "n": "coding the diagnosis"}))
    tagged = ok(await chain.q(TAGGING % "tagPatients", tag_health))["tagPatients"]
    assert tagged["added"] == 1
    names = {t["name"] for t in ok(await chain.q(TAGS, {"id": patient}))["patient"]["tags"]}
    assert names == {"牙周炎-glass", "正畸意向-glass"}

    # A branch manager (health fields in full, the patient outside their care, no purpose):
    # the health tag is left out, on one record and on a page; the rest stands.
    _, pair = await chain.member("branch_manager", [chain.branches["main"]])
    token = pair["accessToken"]
    one = ok(await chain.q(TAGS, {"id": patient}, token=token))["patient"]["tags"]
    assert [t["name"] for t in one] == ["正畸意向-glass"]
    page = ok(await chain.q(LISTED, token=token))["patients"]["edges"]
    (listed,) = [e["node"]["tags"] for e in page if e["node"]["id"] == patient]
    assert [t["name"] for t in listed] == ["正畸意向-glass"]
    # Under a purpose of their own it shows, and that read carries the purpose.
    ok(await chain.q(STATE, {"id": patient, "p": "COMPLAINT", "n": "a complaint"}, token=token))
    page = ok(await chain.q(LISTED, token=token))["patients"]["edges"]
    (listed,) = [e["node"]["tags"] for e in page if e["node"]["id"] == patient]
    assert {t["name"] for t in listed} == {"牙周炎-glass", "正畸意向-glass"}
    reads = ok(await chain.q(LOG, {"a": ["LIST"]}, token=chain.auditor))["accessLog"]["edges"]
    assert any(
        "COMPLAINT" in e["node"]["reason"] and e["node"]["patientIds"] == [patient] for e in reads
    )

    # A health manager tags and reads health tags of their own patients freely.
    manager, pair = await chain.member("health_manager", [chain.branches["main"]])
    own, _ = await _patient(chain, "glass-t2", staff=manager)
    token = pair["accessToken"]
    ok(await chain.q(TAGGING % "tagPatients", {"t": health, "p": [own]}, token=token))
    shown = ok(await chain.q(TAGS, {"id": own}, token=token))["patient"]["tags"]
    assert [t["name"] for t in shown] == ["牙周炎-glass"]


PREVIEW = """query($f: SegmentFilterInput!) { previewSegment(filter: $f) { count
  members(first: 50) { edges { node { id } } } } }"""


async def _matching(c: Chain, flt: dict[str, Any], token: str | None = None) -> set[str]:
    found = ok(await c.q(PREVIEW, {"f": flt}, token=token))["previewSegment"]
    ids = {e["node"]["id"] for e in found["members"]["edges"]}
    assert found["count"] == len(ids)
    return ids


async def test_health_conditions_match_only_in_ones_own_care(chain: Chain) -> None:
    """A segment (or an automatic tag's rule) naming a health tag is evaluated over the
    caller's own care only: a stated purpose opens a record to read, not a population to
    search. Negations included, so 'without the tag' tells nothing either."""
    health = await _tag(chain, "诊断-seg", "牙周炎-seg", health=True)
    manager_id, pair = await chain.member("branch_manager", [chain.branches["main"]])
    manager = pair["accessToken"]
    mine, _ = await _patient(chain, "glass-s1", staff=manager_id)
    theirs, _ = await _patient(chain, "glass-s2")
    hq_own, _ = await _patient(chain, "glass-s3", staff=chain.hq_id)
    for pid in (mine, theirs, hq_own):  # HQ tags all three, each under a purpose
        ok(await chain.q(STATE, {"id": pid, "p": "CARE", "n": "coding diagnoses"}))
    ok(await chain.q(TAGGING % "tagPatients", {"t": health, "p": [mine, theirs, hq_own]}))
    has = {"tagsAny": [health]}
    lacks = {"not": {"tagsAny": [health]}}
    # The branch manager: the patient assigned to them, not the rest of their branch.
    assert await _matching(chain, has, manager) == {mine}
    assert not await _matching(chain, lacks, manager) & {theirs, hq_own}
    # HQ holds a purpose for all three and sees their tags, yet searches only its own care.
    assert await _matching(chain, has) == {hq_own}
    assert not await _matching(chain, lacks) & {mine, theirs}
    _, pair = await chain.member("branch_manager", [chain.branches["main"]])
    other_manager = pair["accessToken"]
    assert await _matching(chain, has, other_manager) == set()
    assert await _matching(chain, {"or": [has, lacks]}, other_manager) == set()
    # The same filter without the health tag: the whole branch, as before.
    assert {mine, theirs, hq_own} <= await _matching(chain, {"scoreMin": 0}, other_manager)
    # A saved segment counts the same way.
    saved = """mutation($f: SegmentFilterInput!) { createSegment(name: "牙周炎人群", filter: $f) {
      count } }"""
    made = ok(await chain.q(saved, {"f": has}, token=other_manager))["createSegment"]
    assert made["count"] == 0

    # An automatic tag of a health group, or one whose rule names a health tag, is applied
    # over HQ's own care only; the rest keep the tag as it was.
    group = ok(await chain.q(GROUP, {"n": "风险-seg", "h": True}))["createTagGroup"]["id"]
    auto = """mutation($g: ID!, $n: String!, $r: SegmentFilterInput!) {
      createTag(groupId: $g, name: $n, autoRule: $r) { id } }"""
    apply = "mutation($t: ID!) { applyAutoTag(tagId: $t) { added removed } }"
    for name, rule, gid in (
        ("高风险-seg", {"scoreMin": 0}, group),  # a health group's tag
        ("复查-seg", has, None),  # a plain group's tag over a health condition
    ):
        if gid is None:
            gid = ok(await chain.q(GROUP, {"n": "运营-seg", "h": False}))["createTagGroup"]["id"]
        made = ok(await chain.q(auto, {"g": gid, "n": name, "r": rule}))["createTag"]["id"]
        assert ok(await chain.q(apply, {"t": made}))["applyAutoTag"] == {"added": 1, "removed": 0}
        for pid, holds in ((hq_own, True), (theirs, False), (mine, False)):
            names = {t["name"] for t in ok(await chain.q(TAGS, {"id": pid}))["patient"]["tags"]}
            assert (name in names) is holds, (name, pid)


MERGE = """mutation($k: ID!, $m: ID!) { mergePatients(keepId: $k, mergeId: $m) { id notes } }"""


async def test_merging_moves_health_data_only_under_a_reason(chain: Chain) -> None:
    """A merge moves the merged record's health data onto the kept one: into a record in the
    caller's care, only from one their care or a purpose also opens."""
    kept = ok(
        await chain.q(
            """mutation($b: ID!, $s: ID) { createPatient(input: {name: "合并保留-glass",
              homeBranchId: $b, assignedStaffId: $s}) { patient { id } } }""",
            {"b": chain.branches["main"], "s": chain.hq_id},
        )
    )["createPatient"]["patient"]["id"]
    other, notes = await _patient(chain, "glass-m")
    _refused(await chain.q(MERGE, {"k": kept, "m": other}), "mergePatients")
    assert ok(await chain.q(NAME, {"id": other}))["patient"]["name"]  # not retired
    ok(await chain.q(STATE, {"id": other, "p": "CARE", "n": "one person, two records"}))
    merged = ok(await chain.q(MERGE, {"k": kept, "m": other}))["mergePatients"]
    assert merged == {"id": kept, "notes": notes}
    log = ok(await chain.q(LOG, {"a": ["MERGE"]}, token=chain.auditor))["accessLog"]["edges"]
    reasoned = [e["node"] for e in log if "CARE" in e["node"]["reason"]]
    assert [(n["outcome"], n["patientIds"]) for n in reasoned] == [("ALLOWED", [other])]


DUPLICATES = """{ possibleDuplicates(first: 50) { totalCount
  edges { node { matchedOn patients { id } } } } }"""


async def test_duplicates_by_national_id_are_found_within_ones_own_care(chain: Chain) -> None:
    """An equal national id (a health-group field) is a condition on health data: HQ finds
    two records sharing one only among the patients in its own care."""
    national = "11010519491231002X"
    SEEDED.add(national)
    first, _ = await _patient(chain, "glass-n1")
    # A health manager, who cannot see HQ's record, makes a second one for the same person.
    manager, pair = await chain.member("health_manager", [chain.branches["main"]])
    made = ok(
        await chain.q(
            """mutation($b: ID!, $s: ID!, $n: String!) { createPatient(input: {name: "同一人-glass",
              homeBranchId: $b, assignedStaffId: $s, nationalId: $n}) { patient { id } } }""",
            {"b": chain.branches["main"], "s": manager, "n": national},
            token=pair["accessToken"],
        )
    )["createPatient"]["patient"]["id"]
    ok(await chain.q(STATE, {"id": first, "p": "CARE", "n": "coding the national id"}))
    ok(await chain.q(UPDATE, {"id": first, "i": {"nationalId": national}}))

    def by_national_id(found: dict[str, Any]) -> list[set[str]]:
        edges = found["possibleDuplicates"]["edges"]
        return [
            {p["id"] for p in e["node"]["patients"]}
            for e in edges
            if e["node"]["matchedOn"] == "national_id"
        ]

    assert by_national_id(ok(await chain.q(DUPLICATES))) == []  # neither in HQ's care
    for pid in (first, made):
        ok(await chain.q(UPDATE, {"id": pid, "i": {"assignedStaffId": chain.hq_id}}))
    assert {first, made} in by_national_id(ok(await chain.q(DUPLICATES)))
