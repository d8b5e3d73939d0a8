"""Reading files a test scans for plaintext, from a child process.

A test process must not open and close a live SQLite file (or its -wal and -shm) itself:
closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
included (sqlite.org/howtocorrupt.html, 2.2). Another process on the same database (a CLI
command, a served worker) then finds it unlocked, checkpoints and deletes the WAL under this
process's open connections: 'disk I/O error', then 'file is not a database'. A child reads
the bytes and exits; the test's own locks stay as SQLite set them."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

_READ = """
import pickle, sys
out = {}
for name in sys.stdin.read().split("\\0"):
    if not name:
        continue
    try:
        with open(name, "rb") as f:
            out[name] = f.read()
    except OSError:
        pass
sys.stdout.buffer.write(pickle.dumps(out))
"""


def read_elsewhere(paths: Iterable[Path]) -> dict[Path, bytes]:
    """Each readable file's bytes (unreadable or vanished files are left out)."""
    names = [str(p) for p in paths]
    if not names:
        return {}
    done = subprocess.run(
        [sys.executable, "-c", _READ],
        input="\0".join(names).encode(),
        capture_output=True,
        check=True,
        timeout=300,
    )
    return {Path(k): v for k, v in pickle.loads(done.stdout).items()}
