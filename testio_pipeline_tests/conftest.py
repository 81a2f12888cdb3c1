"""Shared fixtures: a deterministic simulator with a fixed clock, a temporary warehouse."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from testio_pipeline.simulator import SIMULATOR_BASE_URL, SimClock, Simulator, SimulatorConfig
from testio_pipeline.testio import CustomerApiClient, RetryPolicy

REPO = Path(__file__).resolve().parents[1]

# A fixed moment, so every test sees the same world.
ANCHOR = datetime(2026, 11, 1, tzinfo=timezone.utc)
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)

# Retries in tests must not sleep for real.
FAST_RETRY = RetryPolicy(attempts=4, wait_initial=0.001, wait_max=0.01, wait_jitter=0.0, retry_after_floor=0.001)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    """Tests never see the developer's real token, URL or .env file."""
    for name in list(os.environ):
        if name.startswith("TESTIO_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def make_simulator(preset: str = "tiny", now: datetime = NOW, **overrides) -> Simulator:
    config = SimulatorConfig.preset(preset, anchor=ANCHOR, **overrides)
    return Simulator(config, clock=SimClock(now))


@pytest.fixture
def sim() -> Simulator:
    return make_simulator()


def client_for(sim: Simulator, **options) -> CustomerApiClient:
    options.setdefault("retry", FAST_RETRY)
    return CustomerApiClient(SIMULATOR_BASE_URL, sim.config.token, transport=sim.transport(), **options)


def empty_home(home: Path) -> dict[str, str]:
    """The variables that make ``home`` a process's whole home folder, as `make test` sets them."""
    return {
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
    }


def dagster_home(tmp_path: Path) -> Path:
    """A fresh DAGSTER_HOME holding the project's dagster.yaml (SQLite storage, its pools)."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    return home


def create_storage(home: Path) -> None:
    """Create the instance's storage in ``home`` now, from this one process, as `make` does:
    the daemon and its code server creating a new SQLite storage together can stamp its schema
    twice, which breaks the instance for good ("alembic_version has more than one head")."""
    import dagster as dg

    dg.DagsterInstance.from_config(str(home)).dispose()


def dagster_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a Dagster subprocess: a fresh DAGSTER_HOME holding the project's
    dagster.yaml and its storage, no TESTIO_* or DAGSTER_* settings of the developer's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TESTIO_", "DAGSTER_"))}
    home = dagster_home(tmp_path)
    create_storage(home)
    env.update(DAGSTER_HOME=str(home), PYTHONPATH=str(REPO), **extra)
    return env


def api_env(tmp_path: Path, sim: Simulator, server, db: Path, **extra: str) -> dict[str, str]:
    """``dagster_env`` for a pipeline that reads ``sim`` over its HTTP ``server`` into ``db``."""
    return dagster_env(
        tmp_path,
        TESTIO_CUSTOMER_API_BASE_URL=server.base_url,
        TESTIO_CUSTOMER_API_TOKEN=sim.config.token,
        TESTIO_DUCKDB_PATH=str(db),
        **extra,
    )


def stop_process_group(proc, grace_s: float = 30) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it started (the
    daemon's or `dg dev`'s children share its group): SIGTERM, then SIGKILL after ``grace_s``."""
    import signal
    import subprocess

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:  # the whole group is gone already
            break
        try:
            proc.wait(timeout=grace_s)
            if sig == signal.SIGTERM:
                # Children may outlive their parent; end the rest of the group too.
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            break
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def hiding_test(sim: Simulator, test_id: int):
    """A fault: the product's test list answers as usual but without test ``test_id`` (deleted upstream)."""
    from testio_pipeline.simulator import SimResponse

    def hide(request):
        if request.endpoint != "exploratory_tests":
            return None
        response = sim.dispatch(request)
        body = dict(response.body)
        body["exploratory_tests"] = [t for t in body["exploratory_tests"] if t["id"] != test_id]
        return SimResponse(response.status, dict(response.headers), body)

    return hide


def token_template(customer: str) -> str:
    """How a customer's defs.yaml names its token: ``{{ env.ACME_TESTIO_TOKEN }}``."""
    return f"{{{{ env.{customer.upper()}_TESTIO_TOKEN }}}}"


def customer_project(root: Path, instances: dict[str, dict]) -> Path:
    """A dg project like this one, package ``multi``, whose defs/ holds one
    ``testio_pipeline.TestIOMirror`` defs.yaml per customer (name -> its other attributes).
    Run its definitions with ``PYTHONPATH=<root>:<REPO>`` and ``-m multi.definitions``."""
    import yaml

    package = root / "multi"
    (package / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[tool.dg]\ndirectory_type = "project"\n\n[tool.dg.project]\nroot_module = "multi"\n'
        # The name `-m multi.definitions` registers the location under (else a warning per load).
        'code_location_name = "multi.definitions"\nregistry_modules = ["testio_pipeline"]\n'
    )
    (package / "__init__.py").write_text("")
    (package / "definitions.py").write_text(
        "from pathlib import Path\n\nimport dagster as dg\n\n"
        "defs = dg.ComponentTree.for_project(Path(__file__).parent).build_defs()\n"
    )
    (package / "defs" / "__init__.py").write_text("")
    (package / "defs" / "executor.py").write_text((REPO / "testio_pipeline" / "defs" / "executor.py").read_text())
    for name, attributes in instances.items():
        (package / "defs" / name).mkdir()
        document = {"type": "testio_pipeline.TestIOMirror", "attributes": {"name": name, **attributes}}
        (package / "defs" / name / "defs.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return root


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server shared by this worker's tests; stopped and removed at the end."""
    from .postgres import throwaway_postgres

    with throwaway_postgres() as pg:
        yield pg


@pytest.fixture
def lake(postgres, tmp_path, request):
    """A fresh, empty DuckLake: (ATTACH string, data folder), its catalog a new PostgreSQL database."""
    name = "lake_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    postgres.create_database(name)
    return f"ducklake:postgres:{postgres.dsn(name)}", str(tmp_path / "lake_data")


def full_refresh_resources(sim: Simulator, db: Path) -> dict:
    """Resources for a full refresh of ``sim``'s world into the DuckDB file ``db``."""
    from testio_pipeline.component.resources import CustomerApiResource, RefreshResource, WarehouseResource

    return {
        "testio_api": CustomerApiResource.for_simulator(sim),
        "warehouse": WarehouseResource(path=str(db)),
        "refresh": RefreshResource(mode="full"),
    }


def pytest_sessionfinish(session, exitstatus):
    """Under `make test` the session runs in an empty home made for it (TESTIO_FRESH_HOME):
    nothing may have put DuckDB extensions there. DuckDB creates ~/.duckdb when something
    autoloads or installs an extension the default way, which is what a new machine cannot
    do (no network), so that path must fail the run even where it happened to work."""
    home = os.environ.get("TESTIO_FRESH_HOME")
    if not home or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    written = Path(home) / ".duckdb"
    if written.exists():
        found = sorted(str(p.relative_to(home)) for p in written.rglob("*"))[:20]
        session.config.get_terminal_writer().line(
            f"FAILED: something used DuckDB's default extension folder in the test home: {found}", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
