"""Crashes and concurrent use of the DuckDB file.

- A sync killed with SIGKILL (inside a write, or at random moments) leaves the file exactly
  as it was before some write or after it, and the next run completes normally.
- Two syncs started at once (a `dagster asset materialize` and a `make run`-style CLI run on
  one Dagster instance with the project's dagster.yaml) both succeed, their writes one after
  the other, and the data is right.
- An analyst's read-only connection during a sync either succeeds or gets a clear,
  retryable lock error for at most one write; retrying (as Warehouse.query does) succeeds.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from testio_pipeline.component.testio.assets import STEP_NAME as TESTIO_STEP
from testio_pipeline.settings import Settings
from testio_pipeline.source import ApiSource
from testio_pipeline.entities import ENTITIES, ENTITY_BY_NAME
from testio_pipeline.sync import SyncOptions, run_cycle
from testio_pipeline.warehouse import TABLES, Warehouse, locks

from .conftest import ANCHOR, FAST_RETRY, NOW, REPO, api_env, make_simulator
from .test_assets import ENTITY_TABLES, truth_ids

# One worker runs them all (make test: --dist loadgroup), so the module fixture is built once
# and the process-heavy tests do not compete with each other for the CPU.
pytestmark = pytest.mark.xdist_group("atomicity")
# Bigger than tiny, so writes take long enough to be hit by a random kill.
WORLD = {"products": 2, "tests_per_product": 100, "bugs_per_test": 6}
LATER = NOW + timedelta(days=3)  # the world moved on: new tests, status changes, new bugs


# --- helpers -------------------------------------------------------------------------------


def sync_in_process(db: Path, now, **world) -> None:
    sim = make_simulator("tiny", now=now, **world)
    source = ApiSource.from_settings(Settings(), simulator=sim)
    source.retry = FAST_RETRY
    run_cycle(source, Warehouse(db), SyncOptions(mode="full", clock=lambda: now))


def state(db: Path) -> dict[str, list[tuple]]:
    """Every row of every table (bookkeeping of migrations aside), in a stable order."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
            for t in TABLES
            if t != "schema_migrations"
        }
    finally:
        con.close()


def reference_states(before: Path, workdir: Path, now, **world) -> list[dict]:
    """The file's state before the sync and after each step, from a sync on a copy."""
    copy = workdir / "reference.duckdb"
    shutil.copy(before, copy)
    sim = make_simulator("tiny", now=now, **world)
    source = ApiSource.from_settings(Settings(), simulator=sim)
    source.retry = FAST_RETRY
    options = SyncOptions(mode="full", clock=lambda: now)
    states = [state(copy)]
    for entity in ENTITIES:
        entity.sync_step()(source, Warehouse(copy), options)
        states.append(state(copy))
    return states


def worker(db: Path, now, **extra) -> subprocess.Popen:
    spec = {"db": str(db), "now": now.isoformat(), "sim": {"anchor": ANCHOR.isoformat(), **WORLD}, **extra}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESTIO_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.Popen(
        [sys.executable, "-m", "testio_pipeline_tests.sync_worker", json.dumps(spec)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for(proc: subprocess.Popen, marker: str, timeout: float = 600) -> list[str]:
    """Read the worker's stdout until a line starting with ``marker``; returns the lines read.
    Generous: the worker is a real process that must start and sync on a busy machine."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"worker ended before {marker!r}: {lines} {proc.stderr.read()[-2000:]}")
        lines.append(line.strip())
        if line.startswith(marker):
            return lines
    raise AssertionError(f"no {marker!r} within {timeout}s: {lines}")


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()


@pytest.fixture(scope="module")
def before_and_reference(tmp_path_factory):
    """A warehouse synced at NOW, and the states a full sync at LATER passes through."""
    workdir = tmp_path_factory.mktemp("atomicity")
    before = workdir / "before.duckdb"
    sync_in_process(before, NOW, **WORLD)
    references = reference_states(before, workdir, LATER, **WORLD)
    assert references[0] != references[-1] and references[3] != references[4]
    return before, references


def matching_step(current: dict, references: list[dict]) -> int:
    """Which reference state (0 = before the sync, k = after step k) the file is in.

    A step that changes nothing (e.g. products on a quiet day) repeats the previous state;
    the first match is returned.
    """
    for k, reference in enumerate(references):
        if current == reference:
            return k
    diffs = {t: (len(current[t]), len(references[0][t]), len(references[-1][t])) for t in current}
    raise AssertionError(f"the file holds a state no write produced (rows now/before/after): {diffs}")


# --- kill -9 ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_sync_killed_inside_a_write_leaves_the_state_before_that_write(tmp_path, before_and_reference):
    before, references = before_and_reference
    db = tmp_path / "t.duckdb"
    shutil.copy(before, db)
    proc = worker(db, LATER, hold_in_write=["tests", str(tmp_path / "never")])
    lines = wait_for(proc, "IN_WRITE tests")
    kill(proc)
    assert "STEP_DONE user_stories" in lines
    # Three steps committed; the tests write (upserted, not committed) is gone entirely.
    assert state(db) == references[3]
    # The next run completes normally and ends exactly where an uninterrupted one does.
    sync_in_process(db, LATER, **WORLD)
    assert state(db) == references[-1]
    warehouse = Warehouse(db)
    truth = truth_ids(make_simulator("tiny", now=LATER, **WORLD))
    for table in ENTITY_TABLES:
        assert warehouse.ids(table) == truth[table], table


def assert_history_matches_rows(db: Path) -> None:
    """Every live bug and test has exactly one first sighting, and its latest history row says
    what its row says: never a change without its row, nor a row without its change."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        for table, history, key in (("bugs", "bug_status_changes", "bug_id"), ("tests", "test_status_changes", "test_id")):
            bad = con.execute(
                f"""WITH latest AS (
                        SELECT {key} AS id, arg_max(new_status, change_number) AS status,
                               count(*) FILTER (WHERE change = 'first_seen') AS firsts
                        FROM {history} GROUP BY {key})
                    SELECT count(*) FROM {table} t LEFT JOIN latest l ON l.id = t.id
                    WHERE t.deleted_at IS NULL AND (l.firsts IS DISTINCT FROM 1 OR l.status IS DISTINCT FROM t.status)"""
            ).fetchone()[0]
            orphans = con.execute(f"SELECT count(*) FROM {history} h ANTI JOIN {table} t ON t.id = h.{key}").fetchone()[0]
            assert (bad, orphans) == (0, 0), table
    finally:
        con.close()


@pytest.mark.slow
def test_a_sync_killed_inside_the_bugs_write_leaves_history_and_bugs_as_they_were(tmp_path, before_and_reference):
    before, references = before_and_reference
    db = tmp_path / "t.duckdb"
    shutil.copy(before, db)
    # Held after the bugs' merge: their history rows (written before it) are in the transaction too.
    proc = worker(db, LATER, hold_in_write=["bugs", str(tmp_path / "never")])
    lines = wait_for(proc, "IN_WRITE bugs")
    kill(proc)
    assert "STEP_DONE tests" in lines
    assert state(db) == references[4], "four steps committed; neither bugs nor their history of this sync"
    assert_history_matches_rows(db)
    changed_before = references[-1]["bug_status_changes"] != references[4]["bug_status_changes"]
    assert changed_before, "the interrupted write had bug history to record"
    sync_in_process(db, LATER, **WORLD)
    assert state(db) == references[-1]
    assert_history_matches_rows(db)


@pytest.mark.slow
def test_syncs_killed_at_random_moments_always_leave_a_state_some_write_produced(tmp_path, before_and_reference):
    before, references = before_and_reference
    # How long a whole sync takes in a worker, from START to DONE.
    db = tmp_path / "timing.duckdb"
    shutil.copy(before, db)
    proc = worker(db, LATER)
    wait_for(proc, "START")
    started = time.monotonic()
    wait_for(proc, "DONE")
    duration = time.monotonic() - started
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()
    assert state(db) == references[-1]

    rng = random.Random(4)
    kills = 4
    for attempt in range(kills):
        db = tmp_path / f"kill{attempt}.duckdb"
        shutil.copy(before, db)
        proc = worker(db, LATER)
        wait_for(proc, "START")
        # One random moment in each quarter of the sync, so the kills spread over its steps.
        time.sleep(duration * (attempt + rng.random()) / kills)
        kill(proc)
        step = matching_step(state(db), references)
        sync_in_process(db, LATER, **WORLD)
        assert state(db) == references[-1], f"the run after a kill at step {step} completes the mirror"


def test_a_write_in_units_ends_where_one_write_does(tmp_path, before_and_reference):
    """Tests and bugs merged in units of at most 150 rows (by product): the same rows, sync marks
    and search results as the whole writes, and every unit is reported."""
    before, references = before_and_reference
    db = tmp_path / "units.duckdb"
    shutil.copy(before, db)
    sim = make_simulator("tiny", now=LATER, **WORLD)
    source = ApiSource.from_settings(Settings(), simulator=sim)
    source.retry = FAST_RETRY
    warehouse = Warehouse(db, write_unit_rows=150)
    results = run_cycle(source, warehouse, SyncOptions(mode="full", clock=lambda: LATER))
    assert state(db) == references[-1]
    bugs, tests = results["bugs"].write, results["tests"].write
    assert (bugs.units, tests.units) == (2, 2)  # ~600 bugs / 100 tests per product: one product a unit
    assert 0 < bugs.longest_hold_s < bugs.lock_held_s
    whole = tmp_path / "whole.duckdb"
    shutil.copy(before, whole)
    sync_in_process(whole, LATER, **WORLD)
    for query in ("crash", "login button", "page blank"):
        assert warehouse.search_bugs(query).equals(Warehouse(whole).search_bugs(query)), query


def rows_by_product(db: Path, table: str) -> list[tuple]:
    """Every row of ``table``, each led by the product it belongs to (None: to none)."""
    columns = TABLES[table].column_names
    if table == "products":
        product = "t.id"
    elif "product_id" in columns:
        product = "t.product_id"
    elif "bug_id" in columns:
        product = "(SELECT b.product_id FROM bugs b WHERE b.id = t.bug_id)"
    else:
        product = "NULL"
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"SELECT {product} AS _product, t.* FROM {table} t ORDER BY ALL").fetchall()


@pytest.mark.slow
def test_a_sync_killed_between_two_units_of_a_write_completes_its_products_and_leaves_the_others(
    tmp_path, before_and_reference
):
    """The bugs write in units of at most 500 bugs (two products of ~600: two units), the run
    killed after the first committed: that unit's products are exactly as a whole sync leaves
    them and marked synced, the other's bugs, children and sync marks are those from before, and
    the next run ends where an uninterrupted one does."""
    before, references = before_and_reference
    # The file before the bugs step and after it, from an uninterrupted run on copies.
    before_bugs, after_bugs = tmp_path / "before_bugs.duckdb", tmp_path / "after_bugs.duckdb"
    shutil.copy(before, before_bugs)
    sim = make_simulator("tiny", now=LATER, **WORLD)
    source = ApiSource.from_settings(Settings(), simulator=sim)
    source.retry = FAST_RETRY
    options = SyncOptions(mode="full", clock=lambda: LATER)
    for entity in ENTITIES[:-1]:
        entity.sync_step()(source, Warehouse(before_bugs), options)
    shutil.copy(before_bugs, after_bugs)
    ENTITIES[-1].sync_step()(source, Warehouse(after_bugs), options)
    assert state(after_bugs) == references[-1]

    db = tmp_path / "t.duckdb"
    shutil.copy(before, db)
    proc = worker(db, LATER, write_unit_rows=500, hold_after_unit=["bugs", 1, str(tmp_path / "never")])
    lines = wait_for(proc, "UNIT_DONE bugs 1")
    kill(proc)
    finished = set(json.loads(lines[-1].split(" ", 3)[3]))
    products = {row[0] for row in rows_by_product(db, "products")}
    assert finished and products - finished, "the bugs write was split between the products"

    written_by_bugs = {*ENTITY_BY_NAME["bugs"].tables, *ENTITY_BY_NAME["bugs"].synced_in}
    for table in TABLES:
        if table == "schema_migrations":
            continue
        killed, old, new = (rows_by_product(f, table) for f in (db, before_bugs, after_bugs))
        if table not in written_by_bugs:
            assert killed == old, table
            continue
        expected = sorted(
            [r for r in new if r[0] in finished or (r[0] is None and table in ENTITY_BY_NAME["bugs"].tables)]
            + [r for r in old if r[0] not in finished and not (r[0] is None and table in ENTITY_BY_NAME["bugs"].tables)],
            key=repr,
        )
        assert sorted(killed, key=repr) == expected, table
    # Nothing of the unfinished products is marked synced by this run.
    with duckdb.connect(str(db), read_only=True) as con:
        marked = {
            pid for (pid,) in con.execute("SELECT id FROM products WHERE bugs_synced_at = ?", [LATER]).fetchall()
        }
        tests_marked = {
            pid for (pid,) in con.execute("SELECT DISTINCT product_id FROM tests WHERE bugs_synced_at = ?", [LATER]).fetchall()
        }
    assert marked == tests_marked == finished
    def unfinished_bugs(file: Path) -> list[tuple]:
        return [r for r in rows_by_product(file, "bugs") if r[0] not in finished]

    assert unfinished_bugs(before_bugs) != unfinished_bugs(after_bugs)  # the killed run had changes left to make

    sync_in_process(db, LATER, **WORLD)
    assert state(db) == references[-1]
    warehouse = Warehouse(db)
    truth = truth_ids(make_simulator("tiny", now=LATER, **WORLD))
    for table in ENTITY_TABLES:
        assert warehouse.ids(table) == truth[table], table


# --- readers during a sync -------------------------------------------------------------------


@pytest.mark.slow
def test_readers_during_a_sync_succeed_or_get_a_clear_retryable_lock_error(tmp_path, before_and_reference, monkeypatch):
    before, references = before_and_reference
    db = tmp_path / "t.duckdb"
    shutil.copy(before, db)
    after_tests, in_bugs_write = tmp_path / "after_tests", tmp_path / "in_bugs_write"
    proc = worker(db, LATER, hold_after_step=["tests", str(after_tests)], hold_in_write=["bugs", str(in_bugs_write)])
    try:
        # Between two writes no lock is held: a read-only connection opens and sees the
        # committed tests of this sync.
        wait_for(proc, "STEP_DONE tests")
        con = duckdb.connect(str(db), read_only=True)
        try:
            tests_now = con.execute("SELECT count(*) FROM tests WHERE deleted_at IS NULL").fetchone()[0]
        finally:
            con.close()
        assert tests_now == len(truth_ids(make_simulator("tiny", now=LATER, **WORLD))["tests"])
        after_tests.touch()

        # During a write the file is locked: opening it fails at once with an IOException
        # naming the lock, which is the documented "retry shortly" signal.
        wait_for(proc, "IN_WRITE bugs")
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(str(db), read_only=True)

        # Retrying with backoff (what Warehouse.query does) succeeds once that write commits,
        # and sees the write whole. The write is released once the reader has met its lock.
        met_lock = []

        def release_after_first_lock_error(backoff, location, exc):
            met_lock.append(exc)
            in_bugs_write.touch()
            return wait_or_raise(backoff, location, exc)

        wait_or_raise = locks.Backoff.wait_or_raise
        monkeypatch.setattr(locks.Backoff, "wait_or_raise", release_after_first_lock_error)
        started = time.monotonic()
        bugs = Warehouse(db, lock_timeout=30).query("SELECT count(*) AS n FROM bugs WHERE deleted_at IS NULL").n[0]
        waited = time.monotonic() - started
        assert met_lock and "lock" in str(met_lock[0]), "the reader waited for the write"
        assert bugs == len(truth_ids(make_simulator("tiny", now=LATER, **WORLD))["bugs"])
        assert waited < 10, "a reader waits for one write at most"
        wait_for(proc, "DONE")
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            kill(proc)
    assert proc.wait(timeout=30) == 0


@pytest.mark.slow
def test_a_sync_waits_for_a_reader_holding_the_file_then_completes(tmp_path, before_and_reference):
    before, references = before_and_reference
    db = tmp_path / "t.duckdb"
    shutil.copy(before, db)
    reader = duckdb.connect(str(db), read_only=True)  # an analyst's open session
    proc = worker(db, LATER, lock_timeout=30)
    try:
        wait_for(proc, "START")
        # The sync cannot end while the reader holds the file (a busy machine only slows it).
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)
        reader.close()  # the session ends: the sync takes the lock and proceeds
        wait_for(proc, "DONE", timeout=60)
        proc.wait(timeout=30)
    finally:
        reader.close()
        if proc.poll() is None:
            kill(proc)
    assert proc.wait(timeout=30) == 0
    assert state(db) == references[-1]


# --- two syncs at once -----------------------------------------------------------------------


def _write_windows(instance: dg.DagsterInstance) -> list[tuple[str, float, float, list[float], list[str]]]:
    """Per run, its writing step: (run id, start, end, when each entity's write was logged,
    its messages), from the event log."""
    windows = []
    entity_log = tuple(f"{entity.name}: " for entity in ENTITIES)
    for run in instance.get_runs():
        start = end = None
        writes: list[float] = []
        messages: list[str] = []
        for event in instance.all_logs(run.run_id):
            if event.step_key != TESTIO_STEP:
                continue
            kind = event.dagster_event.event_type_value if event.is_dagster_event else None
            if kind == "STEP_START":
                start = event.timestamp
            elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
                end = event.timestamp
            elif kind is None:
                messages.append(event.user_message)
                if event.user_message.startswith(entity_log):
                    writes.append(event.timestamp)
        if start is not None:
            windows.append((run.run_id, start, end, writes, messages))
    return windows


@pytest.mark.slow
def test_two_syncs_started_at_once_both_succeed_one_write_at_a_time(tmp_path):
    token = "fake-concurrent-token"
    sim = make_simulator("tiny", token=token, latency_ms=5)
    db = tmp_path / "mirror.duckdb"
    with sim.serve() as server:
        env = api_env(tmp_path, sim, server, db)
        # Create the instance's storage once, so the two runs do not race to create it.
        subprocess.run([sys.executable, "-c", "import dagster; dagster.DagsterInstance.get()"],
                       cwd=REPO, env=env, check=True, timeout=600)
        dagster = Path(sys.executable).parent / "dagster"
        commands = [
            [str(dagster), "asset", "materialize", "--select", "*", "-m", "testio_pipeline.definitions"],
            [sys.executable, "-m", "testio_pipeline.cli", "run", "--mode", "full"],
        ]
        procs = [
            subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for cmd in commands
        ]
        outputs = [p.communicate(timeout=900) for p in procs]  # two real Dagster runs, one slot
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
        assert token not in out + err

    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs()
            assert len(runs) == 2 and all(r.is_success for r in runs)
            windows = sorted(_write_windows(instance), key=lambda w: min(w[3], default=float("inf")))
    finally:
        del os.environ["DAGSTER_HOME"]
    assert len(windows) == 2, windows  # one sync step per run
    assert {w[0] for w in windows} == {r.run_id for r in runs}
    (run_a, _, end_a, writes_a, _), (run_b, start_b, _, writes_b, messages_b) = windows
    assert len(writes_a) == len(writes_b) == len(ENTITIES)
    # One writing step at a time across both runs: the pool (limit 1, op granularity) runs
    # them one after the other; when its claim let both in at once, the later one waited
    # for the warehouse's writer lock, and said so, before its first write.
    assert max(writes_a) < min(writes_b), f"the writes of {run_a[:8]} and {run_b[:8]} interleaved"
    if start_b < end_a:
        assert any(m.startswith(f"{TESTIO_STEP}: waiting for run {run_a} ") for m in messages_b), messages_b

    warehouse = Warehouse(db)
    truth = truth_ids(sim)
    for table in ENTITY_TABLES:
        assert warehouse.ids(table) == truth[table], table
    counts = warehouse.query("SELECT count(*) - count(DISTINCT id) AS dupes FROM bugs").dupes[0]
    assert counts == 0
