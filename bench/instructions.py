"""`uv run python -m bench instructions [--scale S] [--database-url OWNER_URL] [--requests N]
[--only TEXT] [--plans on|off]`: machine instructions per request, counted by Valgrind.

On a shared machine a request's CPU time moves by a third between runs of the same build, so
two builds' timings compare only over many runs. The number of instructions the process
executes does not move: the same dataset and documents as `bench profile` (served in this
process with production settings, documents sent by hash), run under Valgrind's callgrind
with counting switched on only around each operation's `--requests` requests (start-up,
loading and warm-up are not counted). It prints millions of instructions a request per
operation; the in-process client's own work is counted too, the same in both builds. Needs
`valgrind` (Debian's package); runs about 50 times slower than natively while it counts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.profile import check_served, served, served_arguments

ROOT = Path(__file__).resolve().parent.parent


async def _child(
    scale: float, owner_url: str | None, requests: int, only: str, plans: bool
) -> None:
    """Under Valgrind: says `ready <name>` per operation, runs it on `go`, says `done`."""
    async with served(scale, owner_url, only, plans) as operations:
        for name, send in operations:
            print(f"ready {name}", flush=True)
            if sys.stdin.readline().strip() != "go":
                return
            for _ in range(requests):
                await send()
            print("done", flush=True)
        print("end", flush=True)


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def _totals(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {dump}")


def count(argv: list[str], requests: int) -> list[tuple[str, float]]:
    """Runs this command's child under callgrind: (operation, instructions a request)."""
    out = Path(tempfile.mkdtemp(prefix="pp-callgrind-"))
    child = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}/callgrind.out",
            sys.executable,
            "-m",
            "bench",
            "instructions",
            "--child",
            *argv,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        # the same hashes in every run, and this checkout's code whatever the directory
        env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)},
    )
    assert child.stdin is not None and child.stdout is not None
    found = []
    try:
        for line in child.stdout:
            if not line.startswith("ready "):
                break
            name = line.removeprefix("ready ").strip()
            print(f"counting: {name}", file=sys.stderr, flush=True)
            _control(child.pid, "--instr=on")
            child.stdin.write("go\n")
            child.stdin.flush()
            if child.stdout.readline().strip() != "done":
                raise SystemExit(f"{name}: the counted process stopped")
            _control(child.pid, "--instr=off")
            before = set(out.iterdir())
            _control(child.pid, "--dump")  # writes the counts since the last dump, then zeroes
            (dump,) = set(out.iterdir()) - before
            found.append((name, _totals(dump) / requests))
    finally:
        child.stdin.close()
        child.wait(timeout=120)
        shutil.rmtree(out, ignore_errors=True)
    return found


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench instructions", description=__doc__)
    served_arguments(parser, requests=20)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    check_served(parser, args)
    if args.child:
        only, plans = args.only, args.plans == "on"
        asyncio.run(_child(args.scale, args.database_url, args.requests, only, plans))
        return
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("bench instructions: valgrind is not installed (apt-get install valgrind)")
        raise SystemExit(2)
    rows = count(argv, args.requests)
    print("| operation | requests | instructions/request (millions) |")
    print("|---|---|---|")
    for name, per_request in rows:
        print(f"| {name} | {args.requests} | {per_request / 1e6:.2f} |")
