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
from .common import FATAL_ERRORS, EntityResult, SyncOptions, open_problems, records_issues, run_fetch, scoped_products


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


async def _list_bugs_staged(client: CustomerApiClient, wanted: dict[int, list[int]], staged: Stage) -> BugFetch:
    """The bugs of every wanted test, one batch at a time, each batch framed into the stage at once.

    The tests are taken product after product and cut into batches of ``bug_batch_size``, so
    a batch may span two products: ``⌈tests / batch⌉`` queries in all, where batches per
    product would cost one more for every product's last, partly filled batch. Each bug's
    product comes from its test. A batch that fails for an unexpected reason fails its tests
    (reported per product), not the step.
    """
    product_of = {test_id: product_id for product_id, ids in wanted.items() for test_id in ids}
    ids = [test_id for product_id in wanted for test_id in sorted(set(wanted[product_id]))]
    size = max(1, client.bug_batch_size)
    total = BugFetch()

    async def one(batch: list[int]) -> None:
        try:
            part = await client.list_bugs(batch, product_of=product_of)
        except FATAL_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded per test, surfaced per product
            total.failed.update({test_id: f"{type(exc).__name__}: {exc}" for test_id in batch})
            return
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
    in_scope = {p.id for p in products}
    wanted = {pid: ids for pid, ids in wanted.items() if pid in in_scope}

    async def fetch(client: CustomerApiClient) -> BugFetch:
        return await _list_bugs_staged(client, wanted, staged)

    fetched_all, api = run_fetch(fetch, source)
    fetch_s = time.perf_counter() - started
    errors: dict[int, str] = {}
    complete: list[int] = []
    problems: list[ProblemRange] = []
    for product_id, ids in wanted.items():
        failed = {t: fetched_all.failed[t] for t in sorted(set(ids)) if t in fetched_all.failed}
        for test_id, error in failed.items():
            # One test's bug list that fails on its own: the "position" is the test id.
            problems.append(ProblemRange(product_id, test_id, test_id, f"bugs of test {test_id}: {error}"))
        with_rejects = fetched_all.with_rejects.intersection(ids)
        if failed:
            errors[product_id] = f"bugs of {len(failed)} tests could not be fetched (see problematic_records)"
        elif with_rejects:
            errors[product_id] = (
                f"bugs of {len(with_rejects)} tests include records that could not be typed "
                "(see rejected_records); their deletions not checked"
            )
        else:
            complete.append(product_id)
    # Products with no test needing bugs are up to date too.
    complete.extend(p.id for p in products if p.id not in wanted and p.id not in errors)
    stats = warehouse.write_bugs(
        staged,
        options.clock(),
        fetched_test_ids=fetched_all.fetched_test_ids,
        complete_product_ids=sorted(complete),
        detect_deletions=options.mode == "full",
    )
    return EntityResult(
        entity="bugs",
        write=stats,
        api=api,
        products_complete=sorted(complete),
        product_errors=errors,
        rejected=fetched_all.rejected,
        counts={
            "bugs_refreshed": stats.inserted + stats.updated,
            "tests_with_bugs_fetched": len(fetched_all.fetched_test_ids),
            "bug_batches_split": fetched_all.batches_split,
        },
        fetch_s=fetch_s,
        problems=problems,
        problems_checked=sorted(wanted),
        problems_open_before=sorted(problem_products),
    )
