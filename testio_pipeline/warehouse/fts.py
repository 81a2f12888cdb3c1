"""DuckDB's ``fts`` extension, installed from its pip package and never downloaded.

DuckDB would fetch a missing extension from its extension repository on first use; the
machines this runs on reach only package registries, so the extension comes from the
``duckdb-extension-fts`` wheel (pinned to the same version as ``duckdb``): ``INSTALL`` of the
``.duckdb_extension`` file inside it copies it into DuckDB's extension directory, and
``LOAD fts`` loads it into the connection's database.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import duckdb


class FtsUnavailableError(RuntimeError):
    """The fts extension file for this DuckDB version is not installed."""


@cache
def extension_file() -> Path:
    """The ``fts.duckdb_extension`` shipped for the installed DuckDB version."""
    try:
        import duckdb_extension_fts
    except ImportError as exc:
        raise FtsUnavailableError("the package duckdb-extension-fts is not installed (see pyproject.toml)") from exc
    folder = Path(duckdb_extension_fts.__file__).parent / "extensions" / f"v{duckdb.__version__}"
    path = folder / "fts.duckdb_extension"
    if not path.is_file():
        raise FtsUnavailableError(
            f"{path} is missing: duckdb-extension-fts must have the same version as duckdb ({duckdb.__version__})"
        )
    return path


def load(con: duckdb.DuckDBPyConnection) -> None:
    """Make the fts functions available on ``con`` (a no-op once loaded)."""
    loaded = con.execute("SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'fts'").fetchall()
    if loaded and loaded[0][0]:
        return
    con.execute(f"INSTALL '{extension_file()}'")
    con.execute("LOAD fts")
