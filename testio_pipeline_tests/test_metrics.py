"""The fact views and the 13 metrics over them against values computed in Python from the simulator.

One world is synced and its views built; every metric, overall and grouped by each
dimension its view has, comes from one query (``metric_sql``) and must equal what this
module computes on its own from the simulator's truth (the API objects and the world's own
rejection reasons), never from the warehouse. ``users`` is checked the same way, and the
metrics table of docs/analytics.md against the declarations.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from testio_pipeline.settings import Settings
from testio_pipeline.source import ApiSource
from testio_pipeline.sync import SyncOptions, run_cycle
from testio_pipeline.warehouse import Warehouse
from testio_pipeline.warehouse.views import create_views
from testio_pipeline.warehouse.views.metrics import METRICS, dimensions_of, metric_sql

from .conftest import FAST_RETRY, make_simulator

ANALYTICS_DOC = Path(__file__).resolve().parents[1] / "docs" / "analytics.md"
# The weights docs/analytics.md states for bug_severity_score, written out again on purpose.
WEIGHTS = {"critical": 5, "high": 3, "low": 1, "visual": 1, "content": 1, "custom": 1}


def _utc(iso: str | None) -> datetime | None:
    return None if iso is None else datetime.fromisoformat(iso).astimezone(timezone.utc)


def _periods(end: datetime | None) -> dict[str, date | None]:
    if end is None:
        return {"test_end_month": None, "test_end_week": None, "test_end_quarter": None}
    day = end.date()
    return {
        "test_end_month": day.replace(day=1),
        "test_end_week": day - timedelta(days=day.weekday()),
        "test_end_quarter": date(day.year, 3 * ((day.month - 1) // 3) + 1, 1),
    }


def truth_facts(sim) -> tuple[list[dict], list[dict]]:
    """(test rows, bug rows) as the fact views should hold them, from the simulator alone."""
    tests, bugs = [], []
    for p in sim.truth_products():
        titles = {f["id"]: f["title"] for f in sim.truth_features(p["id"])}
        reasons = sim.truth_rejection_reasons(p["id"])
        product_bugs = sim.truth_bugs(p["id"])
        per_test = defaultdict(int)
        for b in product_bugs:
            per_test[b["test"]["id"]] += 1
        by_test = {}
        for t in sim.truth_tests(p["id"]):
            row = {
                "product": p["name"],
                "customer": t["created_by"],
                "submitter": t["submitted_by"],
                "testing_type": t["testing_type"],
                "test_environment": t["test_environment"]["title"],
                "platforms": sorted({r["operating_system"]["name"] for r in t["requirements"]}),
                "feature_ids": sorted({f["feature_id"] for f in t["features"]}),
                "bugs": per_test[t["id"]],
                **_periods(_utc(t["end_at"])),
            }
            tests.append(row)
            by_test[t["id"]] = row
        for b in product_bugs:
            test = by_test[b["test"]["id"]]
            feature = b["feature"]
            bugs.append(
                {
                    **{k: test[k] for k in ("product", "customer", "testing_type", "test_environment", "platforms")},
                    **{k: test[k] for k in ("test_end_month", "test_end_week", "test_end_quarter")},
                    "feature": None if feature is None else titles.get(feature["id"], feature["title"]),
                    "tester": b["author"]["name"],
                    "severity": b["severity"],
                    "status": b["status"],
                    "auto_accepted": b["auto_accepted"],
                    "known": b["known"],
                    "rejection_reason": reasons[b["id"]],
                }
            )
    return tests, bugs


def _rate(rows: list[dict], hit, of=lambda r: True) -> float | None:
    base = [r for r in rows if of(r)]
    return round(sum(1 for r in base if hit(r)) / len(base), 4) if base else None


def _accepted(r):
    return r["status"] == "accepted"


def _by_person(r):
    return _accepted(r) and not r["auto_accepted"]


PYTHON = {
    "test_count": len,
    "bug_count": len,
    "bug_severity_score": lambda rows: sum(WEIGHTS.get(r["severity"], 0) for r in rows),
    "features_tested": lambda rows: len({f for r in rows for f in r["feature_ids"]}),
    "active_testers": lambda rows: len({r["tester"] for r in rows if r["tester"] is not None}),
    "bugs_per_test": lambda rows: round(sum(r["bugs"] for r in rows) / len(rows), 4),
    "tests_created": lambda rows: sum(r["customer"] is not None for r in rows),
    "tests_submitted": lambda rows: sum(r["submitter"] is not None for r in rows),
    "overall_acceptance_rate": lambda rows: _rate(rows, _accepted),
    "rejection_rate": lambda rows: _rate(rows, lambda r: r["status"] == "rejected"),
    "review_rate": lambda rows: _rate(rows, lambda r: r["status"] == "rejected" or _by_person(r)),
    "active_acceptance_rate": lambda rows: _rate(rows, _by_person),
    "auto_acceptance_rate": lambda rows: _rate(rows, lambda r: r["auto_accepted"], _accepted),
}


def expected(metric, rows: list[dict], dimension: str | None) -> dict:
    if metric.name == "features_tested":  # a test without features adds no row to count in
        rows = [r for r in rows if r["feature_ids"]]
    if dimension is None:
        return {None: PYTHON[metric.name](rows)}
    groups: dict = defaultdict(list)
    for r in rows:
        for value in r["platforms"] if dimension == "platform" else [r[dimension]]:
            groups[value].append(r)
    return {value: PYTHON[metric.name](members) for value, members in groups.items()}


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    sim = make_simulator("tiny", products=3, bugs_per_test=12, seed=2)
    warehouse = Warehouse(tmp_path_factory.mktemp("metrics") / "testio.duckdb")
    source = ApiSource.from_settings(Settings(), simulator=sim)
    source.retry = FAST_RETRY
    run_cycle(source, warehouse, SyncOptions(mode="full", clock=sim.clock.now))
    create_views(warehouse)
    con = duckdb.connect(str(warehouse.path), read_only=True)
    con.execute("SET TimeZone = 'America/Los_Angeles'")  # periods are UTC whatever the session says
    yield sim, con, truth_facts(sim)
    con.close()


# The lifecycle metrics need a history of several syncs: test_history.py checks them against the transition log.
CASES = [(m, d) for m in METRICS if m.view in ("bug_facts", "test_facts") for d in (None, *dimensions_of(m))]


@pytest.mark.parametrize("metric, dimension", CASES, ids=[f"{m.name}-{d or 'overall'}" for m, d in CASES])
def test_each_metric_by_each_dimension_equals_the_independent_value(synced, metric, dimension):
    _, con, (tests, bugs) = synced
    rows = con.execute(metric_sql(metric, dimension)).fetchall()
    got = {None: rows[0][0]} if dimension is None else dict(rows)
    assert len(got) == len(rows), "one row per group"
    want = expected(metric, tests if metric.view == "test_facts" else bugs, dimension)
    assert got == want
    assert len(want) > (0 if dimension is None else 1) or dimension in ("test_end_quarter", "known"), (
        "the world has several groups to compare"
    )


def test_users_has_one_row_per_person_and_role_with_what_they_did(synced):
    sim, con, _ = synced
    rows = con.execute("SELECT name, user_type, bugs_reported, tests_created, tests_submitted FROM users").fetchall()
    assert len({(n, t) for n, t, *_ in rows}) == len(rows)
    want: dict = defaultdict(lambda: [0, 0, 0])
    for p in sim.truth_products():
        for b in sim.truth_bugs(p["id"]):
            want[(b["author"]["name"], "tester")][0] += 1
        for t in sim.truth_tests(p["id"]):
            want[(t["created_by"], "customer")][1] += 1
            if t["submitted_by"] is not None:
                want[(t["submitted_by"], "customer")][2] += 1
    assert {(n, t): [b, c, s] for n, t, b, c, s in rows} == dict(want)


def test_documented_metrics_table_states_every_declared_formula():
    text = ANALYTICS_DOC.read_text(encoding="utf-8")
    section = text.split("### Metrics", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \|[^|]*\| `([^`]*)` over `\w+`", section, re.M)}
    assert set(rows) == {m.name for m in METRICS}
    for m in METRICS:
        assert rows[m.name] == m.expression, m.name
        assert metric_sql(m, m.example) in section, f"{m.name}: the documented example query is the declared one"


def test_the_documented_answers_run_and_say_what_the_world_says(synced):
    """Every query of the analyst answers in docs/analytics.md runs against the synced mirror and finds
    rows; the rejection answer and the critical-bug answer match the simulator's truth."""
    sim, con, (_, bugs) = synced
    section = ANALYTICS_DOC.read_text(encoding="utf-8").split("## What analysts ask, answered in SQL", 1)[1]
    section = section.split("### Metrics", 1)[0]
    queries = re.findall(r"```sql\n(.*?)```", section, re.S)
    assert len(queries) == 6
    results = {}
    for sql in queries:
        # "this quarter" as seen from the simulated world's present.
        rows = con.execute(sql.replace("current_date", "DATE '2026-11-02'")).fetchall()
        assert rows, sql
        results[sql] = rows
    [rejections] = [r for q, r in results.items() if "share_of_month_rejections" in q]
    want = defaultdict(int)
    for b in bugs:
        if b["status"] == "rejected":
            want[(b["test_end_month"], b["rejection_reason"])] += 1
    assert {(month, reason): n for month, reason, n, _ in rejections} == dict(want)
    [critical] = [r for q, r in results.items() if q.startswith("SELECT tester")]
    by_tester = defaultdict(int)
    for b in bugs:
        if b["severity"] == "critical":
            by_tester[b["tester"]] += 1
    assert [(t, n) for t, n, _ in critical] == sorted(by_tester.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    [search] = [r for q, r in results.items() if "f.bug_id" in q]
    found = {row[0] for row in search}
    served = {b["id"]: str(b).lower() for p in sim.truth_products() for b in sim.truth_bugs(p["id"])}
    assert found and all("checkout" in served[i] and "crash" in served[i] for i in found)
