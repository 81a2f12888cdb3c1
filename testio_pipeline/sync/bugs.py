"""The bugs step: bugs of every test (full), or of tests that are new, not final or changed
(incremental). Each bug batch is framed into a per-run stage as it arrives."""

from __future__ import annotations

import asyncio
import logging
import time

from ..domain.records import ProblemRange, Product, RejectReason
from ..domain.vocabulary import STANDARD_REJECT_REASONS
from ..source import ApiSource
from ..testio import BugFetch, CustomerApiClient, TestioApiError, TestioAuthError
from ..warehouse import Warehouse
from ..warehouse.staging import Stage
from .common import FATAL_ERRORS, EntityResult, SyncOptions, open_problems, records_issues, run_fetch, scoped_products

log = logging.getLogger(__name__)


def with_standard_reasons(listed: list[RejectReason]) -> list[RejectReason]:
    """The API's reasons, then TestIO's standard ones for the keys the API did not list."""
    keys = {r.key for r in listed}
    standard = [RejectReason(k, n, c, source="standard") for k, n, c in STANDARD_REJECT_REASONS if k not in keys]
    return [*listed, *standard]


async def _reject_reasons(client: CustomerApiClient) -> list[RejectReason] | None:
    """What the bugs' comments are matched against: the API's list completed with the
    standard one (the standard one alone after a 404). None keeps the stored list: the
    endpoint failing otherwise must not fail the bugs."""
    try:
        listed = await client.list_reject_reasons()
    except TestioAuthError:
        raise
    except TestioApiError as exc:
        log.warning("bugs/reject_reasons failed (%s): the stored rejection reasons are used", exc)
        return None
    if listed is None:
        log.warning("bugs/reject_reasons answered 404 (an older deployment): TestIO's standard list is used")
    return with_standard_reasons(listed or [])


async def _keep_stored() -> None:
    return None


@records_issues
def sync_bugs(source: ApiSource, warehouse: Warehouse, options: SyncOptions) -> EntityResult:
    """Bugs of every test (full), or of tests that are new, not final or changed (incremental)."""
    with warehouse.reading():  # the reads before the fetch share one connection
        products = scoped_products(warehouse, options)
        wanted = warehouse.tests_needing_bugs([p.id for p in products], full=options.mode == "full")
        # A customer's reasons seldom change: read with every full sync (nightly) and until a
        # sync has stored them; incremental cycles match against the stored list.
        read_reasons = options.mode == "full" or not warehouse.reject_reasons_synced()
        # Tests whose bug list failed before are asked for again (they may be final already).
        problem_products = open_problems(warehouse, "bugs")
        retry = {test_id for starts in problem_products.values() for test_id in starts}
        if retry:
            for test_id, (product_id, _status) in warehouse.test_states([p.id for p in products]).items():
                if test_id in retry and test_id not in wanted.get(product_id, []):
                    wanted.setdefault(product_id, []).append(test_id)
    with warehouse.stage("bugs") as staged:
        return _fetch_and_write_bugs(source, warehouse, options, products, wanted, problem_products, staged, read_reasons)


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
    read_reasons: bool,
) -> EntityResult:
    started = time.perf_counter()
    in_scope = {p.id for p in products}
    wanted = {pid: ids for pid, ids in wanted.items() if pid in in_scope}

    reasons: list[RejectReason] | None = None

    async def fetch(client: CustomerApiClient) -> BugFetch:
        nonlocal reasons
        bugs, reasons = await asyncio.gather(
            _list_bugs_staged(client, wanted, staged),
            _reject_reasons(client) if read_reasons else _keep_stored(),
        )
        return bugs

    fetched_all, api = run_fetch(fetch, source)
    fetch_s = time.perf_counter() - started
    errors: dict[int, str] = {}
    complete: list[int] = []
    problems: list[ProblemRange] = []
    for product_id, ids in wanted.items():
        failed = {t: fetched_all.failed[t] for t in sorted(set(ids)) if t in fetched_all.failed}
        for test_id, error in failed.items():
            # One test's bug list that fails on its own: the "position" is the test id.
            problems.append(ProblemRange.bug_list(product_id, test_id, f"bugs of test {test_id}: {error}"))
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
    stats = warehouse.write(
        "bugs",
        staged,
        options.clock(),
        # Deletions among the bugs of the tests whose bugs were all read; their sync times,
        # and those of the products whose tests' bugs were all read.
        complete={"tests": fetched_all.fetched_test_ids, "products": sorted(complete)},
        detect_deletions=options.mode == "full",
        run_id=options.run_id,
        reject_reasons=reasons,
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
            # 0: the API did not list any (404), the standard list was used.
            "reject_reasons_from_api": sum(r.source == "api" for r in reasons or []),
            "reject_reasons_read": int(read_reasons),
        },
        fetch_s=fetch_s,
        problems=problems,
        problems_checked=sorted(wanted),
        problems_open_before=sorted(problem_products),
    )
