"""An incremental cycle with nothing changed makes exactly the unavoidable requests.

The minimum comes from the benchmark's lower bound (``benchmarks/lower_bound.py``): stored
non-final tests below the first page are read from the pages down to them when those are
fewer than the tests (else one re-read each), and bug queries are packed across products.
"""

from __future__ import annotations

from benchmarks import lower_bound, verify
from testio_pipeline.testio.client import DEFAULT_BUG_BATCH, DEFAULT_PER_PAGE
from testio_pipeline.warehouse import Warehouse

from .conftest import make_simulator
from .test_refresh_cycle import assert_mirror_matches, cycle, requests_of


def test_a_no_change_cycle_makes_exactly_the_minimum_requests(tmp_path):
    sim = make_simulator("tiny", products=8, tests_per_product=200)
    warehouse = Warehouse(tmp_path / "t.duckdb")
    cycle(sim, warehouse, "full")
    truth = verify.snapshot(sim, sim.clock.now())
    plan = lower_bound.incremental_plan(
        ((p.id, p.list_calls, p.test_ids, p.test_status) for p in truth.products.values()),
        per_page=DEFAULT_PER_PAGE,
        bug_batch=DEFAULT_BUG_BATCH,
    ).summary()
    # The world is one where both savings matter.
    assert plan["test_rereads_min"] < plan["test_rereads_per_test"]
    assert plan["bug_queries_min"] < plan["bug_queries_per_product"]

    results = cycle(sim, warehouse, "incremental")
    requests = requests_of(results)
    assert sum(requests.values()) == plan["requests_min"], (requests, plan)
    assert requests.get("exploratory_test", 0) == 0
    assert_mirror_matches(sim, warehouse)
    for result in results.values():
        assert result.write.inserted == result.write.updated == 0, result.entity
        assert not result.product_errors, result.entity
