"""The patient list on a chain made by `tenant create` and the API alone: pages followed by
their cursors (sent as variables), each patient's tags on the page, and a client's mistakes in
the variables answered BAD_USER_INPUT (the session's log scan checks that no seeded value
reaches the server log)."""

from __future__ import annotations

from tests.chain.conftest import Chain
from tests.support import SEEDED, codes, ok

CREATE_GROUP = """mutation($n: String!) { createTagGroup(name: $n) { id } }"""
CREATE_TAG = """mutation($g: ID!, $n: String!) { createTag(groupId: $g, name: $n) { id } }"""
CREATE_PATIENT = """mutation($i: CreatePatientInput!) { createPatient(input: $i) {
  patient { id } } }"""
TAG = """mutation($t: ID!, $p: [ID!]!) { tagPatients(tagId: $t, patientIds: $p) { added } }"""
PAGE = """query($first: Int, $after: String) { patients(first: $first, after: $after) {
  pageInfo { hasNextPage endCursor }
  edges { cursor node { id name tags { name } } } } }"""


async def test_pages_follow_their_cursors_with_each_patients_tags(chain: Chain) -> None:
    group = ok(await chain.q(CREATE_GROUP, {"n": "客户等级"}))["createTagGroup"]["id"]
    vip = ok(await chain.q(CREATE_TAG, {"g": group, "n": "VIP"}))["createTag"]["id"]
    made = []
    for k in range(3):
        name = f"测试患者{chain.slug}-page{k}"
        SEEDED.add(name)
        values = {"name": name, "homeBranchId": chain.branches["main"]}
        created = ok(await chain.q(CREATE_PATIENT, {"i": values}))["createPatient"]
        made.append(created["patient"]["id"])
    ok(await chain.q(TAG, {"t": vip, "p": made[:2]}))

    first = ok(await chain.q(PAGE, {"first": 2}))["patients"]
    assert first["pageInfo"]["hasNextPage"] is True
    # newest first: the third patient, then the second (both asked for their cursors)
    assert [e["node"]["id"] for e in first["edges"]] == [made[2], made[1]]
    assert [e["node"]["tags"] for e in first["edges"]] == [[], [{"name": "VIP"}]]
    assert first["edges"][-1]["cursor"] == first["pageInfo"]["endCursor"]
    after = first["pageInfo"]["endCursor"]
    rest = ok(await chain.q(PAGE, {"first": 2, "after": after}))["patients"]
    assert [e["node"]["id"] for e in rest["edges"]] == [made[0]]
    assert rest["edges"][0]["node"]["tags"] == [{"name": "VIP"}]
    assert rest["pageInfo"]["hasNextPage"] is False

    # A client's mistakes in the variables: stable codes, never INTERNAL.
    for variables in (
        {"first": 2, "after": "not-a-cursor"},  # not a cursor of ours
        {"first": "two"},  # wrong scalar
        {"first": 500},  # past the cap
    ):
        assert codes(await chain.q(PAGE, variables)) == ["BAD_USER_INPUT"], variables
    assert codes(await chain.q(CREATE_PATIENT, {})) == ["BAD_USER_INPUT"]  # a required variable
    unknown = {"name": f"测试患者{chain.slug}-x", "homeBranchId": chain.branches["main"], "nope": 1}
    SEEDED.add(unknown["name"])
    assert codes(await chain.q(CREATE_PATIENT, {"i": unknown})) == ["BAD_USER_INPUT"]
