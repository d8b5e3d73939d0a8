"""The README's mini-program sign-in, run as written (but for host and chain) by node, with
`wx` standing in for the mini-program runtime: its requests are bridged over stdin/stdout to
the app, and its `wx.login` code comes from the stand-in WeChat."""

from __future__ import annotations

import asyncio
import json
import shutil

import httpx
import pytest

from tests.door.conftest import Chain
from tests.door.standin import WeChat
from tests.readme import blocks

RUNTIME = """
const readline = require('readline')
const lines = readline.createInterface({ input: process.stdin })
const waiting = []
lines.on('line', (line) => waiting.shift()(JSON.parse(line)))
const say = (o) => console.log(JSON.stringify(o))
const page = { setData(d) { say({ shown: d }); process.exit(0) } }
function handle(codes) { say({ codes }); process.exit(0) }
const wx = {
  login(o) { o.success.call(page, { code: process.argv[1] }) },
  request(o) {
    waiting.push((data) => o.success.call(page, { data }))
    say({ request: { url: o.url, method: o.method, header: o.header, data: o.data } })
  },
}
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
async def test_the_readme_signs_a_patient_in_and_shows_their_home(
    api: httpx.AsyncClient, chain: Chain, wechat: tuple[WeChat, str]
) -> None:
    fake, _ = wechat
    call = blocks("js", "## For mini-program developers")[0].replace(
        "'smile-dental'", f"'{chain.slug}'"
    )
    node = await asyncio.create_subprocess_exec(
        "node", "-e", RUNTIME + call, fake.login("o-readme"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert node.stdin is not None and node.stdout is not None
    sent = []
    try:
        while True:
            line = await asyncio.wait_for(node.stdout.readline(), 60)
            assert line, "node ended without showing anything"
            said = json.loads(line)
            if "request" not in said:
                break
            req = said["request"]
            assert req["url"].endswith("/graphql") and req["method"] == "POST"
            sent.append(req["data"]["query"].split("(")[0].split("{")[0].strip())
            got = await api.post("/graphql", json=req["data"], headers=req["header"])
            node.stdin.write((json.dumps(got.json()) + "\n").encode())
            await node.stdin.drain()
    finally:
        if node.returncode is None:
            node.kill()
        await node.wait()
    assert sent == ["mutation PatientSignIn", "query MyHome"]
    home = said["shown"]["home"]
    assert home["myRecord"]["lifecycleStage"] == "LEAD"
    assert home["myVisits"] == []
    assert home["myReferral"]["friendsJoined"] == 0 and home["myReferral"]["code"]
