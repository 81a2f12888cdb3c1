"""Warehouse: schema, migrations, change detection, scoped deletions, credentials, rollback, locking."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from testio_pipeline.domain.records import Bug, ExploratoryTest, Feature, ProblemRange, Product, RejectedRecord, UserStory
from testio_pipeline.warehouse import TABLES, Warehouse, WarehouseLockedError, WriteStats
from testio_pipeline.warehouse.schema_versions import LATEST_VERSION, MIGRATIONS, bootstrap_sql
from testio_pipeline.warehouse import merge as merge_module

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
T1 = T0 + timedelta(hours=1)
T2 = T0 + timedelta(hours=2)


# --- record builders ------------------------------------------------------------------------


def product(pid: int, sections: tuple[int, ...] = (), name: str | None = None) -> Product:
    return Product.from_api(
        {
            "id": pid,
            "name": name or f"Product {pid}",
            "type": "website",
            "description": "shop",
            "default_section_id": 900 + pid,
            "sections": [{"id": s, "name": f"Section {s}"} for s in sections],
            "sections_with_default": [{"id": 900 + pid, "name": "Default"}],
        }
    )


def feature(fid: int, pid: int, stories: tuple[str, ...] = (), sections: tuple[int, ...] = ()) -> Feature:
    data = {"id": fid, "title": f"Feature {fid}", "description": "d", "howtofind": "menu", "user_stories": list(stories)}
    return Feature.from_api(data, product_id=pid, section_ids=list(sections))


def story(sid: int, pid: int, title: str, section_id: int | None = None) -> UserStory:
    return UserStory.from_api({"id": sid, "title": title, "path": "/cart"}, product_id=pid, section_id=section_id)


def exploratory_test(tid: int, pid: int, status: str = "running", env: dict | None = None) -> ExploratoryTest:
    return ExploratoryTest.from_api(
        {
            "id": tid,
            "test_title": f"Test {tid}",
            "status": status,
            "testing_type": "coverage",
            "goal_text": "find bugs",
            "enable_low": True,
            "start_at": "2025-02-01T10:00:00+02:00",
            "end_at": "2025-02-03T10:00:00+02:00",
            "created_by": "lead",
            "section": {"id": 11, "name": "Section 11"},
            "product": {"id": pid, "name": f"Product {pid}"},
            "test_environment": env or {"id": 5, "title": "Staging", "url": "https://staging.example"},
            "features": [
                {"id": tid * 10 + 1, "feature_id": 101, "title": "Cart", "enable_default": True},
                {"id": tid * 10 + 2, "feature_id": 102, "title": "Login", "enable_visual": False},
            ],
        }
    )


def bug(bid: int, tid: int, pid: int = 1, title: str | None = None) -> Bug:
    return Bug.from_api(
        {
            "id": bid,
            "title": title or f"Bug {bid}",
            "severity": "high",
            "status": "forwarded",
            "steps": ["open", "click"],
            "reported_at": "2025-02-02T08:30:00-05:00",
            "author": {"name": "tester"},
            "test": {"id": tid, "title": "t"},
            "test_feature": {"id": tid * 10 + 1},
            "feature": {"id": 101},
        },
        product_id=pid,
    )


@pytest.fixture
def wh(tmp_path) -> Warehouse:
    return Warehouse(tmp_path / "data" / "warehouse.duckdb", lock_timeout=5)


def snapshot(wh: Warehouse) -> dict[str, list[str]]:
    """Every row of every table as JSON text, in a stable order (one query, one connection)."""
    union = " UNION ALL ".join(
        f"SELECT '{name}' AS t, to_json(x)::VARCHAR AS j FROM {name} x"
        for name in TABLES
        if name != "schema_migrations"
    )
    rows = wh.query(f"{union} ORDER BY t, j")
    return {name: list(rows.j[rows.t == name]) for name in TABLES if name != "schema_migrations"}


def counts(stats: WriteStats) -> tuple[int, int, int, int, int]:
    return stats.inserted, stats.updated, stats.unchanged, stats.marked_deleted, stats.restored


# --- schema ------------------------------------------------------------------------------------

DUCK_TYPE_NAMES = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}


def test_schema_types_and_comments(wh):
    assert wh.migrate() == LATEST_VERSION
    cols = wh.query(
        "SELECT table_name, column_name, data_type, comment FROM duckdb_columns() WHERE schema_name = 'main'"
    )
    found = {(r.table_name, r.column_name): (r.data_type, r.comment) for r in cols.itertuples()}
    for table in TABLES.values():
        for col in table.columns:
            data_type, comment = found[(table.name, col.name)]
            assert data_type == DUCK_TYPE_NAMES.get(col.type, col.type), (table.name, col.name)
            assert comment and comment == col.description
    assert found[("bugs", "raw")][0] == "JSON"
    assert found[("bugs", "reported_at")][0] == "TIMESTAMP WITH TIME ZONE"
    assert found[("features", "user_story_titles")][0] == "VARCHAR[]"
    assert found[("problematic_records", "neighbour_ids")][0] == "BIGINT[]"
    table_comments = wh.query("SELECT table_name, comment FROM duckdb_tables() WHERE schema_name = 'main'")
    assert dict(zip(table_comments.table_name, table_comments.comment)) == {
        t.name: t.description for t in TABLES.values()
    }
    pk = wh.query(
        "SELECT table_name, constraint_column_names FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
    )
    assert {r.table_name: list(r.constraint_column_names) for r in pk.itertuples()} == {
        t.name: list(t.primary_key) for t in TABLES.values() if t.indexed
    }


def test_migrate_is_idempotent_and_automatic(wh):
    assert wh.ids("products") == set()  # first use migrates
    assert wh.migrate() == LATEST_VERSION
    assert wh.migrate() == LATEST_VERSION
    assert Warehouse(wh.path).migrate() == LATEST_VERSION
    assert wh.query("SELECT version, description FROM schema_migrations ORDER BY version").to_dict("records") == [
        {"version": m.version, "description": m.description} for m in MIGRATIONS
    ]


def test_migration_2_renames_the_test_list_problems(tmp_path):
    import duckdb

    path = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(path))
    for stmt in [*bootstrap_sql(), *MIGRATIONS[0].statements()]:
        con.execute(stmt)
    con.execute("INSERT INTO schema_migrations VALUES (1, now(), 'initial schema')")
    con.execute(
        "INSERT INTO problematic_records (product_id, entity, range_start, first_seen_at, last_seen_at) "
        "VALUES (1, 'exploratory_tests', 30, now(), now())"
    )
    con.close()
    wh = Warehouse(path)
    assert wh.migrate() == LATEST_VERSION
    assert list(wh.query("SELECT entity FROM problematic_records").entity) == ["tests"]


# --- change detection ---------------------------------------------------------------------------


def write_everything(wh: Warehouse, synced_at: datetime, complete: tuple[int, ...] = (1,)) -> list[WriteStats]:
    return [
        wh.write("products", [product(1, sections=(11, 12)), product(2)], synced_at),
        wh.write(
            "features",
            [feature(101, 1, ("Add to cart",), (11,)), feature(102, 1, ("Log in",), (11, 12))],
            synced_at,
            complete={"products": complete},
        ),
        wh.write("user_stories", [story(501, 1, "Add to cart", 11)], synced_at, complete={"products": complete}),
        wh.write(
            "tests", [exploratory_test(7, 1), exploratory_test(8, 1, "archived")], synced_at, complete={"products": complete}
        ),
        wh.write(
            "bugs",
            [bug(1, 7), bug(2, 7), bug(3, 8)],
            synced_at,
            complete={"tests": {7, 8} if complete else (), "products": complete},
        ),
    ]


def test_identical_rewrite_changes_nothing(wh):
    first = write_everything(wh, T0)
    assert [s.inserted for s in first] == [2, 2, 1, 2, 3]
    before = snapshot(wh)
    second = write_everything(wh, T1, complete=())  # nothing complete: sync times stay too
    for stats in second:
        assert (stats.inserted, stats.updated, stats.restored) == (0, 0, 0), stats
        assert stats.unchanged == stats.total_rows > 0
        assert stats.lock_held_s > 0 and stats.duration_s >= stats.lock_held_s
    assert snapshot(wh) == before
    assert wh.table_counts() == {
        "products": 2, "sections": 2, "features": 2, "user_stories": 1, "tests": 2, "bugs": 3,
    }


def status_and_bug_sync(wh) -> dict:
    rows = wh.query("SELECT id, status, bugs_synced_at FROM tests WHERE deleted_at IS NULL")
    return {
        int(r.id): (r.status, None if r.bugs_synced_at is None or str(r.bugs_synced_at) == "NaT" else r.bugs_synced_at.to_pydatetime())
        for r in rows.itertuples()
    }


def test_changed_record_is_updated_and_keeps_sync_times(wh):
    write_everything(wh, T0)
    stats = wh.write("bugs", [bug(1, 7), bug(2, 7, title="Bug 2 (edited)"), bug(3, 8)], T1, complete={"tests": ()})
    assert counts(stats) == (0, 1, 2, 0, 0)
    rows = wh.query("SELECT id, title, synced_at FROM bugs ORDER BY id")
    assert list(rows.title) == ["Bug 1", "Bug 2 (edited)", "Bug 3"]
    assert [ts.to_pydatetime() for ts in rows.synced_at] == [T0, T1, T0]

    # Columns the write does not carry survive a rewrite of the row.
    stats = wh.write("tests", [exploratory_test(7, 1, status="locked")], T2, complete={"products": ()})
    assert counts(stats) == (0, 1, 0, 0, 0)
    assert status_and_bug_sync(wh) == {7: ("locked", T0), 8: ("archived", T0)}
    # Section membership counts as feature content.
    stats = wh.write("features", [feature(102, 1, ("Log in",), (12,))], T2, complete={"products": ()})
    assert counts(stats) == (0, 1, 0, 0, 0)


def test_deletions_only_when_asked_and_only_in_complete_scope(wh):
    write_everything(wh, T0)
    wh.write("tests", [exploratory_test(20, 2)], T0, complete={"products": (2,)})

    # Not asked: nothing marked even though product 1's list is complete.
    stats = wh.write("tests", [exploratory_test(7, 1)], T1, complete={"products": (1,)})
    assert stats.marked_deleted == 0 and wh.ids("tests") == {7, 8, 20}
    # Asked, but product 1 not complete: nothing marked.
    stats = wh.write("tests", [exploratory_test(7, 1)], T1, complete={"products": ()}, detect_deletions=True)
    assert stats.marked_deleted == 0
    # Asked and complete for product 1: test 8 goes, product 2's test 20 (not in scope) stays.
    stats = wh.write("tests", [exploratory_test(7, 1)], T1, complete={"products": (1,)}, detect_deletions=True)
    assert (stats.marked_deleted, stats.total_rows) == (1, 2)
    assert wh.ids("tests") == {7, 20} and wh.ids("tests", include_deleted=True) == {7, 8, 20}
    assert wh.query("SELECT deleted_at FROM tests WHERE id = 8").deleted_at[0].to_pydatetime() == T1

    # It comes back: restored, deleted_at cleared.
    both = [exploratory_test(7, 1), exploratory_test(8, 1, "archived")]
    stats = wh.write("tests", both, T2, complete={"products": (1,)}, detect_deletions=True)
    assert counts(stats) == (0, 1, 1, 0, 1)
    assert wh.ids("tests") == {7, 8, 20}

    # Bugs: only bugs of tests whose bugs were fetched completely.
    stats = wh.write("bugs", [bug(1, 7)], T2, complete={"tests": {7}}, detect_deletions=True)
    assert stats.marked_deleted == 1 and wh.ids("bugs") == {1, 3}

    # Products: the list is the whole scope; sections of a vanished product go with it.
    stats = wh.write("products", [product(2)], T2, detect_deletions=True)
    assert stats.marked_deleted == 1 and stats.extra["sections_marked_deleted"] == 2
    assert wh.product_ids() == [2] and wh.product_ids(include_deleted=True) == [1, 2]


def test_per_product_sync_times_only_for_complete_products(wh):
    wh.write("products", [product(1), product(2)], T0)
    wh.write("features", [feature(101, 1), feature(201, 2)], T1, complete={"products": {1}})
    wh.write("user_stories", [], T1, complete={"products": {2}})
    wh.write("tests", [exploratory_test(7, 1), exploratory_test(8, 2)], T1, complete={"products": {2}})
    stats = wh.write("bugs", [bug(1, 7)], T2, complete={"tests": {7}, "products": {1}})
    assert {k: stats.extra[k] for k in ("tests_marked_synced", "products_marked_synced")} == {
        "tests_marked_synced": 1,
        "products_marked_synced": 1,
    }
    assert stats.extra["search_index_documents"] == 1  # the new bug was indexed right after the write
    by_id = {p["id"]: p for p in wh.products()}
    assert (by_id[1]["features_synced_at"], by_id[2]["features_synced_at"]) == (T1, None)
    assert (by_id[1]["user_stories_synced_at"], by_id[2]["user_stories_synced_at"]) == (None, T1)
    assert (by_id[1]["tests_synced_at"], by_id[2]["tests_synced_at"]) == (None, T1)
    assert (by_id[1]["bugs_synced_at"], by_id[2]["bugs_synced_at"]) == (T2, None)
    assert status_and_bug_sync(wh) == {7: ("running", T2), 8: ("running", None)}
    assert wh.test_states(product_ids=[2]) == {8: (2, "running")}
    assert wh.tests_needing_bugs([1, 2], full=False) == {1: [7], 2: [8]}
    # A product rewrite with new content keeps its sync times.
    wh.write("products", [product(1, name="Renamed")], T2)
    assert wh.products()[0]["features_synced_at"] == T1


def test_feature_sections_replaced_only_for_complete_products(wh):
    wh.write("products", [product(1, sections=(11, 12)), product(2, sections=(21, 22))], T0)
    wh.write(
        "features",
        [feature(101, 1, sections=(11, 12)), feature(201, 2, sections=(21, 22))], T0, complete={"products": {1, 2}}
    )
    # Product 1 was fetched completely, product 2 only partly: its links are added to, not replaced.
    wh.write("features", [feature(101, 1, sections=(12,)), feature(201, 2, sections=(22,))], T1, complete={"products": {1}})
    links = wh.query("SELECT feature_id, section_id FROM feature_sections ORDER BY ALL")
    assert list(zip(links.feature_id, links.section_id)) == [(101, 12), (201, 21), (201, 22)]
    assert [p["section_ids"] for p in wh.products()] == [[11, 12], [21, 22]]


def test_user_story_feature_resolution(wh):
    wh.write("products", [product(1, sections=(11, 12)), product(2)], T0)
    wh.write(
        "features",
        [
            feature(101, 1, ("Pay by card", "Add to cart"), (11,)),
            feature(102, 1, ("Pay by card",), (12,)),
            feature(103, 1, ("Gone story",), (11,)),
            feature(201, 2, ("Log in",)),
        ],
        T0,
        complete={"products": {1, 2}},
    )
    still_there = [feature(101, 1, ("Pay by card", "Add to cart"), (11,)), feature(102, 1, ("Pay by card",), (12,))]
    wh.write("features", still_there, T0, complete={"products": {1}}, detect_deletions=True)  # 103 deleted
    stats = wh.write(
        "user_stories",
        [
            story(1, 1, "Pay by card", 11),  # two features match; 101 is in section 11
            story(2, 1, "Pay by card", 12),  # ... and 102 in section 12
            story(3, 1, "Add to cart", 12),  # one match, in another section: still matched
            story(4, 1, "Nobody lists me", 11),
            story(5, 1, "Gone story", 11),  # only a deleted feature names it
            story(6, 2, "Log in"),
            story(7, 2, "Pay by card"),  # a title of another product's feature
        ],
        T1,
        complete={"products": {1, 2}},
    )
    assert stats.extra["feature_unresolved"] == 3
    rows = wh.query("SELECT id, feature_id FROM user_stories ORDER BY id")
    resolved = {r.id: None if pd.isna(r.feature_id) else r.feature_id for r in rows.itertuples()}
    assert resolved == {1: 101, 2: 102, 3: 101, 4: None, 5: None, 6: 201, 7: None}

    # A feature starts naming story 4: a rewrite of the unchanged story picks it up.
    wh.write("features", [feature(104, 1, ("Nobody lists me",), (11,))], T2, complete={"products": ()})
    stats = wh.write("user_stories", [story(4, 1, "Nobody lists me", 11)], T2, complete={"products": ()})
    assert counts(stats) == (0, 1, 0, 0, 0)
    assert wh.query("SELECT feature_id FROM user_stories WHERE id = 4").feature_id[0] == 104


# --- credentials, bookkeeping ---------------------------------------------------------------------

SECRETS = ("s3cret-user", "s3cret-pass", "s3cret-access")


def test_credentials_never_stored(wh):
    creds = dict(zip(("username", "password", "access"), SECRETS))
    t = exploratory_test(7, 1, env={"id": 5, "title": "Staging", "url": "https://staging.example", **creds})
    # Simulate a record built without the model's stripping: the write path must still strip.
    raw = t.raw
    raw["test_environment"].update(creds)
    t = t.model_copy(update={"raw_json": json.dumps(raw).encode()})
    b = bug(1, 7)
    raw = b.raw
    raw["test"]["test_environment"] = dict(creds)
    b = b.model_copy(update={"raw_json": json.dumps(raw).encode()})
    assert all(secret.encode() in t.raw_json for secret in SECRETS)
    wh.write("products", [product(1)], T0)
    wh.write("tests", [t], T0, complete={"products": {1}})
    wh.write("bugs", [b], T0, complete={"tests": {7}})
    wh.write_rejected(
        [RejectedRecord(entity="test", reason="no status", raw={"id": 9, "test_environment": dict(creds)})],
        "run-1",
        T0,
    )
    assert wh.query("SELECT raw->>'$.test_environment.title' AS title FROM tests").title[0] == "Staging"
    everything = "\n".join(row for rows in snapshot(wh).values() for row in rows)
    assert "Staging" in everything  # the scan does see the stored JSON
    for secret in SECRETS:
        assert secret not in everything
    for key in creds:
        assert f'"{key}"' not in everything


def test_rejected_and_sync_events(wh):
    rejects = [
        RejectedRecord(entity="bug", product_id=1, record_id="5", reason="no test.id", raw={"id": 5}),
        RejectedRecord(entity="bug", reason="not an object", raw="oops"),
    ]
    assert wh.write_rejected(rejects, "run-1", T0) == 2
    assert wh.write_rejected([], "run-1", T0) == 0
    rows = wh.query("SELECT id, run_id, entity, raw::VARCHAR AS raw FROM rejected_records ORDER BY id")
    assert list(rows.raw) == ['{"id":5}', '"oops"'] and rows.id.is_unique

    wh.start_sync_event("run-1", "sensor", "incremental", T0)
    assert wh.query("SELECT status FROM sync_events").status[0] == "running"
    run_counts = {"products_synced": 2, "bugs_refreshed": 30, "not_a_column": 1}
    wh.finish_sync_event("run-1", "partial", T1, run_counts, "2 pages failed")
    row = wh.query("SELECT * FROM sync_events").to_dict("records")[0]
    assert (row["status"], row["products_synced"], row["bugs_refreshed"]) == ("partial", 2, 30)
    assert row["error"] == "2 pages failed"
    assert (row["started_at"].to_pydatetime(), row["finished_at"].to_pydatetime()) == (T0, T1)
    with pytest.raises(ValueError):
        wh.finish_sync_event("run-1", "great", T1, {})


def test_problematic_records_first_seen_and_resolution(wh):
    problem = ProblemRange(product_id=1, range_start=50, range_end=50, error="500", neighbour_ids=(7, 9))
    wh.write_problematic([problem], "r1", T0, entity="tests")
    stats = wh.write_problematic([replace(problem, error="500 again")], "r2", T1, entity="tests", checked_product_ids={1})
    assert (stats.inserted, stats.updated, stats.marked_deleted) == (0, 1, 0)
    row = wh.query("SELECT * FROM problematic_records").to_dict("records")[0]
    assert (row["first_seen_at"].to_pydatetime(), row["last_seen_at"].to_pydatetime()) == (T0, T1)
    assert (row["run_id"], list(row["neighbour_ids"]), row["error"]) == ("r2", [7, 9], "500 again")
    stats = wh.write_problematic([], "r3", T2, entity="tests", checked_product_ids={1})
    assert stats.marked_deleted == 1
    assert wh.query("SELECT resolved_at FROM problematic_records").resolved_at[0].to_pydatetime() == T2


# --- failure and locking -----------------------------------------------------------------------------


def test_failed_write_leaves_previous_data_intact(wh, monkeypatch):
    write_everything(wh, T0)
    before = snapshot(wh)

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    # mark_synced runs after the bug upsert and test_features replacement have executed.
    monkeypatch.setattr(merge_module, "mark_synced", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        wh.write("bugs", [bug(1, 7, title="changed"), bug(9, 7)], T1, complete={"tests": {7}}, detect_deletions=True)
    with pytest.raises(RuntimeError, match="disk on fire"):
        wh.write("tests", [exploratory_test(7, 1, "cancelled")], T1, complete={"products": {1}}, detect_deletions=True)
    assert snapshot(wh) == before


# Holds the file until told to let go (a line on stdin), not for a fixed time: the test
# decides when, so a busy machine cannot make the lock end before the test looks.
HOLD_LOCK = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
sys.stdin.readline()
con.close()
"""


def hold_lock(path) -> subprocess.Popen:
    args = [sys.executable, "-c", HOLD_LOCK, str(path)]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def let_go(proc: subprocess.Popen) -> None:
    proc.stdin.write("\n")
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    proc.stdout.close()


def test_write_waits_for_another_process_lock(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb", lock_timeout=120)  # the holder lets go when told
    wh.migrate()
    proc = hold_lock(wh.path)
    done: list[WriteStats] = []
    writer = threading.Thread(target=lambda: done.append(wh.write("products", [product(1)], T0)))
    try:
        writer.start()
        writer.join(timeout=0.5)
        # A slower machine only makes the write later: it cannot finish while the file is held.
        assert writer.is_alive() and not done, "the write waits for the other process"
    finally:
        let_go(proc)
    writer.join(timeout=120)
    [stats] = done
    assert stats.inserted == 1 and stats.lock_held_s < stats.duration_s


def test_lock_held_too_long_raises(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb", lock_timeout=0.5)
    wh.migrate()
    proc = hold_lock(wh.path)
    try:
        started = time.monotonic()
        with pytest.raises(WarehouseLockedError, match="w.duckdb"):
            wh.write("products", [product(1)], T0)  # the holder never lets go before this returns
        assert time.monotonic() - started >= 0.5
    finally:
        let_go(proc)
    assert wh.write("products", [product(1)], T0).inserted == 1  # usable once the lock is gone


def test_warehouse_does_not_import_httpx_or_dagster():
    import ast
    import pathlib

    import testio_pipeline.warehouse as package

    for source in pathlib.Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
            assert not [n for n in names if n.split(".")[0] in {"httpx", "dagster"}], (source.name, names)
