"""The typed child tables of tests and bugs, and bugs.rejection_reason, against the simulator.

Each table is compared row by row with what the simulated world says it holds (its truth
functions read the world's own structures, not the JSON the client parses), after a full
sync and again after the clock moved and an incremental sync changed bugs; the rejection
reason of every bug is checked the same way, also against a deployment whose
``bugs/reject_reasons`` answers 404.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from testio_pipeline.domain.vocabulary import STANDARD_REJECT_REASONS
from testio_pipeline.settings import Settings
from testio_pipeline.source import ApiSource
from testio_pipeline.sync import SyncOptions, run_cycle
from testio_pipeline.warehouse import Warehouse
from testio_pipeline.warehouse.schema import TABLES
from testio_pipeline.warehouse.schema_versions import LATEST_VERSION, MIGRATIONS, bootstrap_sql

from .conftest import FAST_RETRY, make_simulator

# table -> (truth accessor, the columns in the order the truth gives them)
CHILD_TABLES = {
    "bug_devices": ("truth_bug_devices", "bug_id, position, category, operating_system, os_version, device, vendor, browser"),
    "bug_comments": ("truth_bug_comments", "bug_id, position, comment_id, author_name, body, created_at"),
    "bug_report_fields": ("truth_bug_report_fields", "bug_id, position, configuration_id, key, value"),
    "test_platforms": ("truth_test_platforms", "test_id, position, category, operating_system, min_os_version, max_os_version, browsers"),
}
PARENT = {"test_platforms": ("tests", "test_id")}
# A world whose rejected bugs include every kind: customer reasons, TestIO's request
# timeout, and rejections without a standard comment ("other").
SEED = 2


def cycle(sim, warehouse, mode):
    source = ApiSource.from_settings(Settings(), simulator=sim)
    source.retry = FAST_RETRY
    return run_cycle(source, warehouse, SyncOptions(mode=mode, clock=sim.clock.now))


def stored(warehouse: Warehouse, table: str) -> list[tuple]:
    """The live rows of a child table (its parent not deleted), sorted like the truth."""
    columns = CHILD_TABLES[table][1]
    parent, column = PARENT.get(table, ("bugs", "bug_id"))
    with duckdb.connect(str(warehouse.path), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(
            f"""SELECT {", ".join(f"c.{name.strip()}" for name in columns.split(","))}
                FROM {table} c JOIN {parent} p ON p.id = c.{column}
                WHERE p.deleted_at IS NULL ORDER BY 1, 2"""
        ).fetchall()


def truth(sim, table: str) -> list[tuple]:
    accessor = getattr(sim, CHILD_TABLES[table][0])
    return sorted((row for p in sim.truth_products() for row in accessor(p["id"])), key=lambda r: r[:2])


def reasons(warehouse: Warehouse) -> dict[int, str | None]:
    frame = warehouse.query("SELECT id, rejection_reason FROM bugs WHERE deleted_at IS NULL")
    return {int(i): (r if isinstance(r, str) else None) for i, r in zip(frame["id"], frame["rejection_reason"])}


def truth_reasons(sim) -> dict[int, str | None]:
    return {bug: reason for p in sim.truth_products() for bug, reason in sim.truth_rejection_reasons(p["id"]).items()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    sim = make_simulator("tiny", products=3, bugs_per_test=12, seed=SEED)
    warehouse = Warehouse(tmp_path_factory.mktemp("children") / "testio.duckdb")
    results = cycle(sim, warehouse, "full")
    return sim, warehouse, results


@pytest.mark.parametrize("table", sorted(CHILD_TABLES))
def test_every_child_table_holds_exactly_the_worlds_rows(world, table):
    sim, warehouse, _ = world
    expected = truth(sim, table)
    assert expected, f"the world has {table} rows to compare"
    assert stored(warehouse, table) == expected


def test_the_world_has_the_variety_worth_storing(world):
    """Apps (no browser), several browsers on one device, an OS version missing, open-ended
    OS ranges, and rejected bugs of every kind, so the comparisons above mean something."""
    sim, warehouse, _ = world
    devices = truth(sim, "bug_devices")
    assert any(r[7] is None for r in devices) and any(r[7] is not None for r in devices)
    assert any(r[4] is None for r in devices)
    assert any(r[1] > 0 for r in devices), "a bug with two device rows"
    platforms = truth(sim, "test_platforms")
    assert any(r[5] is None for r in platforms) and any(r[5] is not None for r in platforms)
    kinds = set(truth_reasons(sim).values())
    assert {"known_bug", "not_reproducible", "request_timeout", "other"} <= kinds and None in kinds


def test_rejection_reason_of_every_bug_is_the_worlds(world):
    sim, warehouse, results = world
    expected = truth_reasons(sim)
    assert reasons(warehouse) == expected
    # The customer's own words after the default comment do not hide the reason.
    with duckdb.connect(str(warehouse.path), read_only=True) as con:
        annotated = con.execute(
            """SELECT count(*) FROM bugs b JOIN bug_comments c ON c.bug_id = b.id
               WHERE b.rejection_reason NOT IN ('other') AND c.body LIKE 'Rejected - %' AND c.body LIKE '%' || chr(10) || '%'"""
        ).fetchone()[0]
        listed = con.execute("SELECT key, source FROM reject_reasons ORDER BY key").fetchall()
    assert annotated > 0
    api_keys = {r["key"] for r in sim.truth_reject_reasons()}
    assert listed == sorted((k, "api" if k in api_keys else "standard") for k, *_ in STANDARD_REJECT_REASONS)
    assert results["bugs"].counts["reject_reasons_from_api"] == len(api_keys)
    assert results["bugs"].counts["reject_reasons_read"] == 1


def test_without_the_reject_reasons_endpoint_the_standard_list_finds_the_same_reasons(tmp_path):
    sim = make_simulator("tiny", products=2, bugs_per_test=12, seed=SEED, serves_reject_reasons=False)
    assert sim.handle("GET", "bugs/reject_reasons", {}, {"authorization": f"Token {sim.config.token}"}).status == 404
    warehouse = Warehouse(tmp_path / "old.duckdb")
    results = cycle(sim, warehouse, "full")
    assert results["bugs"].counts["reject_reasons_from_api"] == 0
    assert set(warehouse.query("SELECT source FROM reject_reasons")["source"]) == {"standard"}
    expected = truth_reasons(sim)
    assert {"known_bug", "other"} <= set(expected.values())
    assert reasons(warehouse) == expected


def test_children_and_reasons_follow_their_parents_when_they_change(tmp_path):
    """Bugs reviewed after the first sync gain rejection comments and a reason; the next
    (incremental) sync replaces their rows, and nothing is left of the old ones."""
    sim = make_simulator("tiny", products=2, bugs_per_test=12, seed=SEED)
    warehouse = Warehouse(tmp_path / "testio.duckdb")
    cycle(sim, warehouse, "full")
    before = truth_reasons(sim)
    sim.clock.advance(timedelta(days=3).total_seconds())
    results = cycle(sim, warehouse, "incremental")
    after = truth_reasons(sim)
    changed = {b for b in after if before.get(b) != after[b]}
    assert changed, "the world rejected some bugs meanwhile"
    assert results["bugs"].write.extra["bug_comments_removed"] > 0
    # The reasons were stored by the full sync: an incremental cycle does not ask again.
    assert results["bugs"].counts["reject_reasons_read"] == 0
    assert results["bugs"].api["by_endpoint"].get("reject_reasons", 0) == 0
    assert reasons(warehouse) == after
    for table in CHILD_TABLES:
        assert stored(warehouse, table) == truth(sim, table), table


def test_no_credential_reaches_the_new_tables(world):
    sim, warehouse, _ = world
    secrets = {
        env[key]
        for p in sim.truth_products()
        for t in sim.truth_tests(p["id"])
        for env in [t["test_environment"]]
        for key in ("username", "password", "access")
    }
    with duckdb.connect(str(warehouse.path), read_only=True) as con:
        for table in (*CHILD_TABLES, "reject_reasons"):
            text = " ".join(str(row) for row in con.execute(f"SELECT * FROM {table}").fetchall())
            assert not [s for s in secrets if s in text], table


def test_migration_4_brings_an_existing_file_to_the_new_tables(tmp_path):
    """A version-2 file gets the tables, the column and the standard reason list; its bugs
    get their children and reasons from the next sync."""
    path = tmp_path / "v2.duckdb"
    with duckdb.connect(str(path)) as con:
        for stmt in bootstrap_sql():
            con.execute(stmt)
        for migration in MIGRATIONS:
            if migration.version <= 2:
                for stmt in migration.statements():
                    con.execute(stmt)
                con.execute("INSERT INTO schema_migrations VALUES (?, now(), ?)", [migration.version, migration.description])
    warehouse = Warehouse(path)
    assert warehouse.migrate() == LATEST_VERSION
    with duckdb.connect(str(path), read_only=True) as con:
        columns = {r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'bugs'").fetchall()}
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        seeded = con.execute("SELECT count(*) FROM reject_reasons WHERE source = 'standard'").fetchone()[0]
    assert "rejection_reason" in columns
    assert {t for t, spec in TABLES.items() if spec.since == 4} <= tables
    assert seeded == len(STANDARD_REJECT_REASONS)
    sim = make_simulator("tiny", products=2, bugs_per_test=12, seed=SEED)
    cycle(sim, warehouse, "full")
    assert reasons(warehouse) == truth_reasons(sim)
    assert stored(warehouse, "bug_devices") == truth(sim, "bug_devices")


def test_the_docs_document_the_standard_rejection_patterns():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "analytics.md").read_text(encoding="utf-8")
    for key, name, comment in STANDARD_REJECT_REASONS:
        assert f"| `{key}` | {name} | {comment} |" in text, key


def test_nested_parts_in_other_shapes_are_read_not_rejected():
    """A device model sent as a list, null browsers and objects, a numeric-string comment id,
    a report without content: read where they say something, empty where they do not."""
    from testio_pipeline.domain.records import Bug, ExploratoryTest

    bug = Bug.from_api(
        {
            "id": 1,
            "test": {"id": 2},
            "devices": [
                {"category": None, "devices": [{"name": "Pixel 7"}, {"name": "Pixel 8"}], "browsers": None,
                 "operating_system": {"id": 3, "name": "Android"}},
                "not a device",
            ],
            "comments": [{"id": "77", "body": "Rejected - known", "author": None, "created_at": "2026-11-01T10:00:00Z"}],
            "report": {"custom_report_configuration_id": 5, "content": None},
        }
    )
    assert bug.device_rows() == [
        {"category": None, "operating_system": "Android", "os_version": None, "device": "Pixel 7, Pixel 8",
         "vendor": None, "browser": None}
    ]
    [comment] = bug.comment_rows()
    assert comment == {"comment_id": 77, "author_name": None, "body": "Rejected - known",
                       "created_at": datetime(2026, 11, 1, 10, tzinfo=timezone.utc)}
    assert bug.report_rows() == []
    test = ExploratoryTest.from_api(
        {"id": 9, "status": "running", "requirements": [{"operating_system": {"name": "iOS"}, "browsers": [{"name": 5}]}]},
        product_id=1,
    )
    assert test.platform_rows() == [
        {"category": None, "operating_system": "iOS", "min_os_version": None, "max_os_version": None, "browsers": ["5"]}
    ]
    assert Bug.from_api({"id": 1, "test": {"id": 2}, "devices": None, "comments": None}).device_rows() == []
