"""Schema versions: bring a warehouse file to the schema declared in ``schema.py``.

The declared ``MIGRATIONS`` are applied in order, each recorded in ``schema_migrations``, all
in one transaction, so a file is at one version or the next, never in between. A file is
migrated on its first use; one already at the latest version is only read (read-only), so
checking it does not take the write lock.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

import duckdb

from .merge import run
from .schema import LATEST_VERSION, MIGRATIONS, bootstrap_sql, comment_sql

if TYPE_CHECKING:
    from .connection import Connections


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The file's schema version; 0 for a file without ``schema_migrations``."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_migrations' AND schema_name = 'main'"
    ).fetchall()[0][0]
    if not exists:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][0]


def ensure_ready(db: Connections) -> None:
    """Make sure the file is at the latest version (``Connections`` calls this before its first
    read or write); a file already there is only read, not locked."""
    if db.path.exists() and db.path.stat().st_size > 0:
        with db.unit(read_only=True) as unit:
            version = current_version(unit.con)
        if version == LATEST_VERSION:
            db.ready = True
            return
    migrate(db)


def migrate(db: Connections) -> int:
    """Apply missing schema versions in order, in one transaction; returns the current version."""
    with db.unit(read_only=False) as unit:
        con = unit.con
        for stmt in bootstrap_sql():
            run(con, stmt)
        version = current_version(con)
        if version > LATEST_VERSION:
            raise RuntimeError(f"{db.path} has schema version {version}, newer than this code ({LATEST_VERSION})")
        pending = [m for m in MIGRATIONS if m.version > version]
        for migration in pending:
            for step in migration.steps:
                run(con, step)
            run(
                con,
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                [migration.version, datetime.now(timezone.utc), migration.description],
            )
        if pending:  # TABLES describes the latest schema, so comments are rewritten whole
            for stmt in comment_sql():
                run(con, stmt)
    db.ready = True
    return LATEST_VERSION
