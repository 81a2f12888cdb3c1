"""The tests step. Full: every page of every product's test list. Incremental: new tests from
the top of each list, plus the stored tests that are not final yet: from the pages below when
fewer pages than tests reach them, otherwise one re-read each.

Tests are framed into a per-run stage as each product finishes (not held until the write).
"""

from __future__ import annotations

import asyncio
import time

from ..domain.records import ExploratoryTest, ProblemRange, Product, RejectedRecord, raw_id
from ..domain.vocabulary import FINAL_TEST_STATUSES
from ..source import ApiSource
from ..testio import CustomerApiClient, TestioApiError, TestioNotFoundError
from ..warehouse import Warehouse
from ..warehouse.staging import Stage
from .common import (
    FATAL_ERRORS,
    EntityResult,
    SyncOptions,
    open_problems,
    per_product,
    records_issues,
    run_fetch,
    scoped_products,
)


@records_issues
def sync_tests(source: ApiSource, warehouse: Warehouse, options: SyncOptions) -> EntityResult:
    """Full: every page. Incremental: new tests from the top, plus a re-read of non-final ones."""
    with warehouse.reading():  # the reads before the fetch share one connection
        products = scoped_products(warehouse, options)
        known = warehouse.test_states([p.id for p in products]) if options.mode == "incremental" else {}
        # Products with unreadable list positions get a full listing, so the problem is re-checked.
        problem_products = open_problems(warehouse, "tests")
    known_by_product: dict[int, dict[int, str]] = {}
    for test_id, (product_id, status) in known.items():
        known_by_product.setdefault(product_id, {})[test_id] = status
    with warehouse.stage("tests") as staged:
        return _fetch_and_write_tests(source, warehouse, options, products, known_by_product, problem_products, staged)


def _fetch_and_write_tests(
    source: ApiSource,
    warehouse: Warehouse,
    options: SyncOptions,
    products: list[Product],
    known_by_product: dict[int, dict[int, str]],
    problem_products: dict[int, set[int]],
    staged: Stage,
) -> EntityResult:
    started = time.perf_counter()

    async def fetch_product(client: CustomerApiClient, product: Product):
        mine = known_by_product.get(product.id, {})
        if options.mode == "full" or not mine or product.id in problem_products:
            listing = await client.list_tests(product.id)
            reread: list[ExploratoryTest | None] = []
        else:
            # New tests appear on page 1 (newest first): stop at the first page holding a known one.
            listing = await client.list_tests(
                product.id,
                stop_when=lambda items: any(raw_id(i) in mine for i in items),
                then_pages=lambda tests, pages: pages_down_to_stale(mine, tests, pages, client.per_page),
            )
            seen = {t.id for t in listing.tests}
            stale = [tid for tid, status in mine.items() if tid not in seen and status not in FINAL_TEST_STATUSES]
            reread = await asyncio.gather(*(_reread_test(client, tid, listing.reread_failed) for tid in stale))
        # The product is done: frame its tests into the stage and drop the records.
        staged.add(listing.tests)
        staged.add(t for t in reread if t is not None)
        listing.tests = []
        return listing

    async def fetch(client: CustomerApiClient):
        # Products in progress hold their tests until done: a few per in-flight slot keep the
        # cap busy without holding every product's list at once.
        limit = 2 * max(1, source.settings.max_concurrent_requests)
        return await per_product(products, lambda p: fetch_product(client, p), limit=limit)

    (ok, errors), api = run_fetch(fetch, source)
    fetch_s = time.perf_counter() - started
    rejected: list[RejectedRecord] = []
    complete: list[int] = []
    problems: list[ProblemRange] = []
    checked: list[int] = []
    for product_id, listing in ok.items():
        rejected.extend(listing.rejected)
        problems.extend(listing.problems)
        if listing.reached_end:
            checked.append(product_id)  # the whole list was walked: absent problems are solved
        if listing.reread_failed:
            errors[product_id] = (
                f"{len(listing.reread_failed)} known tests could not be re-read, e.g. "
                + next(iter(listing.reread_failed.values()))[:200]
            )
        elif listing.problems:
            errors[product_id] = (
                f"{sum(p.size for p in listing.problems)} test-list "
                "positions could not be read (see problematic_records); deletions not checked"
            )
        elif listing.rejected:
            errors[product_id] = (
                f"{len(listing.rejected)} tests could not be typed (see rejected_records); deletions not checked"
            )
        elif options.mode == "full":
            if listing.complete:
                complete.append(product_id)
            else:
                errors[product_id] = f"test list incomplete ({listing.stop_reason})"
        else:
            # A finished incremental pass (top pages + every non-final test re-read) counts
            # as a complete refresh of that product's tests.
            complete.append(product_id)
    stats = warehouse.write(
        "tests",
        staged,
        options.clock(),
        complete={"products": sorted(complete)},
        detect_deletions=options.mode == "full",
        run_id=options.run_id,
    )
    return EntityResult(
        entity="tests",
        write=stats,
        api=api,
        products_complete=sorted(complete),
        product_errors=errors,
        rejected=rejected,
        counts={"tests_discovered": stats.inserted, "tests_updated": stats.updated},
        fetch_s=fetch_s,
        problems=problems,
        problems_checked=sorted(checked),
        problems_open_before=sorted(problem_products),
    )


def pages_down_to_stale(known: dict[int, str], tests: list[ExploratoryTest], pages: int, per_page: int) -> int:
    """How many more pages to read so the stored non-final tests not listed yet are read from
    the list, or 0 when re-reading them one request each is cheaper.

    ``known`` is in the list's order as stored (newest first). A test's position now is
    guessed from the last listed test that is known: known tests keep their order, so one
    ``k`` places further down the stored order sits about ``k`` positions further down the
    list. A guess that falls short costs nothing but the re-read it would have cost anyway.
    """
    seen = {t.id for t in tests}
    stale = [tid for tid, status in known.items() if tid not in seen and status not in FINAL_TEST_STATUSES]
    anchor = next((i for i in range(len(tests) - 1, -1, -1) if tests[i].id in known), None)
    if not stale or anchor is None:
        return 0
    rank = {tid: i for i, tid in enumerate(known)}
    deepest = anchor + max(rank[tid] for tid in stale) - rank[tests[anchor].id]
    more = deepest // per_page + 1 - pages
    return more if 0 < more < len(stale) else 0


async def _reread_test(client: CustomerApiClient, test_id: int, failed: dict[int, str]) -> ExploratoryTest | None:
    try:
        return await client.get_test(test_id)
    except TestioNotFoundError:
        # Gone upstream; a full sync's complete listing marks it deleted.
        return None
    except FATAL_ERRORS:
        raise
    except (TestioApiError, ValueError) as exc:
        # One test that cannot be read (5xx after retries, timeout, a body we cannot type):
        # its stored row stays as it was, and the rest of the product still syncs.
        failed[test_id] = f"{type(exc).__name__}: {exc}"
        return None
