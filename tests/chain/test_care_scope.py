"""A doctor's patients are those assigned to them or seen by them at an arrived visit: the one
rule (`PatientScope.clause()`) decides reads and writes alike, on a chain made by `tenant
create` and the API."""

from __future__ import annotations

from tests.chain.conftest import Chain
from tests.support import codes, ok

CREATE = """mutation($b: ID!) { createPatient(input: {name: "李四", homeBranchId: $b}) {
  patient { id } } }"""
BOOK = """mutation($p: ID!, $b: ID!, $d: ID!, $at: DateTime!) {
  bookVisit(patientId: $p, branchId: $b, doctorId: $d, scheduledAt: $at) { id } }"""
ARRIVED = "mutation($id: ID!) { markArrived(id: $id) { id } }"
UPDATE = """mutation($id: ID!, $n: String!) { updatePatient(id: $id, input: {notes: $n}) {
  patient { id notes } } }"""
READ = "query($id: ID!) { patient(id: $id) { id notes } }"


async def test_a_doctor_who_saw_a_patient_reads_and_updates_them(chain: Chain) -> None:
    branch = chain.branches["main"]
    doctor, pair = await chain.member("doctor", [branch])
    token = pair["accessToken"]
    patient = ok(await chain.q(CREATE, {"b": branch}))["createPatient"]["patient"]["id"]
    # Neither assigned nor seen: out of the doctor's scope for reads and writes.
    assert codes(await chain.q(READ, {"id": patient}, token=token)) == ["NOT_FOUND"]
    assert codes(await chain.q(UPDATE, {"id": patient, "n": "x"}, token=token)) == ["NOT_FOUND"]

    booked = {"p": patient, "b": branch, "d": doctor, "at": "2026-01-05T09:00:00+08:00"}
    visit = ok(await chain.q(BOOK, booked))["bookVisit"]["id"]
    # A booking alone does not bring the patient into the doctor's care.
    assert codes(await chain.q(READ, {"id": patient}, token=token)) == ["NOT_FOUND"]
    ok(await chain.q(ARRIVED, {"id": visit}))

    assert ok(await chain.q(READ, {"id": patient}, token=token))["patient"]["id"] == patient
    updated = ok(await chain.q(UPDATE, {"id": patient, "n": "复诊"}, token=token))
    assert updated["updatePatient"]["patient"]["notes"] == "复诊"
