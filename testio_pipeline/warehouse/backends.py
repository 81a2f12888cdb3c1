"""Where the warehouse lives: one DuckDB file, or a DuckLake shared by several hosts.

``TESTIO_DUCKDB_PATH`` chooses. A path is a DuckDB file: one writing process at a time, held
by a file lock. A value starting with ``ducklake:`` is DuckDB's own ATTACH string for a
DuckLake, whose catalog lives in a database (e.g. PostgreSQL: ``ducklake:postgres:dbname=…``)
and whose data are Parquet files under ``TESTIO_LAKE_DATA_PATH`` (a folder or an object-store
URL), so processes on different hosts write and read the same tables.

A backend decides only how a connection is opened, which errors mean "another writer was
first, try again", and what DDL the storage supports (DuckLake has no primary keys, indexes or
sequences). Every other statement is the same SQL for both.
"""

from __future__ import annotations

import re
import tempfile
import threading
from pathlib import Path

import duckdb

from testio_pipeline.domain.credentials import REDACTED

from . import extensions

LAKE_PREFIX = "ducklake:"
_ATTACH_FAILED = "cannot attach the ducklake"
LAKE_ALIAS = "lake"  # the name the lake is attached under; USE makes it the default catalog
_REMOTE_PREFIXES = ("s3://", "s3a://", "gs://", "gcs://", "r2://", "az://", "azure://", "abfss://", "http://", "https://")


# A libpq connection string may carry password=…; it never leaves the process in clear.
_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def mask_password(attach: str) -> str:
    """``attach`` with any password replaced by a placeholder."""
    return _PASSWORD.sub(rf"\g<1>{REDACTED}", attach)


def is_lake(location: str | Path) -> bool:
    """Whether ``location`` names a DuckLake rather than a DuckDB file."""
    return str(location).startswith(LAKE_PREFIX)


class FileBackend:
    """A DuckDB file: opened per unit of work, one writer at a time (DuckDB's file lock)."""

    constraints = True  # primary keys and sequences exist
    full_text_search = True

    # A unit's connection is the file's only one in the process (the process lock sees to it):
    # its DuckDB instance, and the settings the unit made, close with it.
    shares_instance = False

    def __init__(self, path: Path):
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def staging_dir(self) -> Path:
        """Next to the file (same disk), in a hidden directory."""
        return self.path.parent / f".{self.path.name}.staging"

    def is_new(self) -> bool:
        return not self.path.exists() or self.path.stat().st_size == 0

    def connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.path), read_only=read_only)

    def is_busy(self, exc: duckdb.Error) -> bool:
        """Another process holds the file lock, or this process has it open in the other mode
        (read-only vs read-write); both clear once the other connection closes."""
        msg = str(exc).lower()
        return (isinstance(exc, duckdb.IOException) and "lock" in msg) or (
            isinstance(exc, duckdb.ConnectionException) and "different configuration" in msg
        )

    def is_conflict(self, exc: duckdb.Error) -> bool:
        return False  # one writer at a time: a commit never meets another's

    def claim(self, con: duckdb.DuckDBPyConnection) -> None:
        """Nothing to do: the file lock already makes this the only writer."""


class LakeBackend:
    """A DuckLake attached in one in-memory DuckDB per process; each unit of work is a cursor.

    Attaching reads the catalog over the network, so it happens once per process; cursors
    share the attached lake and each has its own transaction. DuckLake has no locks: writers
    see each other only when they commit, and two transactions that only insert into a table
    both commit, which would store a new key twice. So every write first *claims* the lake
    (:meth:`claim`), which makes any two concurrent writes conflict: the later commit fails
    and the write path runs that transaction again on the newer snapshot.
    """

    constraints = False
    # The fts index is not built on a lake (not tried here): search reads a DuckDB file.
    full_text_search = False

    # Every connection is a cursor of one in-memory instance: a setting outlives its unit.
    shares_instance = True

    def __init__(self, attach: str, data_path: str | None, staging_dir: Path | None = None):
        self.attach = attach
        self.data_path = data_path
        self._staging_dir = staging_dir
        self._db: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        """The ATTACH string as logs, metadata, errors and reports show it: any password masked."""
        return mask_password(self.attach)

    @property
    def staging_dir(self) -> Path:
        """Stages are this process's own scratch files: a local temp folder, not the lake's storage."""
        return self._staging_dir or Path(tempfile.gettempdir()) / "testio_pipeline_lake_staging"

    def is_new(self) -> bool:
        return True  # no local file to look at; the catalog is read on the first connection

    def _instance(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._db is None:
                db = duckdb.connect()
                try:
                    for name in ("ducklake", "postgres"):
                        extensions.load(db, name)
                    if self.data_path and self.data_path.startswith(_REMOTE_PREFIXES):
                        extensions.load(db, "httpfs")
                    options = f" (DATA_PATH '{_quote(self.data_path)}')" if self.data_path else ""
                    db.execute(f"ATTACH '{_quote(self.attach)}' AS {LAKE_ALIAS}{options}").fetchall()
                except duckdb.Error as exc:
                    db.close()
                    hint = "" if self.data_path else " (is TESTIO_LAKE_DATA_PATH set? a new lake needs it)"
                    raise duckdb.IOException(f"{_ATTACH_FAILED} {self.attach!r}{hint}: {exc}") from exc
                self._db = db
            return self._db

    def connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        con = self._instance().cursor()
        con.execute(f"USE {LAKE_ALIAS}").fetchall()
        return con

    def is_busy(self, exc: duckdb.Error) -> bool:
        """Another process is creating this (new) lake's catalog right now: attaching fails on
        its half-made catalog tables, and succeeds once that process has committed them."""
        msg = str(exc).lower()
        return (
            isinstance(exc, duckdb.IOException)
            and msg.startswith(_ATTACH_FAILED)
            and ("already exists" in msg or "duplicate key" in msg)
        )

    def is_conflict(self, exc: duckdb.Error) -> bool:
        """Another writer committed first (see :meth:`claim`); this transaction can be run again."""
        return isinstance(exc, duckdb.TransactionException) and "conflict" in str(exc).lower()

    def claim(self, con: duckdb.DuckDBPyConnection) -> None:
        """Rewrite the newest ``schema_migrations`` row in place: a delete from the same table
        is a DuckLake conflict, so of two concurrent writes only the first commits."""
        con.execute(
            "UPDATE schema_migrations SET applied_at = applied_at "
            "WHERE version = (SELECT max(version) FROM schema_migrations)"
        ).fetchall()


Backend = FileBackend | LakeBackend


def backend_for(location: str | Path, lake_data_path: str | None = None) -> Backend:
    """The backend ``location`` names: a ``ducklake:`` ATTACH string or a DuckDB file path."""
    if is_lake(location):
        return LakeBackend(str(location), lake_data_path or None)
    return FileBackend(Path(location))


def _quote(text: str) -> str:
    return text.replace("'", "''")
