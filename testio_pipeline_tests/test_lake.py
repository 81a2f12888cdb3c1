"""The warehouse on DuckLake: catalog in a real (throwaway) PostgreSQL, data as Parquet files.

The same sync code as for the DuckDB file, against the lake: a full sync equals the
simulator's truth with the same tables, comments and views; an analyst in another process
reads while a sync writes; two syncs at once both finish with every row stored once; a sync
killed with SIGKILL inside a write leaves the last committed snapshot, and the next run
completes it.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from benchmarks import verify
from testio_pipeline.settings import Settings
from testio_pipeline.source import ApiSource
from testio_pipeline.sync import SyncOptions, run_cycle
from testio_pipeline.warehouse import TABLES, Warehouse, extensions
from testio_pipeline.warehouse.views import VIEWS, create_views

from .conftest import FAST_RETRY, NOW, make_simulator
from .test_assets import truth_ids
from .test_atomicity import LATER, WORLD, kill, wait_for, worker

# One worker runs them all, against the one PostgreSQL server of that worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lake")]


def sync(location: str, data_path: str | None, now) -> Warehouse:
    sim = make_simulator("tiny", now=now, **WORLD)
    source = ApiSource.from_settings(Settings(), simulator=sim)
    source.retry = FAST_RETRY
    warehouse = Warehouse(location, lake_data_path=data_path)
    run_cycle(source, warehouse, SyncOptions(mode="full", clock=lambda: now))
    return warehouse


def assert_equals_truth(location: str, data_path: str | None, now) -> None:
    sim = make_simulator("tiny", now=now, **WORLD)
    report = verify.verify(location, sim, verify.snapshot(sim, now), lake_data_path=data_path)
    assert report.ok, report.problems


def analyst(attach: str) -> duckdb.DuckDBPyConnection:
    """What an analyst types (docs/operations.md): the extension folder line, ATTACH the lake's
    string (DuckDB autoloads ducklake and postgres from that folder), USE it."""
    con = duckdb.connect()
    con.execute(extensions.setup_line())
    con.execute(f"ATTACH '{attach}' AS lake (READ_ONLY)")
    con.execute("USE lake")
    return con


def repeated_keys(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Tables in which some primary key is stored more than once (DuckLake enforces no keys)."""
    found = {}
    for table in TABLES.values():
        key = ", ".join(table.primary_key)
        extra = con.execute(f"SELECT count(*) - count(DISTINCT ({key})) FROM {table.name}").fetchall()[0][0]
        if extra:
            found[table.name] = extra
    return found


def lake_state(attach: str) -> dict[str, list[tuple]]:
    con = analyst(attach)
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES if t != "schema_migrations"}
    finally:
        con.close()


def catalog(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    """Tables, views and columns with their types and comments, as an analyst sees them."""
    here = "database_name = current_database() AND schema_name = 'main'"
    return {
        "tables": con.execute(f"SELECT table_name, comment FROM duckdb_tables() WHERE {here} ORDER BY 1").fetchall(),
        "views": con.execute(f"SELECT view_name, comment FROM duckdb_views() WHERE {here} ORDER BY 1").fetchall(),
        "columns": con.execute(
            f"SELECT table_name, column_name, data_type, comment FROM duckdb_columns() WHERE {here} ORDER BY 1, 2"
        ).fetchall(),
    }


def test_a_full_sync_into_ducklake_equals_the_simulators_truth_with_the_files_schema(lake, tmp_path):
    attach, data = lake
    warehouse = sync(attach, data, NOW)
    assert create_views(warehouse) == list(VIEWS)
    assert_equals_truth(attach, data, NOW)
    # Three days later: changed rows are rewritten (delete + insert), vanished ones marked.
    sync(attach, data, LATER)
    assert_equals_truth(attach, data, LATER)

    file = sync(str(tmp_path / "mirror.duckdb"), None, LATER)
    create_views(file)
    con = analyst(attach)
    try:
        assert repeated_keys(con) == {}
        with file.read() as file_con:
            in_file = catalog(file_con)
        # DuckLake keeps no comments on a view's columns; everything else is the same.
        view_columns = {(t, c, ty) for t, c, ty, _ in in_file["columns"] if t in VIEWS}
        in_file["columns"] = [(t, c, ty, None if t in VIEWS else note) for t, c, ty, note in in_file["columns"]]
        assert view_columns and catalog(con) == in_file
        # Data files really are Parquet under the data path, not inside PostgreSQL.
        assert con.execute(f"SELECT count(*) FROM glob('{data}/**/*.parquet')").fetchall()[0][0] > 0
        assert con.execute("SELECT count(*) FROM bug_overview").fetchall()[0][0] == file.table_counts()["bugs"]
    finally:
        con.close()


def test_the_quality_report_reads_a_lake_and_never_shows_its_password(lake, tmp_path, monkeypatch):
    from testio_pipeline import report

    attach, data = lake
    warehouse = sync(attach, data, NOW)
    create_views(warehouse)
    monkeypatch.chdir(tmp_path)  # a lake has no file to put reports beside: ./data/reports
    built = report.build(Warehouse(attach + " password=not-shown", lake_data_path=data), as_of=NOW)
    assert built.html_path == Path("data") / "reports" / built.html_path.name and built.html_path.exists()
    html = built.html_path.read_text(encoding="utf-8")
    assert "password=***" in html and "not-shown" not in html


def test_an_analyst_in_another_process_reads_the_lake_while_a_sync_writes(lake, tmp_path):
    attach, data = lake
    bugs_written = tmp_path / "bugs_written"  # the bugs write commits once this exists
    proc = worker(attach, NOW, lake_data_path=data, hold_in_write=["bugs", str(bugs_written)])
    wait_for(proc, "STEP_DONE products")
    con = analyst(attach)
    reads, errors, bugs_seen = 0, [], set()
    try:
        in_write = False
        while proc.poll() is None:
            try:
                counts = con.execute(
                    "SELECT (SELECT count(*) FROM tests), (SELECT count(*) FROM bugs), (SELECT count(*) FROM products)"
                ).fetchall()[0]
                reads += 1
                bugs_seen.add(counts[1])
            except duckdb.Error as exc:
                errors.append(str(exc))
            if not in_write:
                line = proc.stdout.readline()
                if line.startswith("IN_WRITE bugs"):
                    in_write = True
                    # The bugs are written but not committed: the analyst's snapshot has none.
                    assert con.execute("SELECT count(*) FROM bugs").fetchall()[0][0] == 0
                    assert con.execute("SELECT count(*) FROM tests").fetchall()[0][0] > 0
                    bugs_written.touch()
        assert proc.wait() == 0, proc.stderr.read()[-3000:]
        assert in_write, "the sync paused inside its bugs write"
        total_bugs = con.execute("SELECT count(*) FROM bugs").fetchall()[0][0]
    finally:
        con.close()
        if proc.poll() is None:  # a failed check above: do not leave the worker held
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert errors == []
    assert reads >= 3 and 0 in bugs_seen and total_bugs > 0
    assert_equals_truth(attach, data, NOW)


def test_two_syncs_started_at_once_against_one_lake_both_finish_and_store_every_row_once(lake, tmp_path):
    attach, data = lake
    # Both are held inside their products write until both are there, so their transactions
    # surely overlap. On a new lake that write only inserts, which DuckLake alone lets both
    # commit: every product twice.
    both_in_write = tmp_path / "both_in_write"
    procs = [worker(attach, NOW, lake_data_path=data, hold_in_write=["products", str(both_in_write)]) for _ in range(2)]
    try:
        for proc in procs:
            wait_for(proc, "IN_WRITE products")
    finally:
        both_in_write.touch()
    logs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        logs.append(err)
        assert proc.returncode == 0 and "DONE" in out.split(), err[-3000:]
    assert any("met another writer's commit" in err for err in logs), "the two syncs' writes overlapped"
    con = analyst(attach)
    try:
        assert repeated_keys(con) == {}
    finally:
        con.close()
    assert_equals_truth(attach, data, NOW)


def test_a_sync_killed_inside_a_lake_write_leaves_the_last_snapshot_and_the_next_run_completes_it(lake, tmp_path):
    attach, data = lake
    sync(attach, data, NOW)
    proc = worker(attach, LATER, lake_data_path=data, hold_in_write=["tests", str(tmp_path / "never")])
    lines = wait_for(proc, "IN_WRITE tests")
    assert "STEP_DONE user_stories" in lines
    during = lake_state(attach)
    kill(proc)
    after = lake_state(attach)
    assert after == during, "the killed transaction left no trace"
    # user_stories were committed at LATER; tests are still as the NOW sync left them.
    assert {row[0] for row in after["tests"]} == truth_ids(make_simulator("tiny", now=NOW, **WORLD))["tests"]
    assert {row[0] for row in after["user_stories"]} == truth_ids(make_simulator("tiny", now=LATER, **WORLD))["user_stories"]

    sync(attach, data, LATER)
    assert_equals_truth(attach, data, LATER)
    con = analyst(attach)
    try:
        assert repeated_keys(con) == {}
    finally:
        con.close()
