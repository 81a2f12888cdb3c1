"""Tests of the TestIO API simulator: determinism, paging, sections, quirks, evolution, servers."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from testio_pipeline.simulator import app as app_module
from testio_pipeline.simulator import server as server_module
from testio_pipeline.simulator import (
    PRESETS,
    SIMULATOR_BASE_URL,
    SIMULATOR_TOKEN,
    SimClock,
    SimRequest,
    SimResponse,
    Simulator,
    SimulatorConfig,
)

NOW = datetime(2025, 3, 10, 9, 30, tzinfo=timezone.utc)
AUTH = {"Authorization": f"Token {SIMULATOR_TOKEN}"}
REPO_ROOT = Path(__file__).resolve().parents[1]
STATUS_RANK = {
    "initialized": 0,
    "customer_finalized": 1,
    "waiting": 2,
    "running": 3,
    "locked": 4,
    "archived": 5,
    "cancelled": 5,
}


def make_sim(preset: str = "tiny", now: datetime = NOW, **overrides) -> Simulator:
    return Simulator(SimulatorConfig.preset(preset, **overrides), SimClock(now))


def get(sim: Simulator, path: str, headers: dict | None = None, **params) -> SimResponse:
    return sim.handle("GET", path, {k: str(v) for k, v in params.items()}, AUTH if headers is None else headers)


def get_json(sim: Simulator, path: str, **params):
    response = get(sim, path, **params)
    assert response.status == 200, (path, response.status, response.body)
    return response.json()


def all_pages(sim: Simulator, product_id: int, per_page: int) -> list[list[dict]]:
    pages, page = [], 1
    while True:
        items = get_json(sim, f"products/{product_id}/exploratory_tests", page=page, per_page=per_page)
        pages.append(items["exploratory_tests"])
        if len(items["exploratory_tests"]) < per_page:
            return pages
        page += 1


def sectioned(sim: Simulator) -> tuple[dict, dict]:
    """(a sectioned product, a product without sections)."""
    products = sim.truth_products()
    with_sections = next(p for p in products if p["sections"])
    without = next(p for p in products if not p["sections"])
    return with_sections, without


def status_counts(sim: Simulator, now: datetime) -> Counter:
    return Counter(t["status"] for p in sim.truth_products(now) for t in sim.truth_tests(p["id"], now))


# -- configuration and determinism -------------------------------------------------------


def test_public_constants_and_presets():
    assert SIMULATOR_TOKEN == "sim-demo-token"
    assert SIMULATOR_BASE_URL == "http://testio-simulator.local/customer/v2"
    assert PRESETS["demo"] == SimulatorConfig()
    tiny = SimulatorConfig.preset("tiny")
    assert (tiny.products, tiny.tests_per_product, tiny.bugs_per_test, tiny.sectioned_products) == (2, 8, 2, 1)
    assert SimulatorConfig.preset("bench").products == 20
    large = SimulatorConfig.preset("large")
    assert (large.products, large.tests_per_product, large.bugs_per_test) == (200, 500, 12)
    assert SimulatorConfig().sectioned_products == 1
    assert SimulatorConfig.preset("tiny", seed=7).seed == 7
    with pytest.raises(ValueError):
        SimulatorConfig.preset("huge")


def snapshot(sim: Simulator) -> str:
    """Every endpoint's JSON for a world, as one string."""
    out = {"products": get_json(sim, "products")}
    for product in out["products"]["products"]:
        pid = product["id"]
        out[f"tests{pid}"] = get_json(sim, f"products/{pid}/exploratory_tests", page=1, per_page=50)
        ids = [t["id"] for t in out[f"tests{pid}"]["exploratory_tests"]][:15]
        out[f"bugs{pid}"] = get_json(sim, "bugs", filter_test_cycle_ids=",".join(map(str, ids)))
        for section in product["sections"] or [None]:
            if section is None:
                out[f"features{pid}"] = get_json(sim, f"products/{pid}/features")
                out[f"stories{pid}"] = get_json(sim, f"products/{pid}/user_stories")
            else:
                sid = section["id"]
                out[f"features{pid}/{sid}"] = get_json(sim, f"products/{pid}/sections/{sid}/features")
                out[f"stories{pid}/{sid}"] = get_json(sim, f"products/{pid}/user_stories", section_id=sid)
    return json.dumps(out, sort_keys=True)


def test_same_config_and_clock_give_identical_json():
    assert snapshot(make_sim("demo")) == snapshot(make_sim("demo"))


def test_a_warmed_world_answers_exactly_like_a_cold_one():
    warm = make_sim("demo")
    assert warm.warm() > 0
    assert snapshot(warm) == snapshot(make_sim("demo"))
    cold = make_sim("demo")
    for sim in (warm, cold):  # cached parts are static: answers still follow the clock
        sim.clock.advance(3 * 86400)
    assert snapshot(warm) == snapshot(cold)


def test_the_latency_includes_the_time_the_server_spends_answering(monkeypatch):
    """What is waited after the answer is built is the latency minus the work, never more;
    the waits are recorded rather than timed, so a busy machine cannot change the verdict."""
    sim = make_sim("tiny", latency_ms=80)
    original = sim.handle
    work = threading.Event()

    def slow_handle(*args, **kwargs):
        work.wait(0.05)  # 50 ms of server work, inside the 80 ms latency
        return original(*args, **kwargs)

    waits: list[float] = []
    monkeypatch.setattr(app_module.time, "sleep", waits.append)
    sim.handle = slow_handle  # type: ignore[method-assign]
    started = time.monotonic()
    response = sim.call("GET", "/customer/v2/products", {}, AUTH)
    elapsed = time.monotonic() - started
    assert response.status == 200
    [wait] = waits
    assert elapsed + wait >= 0.08, "the answer comes no earlier than the latency"
    assert wait <= 0.08 - 0.05, f"waited {wait:.3f} s after 50 ms of work; latency 0.08 s already covers it"
    assert json.loads(response.body_bytes()) == response.body  # rendered once, the same JSON


def test_different_seed_gives_a_different_world():
    assert snapshot(make_sim("tiny")) != snapshot(make_sim("tiny", seed=43))


def test_default_anchor_is_midnight_of_the_clock_day():
    sim = make_sim("tiny")
    assert sim.anchor == datetime(2025, 3, 10, tzinfo=timezone.utc)
    # The day is read before and after, so a run across midnight still knows both candidates.
    before = datetime.now(timezone.utc)
    wall = Simulator(SimulatorConfig.preset("tiny"))
    after = datetime.now(timezone.utc)
    midnights = {t.replace(hour=0, minute=0, second=0, microsecond=0) for t in (before, after)}
    assert wall.anchor in midnights


# -- paging (quirks 1-4) --------------------------------------------------------------------


def test_pages_concatenate_to_truth_newest_first():
    sim = make_sim("demo")
    pid = sim.truth_products()[0]["id"]
    truth = sim.truth_tests(pid)
    pages = all_pages(sim, pid, per_page=7)
    assert [t for page in pages for t in page] == truth
    assert 0 <= len(pages[-1]) < 7
    ends = [datetime.fromisoformat(t["end_at"]) for t in truth]
    assert ends == sorted(ends, reverse=True)
    past_end = get_json(sim, f"products/{pid}/exploratory_tests", page=len(pages) + 5, per_page=7)
    assert past_end == {"exploratory_tests": []}
    default = get_json(sim, f"products/{pid}/exploratory_tests", page=1)["exploratory_tests"]
    assert default == truth[:25]


def test_request_without_page_is_truncated_to_the_newest_150():
    sim = make_sim("tiny", products=1, tests_per_product=180)
    pid = sim.truth_products()[0]["id"]
    truth = sim.truth_tests(pid)
    assert len(truth) > 150
    assert get_json(sim, f"products/{pid}/exploratory_tests")["exploratory_tests"] == truth[:150]


def test_ignore_paging_returns_the_whole_list():
    sim = make_sim("tiny", ignore_paging=True)
    pid = sim.truth_products()[0]["id"]
    served = get_json(sim, f"products/{pid}/exploratory_tests", page=2, per_page=2)["exploratory_tests"]
    assert served == sim.truth_tests(pid) and len(served) > 2


def test_bad_paging_parameters_are_rejected():
    sim = make_sim()
    pid = sim.truth_products()[0]["id"]
    assert get(sim, f"products/{pid}/exploratory_tests", page=0).status == 422
    assert get(sim, f"products/{pid}/exploratory_tests", page="x").status == 422


# -- sections (quirk 9), features and user stories ----------------------------------------


def test_sectioned_products_are_read_per_section():
    sim = make_sim("tiny")
    product, _ = sectioned(sim)
    pid = product["id"]
    assert len(product["sections_with_default"]) > 1
    response = get(sim, f"products/{pid}/features")
    assert response.status == 422 and "section" in response.json()["error"]

    seen: dict[int, list[int]] = {}
    by_id = {}
    for section in product["sections"]:
        for feature in get_json(sim, f"products/{pid}/sections/{section['id']}/features")["features"]:
            seen.setdefault(feature["id"], []).append(section["id"])
            by_id[feature["id"]] = feature
    truth = sim.truth_features(pid)
    assert sorted(by_id.values(), key=lambda f: f["id"]) == sorted(truth, key=lambda f: f["id"])
    assert seen == sim.truth_feature_sections(pid)
    assert any(len(sections) == 2 for sections in seen.values()), "some feature is shared by two sections"

    assert get(sim, f"products/{pid}/user_stories").status == 422
    stories = {}
    for section in product["sections"]:
        listed = get_json(sim, f"products/{pid}/user_stories", section_id=section["id"])["user_stories"]
        assert len(listed) < len(sim.truth_user_stories(pid))
        stories.update({s["id"]: s for s in listed})
    assert sorted(stories.values(), key=lambda s: s["id"]) == sorted(sim.truth_user_stories(pid), key=lambda s: s["id"])


def test_products_without_sections_use_the_product_level_calls():
    sim = make_sim("tiny")
    _, product = sectioned(sim)
    pid = product["id"]
    assert product["sections"] == [] and len(product["sections_with_default"]) == 1
    assert product["default_section_id"] == product["sections_with_default"][0]["id"]
    assert get_json(sim, f"products/{pid}/features")["features"] == sim.truth_features(pid)
    assert get_json(sim, f"products/{pid}/user_stories")["user_stories"] == sim.truth_user_stories(pid)
    assert set(map(len, sim.truth_feature_sections(pid).values())) == {0}


def test_story_titles_are_unique_and_some_are_listed_by_no_feature():
    sim = make_sim("demo")
    for product in sim.truth_products():
        pid = product["id"]
        titles = [s["title"] for s in sim.truth_user_stories(pid)]
        assert len(titles) == len(set(titles))
        listed = {t for f in sim.truth_features(pid) for t in f["user_stories"]}
        assert listed < set(titles)
        assert len({f["title"] for f in sim.truth_features(pid)}) == len(sim.truth_features(pid))
    story = sim.truth_user_stories(pid)[0]
    assert get_json(sim, f"user_stories/{story['id']}") == story


def test_features_get_renamed_or_removed_after_the_anchor():
    sim = make_sim("demo")
    later = NOW + timedelta(days=30)
    changed = 0
    for product in sim.truth_products():
        before = {f["id"]: f["title"] for f in sim.truth_features(product["id"])}
        after = {f["id"]: f["title"] for f in sim.truth_features(product["id"], later)}
        changed += sum(1 for fid, title in before.items() if after.get(fid) != title)
    assert changed > 0


# -- auth and errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Token wrong"}, {"Authorization": f"Bearer {SIMULATOR_TOKEN}"}],
)
def test_missing_or_wrong_token_is_401(headers):
    response = get(make_sim(), "products", headers=headers)
    assert response.status == 401 and "error" in response.json()


def test_unknown_paths_and_ids_are_404():
    sim = make_sim()
    product, plain = sectioned(sim)
    for path in (
        "nothing/here",
        "products/1",
        "products/1/exploratory_tests",
        "exploratory_tests/1",
        "user_stories/1",
        f"products/{plain['id']}/sections/{product['sections'][0]['id']}/features",
    ):
        response = get(sim, path)
        assert response.status == 404, path
        assert "error" in response.json()


def test_single_test_endpoint_embeds_the_product():
    sim = make_sim()
    product = sim.truth_products()[0]
    test = sim.truth_tests(product["id"])[0]
    served = get_json(sim, f"exploratory_tests/{test['id']}")
    assert served == {"exploratory_test": test}
    assert served["exploratory_test"]["product"] == {"id": product["id"], "name": product["name"]}


# -- content at demo scale ----------------------------------------------------------------


def test_demo_world_has_every_status_severity_and_testing_type():
    sim = make_sim("demo")
    tests = [t for p in sim.truth_products() for t in sim.truth_tests(p["id"])]
    bugs = [b for p in sim.truth_products() for b in sim.truth_bugs(p["id"])]
    assert {t["status"] for t in tests} == set(STATUS_RANK)
    assert {"coverage", "focused", "rapid", "usability", "external", None} == {t["testing_type"] for t in tests}
    assert {b["severity"] for b in bugs} == {"critical", "high", "low", "visual", "content", "custom"}
    assert {b["status"] for b in bugs} == {"accepted", "rejected", "forwarded"}
    assert any(b["auto_accepted"] for b in bugs)
    assert all(b["status"] == "accepted" for b in bugs if b["auto_accepted"])
    offsets = {datetime.fromisoformat(t["start_at"]).utcoffset() for t in tests}
    assert len(offsets) >= 3
    with_bugs = {b["test"]["id"] for b in bugs}
    assert any(t["id"] not in with_bugs for t in tests if t["status"] == "archived"), "some tests have no bugs"
    sectioned_tests = [t for t in tests if t["section"]]
    assert sectioned_tests and all(t["section"]["id"] and t["section"]["name"] for t in sectioned_tests)


def test_served_tests_carry_environment_credentials():
    sim = make_sim()
    pid = sim.truth_products()[0]["id"]
    for test in get_json(sim, f"products/{pid}/exploratory_tests", page=1)["exploratory_tests"]:
        env = test["test_environment"]
        assert env["username"] and env["password"] and env["access"] and env["url"].startswith("https://")
        assert test["title"] == test["test_title"] and test["goal"] == test["goal_text"]
        assert all({"id", "feature_id", "title", "user_stories"} <= f.keys() for f in test["features"])


def test_bugs_filters_and_shape():
    sim = make_sim()
    pid = sim.truth_products()[0]["id"]
    truth = sim.truth_bugs(pid)
    test_ids = sorted({b["test"]["id"] for b in truth})
    by_tests = get_json(sim, "bugs", filter_test_cycle_ids=",".join(map(str, test_ids)))["bugs"]
    assert sorted(by_tests, key=lambda b: b["id"]) == truth
    by_product = get_json(sim, "bugs", filter_product_ids=pid)["bugs"]
    assert sorted(by_product, key=lambda b: b["id"]) == truth
    assert get_json(sim, "bugs", filter_test_cycle_ids="1,2")["bugs"] == []
    bug = truth[0]
    expected = {"id", "title", "severity", "status", "steps", "reported_at", "author", "test", "test_feature", "feature"}
    assert expected <= bug.keys()


def test_json_parses_into_the_client_models():
    models = importlib.import_module("testio_pipeline.domain.records")
    sim = make_sim("tiny")
    for product in sim.truth_products():
        pid = product["id"]
        assert models.Product.from_api(product).has_sections == bool(product["sections"])
        for feature in sim.truth_features(pid):
            models.Feature.from_api(feature, product_id=pid)
        for story in sim.truth_user_stories(pid):
            models.UserStory.from_api(story, product_id=pid)
        for test in sim.truth_tests(pid):
            assert models.ExploratoryTest.from_api(test).product_id == pid
        for bug in sim.truth_bugs(pid):
            models.Bug.from_api(bug)


# -- evolution with time ------------------------------------------------------------------


def test_world_moves_forward_with_the_clock():
    sim = make_sim("demo")
    later = NOW + timedelta(days=2)
    more_bugs = 0
    for product in sim.truth_products():
        pid = product["id"]
        before = {t["id"]: t for t in sim.truth_tests(pid)}
        after = {t["id"]: t for t in sim.truth_tests(pid, later)}
        assert set(before) < set(after), "no test disappears, new ones appear"
        for tid, test in before.items():
            assert STATUS_RANK[after[tid]["status"]] >= STATUS_RANK[test["status"]]
            if test["status"] in ("archived", "cancelled"):
                assert after[tid]["status"] == test["status"]
        sim.clock.set(later)
        first_page = get_json(sim, f"products/{pid}/exploratory_tests", page=1)["exploratory_tests"]
        sim.clock.set(NOW)
        assert set(after) - set(before) & {t["id"] for t in first_page}, "new tests are on top"
        bugs_before = {b["id"] for b in sim.truth_bugs(pid)}
        bugs_after = {b["id"] for b in sim.truth_bugs(pid, later)}
        assert bugs_before <= bugs_after
        more_bugs += len(bugs_after) - len(bugs_before)
    assert more_bugs > 0
    counts_before, counts_after = status_counts(sim, NOW), status_counts(sim, later)
    assert counts_after["archived"] > counts_before["archived"]


def test_bug_statuses_move_from_forwarded_to_a_decision():
    sim = make_sim("demo")
    pid = sim.truth_products()[0]["id"]
    before = {b["id"]: b["status"] for b in sim.truth_bugs(pid)}
    after = {b["id"]: b["status"] for b in sim.truth_bugs(pid, NOW + timedelta(days=10))}
    assert all(after[bid] == status for bid, status in before.items() if status != "forwarded")
    assert any(status == "forwarded" and after[bid] != "forwarded" for bid, status in before.items())


# -- clock ----------------------------------------------------------------------------------


def test_sim_clock_frozen_and_wall_following():
    clock = SimClock(NOW)
    assert clock.now() == NOW and clock.now().tzinfo is not None
    clock.advance(90)
    assert clock.now() == NOW + timedelta(seconds=90)
    clock.set(NOW + timedelta(days=1))
    assert clock.now() == NOW + timedelta(days=1)
    # Bracketed by the real clock, not compared with a tolerance a stalled process can exceed.
    before = datetime.now(timezone.utc)
    wall = SimClock()
    wall.advance(3600)
    now = wall.now()
    after = datetime.now(timezone.utc)
    assert before + timedelta(seconds=3600) <= now <= after + timedelta(seconds=3600)


# -- transports, faults and stats -------------------------------------------------------------


def test_in_process_transport_async_and_sync():
    sim = make_sim()

    async def fetch() -> dict:
        async with httpx.AsyncClient(base_url=SIMULATOR_BASE_URL, transport=sim.transport(), headers=AUTH) as client:
            response = await client.get("products")
            assert response.headers["content-type"].startswith("application/json")
            return response.json()

    assert asyncio.run(fetch()) == {"products": sim.truth_products()}
    with httpx.Client(base_url=SIMULATOR_BASE_URL, transport=sim.transport(), headers=AUTH) as client:
        pid = sim.truth_products()[0]["id"]
        response = client.get(f"products/{pid}/exploratory_tests", params={"page": 1, "per_page": 3})
        assert response.json()["exploratory_tests"] == sim.truth_tests(pid)[:3]
        assert client.get("products", headers={"Authorization": "Token nope"}).status_code == 401


def test_faults_run_after_auth_and_can_corrupt_the_normal_response():
    sim = make_sim()
    pid = sim.truth_products()[0]["id"]

    def poison_page_two(request: SimRequest) -> SimResponse | None:
        if request.endpoint == "exploratory_tests" and request.params.get("page") == "2":
            return SimResponse(500, body={"error": "Internal Server Error"})
        return None

    def malformed_products(request: SimRequest) -> SimResponse | None:
        if request.endpoint != "products":
            return None
        normal = sim.dispatch(request)
        normal.body["products"][0]["id"] = "not-an-id"
        return normal

    sim.add_fault(poison_page_two)
    sim.add_fault(malformed_products)
    assert get(sim, f"products/{pid}/exploratory_tests", page=2).status == 500
    assert get(sim, f"products/{pid}/exploratory_tests", page=1).status == 200
    assert get_json(sim, "products")["products"][0]["id"] == "not-an-id"
    assert get(sim, "products", headers={}).status == 401
    sim.clear_faults()
    assert get_json(sim, "products") == {"products": sim.truth_products()}


def test_request_stats_count_per_endpoint_and_status():
    sim = make_sim()
    pid = sim.truth_products()[0]["id"]
    get(sim, "products")
    get(sim, f"products/{pid}/exploratory_tests", page=1)
    get(sim, "products", headers={})
    get(sim, "nope")
    stats = sim.stats.snapshot()
    assert stats["total"] == 4
    assert stats["by_endpoint"] == {"products": 2, "exploratory_tests": 1, "unknown": 1}
    assert stats["by_status"] == {200: 2, 401: 1, 404: 1}
    sim.stats.reset()
    assert sim.stats.snapshot()["total"] == 0


def test_heavy_bug_queries_time_out_with_524():
    sim = make_sim(max_bug_test_ids=3)
    ids = [t["id"] for t in sim.truth_tests(sim.truth_products()[0]["id"])][:4]
    assert get(sim, "bugs", filter_test_cycle_ids=",".join(map(str, ids))).status == 524
    assert get(sim, "bugs", filter_test_cycle_ids=",".join(map(str, ids[:3]))).status == 200


def test_too_many_requests_in_flight_get_429_with_retry_after():
    sim = make_sim(latency_ms=150, max_in_flight=2)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=SIMULATOR_BASE_URL, transport=sim.transport(), headers=AUTH) as client:
            return await asyncio.gather(*(client.get("products") for _ in range(6)))

    statuses = Counter(r.status_code for r in asyncio.run(burst()))
    assert statuses == {200: 2, 429: 4}
    assert sim.stats.snapshot()["by_status"][429] == 4
    limited = asyncio.run(burst())
    assert all(r.headers["retry-after"] == "1" for r in limited if r.status_code == 429)


def test_a_bench_bug_batch_holds_exactly_the_bugs_of_its_tests():
    # How cheap this is is measured by the benchmark (make bench), not asserted here.
    sim = make_sim("bench")
    pid = sim.truth_products()[3]["id"]
    ids = [t["id"] for t in get_json(sim, f"products/{pid}/exploratory_tests", page=2)["exploratory_tests"]][:15]
    response = get(sim, "bugs", filter_test_cycle_ids=",".join(map(str, ids)))
    assert response.status == 200
    served = response.json()["bugs"]
    assert len(served) > 15 and {b["test"]["id"] for b in served} <= set(ids)
    expected = [b for b in sim.truth_bugs(pid) if b["test"]["id"] in set(ids)]
    assert sorted(b["id"] for b in served) == sorted(b["id"] for b in expected)


# -- the HTTP server and the CLI -------------------------------------------------------------


def test_http_server_end_to_end():
    sim = make_sim()
    with sim.serve(port=0) as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/customer/v2"
        with httpx.Client(base_url=server.base_url + "/", headers=AUTH, timeout=5) as client:
            assert client.get("products").json() == {"products": sim.truth_products()}
            pid = sim.truth_products()[0]["id"]
            page = client.get(f"products/{pid}/exploratory_tests", params={"page": 1, "per_page": 5})
            assert page.json()["exploratory_tests"] == sim.truth_tests(pid)[:5]
            assert client.get("products", headers={"Authorization": "Token bad"}).status_code == 401
            assert client.get(f"{server.url}/elsewhere").status_code == 404

            assert client.get(f"{server.url}/_sim/health").json()["ok"] is True
            assert client.get(f"{server.url}/_sim/clock").json()["now"] == NOW.isoformat()
            moved = client.post(f"{server.url}/_sim/clock", json={"advance_seconds": 2 * 86400}).json()
            assert datetime.fromisoformat(moved["now"]) == NOW + timedelta(days=2)
            assert sim.clock.now() == NOW + timedelta(days=2)
            grown = client.get(f"products/{pid}/exploratory_tests", params={"page": 1, "per_page": 100}).json()
            assert len(grown["exploratory_tests"]) == len(sim.truth_tests(pid)) > 5
            client.post(f"{server.url}/_sim/clock", json={"now": "2025-03-11T00:00:00Z"})
            assert sim.clock.now() == datetime(2025, 3, 11, tzinfo=timezone.utc)
            assert client.post(f"{server.url}/_sim/clock", json={"nothing": 1}).status_code == 400
            stats = client.get(f"{server.url}/_sim/stats").json()
            assert stats["by_endpoint"]["products"] == 2 and stats["by_status"]["401"] == 1

            # Keep-alive responses must not stall on Nagle + delayed ACK (~40 ms each; the
            # benchmark measures it): the server sets TCP_NODELAY on every connection.
            assert server_module._Handler.disable_nagle_algorithm is True


def test_http_server_enforces_the_in_flight_limit():
    sim = make_sim(latency_ms=200, max_in_flight=1)
    with sim.serve() as server:
        results: list[httpx.Response] = []

        def one() -> None:
            with httpx.Client(headers=AUTH, timeout=5) as client:
                results.append(client.get(f"{server.base_url}/products"))

        threads = [threading.Thread(target=one) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    statuses = Counter(r.status_code for r in results)
    assert statuses[200] >= 1 and statuses[429] >= 1
    assert all(r.headers["Retry-After"] == "1" for r in results if r.status_code == 429)


def test_cli_serve_answers_and_stops_on_sigterm():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [
        sys.executable, "-m", "testio_pipeline.simulator", "serve", "--port", "0", "--preset", "tiny",
        "--now", "2025-03-10T09:30:00Z", "--token", "cli-token", "--latency-ms", "1",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        deadline = time.monotonic() + 300  # a real process must start (imports) on a busy machine
        base_url = None
        while base_url is None:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if "base_url:" in line:
                base_url = line.split("base_url:", 1)[1].strip()
        response = httpx.get(f"{base_url}/products", headers={"Authorization": "Token cli-token"}, timeout=5)
        assert response.status_code == 200
        assert response.json() == {"products": make_sim("tiny").truth_products()}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
