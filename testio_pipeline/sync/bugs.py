"""The bugs step: bugs of every test (full), or of tests that are new, not final or changed
(incremental). Each bug batch is framed into a per-run stage as it arrives."""

from __future__ import annotations

import asyncio
import time

from ..domain.records import ProblemRange, Product
from ..source import ApiSource
from ..testio import BugFetch, CustomerApiClient
from ..warehouse import Warehouse
from ..warehouse.staging import Stage
from .common import EntityResult, SyncOptions, open_problems, per_product, records_issues, run_fetch, scoped_products


@records_issues
def sync_bugs(source: ApiSource, warehouse: Warehouse, options: SyncOptions) -> EntityResult:
    """Bugs of every test (full), or of tests that are new, not final or changed (incremental)."""
    with warehouse.reading():  # the reads before the fetch share one connection
        products = scoped_products(warehouse, options)
        wanted = warehouse.tests_needing_bugs([p.id for p in products], full=options.mode == "full")
        # Tests whose bug list failed before are asked for again (they may be final already).
        problem_products = open_problems(warehouse, "bugs")
        retry = {test_id for starts in problem_products.values() for test_id in starts}
        if retry:
            for test_id, (product_id, _status) in warehouse.test_states([p.id for p in products]).items():
                if test_id in retry and test_id not in wanted.get(product_id, []):
                    wanted.setdefault(product_id, []).append(test_id)
    with warehouse.stage("bugs") as staged:
        return _fetch_and_write_bugs(source, warehouse, options, products, wanted, problem_products, staged)


async def _list_bugs_staged(
    client: CustomerApiClient, test_ids: list[int], product_id: int, staged: Stage
) -> BugFetch:
    """``client.list_bugs`` one batch at a time, each batch's bugs framed into the stage at once.

    The batches are the client's own (sorted ids, ``bug_batch_size`` each), so the requests
    are the same; only the bug records no longer wait for the product's last batch.
    """
    ids = sorted(set(test_ids))
    size = max(1, client.bug_batch_size)
    total = BugFetch()

    async def one(batch: list[int]) -> None:
        part = await client.list_bugs(batch, product_id=product_id)
        staged.add(part.bugs)
        total.rejected.extend(part.rejected)
        total.fetched_test_ids |= part.fetched_test_ids
        total.failed.update(part.failed)
        total.with_rejects |= part.with_rejects
        total.batches_split += part.batches_split

    await asyncio.gather(*(one(ids[i : i + size]) for i in range(0, len(ids), size)))
    return total


def _fetch_and_write_bugs(
    source: ApiSource,
    warehouse: Warehouse,
    options: SyncOptions,
    products: list[Product],
    wanted: dict[int, list[int]],
    problem_products: dict[int, set[int]],
    staged: Stage,
) -> EntityResult:
    started = time.perf_counter()

    async def fetch(client: CustomerApiClient):
        by_product = {p.id: p for p in products}
        return await per_product(
            [by_product[pid] for pid in wanted if pid in by_product],
            lambda p: _list_bugs_staged(client, wanted[p.id], p.id, staged),
        )

    (ok, errors), api = run_fetch(fetch, source)
    fetch_s = time.perf_counter() - started
    rejected, fetched, complete = [], set(), []
    problems: list[ProblemRange] = []
    split = 0
    for product_id, result in ok.items():
        rejected.extend(result.rejected)
        fetched |= result.fetched_test_ids
        split += result.batches_split
        for test_id, error in sorted(result.failed.items()):
            # One test's bug list that fails on its own: the "position" is the test id.
            problems.append(ProblemRange.bug_list(product_id, test_id, f"bugs of test {test_id}: {error}"))
        if result.failed:
            errors[product_id] = f"bugs of {len(result.failed)} tests could not be fetched (see problematic_records)"
        elif result.with_rejects:
            errors[product_id] = (
                f"bugs of {len(result.with_rejects)} tests include records that could not be typed "
                "(see rejected_records); their deletions not checked"
            )
        else:
            complete.append(product_id)
    # Products with no test needing bugs are up to date too.
    complete.extend(p.id for p in products if p.id not in wanted and p.id not in errors)
    stats = warehouse.write_bugs(
        staged,
        options.clock(),
        fetched_test_ids=fetched,
        complete_product_ids=sorted(complete),
        detect_deletions=options.mode == "full",
    )
    return EntityResult(
        entity="bugs",
        write=stats,
        api=api,
        products_complete=sorted(complete),
        product_errors=errors,
        rejected=rejected,
        counts={
            "bugs_refreshed": stats.inserted + stats.updated,
            "tests_with_bugs_fetched": len(fetched),
            "bug_batches_split": split,
        },
        fetch_s=fetch_s,
        problems=problems,
        problems_checked=sorted(ok),
        problems_open_before=sorted(problem_products),
    )
