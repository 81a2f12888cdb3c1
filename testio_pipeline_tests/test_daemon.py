"""The real Dagster daemon drives refresh cycles on its own: TTL 60 s, sensor every few seconds,
the simulator served over HTTP with its clock moved forward between cycles."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef
import pytest

from testio_pipeline.warehouse import Warehouse

from .conftest import REPO, api_env, create_storage, make_simulator, stop_process_group

# Both cycles: the daemon and each run it launches are real processes that must start, and
# the second waits out the 60 s TTL; a busy machine stretches all of it.
DEADLINE_SECONDS = 600


def sensor_runs(instance: dg.DagsterInstance, created_after: float = 0.0) -> list[dg.DagsterRun]:
    """Runs the refresh sensor requested, oldest first."""
    records = instance.get_run_records(dg.RunsFilter(tags={"dagster/sensor_name": "testio_refresh_sensor"}))
    records = [r for r in records if r.create_timestamp.timestamp() > created_after]
    return [r.dagster_run for r in sorted(records, key=lambda r: r.create_timestamp)]


def wait_for(condition, what: str, deadline: float, daemon: subprocess.Popen, log: Path):
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if daemon.poll() is not None:
            pytest.fail(f"the daemon exited ({daemon.returncode}) while waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}; daemon log:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
@pytest.mark.code_server
@pytest.mark.parametrize("storage", ["sqlite", "postgres"])
def test_the_daemon_runs_cycles_by_itself_and_picks_up_new_tests(tmp_path, storage, request):
    """sqlite: dagster.yaml and a DuckDB file. postgres: deploy/dagster.postgres.yaml on a real
    PostgreSQL, and the warehouse a DuckLake whose catalog is in that server too."""
    sim = make_simulator("tiny")
    log = tmp_path / "daemon.log"
    extra = {}
    if storage == "sqlite":
        db, data_path = str(tmp_path / "mirror.duckdb"), None
    else:
        pg = request.getfixturevalue("postgres")
        dagster_db, lake_db = pg.create_database("dagster_daemon"), pg.create_database("lake_daemon")
        db, data_path = f"ducklake:postgres:{pg.dsn(lake_db)}", str(tmp_path / "lake_data")
        extra = {"DAGSTER_PG_URL": pg.url(dagster_db), "TESTIO_LAKE_DATA_PATH": data_path}
        # This process reads the same instance: its dagster.yaml names the URL by variable.
        request.getfixturevalue("monkeypatch").setenv("DAGSTER_PG_URL", extra["DAGSTER_PG_URL"])

    def warehouse() -> Warehouse:
        return Warehouse(db, lake_data_path=data_path)

    with sim.serve() as server:
        env = api_env(
            tmp_path, sim, server, db,
            TESTIO_CACHE_TTL_SECONDS="60",
            TESTIO_SENSOR_INTERVAL_SECONDS="3",
            **extra,
        )
        if storage == "postgres":
            shutil.copy(REPO / "deploy" / "dagster.postgres.yaml", Path(env["DAGSTER_HOME"]) / "dagster.yaml")
            create_storage(Path(env["DAGSTER_HOME"]))
        daemon_bin = Path(sys.executable).parent / "dagster-daemon"
        with log.open("w") as out:
            # Its own process group, so one signal stops the daemon and the runs it launched.
            daemon = subprocess.Popen(
                [str(daemon_bin), "run", "-m", "testio_pipeline.definitions"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + DEADLINE_SECONDS
        try:
            with dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"])) as instance:
                # Cycle 1: the sensor finds nothing materialized and requests the initial sync.
                wait_for(
                    lambda: [r for r in sensor_runs(instance) if r.status == dg.DagsterRunStatus.SUCCESS],
                    "the initial sensor-launched run to succeed", deadline, daemon, log,
                )[0]
                failed = [r for r in sensor_runs(instance) if r.status == dg.DagsterRunStatus.FAILURE]
                assert not failed, f"sensor runs failed: {[r.run_id for r in failed]}"
                known = warehouse().ids("tests")
                assert known == {t["id"] for p in sim.truth_products() for t in sim.truth_tests(p["id"])}

                # The world moves on: a day later the simulator has new tests on top.
                sim.clock.advance(86_400)
                advanced_at = time.time()
                new = {t["id"] for p in sim.truth_products() for t in sim.truth_tests(p["id"])} - known
                assert new, "a simulated day adds tests"

                # Cycle 2: after the TTL the sensor requests another run on its own.
                wait_for(
                    lambda: [
                        r for r in sensor_runs(instance, created_after=advanced_at)
                        if r.status == dg.DagsterRunStatus.SUCCESS
                    ],
                    "a second sensor-launched run to succeed", deadline, daemon, log,
                )
                assert new <= warehouse().ids("tests"), "tests created after cycle 1 are mirrored"
                events = warehouse().query("SELECT trigger, status FROM sync_events ORDER BY started_at")
                assert len(events) >= 2
                assert set(events.trigger) == {"sensor"} and set(events.status) == {"success"}
                run_ids = {r.run_id for r in sensor_runs(instance)}
            if storage == "postgres":  # the instance really kept them in PostgreSQL
                stored = {r[0] for r in pg.execute(dagster_db, "SELECT run_id FROM runs")}
                assert run_ids and run_ids <= stored
                [(steps_done,)] = pg.execute(
                    dagster_db, "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'STEP_SUCCESS'"
                )
                assert steps_done >= 2  # the sync step (five entities) of each of the two runs
        finally:
            stop_process_group(daemon)
