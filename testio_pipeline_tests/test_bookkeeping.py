"""rejected_records and problematic_records do not grow with repeats: one row per malformed
record (entity, id, content) and one per failing spot, each with its history; migration 3
converts a version-2 file's rows to that shape."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from testio_pipeline.domain.records import ProblemRange, RejectedRecord
from testio_pipeline.simulator import faults
from testio_pipeline.warehouse import Warehouse
from testio_pipeline.warehouse.schema_versions import LATEST_VERSION, MIGRATIONS, bootstrap_sql

from .conftest import make_simulator
from .test_faults import api, cycle

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
T = [T0 + timedelta(hours=h) for h in range(6)]


@pytest.fixture
def wh(tmp_path) -> Warehouse:
    return Warehouse(tmp_path / "book.duckdb")


def rows(wh: Warehouse, table: str, order: str) -> list[dict]:
    frame = wh.query(f"SELECT * FROM {table} ORDER BY {order}").astype(object)
    return frame.where(frame.notna(), None).to_dict("records")  # NULL reads as None


# --- rejected_records ------------------------------------------------------------------------


def test_a_record_that_stays_malformed_is_one_row_counted_per_run(wh):
    bad = RejectedRecord(entity="bugs", product_id=1, record_id="5", reason="no test.id", raw={"id": 5})
    no_id = RejectedRecord(entity="tests", reason="not an object", raw="oops")
    for run, ts in [("r1", T[0]), ("r2", T[1]), ("r3", T[2])]:
        # The same record twice in one run (two batches) counts once for the run.
        assert wh.write_rejected([bad, bad, no_id], run, ts) == 2
    found = rows(wh, "rejected_records", "entity")
    assert [(r["entity"], r["record_id"], r["times_seen"], r["run_id"]) for r in found] == [
        ("bugs", "5", 3, "r3"), ("tests", None, 3, "r3")
    ]
    assert all((r["first_seen_at"], r["last_seen_at"]) == (T[0], T[2]) for r in found)

    # Changed content is a new row; the reason of the latest sighting is kept.
    changed = bad.model_copy(update={"raw": {"id": 5, "title": "now with a title"}, "reason": "still no test.id"})
    wh.write_rejected([changed], "r4", T[3])
    found = rows(wh, "rejected_records", "id")
    assert len(found) == 3 and found[-1]["times_seen"] == 1 and found[-1]["first_seen_at"] == T[3]
    # This run's rejects are found by run id (the no_rejected_records_this_run check).
    assert list(wh.query("SELECT record_id FROM rejected_records WHERE run_id = 'r4'").record_id) == ["5"]


def test_full_syncs_of_a_lasting_malformed_record_keep_one_row(tmp_path):
    sim = make_simulator("tiny")
    bug_id = sim.truth_bugs(sim.truth_products()[0]["id"])[0]["id"]
    sim.add_fault(faults.corrupt_records(sim, "bugs", {bug_id: faults.drop_field("test")}))
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, "in-process") as source:
        for n in range(3):
            sim.clock.advance(3600)
            cycle(source, warehouse, run_id=f"run-{n}")
    found = rows(warehouse, "rejected_records", "id")
    assert [(r["record_id"], r["times_seen"], r["run_id"]) for r in found] == [(str(bug_id), 3, "run-2")]
    assert found[0]["first_seen_at"] < found[0]["last_seen_at"]


# --- problematic_records ---------------------------------------------------------------------


def test_a_poison_record_moving_down_its_list_keeps_one_row_and_its_history(wh):
    def poison_at(offset: int) -> ProblemRange:
        return ProblemRange.in_list(1, offset, offset, f"HTTP 500 at {offset}", before=70, after=90)

    wh.write_problematic([poison_at(30)], "r0", T[0], entity="tests", checked_product_ids={1})
    # New tests arrived at the top: the same record is two positions further down.
    stats = wh.write_problematic([poison_at(32)], "r1", T[1], entity="tests", checked_product_ids={1})
    assert (stats.inserted, stats.updated, stats.marked_deleted) == (0, 1, 0)
    wh.write_problematic([], "r2", T[2], entity="tests", checked_product_ids={1})  # read fine once
    wh.write_problematic([poison_at(35)], "r3", T[3], entity="tests", checked_product_ids={1})
    [row] = rows(wh, "problematic_records", "spot")
    assert row["spot"] == "before test 90"
    assert (row["range_start"], row["error"], list(row["neighbour_ids"])) == (35, "HTTP 500 at 35", [70, 90])
    assert (row["first_seen_at"], row["last_seen_at"], row["resolved_at"]) == (T[0], T[3], None)
    assert (row["times_seen"], row["times_reopened"], row["run_id"]) == (3, 1, "r3")


def test_spots_at_the_list_end_and_of_bug_lists(wh):
    end = ProblemRange.in_list(1, 58, 59, "HTTP 500", before=44, after=None)
    assert end.neighbour_ids == (44,) and end.spot == "at the end of the list"
    bugs = ProblemRange.bug_list(1, 1000028, "bugs of test 1000028: HTTP 524")
    assert (bugs.range_start, bugs.spot) == (1000028, "test 1000028")
    wh.write_problematic([end], "r0", T[0], entity="tests", checked_product_ids={1})
    wh.write_problematic([bugs], "r0", T[0], entity="bugs", checked_product_ids={1})
    # A problem on the bug lists leaves the test list's open.
    wh.write_problematic([], "r1", T[1], entity="bugs", checked_product_ids={1})
    assert [(r["entity"], r["spot"], r["resolved_at"]) for r in rows(wh, "problematic_records", "entity")] == [
        ("bugs", "test 1000028", T[1]), ("tests", "at the end of the list", None)
    ]


def test_new_tests_above_a_poison_record_do_not_churn_its_row(tmp_path):
    """Real cycles: the list grows at the top between runs, the poison test's offset moves,
    and its problematic_records row stays the one row, open, first seen in the first run."""
    sim = make_simulator("tiny", tests_per_product=60)
    pid = sim.truth_products()[0]["id"]
    victim = sim.truth_tests(pid)[40]["id"]
    sim.add_fault(faults.poison_tests(sim, [victim]))
    warehouse = Warehouse(tmp_path / "t.duckdb")
    offsets = []
    with api(sim, "in-process") as source:
        for _ in range(3):
            cycle(source, warehouse, "full")
            offsets.append([t["id"] for t in sim.truth_tests(pid)].index(victim))
            sim.clock.advance(3 * 86_400)  # the simulated customer creates new tests
    assert offsets[0] < offsets[-1], "new tests arrived above the poison record"
    [row] = rows(warehouse, "problematic_records", "spot")
    assert row["resolved_at"] is None
    assert warehouse.query("SELECT count(*) AS n FROM problematic_records").n[0] == 1
    assert row["range_start"] == offsets[-1] and row["times_seen"] == 3 and row["times_reopened"] == 0


# --- migration 3 -----------------------------------------------------------------------------

# The two tables as version 2 declared them.
V2_TABLES = [
    "DROP TABLE rejected_records",
    "DROP TABLE problematic_records",
    """CREATE TABLE rejected_records (id BIGINT DEFAULT nextval('rejected_records_id_seq') PRIMARY KEY,
        run_id VARCHAR, entity VARCHAR, product_id BIGINT, record_id VARCHAR, reason VARCHAR, raw JSON,
        seen_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE problematic_records (product_id BIGINT, entity VARCHAR, range_start BIGINT,
        range_end BIGINT, neighbour_ids BIGINT[], error VARCHAR, first_seen_at TIMESTAMPTZ NOT NULL,
        last_seen_at TIMESTAMPTZ NOT NULL, run_id VARCHAR, resolved_at TIMESTAMPTZ,
        PRIMARY KEY (product_id, entity, range_start))""",
]


def test_migration_3_merges_repeated_rejects_and_churned_problems(tmp_path):
    path = tmp_path / "v2.duckdb"
    con = duckdb.connect(str(path))
    for stmt in [*bootstrap_sql(), *MIGRATIONS[0].statements(), *V2_TABLES]:
        con.execute(stmt)
    con.execute("INSERT INTO schema_migrations VALUES (1, now(), 'initial'), (2, now(), 'tests')")
    con.executemany(
        "INSERT INTO rejected_records (run_id, entity, product_id, record_id, reason, raw, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            ("r1", "bugs", 1, "5", "no test.id", '{"id":5}', T[0]),
            ("r2", "bugs", 1, "5", "no test.id", '{"id":5}', T[1]),
            ("r3", "bugs", 1, "5", "no test.id (v2)", '{"id":5}', T[2]),
            ("r3", "bugs", 1, "5", "other content", '{"id":5,"x":1}', T[2]),
            ("r1", "tests", 1, None, "not an object", '"oops"', T[0]),
            ("r2", "tests", 1, None, "not an object", '"oops"', T[1]),
        ],
    )
    con.executemany(
        "INSERT INTO problematic_records VALUES (1, ?, ?, ?, ?, 'HTTP 500', ?, ?, ?, ?)",
        [
            # One poison test that churned: resolved at 30, reopened at 31, open at 33.
            ("tests", 30, 30, [70, 90], T[0], T[0], "r0", T[1]),
            ("tests", 31, 31, [70, 90], T[1], T[2], "r2", T[3]),
            ("tests", 33, 33, [70, 90], T[3], T[4], "r4", None),
            ("tests", 0, 0, [12], T[0], T[4], "r4", None),  # at the top of the list
            ("tests", 99, 99, [98], T[0], T[4], "r4", None),  # at its end
            ("bugs", 1000028, 1000028, None, T[2], T[4], "r4", None),
        ],
    )
    con.close()

    wh = Warehouse(path)
    assert wh.migrate() == LATEST_VERSION
    rejected = rows(wh, "rejected_records", "entity, record_id, times_seen")
    assert [(r["entity"], r["record_id"], r["times_seen"], r["run_id"], r["reason"]) for r in rejected] == [
        ("bugs", "5", 1, "r3", "other content"),
        ("bugs", "5", 3, "r3", "no test.id (v2)"),
        ("tests", None, 2, "r2", "not an object"),
    ]
    assert [(r["first_seen_at"], r["last_seen_at"]) for r in rejected] == [(T[2], T[2]), (T[0], T[2]), (T[0], T[1])]
    problems = {r["spot"]: r for r in rows(wh, "problematic_records", "spot")}
    assert set(problems) == {"before test 90", "before test 12", "at the end of the list", "test 1000028"}
    churned = problems["before test 90"]
    assert (churned["range_start"], churned["first_seen_at"], churned["last_seen_at"]) == (33, T[0], T[4])
    assert (churned["resolved_at"], churned["times_seen"], churned["times_reopened"]) == (None, 3, 2)

    # The converted rows take the next sightings as any row would.
    again = RejectedRecord(entity="bugs", product_id=1, record_id="5", reason="no test.id", raw={"id": 5})
    wh.write_rejected([again], "r5", T[5])
    assert wh.query("SELECT times_seen FROM rejected_records WHERE reason = 'no test.id'").times_seen[0] == 4
    moved = ProblemRange.in_list(1, 36, 36, "HTTP 500", before=70, after=90)
    wh.write_problematic([moved], "r5", T[5], entity="tests")
    assert wh.query("SELECT count(*) AS n FROM problematic_records WHERE entity = 'tests'").n[0] == 3
