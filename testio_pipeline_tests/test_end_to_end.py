"""End to end over real HTTP: the simulator's server on 127.0.0.1 plays the TestIO API, and the
documented `dagster asset materialize` command fills DuckDB from it with a token."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from testio_pipeline.warehouse import Warehouse

from .conftest import REPO, api_env, customer_project, dagster_env, make_simulator, token_template
from .test_assets import ENTITY_TABLES, truth_ids

TOKEN = "e2e-secret-token-4f9a8c2d1b7e"


@pytest.mark.slow
def test_dagster_cli_materializes_everything_from_an_http_api(tmp_path):
    sim = make_simulator("tiny", token=TOKEN)
    db = tmp_path / "mirror.duckdb"
    with sim.serve() as server:
        env = api_env(tmp_path, sim, server, db)
        dagster = Path(sys.executable).parent / "dagster"
        done = subprocess.run(
            [str(dagster), "asset", "materialize", "--select", "*", "-m", "testio_pipeline.definitions"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert sim.stats.snapshot()["by_endpoint"].get("bugs", 0) > 0, "the run really used the HTTP server"

    warehouse = Warehouse(db)
    truth = truth_ids(sim)
    for table in ENTITY_TABLES:
        assert warehouse.ids(table) == truth[table], table

    # The token is in no log line: not on the console, not in the stored event log or compute logs.
    assert TOKEN not in done.stdout and TOKEN not in done.stderr
    for path in (tmp_path / "dagster_home").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), f"token found in {path}"
    assert TOKEN.encode() not in db.read_bytes()


@pytest.mark.slow
def test_a_token_with_no_reachable_api_is_a_clear_error_not_fake_data(tmp_path):
    db = tmp_path / "mirror.duckdb"
    env = dagster_env(
        tmp_path,
        TESTIO_CUSTOMER_API_BASE_URL="http://127.0.0.1:9/customer/v2",
        TESTIO_CUSTOMER_API_TOKEN=TOKEN,
        TESTIO_DUCKDB_PATH=str(db),
    )
    done = subprocess.run(
        [sys.executable, "-m", "testio_pipeline.cli", "run"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode != 0
    assert "cannot reach the TestIO API" in done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert not db.exists() or Warehouse(db).table_counts()["products"] == 0


@pytest.mark.slow
def test_make_runs_command_mirrors_the_demo_world_exactly(tmp_path):
    """`make run` = `python -m testio_pipeline.cli run`: the demo world, in full, into DuckDB."""
    frozen = "2026-11-20T15:30:00+00:00"
    env = dagster_env(tmp_path, TESTIO_SIMULATOR_NOW=frozen)
    done = subprocess.run(
        [sys.executable, "-m", "testio_pipeline.cli", "run"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "built-in TestIO simulator" in done.stdout
    db = tmp_path / "data" / "testio.duckdb"
    assert db.exists()
    from testio_pipeline.simulator import SimClock, Simulator, SimulatorConfig  # noqa: PLC0415
    from testio_pipeline.simulator.clock import parse_iso  # noqa: PLC0415

    sim = Simulator(SimulatorConfig.preset("demo"), clock=SimClock(parse_iso(frozen)))
    truth = truth_ids(sim)
    warehouse = Warehouse(db)
    for table in ENTITY_TABLES:
        assert warehouse.ids(table) == truth[table], table
    for table, count in warehouse.table_counts().items():
        if table in truth:
            assert f"{table}" in done.stdout and str(count) in done.stdout

    import dagster as dg  # noqa: PLC0415

    from testio_pipeline.run_log import CUSTOMER_TAG, TRIGGER_TAG  # noqa: PLC0415

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [run] = instance.get_runs()
    assert (run.tags[TRIGGER_TAG], run.tags[CUSTOMER_TAG]) == ("cli", "testio"), "the run queue and sensor know whose run it is"


@pytest.mark.slow
def test_one_materialize_fills_two_customers_each_from_its_own_server_with_its_own_token(tmp_path):
    """The issue's done-when: two instances, two HTTP servers with different tokens (a server
    refuses the other's), different worlds; `dagster asset materialize --select '*'` fills both
    warehouses, each exactly as its own server serves it."""
    from benchmarks import verify  # noqa: PLC0415

    from .conftest import NOW  # noqa: PLC0415

    sims = {
        "acme": make_simulator("tiny", token="acme-secret-token-5b2e71", seed=42),
        "globex": make_simulator("tiny", token="globex-secret-token-c09d4f", seed=7),
    }
    warehouses = {name: tmp_path / "data" / f"{name}.duckdb" for name in sims}
    with sims["acme"].serve() as acme_server, sims["globex"].serve() as globex_server:
        servers = {"acme": acme_server.base_url, "globex": globex_server.base_url}
        project = customer_project(tmp_path / "project", {
            name: {"base_url": servers[name], "token": token_template(name), "warehouse": str(warehouses[name])}
            for name in sims
        })
        env = dagster_env(tmp_path, **{f"{n.upper()}_TESTIO_TOKEN": s.config.token for n, s in sims.items()})
        env["PYTHONPATH"] = f"{project}:{REPO}"
        dagster = Path(sys.executable).parent / "dagster"
        done = subprocess.run(
            [str(dagster), "asset", "materialize", "--select", "*", "-m", "multi.definitions"],
            cwd=project, env=env, capture_output=True, text=True, timeout=900,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    for name, sim in sims.items():
        assert sim.stats.snapshot()["by_endpoint"].get("bugs", 0) > 0, f"{name}'s run used its own server"
        report = verify.verify(warehouses[name], sim, verify.snapshot(sim, NOW))
        assert report.ok, (name, report.problems)
    acme_bugs, globex_bugs = (Warehouse(warehouses[n]).ids("bugs") for n in sims)
    assert acme_bugs != globex_bugs, "two different worlds, so a crossed server would show"
    for sim in sims.values():
        token = sim.config.token
        assert token not in done.stdout + done.stderr
        for path in [*(tmp_path / "dagster_home").rglob("*"), *warehouses.values()]:
            if path.is_file():
                assert token.encode() not in path.read_bytes(), f"token found in {path}"
