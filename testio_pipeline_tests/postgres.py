"""A throwaway PostgreSQL server for tests: initdb in a temp folder, pg_ctl on a free port.

    with throwaway_postgres() as pg:
        pg.create_database("lake")
        pg.dsn("lake")          # "dbname=lake host=127.0.0.1 port=… user=postgres"

The server is stopped (immediate shutdown, then SIGKILL of the postmaster if that fails) and
its folder removed whatever happens in the block, KeyboardInterrupt included. PostgreSQL
refuses to run as root, so as root (CI) the binaries run as the ``postgres`` system user,
which then owns the folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2

SYSTEM_USER = "postgres"
# Seconds pg_ctl waits for the server to accept connections (its default, 60, is too short
# for initdb's fresh cluster to come up on a machine busy with other work).
START_TIMEOUT = 600


def _bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", SYSTEM_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Postgres:
    port: int
    folder: Path
    user: str = "postgres"

    def dsn(self, dbname: str) -> str:
        """libpq key=value form, as DuckDB's postgres extension takes it."""
        return f"dbname={dbname} host=127.0.0.1 port={self.port} user={self.user}"

    def url(self, dbname: str) -> str:
        """URL form, as Dagster's documentation writes DAGSTER_PG_URL: a bare postgresql://,
        which SQLAlchemy 2.1 reads as psycopg 3 (test_postgres_url.py tests the other forms)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        self.execute("postgres", f'CREATE DATABASE "{name}"')
        return name

    def execute(self, dbname: str, sql: str) -> list[tuple]:
        """Run one statement outside a transaction; its rows, if it returns any."""
        con = psycopg2.connect(self.dsn(dbname))
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if cur.description else []
        finally:
            con.close()

    @property
    def postmaster_pid(self) -> int | None:
        pidfile = self.folder / "data" / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


@contextmanager
def throwaway_postgres() -> Iterator[Postgres]:
    """A fresh server (trust auth, superuser ``postgres``) for the block; gone afterwards."""
    bindir = _bindir()
    folder = Path(tempfile.mkdtemp(prefix="testio-pg-"))
    data = folder / "data"
    pg = Postgres(port=free_port(), folder=folder)
    try:
        data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(folder, SYSTEM_USER)
            shutil.chown(data, SYSTEM_USER)
        subprocess.run(
            _as_server_user([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", pg.user, "--no-sync"]),
            check=True, capture_output=True,
        )
        options = f"-p {pg.port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_server_user([str(bindir / "pg_ctl"), "-w", "-t", str(START_TIMEOUT), "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "start"]),
            check=True, capture_output=True,
        )
        yield pg
    finally:
        _stop(bindir, pg)
        shutil.rmtree(folder, ignore_errors=True)


def _stop(bindir: Path, pg: Postgres) -> None:
    pid = pg.postmaster_pid
    if pid is None:
        return
    stopped = subprocess.run(
        _as_server_user([str(bindir / "pg_ctl"), "-w", "-t", "30", "-D", str(pg.folder / "data"), "-m", "immediate", "stop"]),
        capture_output=True,
    )
    if stopped.returncode != 0:
        try:
            os.kill(pid, signal.SIGKILL)  # its backends exit when the postmaster is gone
        except ProcessLookupError:
            pass
