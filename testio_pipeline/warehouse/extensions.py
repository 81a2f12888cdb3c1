"""DuckDB extensions, installed from the files their pip packages ship, never downloaded.

DuckDB would fetch an extension from its own repository on first use; the machines this runs
on reach only PyPI. The extensions the project needs come as pip packages
(``duckdb-extension-<name>``, pinned with ``duckdb`` in pyproject.toml), each holding the
extension file for exactly that DuckDB version, so ``INSTALL`` reads it from there.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb


class ExtensionMissingError(RuntimeError):
    """The extension's pip package is not installed, or holds no file for this DuckDB version."""


def extension_file(name: str) -> Path:
    """The ``.duckdb_extension`` file for ``name`` in its pip package, for this DuckDB version."""
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionMissingError(
            f"the DuckDB extension {name!r} needs the pip package duckdb-extension-{name} (see pyproject.toml)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.is_file():
        raise ExtensionMissingError(f"duckdb-extension-{name} has no build for DuckDB {duckdb.__version__} ({path})")
    return path


def load(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Load extension ``name`` into ``con``, installing it from its pip package the first time."""
    try:
        con.execute(f"LOAD {name}").fetchall()
        return
    except duckdb.Error:
        pass  # not installed yet (or another DuckDB build's copy): install ours
    con.execute(f"FORCE INSTALL '{extension_file(name)}'").fetchall()
    con.execute(f"LOAD {name}").fetchall()
