"""Incremental and full refresh cycles against the simulator, with its clock moved by hand."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from testio_pipeline.component.resources import CustomerApiResource
from testio_pipeline.simulator import SimResponse
from testio_pipeline.simulator.faults import poison_offsets
from testio_pipeline.source import ApiSource
from testio_pipeline.settings import Settings
from testio_pipeline.sync import SyncOptions, run_cycle
from testio_pipeline.domain.vocabulary import FINAL_TEST_STATUSES
from testio_pipeline.warehouse import Warehouse

from .conftest import FAST_RETRY, hiding_test, make_simulator
from .test_assets import ENTITY_TABLES, materialize, truth_ids


def cycle(sim, warehouse, mode):
    """One refresh cycle through the same code the assets run; returns the results by entity."""
    source = ApiSource.from_settings(Settings(), simulator=sim)
    source.retry = FAST_RETRY
    return run_cycle(source, warehouse, SyncOptions(mode=mode, clock=sim.clock.now))


def requests_of(results) -> dict[str, int]:
    total: dict[str, int] = {}
    for result in results.values():
        for endpoint, n in result.api["by_endpoint"].items():
            total[endpoint] = total.get(endpoint, 0) + n
    return total


def assert_mirror_matches(sim, warehouse):
    truth = truth_ids(sim)
    for table in ENTITY_TABLES:
        assert warehouse.ids(table) == truth[table], table
    served = {t["id"]: t["status"] for p in sim.truth_products() for t in sim.truth_tests(p["id"])}
    stored = dict(warehouse.query("SELECT id, status FROM tests WHERE deleted_at IS NULL").itertuples(index=False))
    assert stored == served
    served_bugs = {b["id"]: b["status"] for p in sim.truth_products() for b in sim.truth_bugs(p["id"])}
    stored_bugs = dict(warehouse.query("SELECT id, status FROM bugs WHERE deleted_at IS NULL").itertuples(index=False))
    assert stored_bugs == served_bugs


@pytest.fixture
def world(tmp_path):
    sim = make_simulator("tiny", tests_per_product=60)
    warehouse = Warehouse(tmp_path / "t.duckdb")
    cycle(sim, warehouse, "full")
    assert_mirror_matches(sim, warehouse)
    return sim, warehouse


def test_an_unchanged_world_costs_no_more_than_the_stated_bound(world):
    sim, warehouse = world
    products = sim.truth_products()
    sectioned = [p for p in products if p["sections"]]
    feature_calls = sum(len(p["sections"]) for p in sectioned) + (len(products) - len(sectioned))
    story_calls = feature_calls
    non_final = [
        t["id"] for p in products for t in sim.truth_tests(p["id"]) if t["status"] not in FINAL_TEST_STATUSES
    ]
    bound = 1 + feature_calls + story_calls + len(products) + 2 * len(non_final)

    results = cycle(sim, warehouse, "incremental")
    requests = requests_of(results)
    total = sum(requests.values())
    print(f"incremental no-change cycle: {total} requests {requests}; bound {bound}")
    assert total <= bound
    assert requests["exploratory_tests"] == len(products), "one test page per product"
    full = sum(requests_of(cycle(sim, warehouse, "full")).values())
    assert total < full
    for result in results.values():
        assert result.write.inserted == 0 and result.write.updated == 0, result.entity


def test_incremental_catches_new_tests_status_moves_and_new_bugs(world):
    sim, warehouse = world
    before = {t["id"]: t["status"] for p in sim.truth_products() for t in sim.truth_tests(p["id"])}
    sim.clock.advance(timedelta(days=3).total_seconds())
    after = {t["id"]: t["status"] for p in sim.truth_products() for t in sim.truth_tests(p["id"])}
    moved = {tid for tid in before if tid in after and before[tid] != after[tid]}
    new = set(after) - set(before)
    assert moved and new, "three days of simulated time change some tests and add new ones"

    results = cycle(sim, warehouse, "incremental")
    assert_mirror_matches(sim, warehouse)
    assert results["tests"].counts["tests_discovered"] == len(new)
    assert results["tests"].counts["tests_updated"] >= len(moved - new)


def test_features_removed_upstream_are_marked_deleted_and_renames_rewritten(tmp_path):
    # Enough features that some are renamed or removed within three weeks (about 7% are).
    sim = make_simulator("tiny", features_per_product=60)
    warehouse = Warehouse(tmp_path / "t.duckdb")
    cycle(sim, warehouse, "full")
    before = {f["id"]: f["title"] for p in sim.truth_products() for f in sim.truth_features(p["id"])}
    sim.clock.advance(timedelta(days=22).total_seconds())
    after = {f["id"]: f["title"] for p in sim.truth_products() for f in sim.truth_features(p["id"])}
    removed = set(before) - set(after)
    renamed = {fid for fid in after if fid in before and before[fid] != after[fid]}
    assert removed and renamed, "the simulator renames and removes features now and then"
    results = cycle(sim, warehouse, "incremental")
    assert warehouse.ids("features") == set(after)
    assert results["features"].write.marked_deleted == len(removed)
    deleted = warehouse.query("SELECT id FROM features WHERE deleted_at IS NOT NULL")
    assert set(deleted.id) == removed
    titles = dict(warehouse.query("SELECT id, title FROM features WHERE deleted_at IS NULL").itertuples(index=False))
    assert titles == after


def test_full_mode_marks_vanished_tests_deleted_but_never_after_an_incomplete_listing(world):
    sim, warehouse = world
    product_id = sim.truth_products()[0]["id"]
    victim = sim.truth_tests(product_id)[-1]["id"]  # the oldest test

    hide = hiding_test(sim, victim)

    sim.add_fault(hide)
    # Incremental cycles never conclude a deletion: they do not read the whole list.
    cycle(sim, warehouse, "incremental")
    assert victim in warehouse.ids("tests")

    # A full listing with a position that fails forever (every window holding offset 30
    # answers 500, even alone) is incomplete: nothing may be marked deleted.
    sim.clear_faults()
    sim.add_fault(poison_offsets(sim, product_id, [30]))
    sim.add_fault(hide)
    results = cycle(sim, warehouse, "full")
    assert victim in warehouse.ids("tests")
    assert product_id in results["tests"].product_errors

    sim.clear_faults()
    sim.add_fault(hide)
    results = cycle(sim, warehouse, "full")
    assert victim not in warehouse.ids("tests")
    assert victim in warehouse.ids("tests", include_deleted=True)
    assert results["tests"].write.marked_deleted == 1

    # It comes back: deleted_at is cleared.
    sim.clear_faults()
    cycle(sim, warehouse, "full")
    assert victim in warehouse.ids("tests")


def test_per_product_sync_times_are_set_only_for_products_really_fetched(world):
    sim, warehouse = world
    before = {p["id"]: p for p in warehouse.products()}
    broken, healthy = [p["id"] for p in sim.truth_products()][:2]

    def break_features(request):
        if request.endpoint in {"features", "section_features"} and request.ids and request.ids[0] == broken:
            return SimResponse(503, {}, {"error": "maintenance"})
        return None

    sim.add_fault(break_features)
    sim.clock.advance(60)
    results = cycle(sim, warehouse, "incremental")
    after = {p["id"]: p for p in warehouse.products()}
    assert broken in results["features"].product_errors
    assert after[broken]["features_synced_at"] == before[broken]["features_synced_at"]
    assert after[healthy]["features_synced_at"] > before[healthy]["features_synced_at"]
    # The other entities of the broken product were still refreshed.
    assert after[broken]["tests_synced_at"] > before[broken]["tests_synced_at"]


def test_sync_events_record_a_success_and_a_failure(tmp_path, monkeypatch):
    sim = make_simulator("tiny")
    db = tmp_path / "t.duckdb"
    with dg.instance_for_test() as instance, sim.serve() as server:
        # Over real HTTP, so a fault added to this simulator reaches the Dagster run.
        monkeypatch.setenv("TESTIO_CUSTOMER_API_BASE_URL", server.base_url)
        monkeypatch.setenv("TESTIO_CUSTOMER_API_TOKEN", sim.config.token)
        api = CustomerApiResource(
            base_url=server.base_url,
            token=dg.EnvVar("TESTIO_CUSTOMER_API_TOKEN"),
            retry_attempts=2,
            retry_wait_seconds=0.001,
        )
        ok = materialize(sim, db, instance=instance, mode="full", api=api)
        sim.add_fault(lambda r: SimResponse(401, {}, {"error": "token revoked"}) if r.endpoint == "bugs" else None)
        failed = materialize(sim, db, instance=instance, mode="incremental", api=api, raise_on_error=False)
        assert not failed.success
    events = Warehouse(db).query("SELECT * FROM sync_events ORDER BY started_at")
    assert list(events.run_id) == [ok.run_id, failed.run_id]
    first, second = events.iloc[0], events.iloc[1]
    assert (first["status"], first["mode"], first["trigger"]) == ("success", "full", "cli/ui")
    assert first.products_synced == len(sim.truth_products())
    assert first.features_refreshed == len(truth_ids(sim)["features"])
    assert first.api_requests > 0 and first.finished_at >= first.started_at
    assert (second["status"], second["mode"]) == ("failed", "incremental")
    assert "bugs" in second.error and "TESTIO_CUSTOMER_API_TOKEN" in second.error
    assert second.finished_at is not None
