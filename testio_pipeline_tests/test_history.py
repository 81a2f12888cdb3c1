"""bug_status_changes and test_status_changes against the simulator's own transition log.

A world is synced in full, then incrementally every few simulated hours for several days; the
history tables must hold exactly one first sighting per bug and test and, between consecutive
syncs, exactly the net change of each tracked field the log says happened in between (with
that window), on the DuckDB file and on DuckLake.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from testio_pipeline.settings import Settings
from testio_pipeline.simulator.world import BUG_TRACKED, TEST_TRACKED
from testio_pipeline.source import ApiSource
from testio_pipeline.sync import SyncOptions, run_cycle
from testio_pipeline.warehouse import Warehouse
from testio_pipeline.warehouse.views import create_views
from testio_pipeline.warehouse.views.metrics import METRICS, dimensions_of, metric_sql

from .conftest import FAST_RETRY, hiding_test, make_simulator

WORLD = {"products": 2, "tests_per_product": 40, "bugs_per_test": 8, "new_tests_per_day": 6.0, "seed": 23}
STEP = timedelta(hours=9)
SYNCS = 12  # 1 full + 11 incremental: about four simulated days
TRACKED = {"tests": ("test_status_changes", "test_id", TEST_TRACKED), "bugs": ("bug_status_changes", "bug_id", BUG_TRACKED)}


def run_syncs(location: str, data_path: str | None = None, **warehouse_options):
    """(simulator, warehouse, the sync times in order)."""
    sim = make_simulator("tiny", **WORLD)
    warehouse = Warehouse(location, lake_data_path=data_path, **warehouse_options)
    source = ApiSource.from_settings(Settings(), simulator=sim)
    source.retry = FAST_RETRY
    times = []
    for k in range(SYNCS):
        if k:
            sim.clock.advance(STEP.total_seconds())
        times.append(sim.clock.now())
        results = run_cycle(source, warehouse, SyncOptions(mode="full" if k == 0 else "incremental", clock=sim.clock.now, run_id=f"run-{k}"))
        assert all(not r.product_errors for r in results.values()), results
    return sim, warehouse, times


def states(sim, times: list[datetime]) -> dict[str, dict[int, list[tuple | None]]]:
    """entity -> id -> its tracked fields at each sync time (None while not visible), folded
    from the transition log alone."""
    log = sim.truth_transitions(times[-1])
    instants = [t.timestamp() for t in times]
    out: dict[str, dict[int, list]] = {"tests": {}, "bugs": {}}
    by_entity = defaultdict(list)
    for t in log:
        by_entity[(t.entity, t.id)].append(t)
    for (entity, entity_id), changes in by_entity.items():
        fields = TRACKED[entity][2]
        current: dict[str, object] = {}
        row: list[tuple | None] = []
        i = 0
        for at in instants:
            while i < len(changes) and changes[i].at <= at:
                current[changes[i].field] = changes[i].new
                i += 1
            row.append(tuple(current[f] for f in fields) if current else None)
        out[entity][entity_id] = row
    return out


def expected_rows(sim, times: list[datetime]) -> dict[str, set[tuple]]:
    """The history rows a mirror syncing at ``times`` must hold: (id, observed_at, change,
    previous_observed_at, old values..., new values...)."""
    out: dict[str, set[tuple]] = {"tests": set(), "bugs": set()}
    seen = states(sim, times)
    bug_test = {d.id: spec.id for p in sim.world.products for spec in sim.world.tests(p, times[-1].timestamp())
                for d in (sim.world.bug_drafts(spec) if spec.n_bugs else ())}
    for entity, rows in seen.items():
        width = len(TRACKED[entity][2])
        for entity_id, row in rows.items():
            for k, value in enumerate(row):
                if value is None:
                    continue
                before = row[k - 1] if k else None
                if before is None:
                    # A new test: the last look at its product's list. A new bug: the last look at its test's bugs.
                    parent = seen["tests"][bug_test[entity_id]] if entity == "bugs" else None
                    looked = k > 0 and (parent is None or parent[k - 1] is not None)
                    out[entity].add((entity_id, times[k], "first_seen", times[k - 1] if looked else None, *(None,) * width, *value))
                elif before != value:
                    out[entity].add((entity_id, times[k], "changed", times[k - 1], *before, *value))
    return out


def stored_rows(con: duckdb.DuckDBPyConnection) -> dict[str, set[tuple]]:
    out = {}
    for entity, (table, key, fields) in TRACKED.items():
        cols = ", ".join([key, "observed_at", "change", "previous_observed_at", *(f"old_{f}" for f in fields), *(f"new_{f}" for f in fields)])
        rows = con.execute(f"SELECT {cols} FROM {table}").fetchall()
        out[entity] = {
            (r[0], r[1].astimezone(timezone.utc), r[2], r[3] and r[3].astimezone(timezone.utc), *r[4:]) for r in rows
        }
        assert len(out[entity]) == len(rows), f"{table}: a row stored twice"
    return out


def assert_history_is_the_log(sim, con, times):
    got, want = stored_rows(con), expected_rows(sim, times)
    for entity in TRACKED:
        assert got[entity] == want[entity], (entity, sorted(got[entity] - want[entity])[:5], sorted(want[entity] - got[entity])[:5])
        firsts = [r[0] for r in got[entity] if r[2] == "first_seen"]
        assert len(firsts) == len(set(firsts)), "one first sighting per row"
    for entity, (table, key, _fields) in TRACKED.items():
        numbers = con.execute(
            f"""SELECT count(*) FILTER (WHERE change_number != rank), count(*) FILTER (WHERE (change_number = 1) != (change = 'first_seen'))
                FROM (SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY observed_at) AS rank FROM {table})"""
        ).fetchall()[0]
        assert numbers == (0, 0), f"{table}: change_number counts the rows in observed order from the first sighting"
    statuses = {(e, r[4 + len(TRACKED[e][2])]) for e in TRACKED for r in got[e] if r[2] == "changed"}
    changed = {e: sum(1 for r in got[e] if r[2] == "changed") for e in TRACKED}
    assert changed["tests"] > 10 and changed["bugs"] > 10, changed
    assert ("bugs", "forwarded") in statuses, "some bug was reopened while the mirror watched"


@pytest.fixture(scope="module")
def file_history(tmp_path_factory):
    sim, warehouse, times = run_syncs(str(tmp_path_factory.mktemp("history") / "t.duckdb"))
    create_views(warehouse)
    con = duckdb.connect(str(warehouse.path), read_only=True)
    yield sim, warehouse, con, times
    con.close()


def test_the_history_holds_one_first_sighting_each_and_exactly_the_net_changes_of_the_log(file_history):
    sim, _, con, times = file_history
    assert_history_is_the_log(sim, con, times)
    runs = con.execute("SELECT DISTINCT run_id FROM bug_status_changes ORDER BY run_id").fetchall()
    assert {r[0] for r in runs} <= {f"run-{k}" for k in range(SYNCS)} and len(runs) > 3


def test_a_write_in_units_records_the_same_history(tmp_path):
    # A unit per product (each product stages more bugs than this): every unit writes its own
    # products' history in its own transaction, and none records another unit's rows again.
    sim, warehouse, times = run_syncs(str(tmp_path / "t.duckdb"), write_unit_rows=100)
    units = warehouse.query("SELECT count(DISTINCT product_id) AS n FROM bugs").n[0]
    assert units >= 2
    with duckdb.connect(str(warehouse.path), read_only=True) as con:
        assert_history_is_the_log(sim, con, times)


def test_a_sync_that_sees_nothing_new_writes_no_history(tmp_path):
    sim, warehouse, times = run_syncs(str(tmp_path / "t.duckdb"))
    count = "SELECT (SELECT count(*) FROM bug_status_changes) + (SELECT count(*) FROM test_status_changes)"
    before = warehouse.query(count).iloc[0, 0]
    source = ApiSource.from_settings(Settings(), simulator=sim)
    source.retry = FAST_RETRY
    run_cycle(source, warehouse, SyncOptions(mode="incremental", clock=lambda: sim.clock.now() + timedelta(seconds=1)))
    assert warehouse.query(count).iloc[0, 0] == before


@pytest.mark.slow
@pytest.mark.xdist_group("lake")
def test_the_history_on_ducklake_is_the_log_too(lake):
    attach, data = lake
    sim, warehouse, times = run_syncs(attach, data)
    con = duckdb.connect()
    from testio_pipeline.warehouse import extensions

    con.execute(extensions.setup_line())
    con.execute(f"ATTACH '{attach}' AS lake (READ_ONLY)")
    con.execute("USE lake")
    try:
        assert_history_is_the_log(sim, con, times)
    finally:
        con.close()


def test_an_existing_mirror_starts_its_history_at_the_first_sync_after_the_upgrade_with_first_sightings(tmp_path):
    sim, warehouse, times = run_syncs(str(tmp_path / "t.duckdb"))
    # The warehouse as schema version 4 left it: no history tables.
    con = duckdb.connect(str(warehouse.path))
    con.execute("DROP TABLE bug_status_changes; DROP TABLE test_status_changes; DELETE FROM schema_migrations WHERE version = 5")
    stored = {e: {r[0] for r in con.execute(f"SELECT id FROM {e} WHERE deleted_at IS NULL").fetchall()} for e in TRACKED}
    con.close()

    upgraded = Warehouse(str(warehouse.path))
    sim.clock.advance(STEP.total_seconds())
    source = ApiSource.from_settings(Settings(), simulator=sim)
    source.retry = FAST_RETRY
    run_cycle(source, upgraded, SyncOptions(mode="full", clock=sim.clock.now, run_id="after-upgrade"))
    for entity, (table, key, _fields) in TRACKED.items():
        rows = upgraded.query(f"SELECT {key} AS id, change, previous_observed_at FROM {table}")
        assert set(rows.change) == {"first_seen"}, "no change is invented for what happened before the upgrade"
        assert rows.id.is_unique
        old = rows[rows.id.isin(stored[entity])]
        assert len(old) == len(stored[entity]) and old.previous_observed_at.isna().all(), (
            "a row stored before the upgrade is a first sighting with no known earlier look"
        )


# --- the lifecycle metrics against the log ----------------------------------------------------

FINAL = ("archived", "cancelled")
BUCKETS = ((24, "under 1 day"), (72, "1-3 days"), (168, "3-7 days"), (672, "1-4 weeks"))


def _hours(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds() / 3600, 2)


def _api_time(iso: str | None) -> datetime | None:
    return None if iso is None else datetime.fromisoformat(iso).astimezone(timezone.utc)


def lifecycle_truth(sim, times: list[datetime]) -> tuple[list[dict], list[dict]]:
    """(bug rows, test rows) as bug_lifecycle and test_lifecycle must hold them, from the log,
    the sync times and the API's own times (reported_at, end_at, exported_at) alone."""
    seen = states(sim, times)
    now = times[-1]
    bugs, tests = [], []
    bug_test: dict[int, int] = {}
    for p in sim.truth_products(now):
        titles = {f["id"]: f["title"] for f in sim.truth_features(p["id"], now)}
        for t in sim.truth_tests(p["id"], now):
            row = seen["tests"][t["id"]]
            status = row[-1][0]
            tests.append({
                "product": p["name"], "testing_type": t["testing_type"],
                "locked_over_7_days": status == "locked" and _hours(_api_time(t["end_at"]), now) > 168,
            })
        for b in sim.truth_bugs(p["id"], now):
            bug_test[b["id"]] = b["test"]["id"]
            row = seen["bugs"][b["id"]]
            test_row = seen["tests"][b["test"]["id"]]
            reported = _api_time(b["reported_at"])
            first = next(k for k, v in enumerate(row) if v is not None)
            hours = None
            for k in range(first, len(row)):
                before = row[k - 1] if k > first else None
                if row[k][0] in ("accepted", "rejected") and (before is None or before[0] == "forwarded"):
                    if before is not None:  # seen open, then decided: the time is known to the window
                        exported = _api_time(b["exported_at"])
                        decided_by = min(times[k], exported) if exported else times[k]
                        hours = _hours(reported, decided_by)
                    break
            # Its test's bugs are fetched by every sync that finds the test new, not final or changed.
            fetched = [
                k for k in range(first, len(times))
                if k == 0 or test_row[k - 1] is None or test_row[k - 1][0] not in FINAL or test_row[k] != test_row[k - 1]
            ]
            open_hours = _hours(reported, times[fetched[-1]]) if b["status"] == "forwarded" else None
            bucket = None if open_hours is None else next((name for limit, name in BUCKETS if open_hours < limit), "over 4 weeks")
            feature = b["feature"]
            bugs.append({
                "product": p["name"], "severity": b["severity"], "status": b["status"],
                "feature": None if feature is None else titles.get(feature["id"], feature["title"]),
                "reported_week": (reported - timedelta(days=reported.weekday())).date(),
                "hours_to_decision": hours, "open_age_bucket": bucket,
            })
    return bugs, tests


def _quantile(values: list[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (quantile_cont)."""
    if not values:
        return None
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return round(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo), 2)


def _within(limit: float):
    def share(rows):
        known = [r["hours_to_decision"] for r in rows if r["hours_to_decision"] is not None]
        return round(sum(h <= limit for h in known) / len(known), 4) if known else None
    return share


LIFECYCLE_PYTHON = {
    "median_hours_to_decision": lambda rows: _quantile([r["hours_to_decision"] for r in rows if r["hours_to_decision"] is not None], 0.5),
    "p90_hours_to_decision": lambda rows: _quantile([r["hours_to_decision"] for r in rows if r["hours_to_decision"] is not None], 0.9),
    "decided_within_24h_share": _within(24),
    "decided_within_72h_share": _within(72),
    "open_bugs": lambda rows: sum(r["status"] == "forwarded" for r in rows),
    "tests_locked_over_7_days": lambda rows: sum(r["locked_over_7_days"] for r in rows),
}
LIFECYCLE_CASES = [(m, d) for m in METRICS if m.view in ("bug_lifecycle", "test_lifecycle") for d in (None, *dimensions_of(m))]


@pytest.mark.parametrize("metric, dimension", LIFECYCLE_CASES, ids=[f"{m.name}-{d or 'overall'}" for m, d in LIFECYCLE_CASES])
def test_each_lifecycle_metric_equals_the_independent_value_from_the_log(file_history, lifecycle, metric, dimension):
    assert set(LIFECYCLE_PYTHON) == {m.name for m, _ in LIFECYCLE_CASES}
    bugs, tests = lifecycle
    rows = file_history[2].execute(metric_sql(metric, dimension)).fetchall()
    got = {None: rows[0][0]} if dimension is None else dict(rows)
    source = bugs if metric.view == "bug_lifecycle" else tests
    groups: dict = defaultdict(list)
    for r in source:
        groups[None if dimension is None else r[dimension]].append(r)
    want = {k: LIFECYCLE_PYTHON[metric.name](v) for k, v in groups.items()}
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == (value if value is None else pytest.approx(value, abs=0.011)), (metric.name, dimension, key)
    if dimension is None:
        assert value not in (None, 0) or metric.name == "tests_locked_over_7_days", "the world gives the metric something to count"


@pytest.fixture(scope="module")
def lifecycle(file_history):
    sim, warehouse, _, times = file_history
    return lifecycle_truth(sim, times)


# --- the quality report's sections on waiting -------------------------------------------------


def test_the_reports_waiting_sections_agree_with_the_log_and_render_in_chromium(file_history, lifecycle):
    from playwright.sync_api import sync_playwright

    from testio_pipeline import report

    from .test_report import DRAWN_JS
    from .test_ui import CHROMIUM, CHROMIUM_ARGS, SHOTS

    sim, warehouse, _, times = file_history
    built = report.build(warehouse, days=30, as_of=times[-1] + timedelta(seconds=1), file_name="waiting_report.html")
    bugs, _ = lifecycle
    known = [r for r in bugs if r["hours_to_decision"] is not None]
    by_severity = built.account.sections["time_to_decision_by_severity"]
    want = {s: _quantile([r["hours_to_decision"] for r in known if r["severity"] == s], 0.5) for s in {r["severity"] for r in known}}
    got = dict(zip(by_severity.column("severity"), by_severity.column("median_hours")))
    assert got.keys() == want.keys() and all(got[s] == pytest.approx(want[s], abs=0.051) for s in want)
    assert sum(built.account.sections["time_to_decision"].column("decided_bugs")) == len(known)
    oldest = built.account.sections["oldest_open_bugs"]
    assert 0 < len(oldest) <= 10 and oldest.column("days_open") == sorted(oldest.column("days_open"), reverse=True)
    assert len(oldest) == min(10, sum(r["status"] == "forwarded" for r in bugs))

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(built.html_path.as_uri())
            drawn = page.evaluate(DRAWN_JS)
            page.locator('[data-section="time_to_decision"]').first.scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "quality_report_waiting.png"))
        finally:
            browser.close()
    charts = [c for c in drawn["charts"] if c["name"] in ("time_to_decision", "time_to_decision_by_severity")]
    assert len(charts) == 2, "the account's two waiting charts are drawn"
    for chart in charts:
        assert chart["rects"] == chart["rows"] and chart["drawn"] == chart["marks"] and chart["outside"] == [], chart


def test_a_test_deleted_upstream_and_back_is_a_deleted_then_a_restored_row(tmp_path):

    sim = make_simulator("tiny", **WORLD)
    warehouse = Warehouse(tmp_path / "t.duckdb")
    source = ApiSource.from_settings(Settings(), simulator=sim)
    source.retry = FAST_RETRY
    product_id = sim.truth_products()[0]["id"]
    victim = sim.truth_tests(product_id)[-1]["id"]

    hide = hiding_test(sim, victim)

    def full(run_id: str) -> None:
        sim.clock.advance(60)
        run_cycle(source, warehouse, SyncOptions(mode="full", clock=sim.clock.now, run_id=run_id))

    full("first")
    sim.add_fault(hide)
    full("hidden")
    sim.clear_faults()
    full("back")
    rows = warehouse.records(
        "SELECT change_number, change, old_status, new_status, run_id, previous_observed_at < observed_at AS ordered "
        f"FROM test_status_changes WHERE test_id = {victim} ORDER BY change_number"
    )
    status = sim.truth_tests(product_id)[-1]["status"]
    assert [list(r.values()) for r in rows] == [
        [1, "first_seen", None, status, "first", None],
        [2, "deleted", status, None, "hidden", True],
        [3, "restored", status, status, "back", True],
    ]


def test_the_simulators_log_is_deterministic_and_moves_bugs_the_way_testio_does():
    """Per seed, the same log; people decide critical bugs faster than low ones; auto-acceptance
    comes after a timeout of days; some rejected bugs are reopened and decided again."""
    until = make_simulator("tiny", **WORLD).clock.now() + timedelta(days=10)
    log = make_simulator("tiny", **WORLD).truth_transitions(until)
    assert log == make_simulator("tiny", **WORLD).truth_transitions(until)
    assert log != make_simulator("tiny", **{**WORLD, "seed": 24}).truth_transitions(until)
    reported = {t.id: t.at for t in log if t.entity == "bugs" and t.field == "status" and t.old is None}
    severity = {t.id: t.new for t in log if t.entity == "bugs" and t.field == "severity"}
    delays: dict[str, list[float]] = defaultdict(list)
    auto = []
    for t in log:
        if t.entity == "bugs" and t.field == "status" and t.old == "forwarded" and t.new in ("accepted", "rejected"):
            delays[severity[t.id]].append((t.at - reported[t.id]) / 3600)
        if t.entity == "bugs" and t.field == "auto_accepted" and t.new is True:
            auto.append((t.at - reported[t.id]) / 3600)
    median = {s: sorted(v)[len(v) // 2] for s, v in delays.items()}
    assert median["critical"] < median["high"] < median["low"], median
    # Auto-acceptance waits for the 72-120 h timeout, unless the test is archived first.
    assert auto and sum(a >= 72 for a in auto) > len(auto) / 2, sorted(auto)
    reopened = [t for t in log if t.entity == "bugs" and t.field == "status" and t.old == "rejected" and t.new == "forwarded"]
    assert reopened and any(
        t.entity == "bugs" and t.id == r.id and t.old == "forwarded" and t.at > r.at for r in reopened for t in log
    ), "a reopened bug is decided again"
    tests = {(t.old, t.new) for t in log if t.entity == "tests" and t.field == "status"}
    assert {("running", "locked"), ("locked", "archived"), ("initialized", "customer_finalized")} <= tests
    assert any(new == "cancelled" for _, new in tests)
