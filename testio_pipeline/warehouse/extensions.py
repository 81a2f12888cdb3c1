"""DuckDB extensions, loaded from the files their pip packages ship, never downloaded.

DuckDB would download an extension into the user's ``~/.duckdb`` on first use; the machines
this runs on reach only PyPI, and a new machine has no ``~/.duckdb``. The extensions the
project needs come as pip packages (``duckdb-extension-<name>``, pinned with ``duckdb`` in
pyproject.toml), each holding the extension file for exactly that DuckDB version.

They are installed once into :data:`EXTENSION_DIRECTORY`, inside the virtual environment,
in DuckDB's own layout (``make install`` does it; :func:`load` does it on first need, on a
DuckDB instance of its own). A connection then ``LOAD``\ s the installed file by its path:
nothing is downloaded or written, so it works inside a write's transaction, in several
processes at once, and whatever the home folder holds. (Loading the pip file's path directly
is not enough: DuckDB derives the entry point from the file name, and ``postgres`` is really
``postgres_scanner``. The old way, ``LOAD name`` and ``INSTALL`` on failure, aborted the
write's transaction on a new machine: a failed ``LOAD`` poisons the transaction.)

An analyst's own DuckDB session (CLI, notebook, BI tool) makes DuckDB autoload them from the
same folder with one line (``python -m testio_pipeline.cli.duckdb_setup`` prints it with the
absolute path)::

    SET extension_directory = '.venv/duckdb_extensions';
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import sys
from pathlib import Path

import duckdb

# Every extension the project or an analyst's session of its warehouse may need: the search
# index (fts), DuckLake with its PostgreSQL catalog, and object-store data paths (httpfs).
PROJECT_EXTENSIONS = ("fts", "ducklake", "postgres", "httpfs")

# Inside the virtual environment that holds the pip packages, so the folder and the DuckDB
# version it was filled for come and go together; TESTIO_DUCKDB_EXTENSION_DIRECTORY moves it
# (e.g. where the environment is read-only).
EXTENSION_DIRECTORY = Path(os.environ.get("TESTIO_DUCKDB_EXTENSION_DIRECTORY") or Path(sys.prefix) / "duckdb_extensions")


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
    """Load extension ``name`` into ``con``'s database from :data:`EXTENSION_DIRECTORY`.

    Safe inside a transaction: the file is found, or installed on an instance of its own, or
    :class:`ExtensionMissingError` raised, before ``con`` is asked; loading twice is a no-op.
    """
    path = str(installed_file(name)).replace("'", "''")
    con.execute(f"LOAD '{path}'").fetchall()


def installed_file(name: str) -> Path:
    """Where ``name`` is installed in :data:`EXTENSION_DIRECTORY`, installing it (and any other
    project extension missing there) first if it is not."""
    if name not in _known:
        _known.update(install(EXTENSION_DIRECTORY, tuple(dict.fromkeys((*PROJECT_EXTENSIONS, name))), only_missing=True))
    return _known[name]


# {name or alias: installed file} in EXTENSION_DIRECTORY, filled once per process
_known: dict[str, Path] = {}


def install(
    directory: Path = EXTENSION_DIRECTORY, names: tuple[str, ...] = PROJECT_EXTENSIONS, *, only_missing: bool = False
) -> dict[str, Path]:
    """Install ``names`` from their pip packages into ``directory`` in DuckDB's layout, on an
    in-memory DuckDB of its own (so never inside anyone's transaction), under a file lock (so
    no process reads a file another is still writing). ``only_missing`` keeps what is there.
    Returns every installed extension there, by name and alias."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        con = duckdb.connect(config={"extension_directory": str(directory)})
        try:
            present = _installed(con)
            for name in names:
                if not (only_missing and name in present):
                    con.execute(f"FORCE INSTALL '{str(extension_file(name))}'").fetchall()
            present = _installed(con)
        finally:
            con.close()
    missing = [name for name in names if name not in present]
    if missing:  # DuckDB installed it under a name we did not expect
        raise ExtensionMissingError(f"installing {missing} into {directory} left no file for them")
    return present


def _installed(con: duckdb.DuckDBPyConnection) -> dict[str, Path]:
    """The extensions installed in ``con``'s extension directory, by name and alias (postgres
    is installed under its real name, postgres_scanner)."""
    rows = con.execute(
        "SELECT extension_name, aliases, install_path FROM duckdb_extensions() "
        "WHERE installed AND install_path NOT IN ('', '(BUILT-IN)')"
    ).fetchall()
    return {alias: Path(path) for name, aliases, path in rows for alias in (name, *aliases) if Path(path).is_file()}


def setup_line(directory: Path = EXTENSION_DIRECTORY) -> str:
    """The one SQL line an analyst's own DuckDB session needs (absolute, works from anywhere)."""
    return f"SET extension_directory = '{str(directory)}';"

