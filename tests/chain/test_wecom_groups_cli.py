"""`patientpool wecom sync-groups` as an operator runs it, against the stand-in WeCom API:
exit 0 with progress and a summary, 2 with a one-line reason for an unknown tenant or a chain
without the WeCom secret, 1 when WeCom cannot be read."""

from __future__ import annotations

import asyncio

import httpx
from typer.testing import CliRunner

from process.cli import app as cli
from tests.campaigns.standin import CORP_ID, CORP_SECRET, STAFF, Chat, Served, StandIn
from tests.chain.conftest import Operator, new_chain, sign_in_pair
from tests.chain.imports import branch_id
from tests.support import gql, ok

CONFIGURE = (
    f'mutation($b: ID!, $s: String) {{ configureWecom(corpId: "{CORP_ID}", '
    f'token: "standintoken", encodingAesKey: "{"a" * 43}", defaultBranchId: $b, secret: $s) '
    "{ bulkSendEnabled } }"
)


async def _sync(operator: Operator, url: str, slug: str) -> tuple[int, str]:
    env = {**operator.env, "PATIENTPOOL_WECOM_API_URL": url}
    args = ["wecom", "sync-groups", "--tenant", slug]
    result = await asyncio.to_thread(CliRunner().invoke, cli, args, env=env)
    return result.exit_code, result.output


async def test_sync_groups_command(api: httpx.AsyncClient, operator: Operator, unique: str):
    fake = StandIn()
    fake.chats["wrCLI1"] = Chat("口腔护理群", STAFF, [(STAFF, 1), ("wmCLI1", 2), ("wmCLI2", 2)])
    fake.chats["wrCLI2"] = Chat("种植牙咨询群", STAFF, [("wmCLI3", 2)])
    slug = f"grp-{unique}"
    password = await new_chain(
        operator, slug, "--branch-name", "上海徐汇店", "--branch-city", "上海"
    )
    hq = (await sign_in_pair(api, slug, f"admin@{slug}.test", password))["accessToken"]
    main = await branch_id(api, hq, "main")
    with Served(fake.app()) as served:
        code, out = await _sync(operator, served.url, f"nobody-{unique}")
        assert code == 2 and out.strip().splitlines() == [
            f"patientpool: no tenant with slug 'nobody-{unique}'"
        ]
        ok(await gql(api, CONFIGURE, {"b": main, "s": None}, token=hq))
        code, out = await _sync(operator, served.url, slug)
        assert code == 2 and "secret" in out and len(out.strip().splitlines()) == 1
        ok(await gql(api, CONFIGURE, {"b": main, "s": CORP_SECRET}, token=hq))
        code, out = await _sync(operator, served.url, slug)
        assert code == 0, out
        lines = out.strip().splitlines()
        assert lines[0] == "2 groups listed by WeCom"
        assert lines[1:3] == ["group 1/2: 2 joined, 0 left", "group 2/2: 1 joined, 0 left"]
        assert lines[-1] == (
            f"tenant {slug}: 2 groups synced, 3 members joined, 0 left, 0 groups dismissed"
        )
        code, out = await _sync(operator, f"{served.url}/down", slug)
        assert code == 1 and len(out.strip().splitlines()) == 1, out
        assert out.startswith("patientpool: WeCom could not be read (http_404)")
    found = ok(await gql(api, "{ groupChats { totalCount } }", token=hq))
    assert found["groupChats"]["totalCount"] == 2
