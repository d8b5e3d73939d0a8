"""`uv run python -m bench profile [--scale S] [--database-url OWNER_URL] [--requests N]
[--only TEXT] [--plans on|off]`: where one operation's requests go, counted call by call.

The scale benchmark's dataset and documents (bench/scale.py, loaded or resumed the same way),
served in this process with production settings (token check, Casbin, RLS, decryption, access
log; documents sent by hash, so trusted queries run by their plans), and each operation whose
name contains `--only` driven `--requests` times under cProfile. It prints, per request, the
Python function calls by package (ours by layer) and the functions that take the most time of
their own. Call counts do not move with the machine's load, so two builds compare exactly;
the times are cProfile's (inflated by it) and only rank the entries.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from api.app import create_app
from bench import scale as s
from bench.dataset import PASSWORD
from process.serve import app_state
from process.settings import Settings
from tenancy.session import make_engine, session_factory

ROOT = Path(__file__).resolve().parent.parent
WARM_UP = 20


def _package(filename: str) -> str:
    """Who a profiled function belongs to: a library, a layer of ours, or the standard library."""
    if "site-packages/" in filename:
        return filename.split("site-packages/")[1].split("/")[0]
    if filename.startswith(str(ROOT)):
        return Path(filename).relative_to(ROOT).parts[0] + "/ (ours)"
    return "C built-ins" if filename == "~" else "standard library"


def report(profiler: cProfile.Profile, requests: int, top: int = 15) -> str:
    stats = pstats.Stats(profiler)
    calls: Counter[str] = Counter()
    for (filename, _line, _name), (_cc, nc, _tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        calls[_package(filename)] += nc
    total = sum(calls.values())
    lines = [
        f"Python function calls per request: {total / requests:,.0f}",
        "",
        "| package | calls/req | share |",
        "|---|---|---|",
    ]
    for package, n in calls.most_common():
        if n / total >= 0.005:
            lines.append(f"| {package} | {n / requests:,.0f} | {n / total:.1%} |")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    lines += [
        "",
        "Most time of their own (cProfile's times):",
        "```",
        out.getvalue().strip(),
        "```",
    ]
    return "\n".join(lines)


@asynccontextmanager
async def served(
    scale: float, owner_url: str | None, only: str, plans_on: bool
) -> AsyncIterator[list[tuple[str, Callable[[], Awaitable[Any]]]]]:
    """The app served in this process with production settings on the scale dataset, and for
    each operation whose name contains `only` (hostile ones left out) a function that sends
    one request of it, signed in as its role and warmed up."""
    data = await s.prepare(scale, owner_url)
    settings = Settings(
        env="production",  # type: ignore[arg-type]
        database_url=data.app_url,
        master_key_file=data.keyfile,
        signing_keys_file=data.jwks,
        data_dir=data.work,
        persisted_queries="allow",  # the sign-in is sent as text
        compiled_plans=plans_on,
    )
    state = app_state(
        settings, session_factory(make_engine(data.app_url)), data.keys, data.owner.signing_keys
    )
    app = create_app(settings, state)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client,
    ):
        senders = []
        for name, (role, query, template) in s.OPERATIONS.items():
            if only not in name or name.startswith("hostile"):
                continue
            signed = await client.post(
                "/graphql",
                json={
                    "query": s.SIGN_IN,
                    "variables": {
                        "t": data.largest,
                        "e": f"{role}@{data.largest}.bench",
                        "p": PASSWORD,
                    },
                },
            )
            token = signed.json()["data"]["signIn"]["accessToken"]
            body = s._body(query, s._bind(template, data.tenant_id, data.middle))
            send = partial(
                client.post, "/graphql", json=body, headers={"Authorization": f"Bearer {token}"}
            )
            for _ in range(WARM_UP):
                answer = (await send()).json()
            if answer.get("errors"):
                raise SystemExit(f"{name}: {answer['errors'][0].get('message')}")
            senders.append((name, send))
        yield senders


async def profile(
    scale: float, owner_url: str | None, requests: int, only: str, plans_on: bool
) -> str:
    sections = []
    async with served(scale, owner_url, only, plans_on) as operations:
        for name, send in operations:
            s.say(f"profiling: {name}")
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(requests):
                await send()
            profiler.disable()
            # the in-process client's own calls (httpx) are counted too: the same in both builds
            sections.append(f"### {name}\n\n" + report(profiler, requests))
    return "\n\n".join(sections)


def served_arguments(parser: argparse.ArgumentParser, requests: int) -> None:
    """The options of a command that drives `served` (this one and `bench instructions`)."""
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--requests", type=int, default=requests)
    parser.add_argument("--only", default="patient list: first")
    parser.add_argument("--plans", choices=("on", "off"), default="on")


def check_served(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.requests < 1 or not 0 < args.scale <= 1:
        parser.error("--requests must be at least 1 and --scale in (0, 1]")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench profile", description=__doc__)
    served_arguments(parser, requests=200)
    args = parser.parse_args(argv)
    check_served(parser, args)
    print(
        asyncio.run(
            profile(args.scale, args.database_url, args.requests, args.only, args.plans == "on")
        )
    )
