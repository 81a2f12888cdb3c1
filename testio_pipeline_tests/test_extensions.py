"""DuckDB extensions come from the project's pip packages alone: they load in a process whose
home folder DuckDB has never seen, inside a write's transaction, in several processes at once,
and nothing is ever written to the home folder (a new machine, as `make test` runs every test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from testio_pipeline.warehouse import extensions

from .conftest import REPO, empty_home

# A process with a brand-new home folder: inside one write transaction it writes a row, loads
# every extension the project uses, writes again and commits.
LOAD_IN_A_WRITE = """
import sys, duckdb
from testio_pipeline.warehouse import extensions
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS t (who VARCHAR, step INTEGER)")
con.execute("BEGIN")
con.execute("INSERT INTO t VALUES (?, 1)", [sys.argv[2]])
for name in extensions.PROJECT_EXTENSIONS:
    extensions.load(con, name)
    extensions.load(con, name)  # twice: a second load is a no-op
con.execute("INSERT INTO t VALUES (?, 2)", [sys.argv[2]])
print(con.execute("SELECT stem('running', 'english')").fetchone()[0])
con.execute("COMMIT")
loaded = {n for name, aliases in con.execute("SELECT extension_name, aliases FROM duckdb_extensions() WHERE loaded").fetchall() for n in [name, *aliases]}
assert set(extensions.PROJECT_EXTENSIONS) <= loaded, loaded
"""


def _empty_home_env(home: Path) -> dict[str, str]:
    return {**os.environ, **empty_home(home), "PYTHONPATH": str(REPO)}


def test_every_extension_loads_inside_a_write_in_a_new_home_in_several_processes_at_once(tmp_path):
    """Into an empty extension folder too: the processes install it together, then load."""
    homes = [tmp_path / f"home{i}" for i in range(3)]
    procs = []
    for i, home in enumerate(homes):
        home.mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, "-c", LOAD_IN_A_WRITE, str(tmp_path / f"w{i}.duckdb"), f"p{i}"],
            env={**_empty_home_env(home), "TESTIO_DUCKDB_EXTENSION_DIRECTORY": str(tmp_path / "ext")}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        assert out.split() == ["run"]
        with duckdb.connect(str(tmp_path / f"w{i}.duckdb"), read_only=True) as con:
            assert con.execute("SELECT step FROM t ORDER BY step").fetchall() == [(1,), (2,)]
    for home in homes:
        assert list(home.iterdir()) == [], f"{home} was written to: {list(home.rglob('*'))}"


def test_a_missing_extension_is_a_clear_error_and_leaves_the_transaction_usable(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE TABLE t (x INTEGER)")
    con.execute("BEGIN")
    con.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(extensions.ExtensionMissingError, match="duckdb-extension-nosuch"):
        extensions.load(con, "nosuch")
    con.execute("INSERT INTO t VALUES (2)")
    con.execute("COMMIT")
    assert con.execute("SELECT count(*) FROM t").fetchone() == (2,)
    con.close()


def test_the_analyst_folder_holds_every_extension_in_duckdbs_layout(tmp_path):
    installed = extensions.install(tmp_path / "ext")
    assert set(extensions.PROJECT_EXTENSIONS) <= set(installed)
    for path in installed.values():
        assert path.is_file() and path.suffix == ".duckdb_extension"
        assert path.parent.parent == tmp_path / "ext" / f"v{duckdb.__version__}"
    assert extensions.setup_line(tmp_path / "ext") == f"SET extension_directory = '{tmp_path / 'ext'}';"


def test_make_install_fills_the_analyst_folder_of_the_projects_venv(tmp_path):
    """The venv `make` built (tests run from it) has the folder the documented line names."""
    folder = extensions.EXTENSION_DIRECTORY
    assert folder == Path(sys.prefix) / "duckdb_extensions"
    names = {p.name for p in folder.glob(f"v{duckdb.__version__}/*/*.duckdb_extension")}
    assert names == {p.name for p in extensions.install(tmp_path / "ext").values()}, names
