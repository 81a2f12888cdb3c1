"""The sync benchmark (benchmarks/bench_sync.py) at a tiny scale, and its lower-bound arithmetic."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone

import duckdb
import pytest

from benchmarks import bench_sync, lower_bound, verify
from testio_pipeline.simulator import SimClock, Simulator

TINY = ["--scale", "tiny", "--latency-ms", "2", "--no-overhead"]


def test_the_benchmark_runs_four_verified_phases_and_prints_one_table(tmp_path):
    out = io.StringIO()
    report = tmp_path / "bench.json"
    code = bench_sync.main([*TINY, "--json", str(report)], out=out)
    text = out.getvalue()
    assert code == 0, text

    for line in (
        "(a) full from empty",
        "(b) incr. no change",
        "(c) incr. +24 h",
        "(d) nightly full sync",
        "requests (client, all attempts)",
        "  exploratory_tests",
        "  bugs: fetch / write (s)",
        "rows written: inserted / updated / unchanged",
        "peak RSS of the sync process (MiB)",
        "longest DuckDB write-unit hold (s)",
        "lower bound (s)",
        "wall / lower bound",
        "lower bound = L x [ 1 + max(ceil((R_f + R_t)/C), chain_t) + ceil((R_s + R_b)/C) ]",
        "Done-when of the speed issue:",
    ):
        assert line in text, line
    assert "VERIFICATION FAILED" not in text
    [verification] = [line for line in text.splitlines() if line.startswith("verification against the simulator")]
    assert verification.split()[-4:] == ["OK", "OK", "OK", "OK"]

    data = json.loads(report.read_text())
    assert data["server_kind"] == "subprocess"
    full, nochange, moved, nightly = data["phases"]
    for phase in data["phases"]:
        assert phase["verification"]["ok"], phase["verification"]["problems"]
        assert phase["verification"]["checked"]["bugs"] > 0
        # The server saw exactly the requests the client counted (no retries at this scale).
        assert phase["server"]["total"] == phase["requests_total"]
        # Nobody beats physics: at least the unavoidable requests, at least the latency bound.
        assert phase["requests_total"] >= phase["plan"]["requests_min"]
        assert phase["wall_s"] >= phase["bounds"]["request_dag_bound_s"] > 0
        assert phase["ratio"] >= 1
        assert phase["peak_rss_mib"] > 0
        assert phase["max_lock_held"]["seconds"] > 0
    assert full["entities"]["bugs"]["inserted"] == full["verification"]["checked"]["bugs"]
    assert nochange["entities"]["bugs"]["inserted"] == nochange["entities"]["tests"]["inserted"] == 0
    assert nochange["requests_total"] <= nochange["plan"]["issue3_budget"]
    assert moved["entities"]["tests"]["inserted"] > 0, "a day later the tiny world has new tests"
    # The nightly full sync reads everything again and finds it all already there.
    assert nightly["mode"] == "full" and nightly["requests_total"] >= full["requests_total"] * 0.9
    assert nightly["entities"]["bugs"]["inserted"] == 0
    assert nightly["entities"]["bugs"]["unchanged"] == nightly["verification"]["checked"]["bugs"]
    # The search index was rebuilt once more on the synced file and timed: every live bug is in it.
    assert data["search_index"]["documents"] == nightly["verification"]["checked"]["bugs"]
    assert data["search_index"]["build_s"] > 0 and "search index:" in text
    # The RSS done-when covers every step the sync process ran; the verification is named apart.
    assert data["search_index"]["peak_rss_mib"] > 0
    assert all(phase["verification"]["peak_rss_mib"] > 0 for phase in data["phases"])
    [rss] = [line for line in data["verdicts"] if "< 1024 MiB" in line]
    assert all(step in rss for step in ("phase (a)", "phase (b)", "phase (c)", "phase (d)", "index rebuild", "own verification"))
    [units] = [line for line in data["verdicts"] if "write-unit hold" in line]
    assert all(f"({key}) " in units for key in "abcd")
    assert f"peak RSS {max(p['peak_rss_mib'] for p in data['phases'] + [data['search_index']]):.0f} MiB" in rss


def test_a_difference_between_duckdb_and_the_simulator_is_reported(tmp_path):
    db = tmp_path / "bench.duckdb"
    out = io.StringIO()
    assert bench_sync.main([*TINY, "--phases", "a", "--server", "thread", "--db", str(db)], out=out) == 0
    assert "in-process thread" in out.getvalue()
    sim = Simulator(bench_sync.simulator_config(bench_sync.build_parser().parse_args(TINY))[1], SimClock(bench_sync.START))
    truth = verify.snapshot(sim, bench_sync.START)
    assert verify.verify(db, sim, truth).ok

    with duckdb.connect(str(db)) as con:
        bug_id = con.execute("SELECT min(id) FROM bugs").fetchone()[0]
        con.execute("UPDATE bugs SET status = 'made-up' WHERE id = ?", [bug_id])
        con.execute("UPDATE tests SET deleted_at = now() WHERE id = (SELECT max(id) FROM tests)")
    report = verify.verify(db, sim, truth)
    assert not report.ok
    assert any(p.startswith("bugs: 1 rows differ") and str(bug_id) in p for p in report.problems)
    assert any(p.startswith("tests: 1 missing from DuckDB") for p in report.problems)


def test_the_full_sync_bound_counts_pages_up_to_a_short_page_and_packs_bug_queries():
    # Three products: 0 tests, 50 tests (a multiple of 25: the end is an empty third page),
    # 60 tests with 3 sections.
    plan = lower_bound.full_plan([(1, 1, 0), (2, 1, 50), (3, 3, 60)], per_page=25, bug_batch=15)
    assert [p.pages for p in plan.products] == [1, 3, 3]
    assert plan.r_features == plan.r_stories == 5
    assert plan.r_bugs == 8  # ceil(110 / 15), packed across products
    assert plan.r_bugs_per_product == 0 + 4 + 4
    assert plan.requests == 1 + 5 + 5 + 7 + 8
    assert plan.chain_tests == 3
    # 10 in flight: products, then features + pages (12 -> 2 rounds, chain 3), then stories + bugs (13 -> 2).
    assert plan.rounds_asset_graph(10) == 1 + 3 + 2
    assert plan.rounds_sequential(10) == 1 + 1 + 1 + 3 + 1
    assert plan.rounds_request_dag(10) == 1 + max(3, 3 + 1, 1 + 1)
    assert plan.bounds(0.05, 10)["lower_bound_s"] == pytest.approx(0.3)


def test_the_incremental_bound_reads_to_the_first_known_test_and_rereads_the_rest():
    listed = list(range(100, 40, -1))  # 60 tests newest first; 100..96 are new
    known = {tid: "archived" for tid in range(41, 96)}
    known[60] = "running"  # position 40: page 2, beyond the first page
    known[94] = "locked"  # position 6: on the first page, no re-read needed
    plan = lower_bound.incremental_plan([(7, 1, listed, known)], per_page=25, bug_batch=15)
    [product] = plan.products
    assert product.pages == 1  # the first known test (95) is at position 5
    assert product.reread_calls == 1 and product.reread_pages == 1
    assert product.bug_tests == 5 + 2  # new tests + stored non-final ones
    assert plan.issue3_budget == 1 + 1 + 1 + 1 + 1 + 1


def test_the_truth_snapshot_lists_tests_in_api_order():
    sim = Simulator(bench_sync.simulator_config(bench_sync.build_parser().parse_args(TINY))[1], SimClock(bench_sync.START))
    truth = verify.snapshot(sim, datetime(2026, 11, 2, 12, tzinfo=timezone.utc))
    for product in truth.products.values():
        assert product.test_ids == [t["id"] for t in sim.truth_tests(product.id)]
        assert product.list_calls == (len(sim.world.product(product.id).sections) or 1)


def _list_all(sim, product_ids, **options):
    import asyncio

    from .conftest import client_for

    async def main():
        async with client_for(sim, **options) as client:
            listings = await asyncio.gather(*(client.list_tests(pid) for pid in product_ids))
            return listings, client.stats

    return asyncio.run(main())


def test_speculative_test_pages_only_use_idle_capacity():
    from .conftest import make_simulator

    # Many products paging at once keep the in-flight cap busy: no page is fetched past a
    # list's end except in the last rounds, when slots fall idle.
    sim = make_simulator("tiny", products=12, tests_per_product=60)
    pids = [p["id"] for p in sim.truth_products()]
    needed = sum(len(sim.truth_tests(pid)) // 25 + 1 for pid in pids)
    listings, stats = _list_all(sim, pids, max_concurrent=3)
    assert all(listing.complete for listing in listings)
    assert sum(len(listing.tests) for listing in listings) == sum(len(sim.truth_tests(pid)) for pid in pids)
    assert needed <= stats.by_endpoint["exploratory_tests"] <= needed + 3

    # One product alone: the idle slots are used to fetch pages ahead, up to page_prefetch.
    sim = make_simulator("tiny", products=1, tests_per_product=200, latency_ms=5)
    listings, stats = _list_all(sim, [sim.truth_products()[0]["id"]], max_concurrent=10)
    assert listings[0].complete
    assert sim.stats.snapshot()["peak_in_flight"] == 4


@pytest.mark.slow
def test_the_whole_dagster_cli_run_is_measured_verified_and_judged(tmp_path):
    out = io.StringIO()
    report = tmp_path / "bench.json"
    code = bench_sync.main(["--scale", "tiny", "--latency-ms", "2", "--phases", "ab", "--json", str(report)], out=out)
    assert code == 0, out.getvalue()
    data = json.loads(report.read_text())
    whole, trivial = data["cli"]["whole"], data["cli"]["trivial"]
    # One step for the five entities (their checks inside), one for the views, one for the quality report.
    assert whole["verification"]["ok"] and whole["steps"] == 3, whole
    assert whole["requests_total"] >= whole["plan"]["requests_min"] > 0
    assert trivial["steps"] == 1 and 0 < trivial["wall_s"]
    # Read from the event log: at least each asset's and each check's planned and stored event.
    assert whole["events"] >= 2 * (13 + 20) > trivial["events"] > 0 and whole["event_ms"] > 0
    [verdict] = [v for v in data["verdicts"] if "whole `dagster asset materialize --select '*'`" in v]
    assert verdict.startswith(("[MET]", "[NOT MET]"))
