"""A newcomer's first hour, run from the README's own code blocks: in a fresh clone of the
working tree, with an empty home folder (reusing the installed virtualenv, as `make` would
after its install step), each marked block is run as written and its exit code and output
checked. A README command that stops working fails this test, so the README cannot drift.

Blocks are marked in README.md by an HTML comment on the line before the fence:
``<!-- newcomer-test: NAME -->``. The one change made to them: the simulator's example port
8765 becomes a free one, so the test never meets another program on that port.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from .conftest import REPO, empty_home
from .postgres import free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("newcomer")]

BLOCK = re.compile(r"^<!-- newcomer-test: (?P<name>[\w-]+) -->\n```(?P<lang>\w+)\n(?P<body>.*?)^```", re.M | re.S)
BLOCKS = ("quick-start", "by-hand", "query", "analyst-sql", "simulator-server", "simulator-over-http")
EXAMPLE_PORT = "8765"
# One block's commands may take this long on a busy 2-core machine (several Dagster CLI runs).
BLOCK_TIMEOUT = 900


def readme_blocks(text: str) -> dict[str, tuple[str, str]]:
    """{name: (language, body)} of the marked fenced blocks."""
    found: dict[str, tuple[str, str]] = {}
    for match in BLOCK.finditer(text):
        assert match["name"] not in found, f"two README blocks are marked {match['name']!r}"
        found[match["name"]] = (match["lang"], match["body"])
    return found


def test_the_marker_finds_blocks_and_only_marked_ones():
    text = "<!-- newcomer-test: a -->\n```bash\necho a\n```\n\n```bash\necho b\n```\n<!-- newcomer-test: c -->\n```sql\nSELECT 1;\n```\n"
    assert readme_blocks(text) == {"a": ("bash", "echo a\n"), "c": ("sql", "SELECT 1;\n")}


def test_the_readme_marks_every_block_this_test_runs():
    assert set(readme_blocks((REPO / "README.md").read_text())) == set(BLOCKS)


class Newcomer:
    """A fresh clone with an empty home; runs README blocks in it."""

    def __init__(self, root: Path, home: Path, port: int):
        self.root, self.home, self.port = root, home, port
        self.blocks = {name: (lang, body.replace(EXAMPLE_PORT, str(port))) for name, (lang, body) in readme_blocks((root / "README.md").read_text()).items()}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("TESTIO_", "DAGSTER_", "VIRTUAL_ENV", "PYTHON"))}
        self.env.update(empty_home(home))

    def bash(self, name: str) -> str:
        lang, body = self.blocks[name]
        assert lang == "bash", name
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", body], cwd=self.root, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=BLOCK_TIMEOUT,
        )
        assert done.returncode == 0, f"README block {name!r} exited {done.returncode}:\n{body}\n--- output (end) ---\n{done.stdout[-6000:]}"
        return done.stdout


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory) -> Newcomer:
    stamp = Path(sys.prefix) / ".installed"
    if not stamp.is_file():
        pytest.fail(f"run under `make test`: the newcomer reuses the virtualenv `make` installed ({stamp} is missing)")
    root = tmp_path_factory.mktemp("newcomer") / "testio-pipeline"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():  # a file deleted in the working tree is not in the clone
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / ".venv").symlink_to(sys.prefix)
    # The clone's pyproject.toml is older than the venv's install stamp, so `make` finds the
    # project installed and does not reinstall it (which would repoint the shared venv here).
    older = stamp.stat().st_mtime - 60
    os.utime(root / "pyproject.toml", (older, older))
    home = tmp_path_factory.mktemp("empty_home")
    return Newcomer(root, home, free_port())


def test_a_newcomer_runs_the_readme_as_written(newcomer):
    root = newcomer.root

    # The clone's code is what runs, not the working tree the venv was installed from.
    where = subprocess.run(
        [str(root / ".venv" / "bin" / "python"), "-c", "import testio_pipeline; print(testio_pipeline.__file__)"],
        cwd=root, env=newcomer.env, capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(root), where

    out = newcomer.bash("quick-start")
    assert "pip install" not in out, "make reinstalled the project into the shared venv"
    assert "Sync finished (run" in out and "Rows per table:" in out, out[-3000:]
    rows = dict(re.findall(r"^  (\w+)\s+(\d+)$", out, re.M))
    assert set(rows) >= {"products", "features", "user_stories", "tests", "bugs"} and all(int(n) > 0 for n in rows.values()), rows
    assert (root / "data" / "testio.duckdb").is_file()

    out = newcomer.bash("by-hand")
    # three `dagster asset materialize` runs and one `dg launch`
    assert out.count("RUN_SUCCESS") >= 4, out[-6000:]
    assert "RUN_FAILURE" not in out, out[-6000:]
    assert re.search(r"^\s*bugs\b.*\bfresh\b", out, re.M), f"`cli status` should call bugs fresh:\n{out[-3000:]}"

    out = newcomer.bash("query")
    assert re.search(r"^\s*product_name\s+tests\s+bugs$", out, re.M), out
    assert re.search(r"Checkout: .*crash", out), f"the search found no checkout crash:\n{out}"
    assert re.search(r"^\s*view\s+product_summary\b", out, re.M), out

    lang, sql = newcomer.blocks["analyst-sql"]
    assert lang == "sql"
    session = (  # a plain DuckDB session: no project code, run from the repository folder
        "import sys, duckdb\n"
        "con = duckdb.connect('data/testio.duckdb', read_only=True)\n"
        "statements = [s for s in sys.argv[1].split(';') if s.strip()]\n"
        "for s in statements[:-1]: con.execute(s)\n"
        "print(len(con.execute(statements[-1]).fetchall()))\n"
    )
    done = subprocess.run([sys.executable, "-c", session, sql], cwd=root, env=newcomer.env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.split() == ["3"], done.stderr[-3000:] or done.stdout

    lang, serve = newcomer.blocks["simulator-server"]
    server = subprocess.Popen(
        ["bash", "-c", f"exec {serve}"], cwd=root, env=newcomer.env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        printed = _wait_for_line(server, "base_url:", timeout=300)
        assert f"http://127.0.0.1:{newcomer.port}/customer/v2" in printed, printed
        out = newcomer.bash("simulator-over-http")
        assert "RUN_SUCCESS" in out and "RUN_FAILURE" not in out, out[-6000:]
        assert "USING THE BUILT-IN TESTIO SIMULATOR" not in out, "the run did not go over HTTP"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)

    # Nothing reached for DuckDB's default extension folder in the newcomer's home.
    assert not (newcomer.home / ".duckdb").exists(), list((newcomer.home / ".duckdb").rglob("*"))


def _wait_for_line(proc: subprocess.Popen, needle: str, timeout: float) -> str:
    """What ``proc`` printed up to the line holding ``needle`` (it keeps running)."""
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # read to the end, so the server never blocks on a full pipe
            if not found.is_set():
                seen.append(line)
                if needle in line:
                    found.set()

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(timeout):
        pytest.fail(f"the README's server printed no {needle!r} within {timeout} s (exit {proc.poll()}):\n{''.join(seen)}")
    return "".join(seen)
