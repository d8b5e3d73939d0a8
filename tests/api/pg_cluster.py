"""A PostgreSQL cluster of a test's own (initdb on a free port, fsync off), for what the shared
cluster must never suffer: a real restart. The binaries are the machine's PostgreSQL (Debian
keeps them under /usr/lib/postgresql/<version>/bin); as root, the cluster runs as `postgres`,
which PostgreSQL requires."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.api.test_served import _free_port
from tests.conftest import IN_CI, Database


def _bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class Cluster:
    bin: Path
    data: Path
    port: int

    @classmethod
    def start(cls) -> Cluster:
        bin_dir = _bin_dir()
        if bin_dir is None:
            message = "PostgreSQL's server binaries (initdb, pg_ctl) are not installed"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        # not under pytest's tmp dir: the postgres user must be able to enter it
        root = Path(tempfile.mkdtemp(prefix="pp-cluster-"))
        root.chmod(0o777)
        cluster = cls(bin_dir, root / "data", _free_port())
        subprocess.run(
            _as_postgres(
                [
                    str(bin_dir / "initdb"),
                    *("-D", str(cluster.data), "-U", "postgres"),
                    *("--auth=trust", "--no-sync", "-E", "UTF8"),
                ]
            ),
            check=True,
            capture_output=True,
        )
        cluster._ctl("start")
        return cluster

    def _ctl(self, action: str, *extra: str) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories= "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        subprocess.run(
            _as_postgres(
                [
                    str(self.bin / "pg_ctl"),
                    *(action, "-D", str(self.data), "-w", "-t", "60", "-o", options),
                    *("-l", str(self.data.parent / "server.log"), *extra),
                ]
            ),
            check=True,
            capture_output=True,
        )

    def restart(self) -> None:
        """Fast shutdown (every backend ended, as a restart does), then up again."""
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        try:
            self._ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self.data.parent, ignore_errors=True)

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgresql+asyncpg://{user}@127.0.0.1:{self.port}/{database}"

    async def database(self, name: str) -> Database:
        """An empty database and its login role, as tests.conftest.create_pg_database makes
        them on the shared cluster."""
        login = f"{name}_login"
        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres")
        try:
            await conn.execute(f'CREATE ROLE "{login}" LOGIN NOSUPERUSER NOBYPASSRLS')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return Database("postgres", self.url(name), self.url(name, login), self.url(name), login)
