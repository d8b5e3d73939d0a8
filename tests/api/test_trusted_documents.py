"""Trusted documents, published by the clients that own them: manifests pushed and refused
(through the real CLI), and served by hash over POST and GET, with automatic persisted queries
in `allow` mode and nothing but trusted documents in production."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.context import AppState
from api.documents import ManifestError, sha256
from process.document_commands import push_manifest
from tests.api.production import production_client
from tests.support import World, build_world, codes, sign_in

LIST = "query PatientPage($first: Int) { patients(first: $first) { totalCount } }"
BY_PHONE = "query ByPhone($p: String) { patients(filter: {phone: $p}) { totalCount } }"
FILTERED = "query Filtered($f: PatientFilter) { patients(filter: $f) { totalCount } }"
TAG = 'mutation AddGroup { createTagGroup(name: "trusted-docs") { id } }'
TWO = "query One { me { roles } }\nquery Two { tenant { slug } }"


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"td-{unique}")


async def _push(owner: AppState, tmp_path: Path, client: str, manifest: Any) -> int:
    path = tmp_path / f"{client}.json"
    path.write_text(json.dumps(manifest, ensure_ascii=False))
    async with owner.sessions() as session, session.begin():
        return await push_manifest(session, client, path)


def _hash_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256(text)}}, **extra}


async def test_trusted_documents_by_hash_over_post_and_get(
    owner_state: AppState, state: AppState, world: World, tmp_path: Path, unique: str
) -> None:
    docs = [LIST + f" # {unique}", BY_PHONE + f" # {unique}", TAG + f" # {unique}", FILTERED]
    assert await _push(owner_state, tmp_path, f"web-{unique}", {sha256(d): d for d in docs}) >= 3
    list_doc, phone_doc, tag_doc, filtered_doc = docs
    async with production_client(state, "only") as prod:
        token = await sign_in_trusted(prod, world)
        auth = {"authorization": f"Bearer {token}"}
        # POST by hash, and by Apollo's and the GraphQL-over-HTTP spec's ways of naming it.
        by_hash = await prod.post(
            "/graphql", json=_hash_body(list_doc, variables={"first": 1}), headers=auth
        )
        assert by_hash.json() == {"data": {"patients": {"totalCount": len(world.patients)}}}
        by_id = await prod.post(
            "/graphql", json={"documentId": f"sha256:{sha256(list_doc)}"}, headers=auth
        )
        assert by_id.json() == by_hash.json()
        # The exact text of a trusted document is accepted too; any other text is not.
        assert (
            await prod.post("/graphql", json={"query": list_doc}, headers=auth)
        ).json() == by_hash.json()
        other = await prod.post("/graphql", json={"query": LIST + " "}, headers=auth)
        assert codes(other.json()) == ["FORBIDDEN"]
        # GET: a trusted query by hash, its variables in the URL (urql's and Apollo's GET).
        params = {
            "extensions": json.dumps(
                {"persistedQuery": {"version": 1, "sha256Hash": sha256(list_doc)}}
            ),
            "variables": json.dumps({"first": 1}),
        }
        got = await prod.get("/graphql", params=params, headers=auth)
        assert got.status_code == 200 and got.json() == by_hash.json()
        # GET refuses a document text, a mutation, and an operation taking personal data.
        refusals = [
            {"query": list_doc},
            {
                "extensions": json.dumps(
                    {"persistedQuery": {"version": 1, "sha256Hash": sha256(tag_doc)}}
                )
            },
            {
                "extensions": json.dumps(
                    {"persistedQuery": {"version": 1, "sha256Hash": sha256(phone_doc)}}
                ),
                "variables": json.dumps({"p": "+8613800138000"}),
            },
            {
                "extensions": json.dumps(
                    {"persistedQuery": {"version": 1, "sha256Hash": sha256(filtered_doc)}}
                )
            },
        ]
        for refused in refusals:
            answer = await prod.get("/graphql", params=refused, headers=auth)
            assert answer.status_code == 405, answer.text
            assert codes(answer.json()) == ["BAD_USER_INPUT"]
        # The same mutation by POST runs.
        made = await prod.post("/graphql", json=_hash_body(tag_doc), headers=auth)
        assert "errors" not in made.json(), made.json()
        # An unknown hash: the fallback signal; with the text, still refused in production.
        unknown = await prod.post("/graphql", json=_hash_body(LIST + "#x"), headers=auth)
        assert codes(unknown.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
        retry = await prod.post(
            "/graphql", json={**_hash_body(LIST + "#x"), "query": LIST + "#x"}, headers=auth
        )
        assert codes(retry.json()) == ["FORBIDDEN"]
        # A hash that is not the document's.
        mismatch = await prod.post(
            "/graphql", json={**_hash_body(list_doc), "query": LIST}, headers=auth
        )
        assert mismatch.status_code == 400 and codes(mismatch.json()) == ["BAD_USER_INPUT"]


async def sign_in_trusted(client: httpx.AsyncClient, world: World) -> str:
    """Sign in with the project's own trusted sign-in operation (production accepts no other)."""
    from api.schema import OPERATIONS
    from tests.support import PASSWORD

    text = (OPERATIONS / "sign-in.graphql").read_text(encoding="utf-8")
    variables = {"tenant": world.slug, "email": world.email("hq_admin"), "password": PASSWORD}
    signed = await client.post("/graphql", json=_hash_body(text, variables=variables))
    return signed.json()["data"]["signIn"]["accessToken"]


async def test_a_document_of_two_operations_needs_a_name_by_hash(
    owner_state: AppState, state: AppState, world: World, tmp_path: Path, unique: str
) -> None:
    text = TWO + f"\n# {unique}"
    await _push(owner_state, tmp_path, f"two-{unique}", {sha256(text): text})
    async with production_client(state, "only") as prod:
        auth = {"authorization": f"Bearer {await sign_in_trusted(prod, world)}"}
        unnamed = await prod.post("/graphql", json=_hash_body(text), headers=auth)
        assert codes(unnamed.json()) == ["BAD_USER_INPUT"]
        named = await prod.post(
            "/graphql", json=_hash_body(text, operationName="Two"), headers=auth
        )
        assert named.json() == {"data": {"tenant": {"slug": world.slug}}}


async def test_automatic_persisted_queries_in_allow_mode(state: AppState, world: World) -> None:
    """Apollo's and urql's APQ: the hash alone first; on PERSISTED_QUERY_NOT_FOUND the hash and
    the text; from then on the hash alone."""
    text = "query Mine { me { roles } } # apq " + world.slug
    async with production_client(state, "allow") as prod:
        token = await sign_in(prod, world, "hq_admin")
        auth = {"authorization": f"Bearer {token}"}
        first = await prod.post("/graphql", json=_hash_body(text), headers=auth)
        assert first.status_code == 200
        assert first.json()["errors"][0]["message"] == "PersistedQueryNotFound"
        assert codes(first.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
        retry = await prod.post("/graphql", json={**_hash_body(text), "query": text}, headers=auth)
        assert retry.json() == {"data": {"me": {"roles": ["hq_admin"]}}}
        again = await prod.post("/graphql", json=_hash_body(text), headers=auth)
        assert again.json() == retry.json()
        # Still no document text over GET, and no remembered (untrusted) one either.
        params = {"extensions": json.dumps(_hash_body(text)["extensions"])}
        assert codes((await prod.get("/graphql", params=params, headers=auth)).json()) == [
            "PERSISTED_QUERY_NOT_FOUND"
        ]


async def test_a_revoked_document_is_refused(
    owner_state: AppState, state: AppState, world: World, tmp_path: Path, unique: str
) -> None:
    from process.document_commands import revoke_documents

    text = LIST + f" # revoked {unique}"
    await _push(owner_state, tmp_path, f"old-{unique}", {sha256(text): text})
    async with owner_state.sessions() as session, session.begin():
        assert await revoke_documents(session, f"old-{unique}", sha256(text), None) == 1
    async with production_client(state, "only") as prod:
        auth = {"authorization": f"Bearer {await sign_in_trusted(prod, world)}"}
        gone = await prod.post("/graphql", json=_hash_body(text), headers=auth)
        assert codes(gone.json()) == ["PERSISTED_QUERY_NOT_FOUND"]


@pytest.mark.parametrize(
    "bad",
    ["invalid", "hash mismatch", "too deep", "too costly", "too many tokens", "too large"],
)
async def test_a_manifest_with_one_bad_document_is_refused_whole(
    owner_state: AppState, tmp_path: Path, unique: str, bad: str
) -> None:
    good = LIST + f" # {unique}"
    texts = {
        "invalid": "{ patients { nope } }",
        "too deep": "{ " + "patients { edges { node { " * 4 + "id" + " } } }" * 4 + " }",
        "too costly": "{ possibleDuplicates(first: 100) { edges { node { patients { id name "
        "tags { id name group { id name } } } } } } }",
        "too many tokens": "{ " + "me { roles } " * 600 + "}",
        "too large": "{ me { roles } }" + "#" * 40_000,
    }
    manifest = {sha256(good): good}
    if bad == "hash mismatch":
        manifest["0" * 64] = "{ me { roles } }"
    else:
        manifest[sha256(texts[bad])] = texts[bad]
    with pytest.raises(ManifestError) as refused:
        await _push(owner_state, tmp_path, f"bad-{unique}", manifest)
    assert len(refused.value.problems) == 1
    from process.document_commands import list_documents

    async with owner_state.sessions() as session:
        assert await list_documents(session, f"bad-{unique}") == []


def test_the_documents_commands(tmp_path: Path) -> None:
    """`migrate` trusts the project's operations; `documents push` takes graphql-codegen's
    manifest and Apollo's list, refuses a bad one with exit 1 and a line per document;
    `documents list` and `documents revoke` show and end trust."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATIENTPOOL_")}
    env.update(PATIENTPOOL_DATA_DIR=str(tmp_path))

    def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "process.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == code, (args, done.stdout, done.stderr)
        return done

    cli("migrate")
    listed = cli("documents", "list").stdout
    assert listed.count("patientpool ") == len(
        list(Path("frontend-schema/operations").glob("*.graphql"))
    )
    codegen = tmp_path / "persisted-documents.json"
    codegen.write_text(json.dumps({sha256(LIST): LIST}))
    assert (
        "1 document(s) now trusted"
        in cli("documents", "push", "--client", "web", str(codegen)).stdout
    )
    apollo = tmp_path / "apollo.json"
    apollo.write_text(
        json.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": [{"id": sha256(TWO), "name": "One", "type": "query", "body": TWO}],
            }
        )
    )
    cli("documents", "push", "--client", "mini", "--version", "2.3.0", str(apollo))
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({sha256(LIST + "#"): LIST + "#", "f" * 64: "{ me { roles } }"}))
    refused = cli("documents", "push", "--client", "web", str(broken), code=1)
    assert refused.stderr.count("refused: ") == 1 and "not stored" in refused.stderr
    listed = cli("documents", "list", "--client", "web").stdout.splitlines()
    assert len(listed) == 1 and sha256(LIST) in listed[0] and "PatientPage" in listed[0]
    assert "2.3.0" in cli("documents", "list", "--client", "mini").stdout
    cli("documents", "revoke", "--client", "web", "--hash", sha256(LIST))
    assert "revoked" in cli("documents", "list", "--client", "web").stdout
    cli("documents", "revoke", "--client", "web", "--hash", sha256(LIST), code=1)
    cli("documents", "push", "--client", "web", str(tmp_path / "missing.json"), code=2)


def test_codegen_types_compile_strict_with_every_scalar_typed() -> None:
    """graphql-codegen's client preset, pinned in frontend-schema/package.json, over the SDL
    and every operation: tsc --strict passes (the typed client and the README's TypeScript
    with it), one trusted document per operation, and no scalar left `unknown` but JSON."""
    from graphql import OperationDefinitionNode, parse

    from tests.api.frontend import FRONTEND, codegen_manifest

    manifest = codegen_manifest()
    operations = [
        d.name.value
        for p in sorted((FRONTEND / "operations").glob("*.graphql"))
        for d in parse(p.read_text(encoding="utf-8")).definitions
        if isinstance(d, OperationDefinitionNode) and d.name is not None
    ]
    assert len(manifest) == len(operations) > 10
    assert all(k.startswith("sha256:") and sha256(v) == k[7:] for k, v in manifest.items())
    generated = (FRONTEND / "generated" / "graphql.ts").read_text(encoding="utf-8")
    # DateTime and Decimal come out as strings (scalars are inlined by the preset).
    assert "  at: string;\n" in generated  # BookVisit's $at: DateTime!
    assert "revenue: string, referredRevenue: string" in generated  # Decimal yuan
    assert " unknown;" not in generated and "unknown," not in generated


async def test_allow_in_production_is_a_warning_at_start(
    state: AppState, caplog: pytest.LogCaptureFixture
) -> None:
    import dataclasses

    from api.app import create_app
    from process.settings import Environment

    for mode, warned in (("allow", True), ("only", False), (None, False)):
        settings = state.settings.model_copy(
            update={"env": Environment.PRODUCTION, "persisted_queries": mode}
        )
        assert settings.trusted_documents_only is (mode != "allow")
        app = create_app(settings, dataclasses.replace(state, settings=settings))
        caplog.clear()
        async with app.router.lifespan_context(app):
            pass
        said = [r for r in caplog.records if "PERSISTED_QUERIES=allow" in r.getMessage()]
        assert bool(said) is warned and all(r.levelname == "WARNING" for r in said)


async def test_no_trusted_mutation_runs_over_get(state: AppState, world: World) -> None:
    """Every mutation the project trusts, by hash over GET, is refused before it runs."""
    from graphql import OperationDefinitionNode, parse

    from api.documents import folder_manifest
    from api.schema import OPERATIONS

    mutations = [
        (digest, op.name.value)
        for digest, text in folder_manifest(OPERATIONS).items()
        for op in parse(text).definitions
        if isinstance(op, OperationDefinitionNode)
        and op.operation.value == "mutation"
        and op.name is not None
    ]
    assert len(mutations) >= 5
    async with production_client(state, "only") as prod:
        auth = {"authorization": f"Bearer {await sign_in_trusted(prod, world)}"}
        for digest, name in mutations:
            params = {
                "extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": digest}}),
                "operationName": name,
                "variables": "{}",
            }
            refused = await prod.get("/graphql", params=params, headers=auth)
            assert refused.status_code == 405, (name, refused.text)
            assert codes(refused.json()) == ["BAD_USER_INPUT"]
