"""One writing step at a time per DuckDB file, even when Dagster's pool lets two in at once."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import dagster as dg
import pytest

from testio_pipeline.component.analytics.views import VIEW_ASSETS
from testio_pipeline.component.resources import WarehouseResource
from testio_pipeline.warehouse import Warehouse
from testio_pipeline.warehouse.writer_lock import exclusive_writer, lock_path

from .conftest import REPO, dagster_home

WAIT_S = 120  # an upper bound for events, not a sleep: a busy machine only makes it slower


def test_a_second_writer_waits_for_the_first_and_is_told_who_holds_the_file(tmp_path):
    db = tmp_path / "w.duckdb"
    told: list[str] = []
    asked, entered = threading.Event(), threading.Event()
    waited: list[float] = []

    def second() -> None:
        def on_wait(holder: str) -> None:
            told.append(holder)
            asked.set()

        with exclusive_writer(db, "second", on_wait) as seconds:
            waited.append(seconds)
            entered.set()

    with exclusive_writer(db, "run A step testio_refresh") as first_waited:
        assert first_waited == 0
        thread = threading.Thread(target=second)
        thread.start()
        assert asked.wait(WAIT_S)
        assert not entered.is_set()  # still ours
    thread.join(WAIT_S)
    assert entered.is_set() and waited[0] > 0
    assert told == [f"run A step testio_refresh (pid {os.getpid()})"]
    assert lock_path(db).read_text() == ""  # nobody holds it now


def test_the_lock_of_a_killed_process_is_free_at_once(tmp_path):
    db = tmp_path / "w.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from testio_pipeline.warehouse.writer_lock import exclusive_writer\n"
            f"with exclusive_writer(Path({str(db)!r}), 'doomed'):\n"
            "    print('held', flush=True); sys.stdin.read()",
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        told: list[str] = []
        blocked = threading.Event()
        got: list[float] = []

        def wait_for_it() -> None:
            with exclusive_writer(db, "next", lambda who: (told.append(who), blocked.set())) as seconds:
                got.append(seconds)

        thread = threading.Thread(target=wait_for_it)
        thread.start()
        assert blocked.wait(WAIT_S)
        assert told[0].startswith("doomed (pid ")
        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel drops the lock
        holder.wait(WAIT_S)
        thread.join(WAIT_S)
        assert got and got[0] > 0
    finally:
        if holder.poll() is None:
            holder.kill()


def test_a_ducklake_needs_no_lock_file(tmp_path):
    lake = Warehouse(f"ducklake:{tmp_path / 'catalog.ducklake'}", lake_data_path=str(tmp_path / "data"))
    with lake.exclusive_writer("anyone") as waited:
        assert waited == 0
    assert list(tmp_path.iterdir()) == []


def _log_entry(instance: dg.DagsterInstance, wanted: str) -> dg.EventLogEntry:
    """The first log entry of the instance's run whose message contains ``wanted``, once it is
    stored (a condition polled until a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for run in instance.get_runs():
            for entry in instance.all_logs(run.run_id):
                if wanted in (entry.user_message or ""):
                    return entry
        time.sleep(0.05)
    raise AssertionError(f"no log entry containing {wanted!r} within {WAIT_S}s")


@pytest.mark.slow
def test_a_pool_step_waits_for_the_file_held_by_another_writer_and_logs_why(tmp_path):
    """What a run sees when the pool gave its slot to two steps: the lock makes it wait."""
    db = tmp_path / "w.duckdb"
    held = threading.Event()
    seen: dict[str, object] = {}

    def other_writer(instance: dg.DagsterInstance) -> None:
        with exclusive_writer(db, "run other step testio_refresh"):
            held.set()
            waiting = _log_entry(instance, "waiting for run other step testio_refresh")
            [run] = instance.get_runs()
            materialized = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
            seen.update(level=waiting.level, message=waiting.user_message, materialized=len(materialized.records))

    with dg.DagsterInstance.from_config(str(dagster_home(tmp_path))) as instance:
        # Dagster captures a run's output with helper processes it ends only from the main
        # thread, so the run is started here and the other writer is the thread.
        thread = threading.Thread(target=other_writer, args=(instance,), daemon=True)
        thread.start()
        assert held.wait(WAIT_S)
        result = dg.materialize(VIEW_ASSETS, resources={"warehouse": WarehouseResource(path=str(db))}, instance=instance)
        thread.join(WAIT_S)
        assert seen, "the run never logged that it waited for the other writer"
        assert seen["level"] == logging.WARNING  # the operator should see it
        assert "given the testio_duckdb pool's slot at once" in seen["message"]
        assert seen["materialized"] == 0  # nothing written while the other writer held the file
        assert result.success
        messages = [e.user_message for e in instance.all_logs(result.run_id)]
        assert any(m.startswith("analytics_views: writing ") and "after waiting" in m for m in messages)
        assert result.get_asset_materialization_events()
