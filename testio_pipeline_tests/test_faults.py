"""Fault injection: every way the API misbehaves, through the simulator, in-process and over HTTP.

Each scenario runs real sync cycles (the code the assets run) into a real DuckDB file and
then compares the file with the simulator's truth: what could be read is there, and what
could not is listed in problematic_records or rejected_records -- never lost silently.
Retries are bounded (FAST_RETRY: 4 attempts, millisecond waits) so nothing can hang.
"""

from __future__ import annotations

import asyncio
import socket
import time
from contextlib import contextmanager
from dataclasses import replace

import pytest
import stamina

from testio_pipeline.settings import Settings
from testio_pipeline.simulator import faults
from testio_pipeline.source import ApiSource
from testio_pipeline.sync import SyncOptions, run_cycle
from testio_pipeline.testio import (
    MalformedResponseError,
    RetryPolicy,
    TestioApiError,
    TestioAuthError,
    TestioConnectionError,
    TestioTimeoutError,
)
from testio_pipeline.testio.http import ApiRequester, MinInterval, _RetryableStatus, parse_retry_after
from testio_pipeline.warehouse import Warehouse

from . import conftest
from .conftest import FAST_RETRY, client_for
from .test_assets import ENTITY_TABLES

TRANSPORTS = ["in-process", "http"]

# The hostile API also sends a share of its records in the other shapes TestIO documents or
# sends (steps as a string, the older bug without status, ids as numeric strings, nulls...):
# none of them may be rejected or lost, whatever else goes wrong.
SHAPE_VARIANTS = 0.3


def make_simulator(preset: str = "tiny", **overrides):
    overrides.setdefault("shape_variants", SHAPE_VARIANTS)
    return conftest.make_simulator(preset, **overrides)


# --- harness -------------------------------------------------------------------------------


@contextmanager
def api(sim, transport: str, retry: RetryPolicy = FAST_RETRY, **client_options):
    """An ApiSource for ``sim``: its in-process transport, or its HTTP server on 127.0.0.1."""
    if transport == "in-process":
        source = ApiSource.from_settings(Settings(), simulator=sim)
        source.retry = retry
        source.client_options = client_options
        yield source
        return
    with sim.serve() as server:
        source = ApiSource.from_settings(Settings(token=sim.config.token, base_url=server.base_url))
        source.retry = retry
        source.client_options = client_options
        yield source


def cycle(source, warehouse, mode="full", run_id=None):
    sim = source.simulator
    clock = sim.clock.now if sim is not None else None
    options = SyncOptions(mode=mode, run_id=run_id, **({"clock": clock} if clock else {}))
    return run_cycle(source, warehouse, options)


def expected_ids(sim, *, lost_tests=(), lost_bug_tests=(), gone_products=()) -> dict[str, set[int]]:
    """The truth, minus what the scenario makes unreadable (and everything hanging off it)."""
    gone = set(gone_products)
    pids = [p["id"] for p in sim.truth_products() if p["id"] not in gone]
    lost = set(lost_tests)
    no_bugs = lost | set(lost_bug_tests)
    return {
        "products": set(pids),
        "features": {f["id"] for pid in pids for f in sim.truth_features(pid)},
        "user_stories": {s["id"] for pid in pids for s in sim.truth_user_stories(pid)},
        "tests": {t["id"] for pid in pids for t in sim.truth_tests(pid)} - lost,
        "bugs": {b["id"] for pid in pids for b in sim.truth_bugs(pid) if b["test"]["id"] not in no_bugs},
    }


def assert_mirror(sim, warehouse, **lost):
    expected = expected_ids(sim, **lost)
    for table in ENTITY_TABLES:
        assert warehouse.ids(table) == expected[table], table


def open_problems(warehouse, entity="tests"):
    return warehouse.query(
        "SELECT * FROM problematic_records WHERE resolved_at IS NULL AND entity = ? ORDER BY product_id, range_start",
        [entity],
    )


def snapshot(warehouse) -> dict:
    return {t: warehouse.query(f"SELECT * FROM {t} ORDER BY ALL") for t in ENTITY_TABLES}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(coro):
    return asyncio.run(coro)


# --- retries: the mechanics ----------------------------------------------------------------


def test_retry_after_parses_seconds_zero_and_http_dates():
    now = 1_700_000_000.0
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("  ") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(faults.http_date_in(30, now=now), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(faults.http_date_in(-30, now=now), now=now) == 0.0  # a date in the past


def test_backoff_honours_retry_after_with_a_floor_and_a_cap_and_gives_up_on_the_rest():
    requester = ApiRequester("http://x", "t", retry=RetryPolicy(retry_after_floor=0.25, retry_after_cap=60))
    backoff = requester._backoff
    assert backoff(_RetryableStatus(429, 3.0, "")) == 3.0
    assert backoff(_RetryableStatus(429, 0.0, "")) == 0.25, "Retry-After: 0 must not spin"
    assert backoff(_RetryableStatus(503, 3600.0, "")) == 60
    assert backoff(_RetryableStatus(429, None, "")) is True  # exponential schedule with jitter
    assert backoff(_RetryableStatus(524, None, ""), frozenset({524})) is False
    assert backoff(TestioAuthError("no")) is False
    assert backoff(MalformedResponseError("no")) is False


def test_a_retry_after_is_really_waited_for():
    """The scheduled waits (seen through stamina's retry hook) follow the server's Retry-After."""
    sim = make_simulator("tiny")
    sim.add_fault(faults.rate_limited(times=1, retry_after="1", endpoint="products"))
    sim.add_fault(faults.rate_limited(times=2, retry_after="0", endpoint="products"))
    waits: list[float] = []
    stamina.instrumentation.set_on_retry_hooks([lambda details: waits.append(details.wait_for)])
    policy = replace(FAST_RETRY, retry_after_floor=0.05)
    try:
        started = time.monotonic()

        async def go():
            async with client_for(sim, retry=policy) as client:
                return await client.list_products(), client.stats

        parsed, stats = run(go())
        elapsed = time.monotonic() - started
    finally:
        stamina.instrumentation.set_on_retry_hooks(None)
    assert [p.id for p in parsed.records] == [p["id"] for p in sim.truth_products()]
    assert waits == pytest.approx([1.0, 0.05, 0.05]), "Retry-After: 1, then 0 raised to the floor"
    assert elapsed >= 1.0
    assert stats.retries_by_reason == {"429": 3}


@pytest.mark.parametrize("retry_after", ["2", None, "0", "http-date"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rate_limits_are_retried_until_everything_is_mirrored(tmp_path, transport, retry_after):
    sim = make_simulator("tiny")
    header = faults.http_date_in(2) if retry_after == "http-date" else retry_after
    limited = faults.rate_limited(times=3, retry_after=header)
    sim.add_fault(limited)
    warehouse = Warehouse(tmp_path / "t.duckdb")
    # The cap keeps the suite fast; that the wait really follows Retry-After is tested above.
    with api(sim, transport, retry=replace(FAST_RETRY, retry_after_cap=0.01)) as source:
        results = cycle(source, warehouse)
    assert limited.budget.used == 3
    assert sum(r.api["retries_by_reason"].get("429", 0) for r in results.values()) == 3
    assert_mirror(sim, warehouse)


def test_a_server_error_burst_shorter_than_the_retry_budget_costs_nothing(tmp_path):
    sim = make_simulator("tiny")
    for endpoint in ("products", "features", "section_features", "user_stories", "exploratory_tests", "bugs"):
        sim.add_fault(faults.server_errors(times=FAST_RETRY.attempts - 1, endpoint=endpoint, status=503))
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, "in-process") as source:
        results = cycle(source, warehouse)
    assert all(not r.product_errors for r in results.values())
    assert sum(r.retries for r in results.values()) >= 6 * (FAST_RETRY.attempts - 1)
    assert_mirror(sim, warehouse)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_longer_burst_fails_one_product_only_and_the_next_cycle_heals_it(tmp_path, transport):
    sim = make_simulator("tiny")
    broken, healthy = [p["id"] for p in sim.truth_products()]
    sim.add_fault(faults.server_errors(times=None, endpoint={"features", "section_features"}, product_id=broken))
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, transport) as source:
        results = cycle(source, warehouse)
        assert list(results["features"].product_errors) == [broken]
        assert "failed after 4 attempts" in results["features"].product_errors[broken]
        features = warehouse.ids("features")
        assert {f["id"] for f in sim.truth_features(healthy)} <= features
        assert not {f["id"] for f in sim.truth_features(broken)} & features
        # Everything else of the broken product was still synced.
        assert {t["id"] for t in sim.truth_tests(broken)} <= warehouse.ids("tests")
        sim.clear_faults()
        cycle(source, warehouse, "incremental")
    assert_mirror(sim, warehouse)


def test_the_client_side_rate_limit_spaces_request_starts():
    now = [0.0]
    slept: list[float] = []

    async def fake_sleep(seconds):
        slept.append(seconds)

    limiter = MinInterval(4.0, clock=lambda: now[0], sleep=fake_sleep)

    async def five():
        for _ in range(5):
            await limiter.wait()

    run(five())
    assert slept == pytest.approx([0.25, 0.5, 0.75, 1.0]), "each start reserves the next 1/4 s slot"
    now[0] = 10.0  # after a quiet spell there is no debt to pay off
    slept.clear()
    run(five())
    assert slept == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_max_requests_per_second_holds_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("TESTIO_MAX_REQUESTS_PER_SECOND", "50")
    sim = make_simulator("tiny", products=1, tests_per_product=3, bugs_per_test=1, sectioned_fraction=0.0)
    source = ApiSource.from_settings(Settings.from_env(), simulator=sim)
    assert source.settings.max_requests_per_second == 50
    source.retry = FAST_RETRY
    started = time.monotonic()
    results = cycle(source, Warehouse(tmp_path / "t.duckdb"))
    elapsed = time.monotonic() - started
    requests = sum(r.api_requests for r in results.values())
    # Each step opens its own client (and limiter), so the floor is per step.
    floor = sum(max(0, r.api_requests - 1) for r in results.values()) / 50
    assert requests >= 5 and elapsed >= floor * 0.95


# --- poison pages --------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_poison_position_is_recorded_with_its_neighbours_and_the_rest_syncs(tmp_path, transport):
    sim = make_simulator("tiny", tests_per_product=60)
    pid, other = [p["id"] for p in sim.truth_products()]
    truth = [t["id"] for t in sim.truth_tests(pid)]
    bad = {30: truth[30], 57: truth[57], 58: truth[58]}  # one alone, two side by side
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, transport) as source:
        cycle(source, warehouse)  # a clean mirror first: nothing may be marked deleted later
        sim.add_fault(faults.poison_offsets(sim, pid, bad))
        results = cycle(source, warehouse)
    problems = open_problems(warehouse)
    assert [(r.product_id, r.range_start, r.range_end) for r in problems.itertuples()] == [
        (pid, 30, 30), (pid, 57, 58)
    ]
    assert [list(n) for n in problems.neighbour_ids] == [[truth[29], truth[31]], [truth[56], truth[59]]]
    assert all("page=" in e and "per_page=1" in e and "HTTP 500" in e for e in problems.error)
    assert set(problems.run_id) == {None}
    # The unreadable tests were stored by the clean cycle and are not marked deleted...
    assert set(bad.values()) <= warehouse.ids("tests")
    assert results["tests"].write.marked_deleted == 0
    assert pid in results["tests"].product_errors and other not in results["tests"].product_errors
    meta = results["tests"].metadata()
    assert meta["problematic_records"] == 2 and len(meta["problems"]) == 2
    # ...and everything else is exactly the truth.
    assert_mirror(sim, warehouse)


def test_a_poison_position_in_a_fresh_mirror_loses_only_that_test_and_a_later_cycle_heals_it(tmp_path):
    sim = make_simulator("tiny", tests_per_product=60)
    pid = sim.truth_products()[0]["id"]
    victim = sim.truth_tests(pid)[40]["id"]
    log = faults.RequestLog()
    sim.add_fault(log)
    sim.add_fault(faults.poison_tests(sim, [victim]))
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, "in-process") as source:
        first = cycle(source, warehouse)
        assert_mirror(sim, warehouse, lost_tests=[victim])
        [problem] = open_problems(warehouse).itertuples()
        assert (problem.range_start, problem.range_end) == (40, 40)
        # Windows shrank 25 -> 10 -> 5 -> 2 -> 1 around the failing offset.
        sizes = {r.params["per_page"] for r in log.of("exploratory_tests")}
        assert {"25", "10", "5", "2", "1"} <= sizes
        assert first["tests"].api["retries"] > 0

        # Incremental cycles would stop at page 1, but a product with an open problem is
        # listed in full, so the problem is re-checked (and stays open while it persists).
        sim.clock.advance(3600)
        log.requests.clear()
        cycle(source, warehouse, "incremental")
        assert any(r.params.get("page") == "2" for r in log.of("exploratory_tests"))
        [again] = open_problems(warehouse).itertuples()
        assert again.first_seen_at == problem.first_seen_at and again.last_seen_at > problem.last_seen_at

        sim.clear_faults()
        sim.clock.advance(3600)
        healed = cycle(source, warehouse, "incremental")
    assert open_problems(warehouse).empty
    resolved = warehouse.query("SELECT resolved_at FROM problematic_records")
    assert resolved.resolved_at.notna().all()
    assert healed["tests"].counts["problems_resolved"] == 1
    assert_mirror(sim, warehouse)


def test_a_known_test_that_cannot_be_re_read_keeps_its_row_and_the_rest_syncs(tmp_path):
    sim = make_simulator("tiny", tests_per_product=60)
    pid = sim.truth_products()[0]["id"]
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, "in-process", per_page=5) as source:
        cycle(source, warehouse)
        # A test that can still change, below page 1: incremental cycles re-read it alone.
        tests = sim.truth_tests(pid)
        victim = next(t for t in tests[5:] if t["status"] not in ("archived", "cancelled"))
        sim.add_fault(faults.poison_tests(sim, [victim["id"]]))
        sim.clock.advance(3600)
        results = cycle(source, warehouse, "incremental")
    assert "could not be re-read" in results["tests"].product_errors[pid]
    assert "HTTP 500" in results["tests"].product_errors[pid]
    assert victim["id"] in warehouse.ids("tests")
    others = expected_ids(sim)["tests"] - {victim["id"]}
    assert others <= warehouse.ids("tests")


def test_a_product_whose_whole_list_fails_is_one_product_error_not_a_flood_of_problems(tmp_path):
    sim = make_simulator("tiny")
    pid = sim.truth_products()[0]["id"]
    sim.add_fault(faults.server_errors(times=None, endpoint="exploratory_tests", product_id=pid))
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, "in-process") as source:
        results = cycle(source, warehouse)
    assert pid in results["tests"].product_errors
    assert open_problems(warehouse).empty
    # The first pages with their retries, then the three 10-windows of page 1 all fail
    # (2 attempts each) and the recovery gives up: no descent to single positions.
    assert results["tests"].api["by_endpoint"]["exploratory_tests"] <= 4 * 4 + 3 * 2 + 4
    assert_mirror(sim, warehouse, lost_tests=[t["id"] for t in sim.truth_tests(pid)])


# --- heavy bug queries ---------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_heavy_bug_batches_are_split_until_they_pass(tmp_path, transport):
    sim = make_simulator("tiny", tests_per_product=30)
    heavy = faults.heavy_bug_queries(max_ids=4)
    sim.add_fault(heavy)
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, transport) as source:
        results = cycle(source, warehouse)
    assert results["bugs"].counts["bug_batches_split"] > 0
    assert results["bugs"].api["by_status"].get("524", 0) > 0
    assert results["bugs"].api["retries_by_reason"].get("524", 0) == 0, "a 524 batch is split, not retried"
    assert not results["bugs"].product_errors
    assert_mirror(sim, warehouse)


def test_a_single_test_whose_bugs_always_fail_is_a_problem_and_is_retried_next_cycle(tmp_path):
    sim = make_simulator("tiny")
    pid = sim.truth_products()[0]["id"]
    with_bugs = {b["test"]["id"] for b in sim.truth_bugs(pid)}
    finals = [t["id"] for t in sim.truth_tests(pid) if t["status"] in ("archived", "cancelled") and t["id"] in with_bugs]
    victim = finals[0]  # a final test: an incremental cycle would not ask for its bugs again
    sim.add_fault(faults.broken_bug_tests([victim]))
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, "in-process") as source:
        results = cycle(source, warehouse)
        assert_mirror(sim, warehouse, lost_bug_tests=[victim])
        [problem] = open_problems(warehouse, "bugs").itertuples()
        assert (problem.product_id, problem.range_start) == (pid, victim)
        assert f"bugs of test {victim}" in problem.error and "524" in problem.error
        assert pid in results["bugs"].product_errors
        synced = warehouse.query("SELECT bugs_synced_at FROM tests WHERE id = ?", [victim]).bugs_synced_at
        assert synced.isna().all()

        sim.clear_faults()
        sim.clock.advance(60)
        cycle(source, warehouse, "incremental")
    assert open_problems(warehouse, "bugs").empty
    assert_mirror(sim, warehouse)


# --- timeouts and the network --------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_slow_answers_beyond_the_timeout_are_retried(tmp_path, transport):
    sim = make_simulator("tiny")
    slow = faults.slow(sim, 2.0, times=2, endpoint="exploratory_tests")
    sim.add_fault(slow)
    warehouse = Warehouse(tmp_path / "t.duckdb")
    started = time.monotonic()
    with api(sim, transport, timeout=0.2) as source:
        results = cycle(source, warehouse)
    assert slow.budget.used == 2
    assert results["tests"].api["retries_by_reason"] == {"timeout": 2}
    assert time.monotonic() - started < 10
    assert_mirror(sim, warehouse)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_bug_batches_that_time_out_are_split_not_retried(tmp_path, transport):
    sim = make_simulator("tiny", tests_per_product=20)
    heavy = faults.slow(sim, 2.0, times=None, endpoint="bugs", only=lambda r: len(faults._bug_test_ids(r)) > 5)
    sim.add_fault(heavy)
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, transport, timeout=0.2) as source:
        results = cycle(source, warehouse)
    assert heavy.budget.used > 0
    assert results["bugs"].counts["bug_batches_split"] == heavy.budget.used
    assert results["bugs"].api["retries_by_reason"].get("timeout", 0) == 0
    assert_mirror(sim, warehouse)


@pytest.mark.parametrize("kind,transport", [("refuse", "in-process"), ("close", "in-process"), ("close", "http")])
def test_dropped_connections_are_retried(tmp_path, kind, transport):
    sim = make_simulator("tiny")
    dropped = faults.disconnects(times=3, kind=kind)
    sim.add_fault(dropped)
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, transport) as source:
        results = cycle(source, warehouse)
    assert dropped.budget.used == 3
    assert sum(r.api["retries_by_reason"].get("connection", 0) for r in results.values()) == 3
    assert_mirror(sim, warehouse)


def test_an_unreachable_api_fails_the_run_clearly_and_leaves_the_mirror_as_it_was(tmp_path):
    sim = make_simulator("tiny")
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, "http") as source:
        cycle(source, warehouse)
    before = snapshot(warehouse)
    url = f"http://127.0.0.1:{free_port()}/customer/v2"  # nothing listens: connection refused
    source = ApiSource.from_settings(Settings(token=sim.config.token, base_url=url))
    source.retry = FAST_RETRY
    with pytest.raises(TestioConnectionError, match="cannot reach the TestIO API") as info:
        cycle(source, warehouse)
    assert sim.config.token not in str(info.value)
    after = snapshot(warehouse)
    assert all(after[t].equals(before[t]) for t in ENTITY_TABLES)


def test_a_refused_token_fails_at_once_naming_the_setting_and_keeps_earlier_data(tmp_path):
    sim = make_simulator("tiny")
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, "in-process") as source:
        cycle(source, warehouse)
        before = snapshot(warehouse)
        log = faults.RequestLog()
        sim.add_fault(log)
        sim.add_fault(faults.unauthorized(endpoint="bugs"))
        sim.clock.advance(86_400)
        with pytest.raises(TestioAuthError, match="TESTIO_CUSTOMER_API_TOKEN"):
            cycle(source, warehouse)
    asked = [r.params["filter_test_cycle_ids"] for r in log.of("bugs")]
    assert asked and len(asked) == len(set(asked)), "a refused token is not retried"
    assert snapshot(warehouse)["bugs"].equals(before["bugs"])
    # The steps before bugs completed with the new day's data.
    assert warehouse.ids("tests") == expected_ids(sim)["tests"]


# --- deleted products ----------------------------------------------------------------------


def test_a_product_deleted_upstream_is_marked_deleted_by_a_full_sync(tmp_path):
    sim = make_simulator("tiny")
    gone = sim.truth_products()[0]["id"]
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, "in-process") as source:
        cycle(source, warehouse)
        sim.add_fault(faults.deleted_product(sim, gone))
        results = cycle(source, warehouse)
    assert results["products"].write.marked_deleted == 1
    assert warehouse.ids("products") == expected_ids(sim, gone_products=[gone])["products"]
    assert gone in warehouse.ids("products", include_deleted=True)
    # Its data is kept as it was last seen (the product row says it is gone).
    assert {t["id"] for t in sim.truth_tests(gone)} <= warehouse.ids("tests")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_product_that_vanishes_mid_run_is_a_product_error_and_the_rest_syncs(tmp_path, transport):
    sim = make_simulator("tiny")
    gone, other = [p["id"] for p in sim.truth_products()]
    sim.add_fault(faults.deleted_product(sim, gone, listed=True))
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, transport) as source:
        results = cycle(source, warehouse)
    for entity in ("features", "user_stories", "tests"):
        assert "404" in results[entity].product_errors[gone], entity
        assert other not in results[entity].product_errors
    expected = expected_ids(sim, gone_products=[gone])
    for table in ("features", "user_stories", "tests", "bugs"):
        assert warehouse.ids(table) == expected[table], table
    assert warehouse.ids("products") == {gone, other}


# --- bad bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_malformed_records_are_rejected_with_reason_and_unknown_enums_are_kept(tmp_path, transport):
    sim = make_simulator("tiny")
    pid = sim.truth_products()[0]["id"]
    tests = sim.truth_tests(pid)
    bugs = sim.truth_bugs(pid)
    features = sim.truth_features(sim.truth_products()[1]["id"])
    no_id, wrong_type, bad_time, unknown_status = (t["id"] for t in tests[:4])
    unknown_severity, bug_without_test, bug_bad_steps = (b["id"] for b in bugs[:3])
    bad_feature = features[0]["id"]
    assert tests[0]["test_environment"].get("password"), "the rejected raw carries credentials to strip"
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, transport) as source:
        cycle(source, warehouse)  # clean first: rejected records must not delete stored rows
        sim.add_fault(faults.corrupt_records(sim, "exploratory_tests", {
            no_id: faults.drop_field("id"),
            wrong_type: faults.set_field("enable_low", {"yes": "please"}),
            bad_time: faults.set_field("end_at", "next tuesday"),
            unknown_status: faults.set_field("status", "paused_by_robot"),
        }))
        sim.add_fault(faults.corrupt_records(sim, "bugs", {
            unknown_severity: [faults.set_field("severity", "blocker"), faults.set_field("status", "reopened")],
            bug_without_test: faults.drop_field("test"),
            bug_bad_steps: faults.set_field("steps", {"1": "click"}),
        }))
        sim.add_fault(faults.corrupt_records(sim, {"features", "section_features"}, {bad_feature: faults.set_field("title", ["a", "list"])}))
        results = cycle(source, warehouse, run_id="run-with-rejects")

    rejected = warehouse.query("SELECT * FROM rejected_records ORDER BY entity, record_id")
    by_entity = {e: set(g.record_id.fillna("(none)")) for e, g in rejected.groupby("entity")}
    assert by_entity == {
        "tests": {"(none)", str(wrong_type), str(bad_time)},
        "bugs": {str(bug_without_test), str(bug_bad_steps)},
        "features": {str(bad_feature)},
    }
    assert set(rejected.run_id) == {"run-with-rejects"}
    reasons = dict(zip(rejected.record_id, rejected.reason))
    assert "end_at" in reasons[str(bad_time)] and "enable_low" in reasons[str(wrong_type)]
    assert "test.id" in reasons[str(bug_without_test)]
    for raw in rejected.raw:
        assert '"password"' not in raw and '"username"' not in raw, "credentials stripped from rejects"
    # Unknown enum values are stored as they came, not rejected.
    status = warehouse.query("SELECT status FROM tests WHERE id = ?", [unknown_status]).status[0]
    assert status == "paused_by_robot"
    bug = warehouse.query("SELECT severity, status FROM bugs WHERE id = ?", [unknown_severity]).iloc[0]
    assert (bug.severity, bug.status) == ("blocker", "reopened")
    # Nothing was lost: the rejected records' stored rows stay live (no deletion concluded),
    # and every other record is there.
    assert results["tests"].write.marked_deleted == results["bugs"].write.marked_deleted == 0
    assert results["features"].write.marked_deleted == 0
    assert "rejected_records" in results["tests"].product_errors[pid]
    assert_mirror(sim, warehouse)
    assert results["tests"].metadata()["records_rejected"] == 3


@pytest.mark.parametrize("fault", ["wrong_envelope", "non_json"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_bad_body_for_one_product_fails_that_product_only(tmp_path, transport, fault):
    sim = make_simulator("tiny")
    bad, good = [p["id"] for p in sim.truth_products()]
    if fault == "wrong_envelope":
        sim.add_fault(faults.wrong_envelope(sim, "exploratory_tests", product_id=bad))
    else:
        sim.add_fault(faults.non_json("exploratory_tests", product_id=bad))
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, transport) as source:
        results = cycle(source, warehouse)
    error = results["tests"].product_errors[bad]
    assert "MalformedResponseError" in error
    assert ("envelope" in error) if fault == "wrong_envelope" else ("not JSON" in error)
    assert list(results["tests"].product_errors) == [bad]
    assert results["tests"].api["retries"] == 0, "a body that is not the contract is not retried"
    assert_mirror(sim, warehouse, lost_tests=[t["id"] for t in sim.truth_tests(bad)])


def test_a_bad_product_list_fails_the_run_with_a_clear_error(tmp_path):
    sim = make_simulator("tiny")
    sim.add_fault(faults.wrong_envelope(sim, "products"))
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, "in-process") as source, pytest.raises(MalformedResponseError, match="'products'"):
        cycle(source, warehouse)
    assert warehouse.table_counts()["products"] == 0


# --- list quirks ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_server_that_ignores_paging_is_read_once_and_completely(tmp_path, transport):
    sim = make_simulator("tiny", tests_per_product=70, ignore_paging=True)
    log = faults.RequestLog()
    sim.add_fault(log)
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, transport) as source:
        first = cycle(source, warehouse)
        results = cycle(source, warehouse)
    # One response with everything is a complete list: deletions are checked, none found.
    assert set(first["tests"].products_complete) == {p["id"] for p in sim.truth_products()}
    assert results["tests"].write.marked_deleted == 0
    pages = log.of("exploratory_tests")
    # Prefetch asks for a few pages at once; the first overlong page ends paging.
    assert len(pages) <= 2 * 2 * 4
    assert_mirror(sim, warehouse)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_lists_longer_than_the_150_truncation_are_read_completely(tmp_path, transport):
    sim = make_simulator("tiny", tests_per_product=180)
    assert all(len(sim.truth_tests(p["id"])) > 150 for p in sim.truth_products())
    log = faults.RequestLog()
    sim.add_fault(log)
    warehouse = Warehouse(tmp_path / "t.duckdb")
    with api(sim, transport) as source:
        cycle(source, warehouse)
    assert all("page" in r.params for r in log.of("exploratory_tests")), "page is always sent"
    assert_mirror(sim, warehouse)


# --- errors carry no token -----------------------------------------------------------------


def test_errors_from_leaky_error_pages_never_carry_the_token(tmp_path):
    sim = make_simulator("tiny", tests_per_product=30)
    pid = sim.truth_products()[0]["id"]
    sim.add_fault(faults.echo_authorization(endpoint={"features", "section_features"}, product_id=pid))

    async def go():
        async with client_for(sim) as client:
            with pytest.raises(TestioApiError) as info:
                await client._api.get_json(f"products/{pid}/features", endpoint="features")
            return info.value

    error = run(go())
    assert "HTTP 500" in str(error) and sim.config.token not in str(error)
    assert "***" in str(error)


def test_timeouts_raise_a_timeout_error_after_the_budget():
    sim = make_simulator("tiny")
    sim.add_fault(faults.slow(sim, 1.0, times=None, endpoint="products"))

    async def go():
        async with client_for(sim, timeout=0.05) as client:
            await client.list_products()

    with pytest.raises(TestioTimeoutError, match=f"timed out after {FAST_RETRY.attempts} attempts"):
        run(go())
