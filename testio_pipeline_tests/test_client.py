"""The TestIO client against the simulator's in-process transport (real httpx, no network)."""

from __future__ import annotations

import asyncio

import pytest

from testio_pipeline.testio import (
    CustomerApiClient,
    TestioAuthError,
    TestioConnectionError,
    TestioNotFoundError,
)
from testio_pipeline.domain.records import Product
from testio_pipeline.simulator import SIMULATOR_BASE_URL

from .conftest import FAST_RETRY, client_for, make_simulator


def run(coro):
    return asyncio.run(coro)


async def _with_client(sim, fn, **options):
    async with client_for(sim, **options) as client:
        return await fn(client), client.stats


def _products(sim) -> list[Product]:
    parsed, _ = run(_with_client(sim, lambda c: c.list_products()))
    return parsed.records


def test_products_match_the_simulator_and_know_their_sections(sim):
    products = _products(sim)
    assert [p.id for p in products] == [p["id"] for p in sim.truth_products()]
    sectioned = [p for p in products if p.has_sections]
    plain = [p for p in products if not p.has_sections]
    assert sectioned and plain, "the tiny world has both kinds of product"
    # A single default section means "no sections".
    assert all(len(p.sections_with_default) == 1 for p in plain)


def test_features_are_section_aware_and_shared_features_appear_once(sim):
    for product in _products(sim):
        parsed, stats = run(_with_client(sim, lambda c: c.list_features(product)))
        truth = sim.truth_features(product.id)
        assert sorted(f.id for f in parsed.records) == sorted(f["id"] for f in truth)
        assert not parsed.rejected
        if product.has_sections:
            assert stats.by_endpoint == {"section_features": len(product.section_ids)}
            truth_sections = sim.truth_feature_sections(product.id)
            for feature in parsed.records:
                assert sorted(feature.section_ids) == sorted(truth_sections[feature.id])
            assert any(len(f.section_ids) > 1 for f in parsed.records), "some feature is shared"
        else:
            assert stats.by_endpoint == {"features": 1}


def test_user_stories_per_section(sim):
    for product in _products(sim):
        parsed, stats = run(_with_client(sim, lambda c: c.list_user_stories(product)))
        assert sorted(s.id for s in parsed.records) == sorted(s["id"] for s in sim.truth_user_stories(product.id))
        assert stats.by_endpoint["user_stories"] == (len(product.section_ids) if product.has_sections else 1)
        if product.has_sections:
            assert all(s.section_id in product.section_ids for s in parsed.records)


def test_test_paging_reads_every_page_and_stops_on_the_short_one():
    sim = make_simulator("tiny", tests_per_product=60)
    product_id = sim.truth_products()[0]["id"]
    truth = [t["id"] for t in sim.truth_tests(product_id)]
    listing, stats = run(_with_client(sim, lambda c: c.list_tests(product_id), per_page=25, page_prefetch=1))
    assert [t.id for t in listing.tests] == truth
    assert listing.complete and listing.stop_reason in {"short_page", "empty_page"}
    # ceil(len/25) pages, plus one empty page when the length is an exact multiple.
    assert stats.by_endpoint["exploratory_tests"] == len(truth) // 25 + 1


def test_test_paging_always_sends_page_so_the_150_truncation_cannot_bite():
    sim = make_simulator("tiny", products=2, tests_per_product=180)
    product_id = sim.truth_products()[0]["id"]
    truth = sim.truth_tests(product_id)
    assert len(truth) > 150
    listing, _ = run(_with_client(sim, lambda c: c.list_tests(product_id)))
    assert [t.id for t in listing.tests] == [t["id"] for t in truth]
    assert listing.complete


def test_a_server_that_ignores_paging_is_detected_and_paging_stops():
    sim = make_simulator("tiny", tests_per_product=60, ignore_paging=True)
    product_id = sim.truth_products()[0]["id"]
    listing, _ = run(_with_client(sim, lambda c: c.list_tests(product_id), page_prefetch=1))
    assert listing.stop_reason == "paging_ignored" and listing.complete
    assert listing.pages_fetched == 1
    assert [t.id for t in listing.tests] == [t["id"] for t in sim.truth_tests(product_id)]


def test_incremental_paging_stops_at_the_first_page_with_a_known_test():
    sim = make_simulator("tiny", tests_per_product=80)
    product_id = sim.truth_products()[0]["id"]
    known = {t["id"] for t in sim.truth_tests(product_id)[30:]}
    listing, stats = run(
        _with_client(sim, lambda c: c.list_tests(product_id, stop_when=lambda items: any(i["id"] in known for i in items)))
    )
    assert listing.stop_reason == "known_reached" and not listing.complete
    assert stats.by_endpoint["exploratory_tests"] == 2


def test_tests_are_typed_and_credentials_are_stripped(sim):
    product_id = sim.truth_products()[0]["id"]
    served = sim.truth_tests(product_id)
    assert any(t["test_environment"].get("password") for t in served), "the simulator serves credentials"
    listing, _ = run(_with_client(sim, lambda c: c.list_tests(product_id)))
    for test in listing.tests:
        assert test.product_id == product_id
        assert test.start_at is None or test.start_at.tzinfo is not None
        env = test.raw.get("test_environment", {})
        assert not {"username", "password", "access"} & set(env)


def test_bugs_are_fetched_in_batches_of_test_ids(sim):
    product_id = sim.truth_products()[0]["id"]
    test_ids = [t["id"] for t in sim.truth_tests(product_id)]
    result, stats = run(_with_client(sim, lambda c: c.list_bugs(test_ids, product_id=product_id), bug_batch_size=3))
    assert sorted(b.id for b in result.bugs) == sorted(b["id"] for b in sim.truth_bugs(product_id))
    assert result.fetched_test_ids == set(test_ids)
    assert stats.by_endpoint["bugs"] == -(-len(test_ids) // 3)
    assert all(b.product_id == product_id for b in result.bugs)


def test_a_bad_token_fails_at_once_naming_the_setting(sim):
    async def go():
        async with CustomerApiClient(
            SIMULATOR_BASE_URL, "wrong-token", transport=sim.transport(), retry=FAST_RETRY
        ) as client:
            await client.list_products()

    with pytest.raises(TestioAuthError, match="TESTIO_CUSTOMER_API_TOKEN") as info:
        run(go())
    assert "wrong-token" not in str(info.value)


def test_a_deleted_product_is_not_found_not_a_list_to_recover(sim):
    # A 404 says the product is gone: it is raised, not re-read in smaller windows.
    with pytest.raises(TestioNotFoundError):
        run(_with_client(sim, lambda c: c.list_tests(999_999_999)))


def test_an_unreachable_api_is_a_clear_error_that_never_shows_the_token():
    async def go():
        # Port 9 on loopback: nothing listens, the connection is refused at once.
        async with CustomerApiClient("http://127.0.0.1:9/customer/v2", "secret-token-123", retry=FAST_RETRY) as client:
            await client.list_products()

    with pytest.raises(TestioConnectionError, match="TESTIO_CUSTOMER_API_BASE_URL") as info:
        run(go())
    assert "secret-token-123" not in str(info.value)


def test_the_in_flight_cap_holds():
    sim = make_simulator("tiny", latency_ms=20, max_in_flight=3)
    product_ids = [p["id"] for p in sim.truth_products()]

    async def many(client):
        return await asyncio.gather(*(client.list_tests(pid) for pid in product_ids * 4))

    _, stats = run(_with_client(sim, many, max_concurrent=3))
    assert stats.by_status.get(429, 0) == 0


def test_every_request_is_counted_as_sent_whatever_happened_to_it():
    """Over real HTTP the requester tracks requests not yet on the wire (so answers are parsed
    only after the next requests went out); dropped connections and errors must not leak."""
    from testio_pipeline.simulator import faults

    sim = make_simulator("tiny", latency_ms=5, tests_per_product=150)
    sim.add_fault(faults.disconnects(times=3, endpoint="bugs"))
    sim.add_fault(faults.server_errors(times=3, endpoint="exploratory_tests"))
    product_ids = [p["id"] for p in sim.truth_products()]

    async def go():
        async with CustomerApiClient(server.base_url, sim.config.token, retry=FAST_RETRY, max_concurrent=3) as client:
            listings = await asyncio.gather(*(client.list_tests(pid) for pid in product_ids))
            test_ids = [t.id for listing in listings for t in listing.tests]
            fetched = await client.list_bugs(test_ids)
            return client._api, test_ids, fetched

    from testio_pipeline.testio.http import ApiRequester

    unsent_at_answer: list[int] = []
    real_yield = ApiRequester._yield_to_senders

    async def spy(self, *args, **kwargs):
        unsent_at_answer.append(self._unsent)
        return await real_yield(self, *args, **kwargs)

    ApiRequester._yield_to_senders = spy  # type: ignore[method-assign]
    try:
        with sim.serve() as server:
            requester, test_ids, fetched = run(go())
    finally:
        ApiRequester._yield_to_senders = real_yield  # type: ignore[method-assign]
    assert requester._track_sending and requester._unsent == 0
    # When an answer arrives, the other requests in flight went out long ago: they are not
    # "unsent" (if sends were never noticed, about max_concurrent - 1 would be counted here).
    assert len(unsent_at_answer) > 20 and sum(unsent_at_answer) / len(unsent_at_answer) < 1
    assert fetched.fetched_test_ids == set(test_ids) and not fetched.failed
    assert sorted(b.id for b in fetched.bugs) == sorted(b["id"] for pid in product_ids for b in sim.truth_bugs(pid))



def test_the_list_reader_narrows_a_failing_page_down_to_the_bad_position():
    """The reader alone, fed by a page function: a page that always fails is re-read in
    windows of 10, 5, 2 and 1 (one retry each), and only the bad position is lost."""
    from testio_pipeline.testio import TestioApiError
    from testio_pipeline.testio.paging import RECOVERY_ATTEMPTS, ReadAhead, TestListReader

    sim = make_simulator("tiny", tests_per_product=40)
    product_id = sim.truth_products()[0]["id"]
    served = sim.truth_tests(product_id)  # the raw objects only: no requests to the simulator
    assert 25 < len(served) < 50
    bad = 12
    asked: list[tuple[int, int, int | None]] = []

    async def fetch(page: int, per_page: int, *, attempts: int | None = None) -> list:
        asked.append((page, per_page, attempts))
        start = (page - 1) * per_page
        if start <= bad < start + per_page:
            raise TestioApiError(f"page={page} per_page={per_page}: HTTP 500", status=500)
        return served[start : start + per_page]

    reader = TestListReader(product_id, fetch, per_page=25, read_ahead=ReadAhead(pages=1, slots=1))
    listing = run(reader.read())
    assert [t.id for t in listing.tests] == [t["id"] for i, t in enumerate(served) if i != bad]
    [problem] = listing.problems
    assert (problem.range_start, problem.range_end) == (bad, bad) and "per_page=1" in problem.error
    assert problem.neighbour_ids == (served[bad - 1]["id"], served[bad + 1]["id"])
    assert listing.stop_reason == "short_page" and listing.reached_end and not listing.complete
    assert listing.pages_fetched == 2  # pages of the list, not the recovery windows
    # Windows get one retry (a failure only means a finer re-read); a single position, where
    # giving up loses its record, gets the whole retry policy.
    assert {size for _, size, attempts in asked if attempts == RECOVERY_ATTEMPTS} == {10, 5, 2}
    assert {size for _, size, attempts in asked if attempts is None} == {25, 1}
    assert (bad + 1, 1, None) in asked
