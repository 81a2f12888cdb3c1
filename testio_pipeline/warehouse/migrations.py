"""Schema versions: bring a warehouse (file or lake) to the schema declared in ``schema.py``.

The declared ``MIGRATIONS`` are applied in order, each recorded in ``schema_migrations``, all
in one transaction, so a warehouse is at one version or the next, never in between. It is
migrated on its first use; one already at the latest version is only read (read-only), so
checking it does not take the write lock. Table DDL is generated for the backend: a DuckLake
gets the same tables without primary keys and sequences (:class:`~.schema_versions.CreateTables`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

import duckdb

from .backends import FileBackend
from .merge import run
from .schema_versions import LATEST_VERSION, MIGRATIONS, bootstrap_sql, comment_sql

if TYPE_CHECKING:
    from .connection import Connections


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The file's schema version; 0 for a file without ``schema_migrations``."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_migrations' "
        "AND schema_name = 'main' AND database_name = current_database()"
    ).fetchall()[0][0]
    if not exists:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][0]


def ensure_ready(db: Connections) -> None:
    """Make sure the warehouse is at the latest version (``Connections`` calls this before its
    first read or write); one already there is only read, not locked."""
    if not isinstance(db.backend, FileBackend) or not db.backend.is_new():
        with db.unit(read_only=True) as unit:
            version = current_version(unit.con)
        if version == LATEST_VERSION:
            db.ready = True
            return
    migrate(db)


def migrate(db: Connections) -> int:
    """Apply missing schema versions in order, in one transaction; returns the current version."""
    constraints = db.backend.constraints

    def body(con: duckdb.DuckDBPyConnection) -> None:
        for stmt in bootstrap_sql(constraints):
            run(con, stmt)
        db.backend.claim(con)  # only now is there a schema_migrations to claim the lake with
        version = current_version(con)
        if version > LATEST_VERSION:
            raise RuntimeError(
                f"{db.backend.location} has schema version {version}, newer than this code ({LATEST_VERSION})"
            )
        pending = [m for m in MIGRATIONS if m.version > version]
        for migration in pending:
            for step in migration.statements(constraints):
                run(con, step)
            run(
                con,
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                [migration.version, datetime.now(timezone.utc), migration.description],
            )
        if pending:  # TABLES describes the latest schema, so comments are rewritten whole
            for stmt in comment_sql():
                run(con, stmt)

    db.transaction(body, claim=False)
    db.ready = True
    return LATEST_VERSION
