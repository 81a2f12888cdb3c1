"""The simulator's wire cache (benchmarks at large scale): the same bytes as a cold world, always."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from testio_pipeline.simulator import SIMULATOR_TOKEN, SimClock, Simulator, SimulatorConfig
from testio_pipeline.simulator import wire_cache as wire_cache_module
from testio_pipeline.simulator.wire_cache import WireCache

NOW = datetime(2025, 3, 10, 9, 30, tzinfo=timezone.utc)
AUTH = {"Authorization": f"Token {SIMULATOR_TOKEN}"}


def make_sim(wire_cache_mb: float = 0, preset: str = "demo") -> Simulator:
    return Simulator(SimulatorConfig.preset(preset), SimClock(NOW), wire_cache_mb=wire_cache_mb)


def wire(sim: Simulator, path: str, **params) -> bytes:
    response = sim.handle("GET", path, {k: str(v) for k, v in params.items()}, AUTH)
    assert response.status == 200, (path, response.status, response.body)
    return response.body_bytes()


def wire_snapshot(sim: Simulator) -> dict[str, bytes]:
    """The bytes of every test list page, some single tests and every product's bugs."""
    out = {}
    for product in sim.world.products:
        pid = product.id
        for page in (1, 2, 3):
            out[f"tests{pid}/{page}"] = wire(sim, f"products/{pid}/exploratory_tests", page=page, per_page=40)
        ids = [spec.id for spec in sim.world.tests(product, sim.clock.now().timestamp())]
        for test_id in ids[:3]:
            out[f"test{test_id}"] = wire(sim, f"exploratory_tests/{test_id}")
        for start in range(0, len(ids), 25):
            batch = ",".join(map(str, ids[start : start + 25]))
            out[f"bugs{pid}/{start}"] = wire(sim, "bugs", filter_test_cycle_ids=batch)
        out[f"exported{pid}"] = wire(sim, "bugs", filter_product_ids=pid, export_status="exported")
    return out


def assert_same_over_time(cached: Simulator, plain: Simulator, steps: int = 6, hours: float = 17) -> None:
    """Equal bytes now and after each clock step (crossing test status steps, bug reports,
    reviews, exports and comments), so a piece kept past its interval would show."""
    for step in range(steps):
        assert wire_snapshot(cached) == wire_snapshot(plain), f"differs after {step} steps of {hours} h"
        for sim in (cached, plain):
            sim.clock.advance(hours * 3600)


def test_a_warmed_wire_cache_answers_byte_for_byte_like_a_cold_world_as_the_clock_moves():
    cached = make_sim(wire_cache_mb=64)
    assert cached.warm() == sum(len(cached.world.tests(p, NOW.timestamp())) for p in cached.world.products)
    filled = cached.world.wire_cache.snapshot()
    assert filled["entries"] > 0 and filled["evictions"] == 0
    assert_same_over_time(cached, make_sim())
    used = cached.world.wire_cache.snapshot()
    assert used["hits"] > 0, used
    assert used["misses"] > filled["misses"], "moving the clock expired no piece: intervals never end"


def test_a_cache_smaller_than_the_world_evicts_and_still_answers_the_same():
    cached = make_sim(wire_cache_mb=0.05)
    warmed = cached.warm()
    assert 0 < warmed < sum(len(cached.world.tests(p, NOW.timestamp())) for p in cached.world.products)
    assert_same_over_time(cached, make_sim(), steps=2)
    stats = cached.world.wire_cache.snapshot()
    assert stats["evictions"] > 0 and stats["used_mib"] <= stats["budget_mib"], stats


def test_faults_still_see_and_corrupt_record_dicts_with_a_wire_cache():
    sim = make_sim(wire_cache_mb=16)
    sim.warm()
    seen = []

    def corrupt_first_bug(request):
        if request.endpoint != "bugs":
            return None
        response = sim.dispatch(request)
        seen.append(type(response.body))
        response.body["bugs"][0]["id"] = "not-an-id"
        return response

    sim.add_fault(corrupt_first_bug)
    ts = NOW.timestamp()
    spec = next(s for s in sim.world.tests(sim.world.products[0], ts) if sim.world.bugs([s], ts))
    response = sim.handle("GET", "bugs", {"filter_test_cycle_ids": str(spec.id)}, AUTH)
    assert seen == [dict] and response.json()["bugs"][0]["id"] == "not-an-id"
    sim.clear_faults()
    assert isinstance(sim.handle("GET", "bugs", {"filter_test_cycle_ids": str(spec.id)}, AUTH).body, bytes)


def test_a_piece_holds_only_inside_its_interval():
    cache = WireCache(budget_bytes=10_000)
    assert cache.put("k", 10.0, 20.0, b'{"a":1}')
    assert cache.get("k", 9.999) is None and cache.get("k", 20.0) is None
    assert cache.get("k", 10.0) == cache.get("k", 19.5) == b'{"a":1}'
    assert wire_cache_module.interval([5.0, 10.0, 30.0, 20.0], 12.0) == (10.0, 20.0)
    assert wire_cache_module.interval([5.0], 1.0) == (float("-inf"), 5.0)
    with pytest.raises(ValueError, match="positive budget"):
        WireCache(0)
