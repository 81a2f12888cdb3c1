"""A run killed with kill -9 while it holds its warehouse pool's slot does not keep it:
the refresh sensor and `make run` notice that its process is gone, mark it failed, free the
slot, and the next run proceeds. Real `dagster` processes on a real instance."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef
import pytest

from testio_pipeline.component.testio.assets import STEP_NAME as TESTIO_STEP
from testio_pipeline.run_health import HOST_TAG, fail_dead_runs
from testio_pipeline.warehouse import Warehouse

from .conftest import REPO, api_env, make_simulator

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("atomicity")]
# Generous: a real `dagster` process must start and get to its bugs step on a busy machine.
START_TIMEOUT = 240


def wait_until(condition, what: str, timeout: float, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the run's process ended ({proc.returncode}) while waiting for {what}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def slot_holders(instance: dg.DagsterInstance) -> set[tuple[str, str]]:
    """Claimed slots of every pool: the run's warehouse is a temporary file with a pool of its own."""
    storage = instance.event_log_storage
    return {
        (slot.run_id, slot.step_key)
        for pool in storage.get_concurrency_keys()
        for slot in storage.get_concurrency_info(pool).claimed_slots
    }


def start_killable_run(env: dict[str, str]) -> subprocess.Popen:
    dagster = Path(sys.executable).parent / "dagster"
    return subprocess.Popen(
        [str(dagster), "asset", "materialize", "--select", "*", "-m", "testio_pipeline.definitions"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: kill -9 reaches the step processes too
    )


@pytest.fixture
def held_bugs():
    """A simulator whose bug queries wait until released: the sync step holds the slot meanwhile."""
    sim = make_simulator("tiny")
    release, asked = threading.Event(), threading.Event()

    def hold(request):
        if request.endpoint == "bugs":
            asked.set()
            release.wait(900)  # set when the test is done with the held step, or at teardown
        return None

    sim.add_fault(hold)
    yield sim, release, asked
    release.set()


def kill_run_in_its_bugs_step(env, instance, asked: threading.Event) -> tuple[dg.DagsterRun, int]:
    proc = start_killable_run(env)
    try:
        held = wait_until(
            lambda: asked.is_set() and {run for run, step in slot_holders(instance) if step == TESTIO_STEP},
            "the sync step to hold the pool slot while it reads bugs", START_TIMEOUT, proc,
        )
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    [run_id] = held
    assert fail_dead_runs(instance) == [], "a run whose process lives is left alone"
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    run = instance.get_run_by_id(run_id)
    # What Dagster alone leaves behind: a started run that holds the slot forever.
    assert run.status == dg.DagsterRunStatus.STARTED
    assert run.tags[HOST_TAG] and (run_id, TESTIO_STEP) in slot_holders(instance)
    return run, proc.pid


def test_the_next_make_run_fails_a_killed_run_frees_its_slot_and_completes(tmp_path, held_bugs):
    sim, release, asked = held_bugs
    db = tmp_path / "mirror.duckdb"
    with sim.serve() as server:
        env = api_env(tmp_path, sim, server, db)
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"])) as instance:
            killed, _ = kill_run_in_its_bugs_step(env, instance, asked)
            release.set()
            sim.clear_faults()
            nxt = subprocess.run(
                [sys.executable, "-m", "testio_pipeline.cli", "run", "--mode", "full"],
                cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
            )
            assert nxt.returncode == 0, nxt.stderr[-3000:]
            assert f"Run {killed.run_id} lost its process" in nxt.stdout
            after = instance.get_run_by_id(killed.run_id)
            assert after.status == dg.DagsterRunStatus.FAILURE
            assert not {run for run, _ in slot_holders(instance)}, "no slot left claimed"
    events = Warehouse(db).query("SELECT run_id, status, error FROM sync_events ORDER BY started_at")
    assert list(events.status) == ["failed", "success"]
    assert events.run_id[0] == killed.run_id and "killed" in events.error[0]
    assert Warehouse(db).ids("bugs") == {b["id"] for p in sim.truth_products() for b in sim.truth_bugs(p["id"])}


def test_the_refresh_sensor_fails_a_killed_run_and_requests_the_next_cycle(tmp_path, held_bugs):
    from testio_pipeline.definitions import defs

    sim, release, asked = held_bugs
    with sim.serve() as server:
        env = api_env(tmp_path, sim, server, tmp_path / "mirror.duckdb")
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"])) as instance:
            killed, pid = kill_run_in_its_bugs_step(env, instance, asked)
            release.set()
            sensor = defs.get_sensor_def("testio_refresh_sensor")
            with dg.build_sensor_context(instance=instance, definitions=defs) as context:
                result = sensor(context)
            assert isinstance(result, dg.RunRequest), result
            assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
            assert not slot_holders(instance)
            assert fail_dead_runs(instance) == [], "a failed run is not failed again"
