"""Stage, then merge: records are framed into Parquet files while fetched, merged in one write."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from testio_pipeline.sync import bugs as bugs_step
from testio_pipeline.testio import TestioConnectionError
from testio_pipeline.testio.client import CustomerApiClient
from testio_pipeline.domain.records import Bug, ExploratoryTest
from testio_pipeline.warehouse import Warehouse
from testio_pipeline.warehouse.staging import STAGE_PREFIX, Stage

from .conftest import make_simulator
from .test_refresh_cycle import assert_mirror_matches, cycle
from .test_warehouse import bug, exploratory_test, product

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def leftovers(warehouse: Warehouse) -> list[str]:
    d = warehouse.staging_dir
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def table(warehouse: Warehouse, name: str, cols: str) -> list[tuple]:
    return [tuple(r) for r in warehouse.query(f"SELECT {cols} FROM {name} ORDER BY ALL").itertuples(index=False)]


def test_a_stage_writes_what_the_record_list_writes(tmp_path):
    tests = [exploratory_test(i, 1, status="running" if i % 2 else "archived") for i in range(1, 12)]
    bugs = [bug(100 + i, 1 + i % 11) for i in range(40)]
    direct, staged = Warehouse(tmp_path / "direct.duckdb"), Warehouse(tmp_path / "staged.duckdb")
    for wh in (direct, staged):
        wh.write("products", [product(1)], T0)
    d_tests = direct.write("tests", tests, T0, complete={"products": {1}}, detect_deletions=True)
    d_bugs = direct.write("bugs", bugs, T0, complete={"tests": range(1, 12)}, detect_deletions=True)
    with staged.stage("tests", batch_rows=4) as stage:
        for i in range(0, len(tests), 3):
            stage.add(tests[i : i + 3])
        assert stage.pending < 4 and stage.wait_written() > 2
        assert len(list((stage.dir / "tests").glob("*.parquet"))) == stage.wait_written()
        s_tests = staged.write("tests", stage, T0, complete={"products": {1}}, detect_deletions=True)
    with staged.stage("bugs", batch_rows=7) as stage:
        stage.add(bugs)
        s_bugs = staged.write("bugs", stage, T0, complete={"tests": range(1, 12)}, detect_deletions=True)
        stage_dir = stage.dir
    assert not stage_dir.exists() and leftovers(staged) == []
    for a, b in ((d_tests, s_tests), (d_bugs, s_bugs)):
        assert (a.inserted, a.updated, a.unchanged, a.total_rows, a.extra) == (
            b.inserted, b.updated, b.unchanged, b.total_rows, b.extra
        )
    for name, cols in (
        ("tests", "id, product_id, status, title, content_hash, raw::VARCHAR"),
        ("test_features", "id, test_id, feature_id"),
        ("bugs", "id, test_id, product_id, status, content_hash, raw::VARCHAR"),
    ):
        assert table(direct, name, cols) == table(staged, name, cols), name


def test_a_key_staged_twice_keeps_its_last_record_and_children(tmp_path):
    wh = Warehouse(tmp_path / "t.duckdb")
    wh.write("products", [product(1)], T0)
    first = exploratory_test(7, 1, status="running")
    last = exploratory_test(7, 1, status="archived")
    with wh.stage("tests", batch_rows=1) as stage:
        stage.add([first, exploratory_test(8, 1)])
        stage.add([last])
        stats = wh.write("tests", stage, T0, complete={"products": {1}})
    assert stats.inserted == 2
    assert table(wh, "tests", "id, status") == [(7, "archived"), (8, "running")]
    expected = Warehouse(tmp_path / "expected.duckdb")
    expected.write("products", [product(1)], T0)
    expected.write("tests", [exploratory_test(8, 1), last], T0, complete={"products": {1}})
    children = table(wh, "test_features", "id, test_id, feature_id")
    assert children == table(expected, "test_features", "id, test_id, feature_id")
    assert len(children) == len(set(children)) > 0  # no child row twice


def test_an_empty_stage_still_marks_deletions(tmp_path):
    wh = Warehouse(tmp_path / "t.duckdb")
    wh.write("products", [product(1)], T0)
    wh.write("bugs", [bug(1, 7)], T0, complete={"tests": {7}})
    with wh.stage("bugs") as stage:
        stats = wh.write("bugs", stage, T0, complete={"tests": {7}}, detect_deletions=True)
    assert (stats.inserted, stats.marked_deleted, stats.total_rows) == (0, 1, 0)


def test_a_sync_frames_records_as_they_come_and_removes_its_stage(tmp_path, monkeypatch):
    sim = make_simulator("tiny", tests_per_product=60)
    warehouse = Warehouse(tmp_path / "t.duckdb")
    batch_rows = 25
    seen: dict[str, dict] = {}
    real_stage = Warehouse.stage

    def small_stage(self, entity, **kwargs):
        return real_stage(self, entity, batch_rows=batch_rows)

    real_write = Warehouse.write
    models = {"tests": ExploratoryTest, "bugs": Bug}

    def spy(self, entity, data, *args, **kwargs):
        if entity in models:
            # At the merge, the fetched records are gone: only the last unframed batch is alive.
            gc.collect()
            data.wait_written()  # the writer thread may still be on the last full batch
            seen[entity] = {
                "stage": isinstance(data, Stage),
                "files": len(list((data.dir / entity).glob("*.parquet"))),
                "framed": data.records_added,
                "alive": sum(1 for o in gc.get_objects() if type(o) is models[entity]),
            }
        return real_write(self, entity, data, *args, **kwargs)

    monkeypatch.setattr(Warehouse, "stage", small_stage)
    monkeypatch.setattr(Warehouse, "write", spy)
    cycle(sim, warehouse, "full")
    assert_mirror_matches(sim, warehouse)
    assert warehouse.table_counts()["bugs"] > 4 * batch_rows
    for entity, found in seen.items():
        assert found["stage"] and found["files"] >= 3, (entity, found)  # batch 0 (empty) + 2 or more
        assert found["framed"] >= found["files"] - 2 and found["alive"] < batch_rows, (entity, found)
    assert leftovers(warehouse) == []


def test_a_failed_fetch_leaves_the_data_and_no_stage(tmp_path, monkeypatch):
    sim = make_simulator("tiny", tests_per_product=60)
    warehouse = Warehouse(tmp_path / "t.duckdb")
    cycle(sim, warehouse, "full")
    before = table(warehouse, "bugs", "id, status, synced_at")
    sim.clock.advance(24 * 3600)
    real = CustomerApiClient.list_bugs
    calls = {"n": 0}

    async def failing(self, test_ids, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:  # some batches are staged already
            raise TestioConnectionError("network gone")
        return await real(self, test_ids, **kwargs)

    monkeypatch.setattr(CustomerApiClient, "list_bugs", failing)
    with pytest.raises(TestioConnectionError):
        cycle(sim, warehouse, "full")
    assert table(warehouse, "bugs", "id, status, synced_at") == before
    assert leftovers(warehouse) == []


def test_a_killed_runs_stage_is_swept_and_does_not_break_the_next(tmp_path):
    sim = make_simulator("tiny")
    warehouse = Warehouse(tmp_path / "t.duckdb")
    # A process that staged bugs and died (its pid no longer runs).
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = warehouse.staging_dir / f"{STAGE_PREFIX}{dead.pid}-bugs-x"
    (stale / "bugs").mkdir(parents=True)
    (stale / "bugs" / "000001.parquet").write_bytes(b"not parquet at all")
    mine = warehouse.staging_dir / f"{STAGE_PREFIX}{os.getpid()}-bugs-y"  # a live process's: kept
    mine.mkdir()
    cycle(sim, warehouse, "full")
    assert_mirror_matches(sim, warehouse)
    assert leftovers(warehouse) == [mine.name]


def test_staging_is_only_for_the_large_entities(tmp_path):
    with pytest.raises(ValueError, match="no staging"):
        Stage("features", tmp_path)
    assert set(bugs_step.__dict__) >= {"_list_bugs_staged"}


def test_a_merge_that_cannot_fit_the_memory_cap_runs_again_without_it(tmp_path, caplog):
    # Rewriting rows under a primary-key index cannot spill to disk: with a cap far too small,
    # the capped attempt fails, rolls back, and the uncapped one completes the same write.
    warehouse = Warehouse(tmp_path / "t.duckdb", merge_memory_limit="2MB")
    warehouse.write("products", [product(1)], T0)
    warehouse.write("tests", [exploratory_test(i, 1) for i in range(1, 201)], T0, complete={"products": {1}})
    bugs = [bug(10_000 + i, 1 + i % 200) for i in range(20_000)]
    with warehouse.stage("bugs", batch_rows=5_000) as stage:
        stage.add(bugs)
        stats = warehouse.write("bugs", stage, T0, complete={"tests": range(1, 201)})
    assert stats.inserted == 20_000
    assert warehouse.table_counts()["bugs"] == 20_000
    assert "retrying without the cap" in caplog.text


def test_a_stage_that_cannot_write_fails_the_write_and_leaves_the_data(tmp_path, monkeypatch):
    """Files are written by the stage's writer thread; its error reaches the step's write."""
    from testio_pipeline.warehouse import staging

    wh = Warehouse(tmp_path / "t.duckdb")
    wh.write("products", [product(1)], T0)
    wh.write("bugs", [bug(1, 7)], T0, complete={"tests": {7}})
    real_write = staging.pq.write_table

    def disk_full(table, where, **kwargs):
        if not str(where).endswith("000000.parquet"):  # the stage's empty first file still works
            raise OSError(28, "No space left on device")
        return real_write(table, where, **kwargs)

    monkeypatch.setattr(staging.pq, "write_table", disk_full)
    with wh.stage("bugs", batch_rows=2) as stage:
        stage.add([bug(i, 7) for i in range(2, 6)])  # handed to the writer, which fails
        with pytest.raises(OSError, match="No space left"):
            wh.write("bugs", stage, T0, complete={"tests": {7}}, detect_deletions=True)
        stage_dir = stage.dir
    assert not stage_dir.exists()
    assert table(wh, "bugs", "id, deleted_at IS NULL") == [(1, True)]


def test_a_step_freezes_the_existing_heap_only_while_it_runs(tmp_path, monkeypatch):
    """The collector skips objects from before a step (a speed measure) and gets them back after."""
    seen: list[int] = []
    real = Warehouse.products_in_scope

    def spying(warehouse, product_ids=None):  # called inside the steps after products
        seen.append(gc.get_freeze_count())
        return real(warehouse, product_ids)

    monkeypatch.setattr(Warehouse, "products_in_scope", spying)
    thresholds = gc.get_threshold()
    sim = make_simulator("tiny")
    warehouse = Warehouse(tmp_path / "t.duckdb")
    cycle(sim, warehouse, "full")
    assert_mirror_matches(sim, warehouse)
    assert len(seen) == 4 and min(seen) > 0, seen  # features, user stories, tests, bugs
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == thresholds


def test_a_large_merge_runs_on_one_thread_and_a_small_one_on_all(tmp_path, monkeypatch):
    from testio_pipeline.warehouse import memory, merge

    threads_seen: list[int] = []
    real_upsert = merge.upsert

    def spying_upsert(con, table, *args, **kwargs):
        if table == "bugs":
            threads_seen.append(int(con.execute("SELECT current_setting('threads')").fetchone()[0]))
        return real_upsert(con, table, *args, **kwargs)

    monkeypatch.setattr(merge, "upsert", spying_upsert)
    monkeypatch.setattr(memory, "ONE_THREAD_ROWS", 30)
    wh = Warehouse(tmp_path / "t.duckdb")
    wh.write("products", [product(1)], T0)
    for count in (20, 40):  # below, then above the (lowered) threshold
        with wh.stage("bugs") as stage:
            stage.add([bug(1000 * count + i, 7) for i in range(count)])
            wh.write("bugs", stage, T0, complete={"tests": {7}})
    assert threads_seen[0] > 1 or (os.cpu_count() or 1) == 1
    assert threads_seen[1:] == [1]
    assert table(wh, "bugs", "count(*)") == [(60,)]


def test_a_lake_merge_leaves_its_shared_instance_with_the_default_settings(tmp_path, monkeypatch):
    from testio_pipeline.warehouse import memory

    monkeypatch.setattr(memory, "ONE_THREAD_ROWS", 3)
    lake = Warehouse(f"ducklake:{tmp_path / 'catalog.ducklake'}", lake_data_path=str(tmp_path / "data"))
    instance = lake._db.backend._instance()  # what every later cursor of this process shares
    names = "'threads', 'memory_limit', 'preserve_insertion_order', 'checkpoint_threshold'"
    settings = f"SELECT name, value FROM duckdb_settings() WHERE name IN ({names}) ORDER BY name"
    defaults = instance.execute(settings).fetchall()
    lake.write("products", [product(1)], T0)
    with lake.stage("bugs") as stage:
        stage.add([bug(100 + i, 7) for i in range(5)])  # a "large" merge: one thread, capped
        lake.write("bugs", stage, T0, complete={"tests": {7}})
    assert table(lake, "bugs", "count(*)") == [(5,)]
    assert instance.execute(settings).fetchall() == defaults


def test_a_commit_out_of_memory_under_the_cap_is_run_again_without_it(tmp_path):
    import duckdb

    wh = Warehouse(tmp_path / "t.duckdb", merge_memory_limit="384MB")
    wh.write("products", [product(1)], T0)
    limits: list[str] = []

    def body(con):
        limits.append(con.execute("SELECT current_setting('memory_limit')").fetchone()[0])
        if len(limits) == 1:  # as DuckDB reports a commit that could not pin a block under the cap
            raise duckdb.TransactionException(
                "TransactionContext Error: Failed to commit: failed to pin block of size 256.0 KiB (243.9 MiB/244.1 MiB used)"
            )
        return "written"

    value, _unit = wh._db.write(body, capped=True)
    assert value == "written"
    assert limits[0] == "366.2 MiB" and limits[1] != limits[0]
    with pytest.raises(duckdb.TransactionException):  # any other transaction error is not retried
        wh._db.write(lambda con: (_ for _ in ()).throw(duckdb.TransactionException("conflict")), capped=True)


def test_a_capped_merge_empties_the_buffer_pool_before_the_checkpoint(tmp_path, monkeypatch):
    """What the merge left cached is evicted after the commit, before the close checkpoints."""
    from testio_pipeline.warehouse import connection, memory

    pool_at_close: list[int] = []
    real_open = connection.Connections._open

    class Spy:
        def __init__(self, con):
            self._con = con

        def __getattr__(self, name):
            return getattr(self._con, name)

        def close(self):
            used = "SELECT sum(memory_usage_bytes) FROM duckdb_memory() WHERE tag NOT IN ('BASE_TABLE', 'METADATA')"
            pool_at_close.append(int(self._con.execute(used).fetchone()[0] or 0))
            self._con.close()

    monkeypatch.setattr(connection.Connections, "_open", lambda self, read_only: Spy(real_open(self, read_only)))
    monkeypatch.setattr(memory, "EVICT_TO", "1MB")
    wh = Warehouse(tmp_path / "t.duckdb", merge_memory_limit="384MB")
    wh.write("products", [product(1)], T0)
    pool_at_close.clear()
    with wh.stage("bugs") as stage:
        stage.add([bug(i, 7, title="x" * 2000) for i in range(4000)])
        wh.write("bugs", stage, T0, complete={"tests": {7}})
    merge_close = pool_at_close[0]
    # What stays is the merge's new rows (4000 bugs and their first sightings in
    # bug_status_changes), which wait in memory for the checkpoint, and the key's index.
    assert merge_close < 2.5 * 2**20, pool_at_close
    assert table(wh, "bugs", "count(*)") == [(4000,)]
