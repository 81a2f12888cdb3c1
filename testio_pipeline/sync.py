"""One refresh step per entity: fetch everything for the products in scope, then write once.

Plain Python shared by the Dagster assets, the CLI and the benchmark, so they all run the
same code path. Fetching is async and concurrent across products (one in-flight cap in
the client); writing is one short warehouse transaction per entity, after the fetch, so
the DuckDB file is locked only briefly. Tests and bugs, the large lists, are not held in
memory until then: each product's tests and each bug batch are framed into a per-run stage
(Parquet files next to the warehouse, ``Warehouse.stage``) as they arrive, and the write
merges the stage.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable, Iterator, Literal

from .source import ApiSource
from .domain.records import ExploratoryTest, ProblemRange, Product, RejectedRecord, raw_id
from .domain.vocabulary import FINAL_TEST_STATUSES, utcnow
from .testio import (
    BugFetch,
    CustomerApiClient,
    Parsed,
    TestioApiError,
    TestioAuthError,
    TestioConnectionError,
    TestioNotFoundError,
)
from .warehouse import Warehouse, WriteStats
from .warehouse.staging import Stage

log = logging.getLogger("testio_pipeline.sync")

Mode = Literal["incremental", "full"]
MODES: tuple[str, ...] = ("incremental", "full")

# Errors that say the whole source is unusable: they fail the run instead of one product.
FATAL_ERRORS = (TestioAuthError, TestioConnectionError)


@dataclass
class SyncOptions:
    mode: Mode = "incremental"
    product_ids: tuple[int, ...] | None = None  # the scope; None = every product the token sees
    run_id: str | None = None
    clock: Callable[[], datetime] = utcnow


@dataclass
class EntityResult:
    """What one entity's refresh did: counts for metadata and sync_events."""

    entity: str
    write: WriteStats
    api: dict[str, Any]
    products_complete: list[int] = field(default_factory=list)
    product_errors: dict[int, str] = field(default_factory=dict)
    rejected: list[RejectedRecord] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    fetch_s: float = 0.0
    # List positions (tests) or single tests' bug lists that failed even after recovery;
    # they go to problematic_records (entity ``problem_entity``). Open problems of the
    # ``problems_checked`` products that were not reported again are marked resolved.
    problems: list[ProblemRange] = field(default_factory=list)
    problems_checked: list[int] = field(default_factory=list)
    problem_entity: str | None = None
    problems_open_before: list[int] = field(default_factory=list)  # products with open problems

    @property
    def api_requests(self) -> int:
        return int(self.api.get("requests", 0))

    @property
    def retries(self) -> int:
        return int(self.api.get("retries", 0))

    def metadata(self) -> dict[str, Any]:
        """Flat values for Dagster metadata; the Dagster layer decides how to present them."""
        return {
            "rows_inserted": self.write.inserted,
            "rows_updated": self.write.updated,
            "rows_unchanged": self.write.unchanged,
            "rows_marked_deleted": self.write.marked_deleted,
            "row_count": self.write.total_rows,
            "api_requests": self.api_requests,
            "api_retries": self.retries,
            "api_requests_by_endpoint": self.api.get("by_endpoint", {}),
            "products_synced": len(self.products_complete),
            "products_failed": len(self.product_errors),
            "product_errors": {str(k): v for k, v in self.product_errors.items()},
            "records_rejected": len(self.rejected),
            **_issue_metadata(self),
            "fetch_seconds": round(self.fetch_s, 3),
            "write_seconds": round(self.write.duration_s, 3),
            "write_lock_held_seconds": round(self.write.lock_held_s, 3),
            **self.counts,
        }


def _issue_metadata(result: "EntityResult", limit: int = 20) -> dict[str, Any]:
    """What could not be read, for metadata: counts always, a sample of details when any."""
    meta: dict[str, Any] = {"problematic_records": len(result.problems)}
    if result.rejected:
        meta["rejected_sample"] = {
            f"{r.entity} {r.record_id or '(no id)'} (product {r.product_id})": r.reason[:300]
            for r in result.rejected[:limit]
        }
    if result.problems:
        meta["problems"] = {
            f"product {p.product_id} {result.problem_entity} {p.range_start}..{p.range_end}": {
                "neighbour_ids": list(p.neighbour_ids),
                "error": p.error[:300],
            }
            for p in result.problems[:limit]
        }
    return meta


def _open_problems(warehouse: Warehouse, entity: str) -> dict[int, set[int]]:
    """Product id -> range starts of the unresolved problematic_records of ``entity``."""
    rows = warehouse.query(
        "SELECT product_id, range_start FROM problematic_records WHERE resolved_at IS NULL AND entity = ?",
        [entity],
    )
    found: dict[int, set[int]] = {}
    for product_id, start in rows.itertuples(index=False):
        found.setdefault(int(product_id), set()).add(int(start))
    return found


@contextmanager
def frozen_gc_heap() -> Iterator[None]:
    """Run an allocation-heavy step without the garbage collector re-walking the existing heap.

    Parsing tens of thousands of API objects allocates millions of short-lived containers, so
    the cyclic collector runs thousands of times per step, and its older-generation passes
    walk every object in the process (in a Dagster run: every loaded module). Freezing what
    exists before the step keeps those passes small (~10 % of a full sync's wall time at the
    benchmark's default scale). The collection thresholds stay as they are: raising them
    (tried: 50,000) was no faster and let garbage pile up, +340 MiB of peak memory at 60
    products of the large scale.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _records_issues(step: Callable[..., "EntityResult"]) -> Callable[..., "EntityResult"]:
    """After a step's entity write: store its rejected records and problem positions.

    Each in its own short transaction, after the entity's; a run killed in between loses
    only these notes, and the next run writes them again.
    """

    @functools.wraps(step)
    def wrapper(source: ApiSource, warehouse: Warehouse, options: SyncOptions) -> EntityResult:
        with frozen_gc_heap():
            result = step(source, warehouse, options)
        now = options.clock()
        if result.rejected:
            warehouse.write_rejected(result.rejected, options.run_id, now)
        entity = result.problem_entity
        if entity and (result.problems or set(result.problems_open_before) & set(result.problems_checked)):
            stats = warehouse.write_problematic(
                result.problems, options.run_id, now, entity=entity, checked_product_ids=result.problems_checked
            )
            result.counts["problems_resolved"] = stats.marked_deleted
        for problem in result.problems:
            log.warning(
                "%s: product %s positions %s..%s unreadable: %s",
                entity, problem.product_id, problem.range_start, problem.range_end, problem.error,
            )
        return result

    return wrapper


async def _per_product(
    products: list[Product],
    fetch: Callable[[Product], Awaitable[Any]],
    *,
    limit: int | None = None,
) -> tuple[dict[int, Any], dict[int, str]]:
    """Run ``fetch`` for every product concurrently; one product's failure is not the run's.

    ``limit`` caps how many products are in progress at once (their records are held until
    the product is done); the client's in-flight cap still decides the request concurrency.
    """
    gate = asyncio.Semaphore(limit) if limit else None

    async def guarded(product: Product) -> tuple[int, Any, str | None]:
        if gate is not None:
            async with gate:
                return await attempt(product)
        return await attempt(product)

    async def attempt(product: Product) -> tuple[int, Any, str | None]:
        try:
            return product.id, await fetch(product), None
        except FATAL_ERRORS:
            raise
        except TestioNotFoundError:
            return product.id, None, "product not found (HTTP 404): deleted upstream?"
        except Exception as exc:  # noqa: BLE001 - recorded per product, surfaced in metadata
            log.warning("product %s: %s", product.id, exc)
            return product.id, None, f"{type(exc).__name__}: {exc}"

    results = await asyncio.gather(*(guarded(p) for p in products))
    ok = {pid: value for pid, value, error in results if error is None}
    errors = {pid: error for pid, _, error in results if error is not None}
    return ok, errors


def _run(coro_factory: Callable[[CustomerApiClient], Awaitable[Any]], source: ApiSource) -> tuple[Any, dict]:
    """Run one fetch with a fresh client (its own event loop) and return its request stats."""

    async def main() -> tuple[Any, dict]:
        async with source.client() as client:
            value = await coro_factory(client)
            return value, client.stats.as_dict()

    return asyncio.run(main())


def scoped_products(warehouse: Warehouse, options: SyncOptions) -> list[Product]:
    """The products to refresh, as last written by the products step."""
    products = warehouse.products_in_scope(options.product_ids)
    return [Product.from_api(raw) for raw in products]


@_records_issues
def sync_products(source: ApiSource, warehouse: Warehouse, options: SyncOptions) -> EntityResult:
    started = time.perf_counter()

    async def fetch(client: CustomerApiClient) -> Parsed:
        return await client.list_products()

    parsed, api = _run(fetch, source)
    fetch_s = time.perf_counter() - started
    products: list[Product] = parsed.records
    missing: dict[int, str] = {}
    if options.product_ids is not None:
        visible = {p.id for p in products}
        missing = {
            pid: "not in the product list of this token (deleted, or no access)"
            for pid in options.product_ids
            if pid not in visible
        }
        products = [p for p in products if p.id in set(options.product_ids)]
    write = warehouse.write_products(
        products,
        options.clock(),
        # The product list is always complete, but with a scope it only speaks for the scope;
        # and a product we could not type is still there, so nothing is concluded then.
        detect_deletions=options.mode == "full" and options.product_ids is None and not parsed.rejected,
    )
    return EntityResult(
        entity="products",
        write=write,
        api=api,
        products_complete=[p.id for p in products],
        product_errors=missing,
        rejected=parsed.rejected,
        fetch_s=fetch_s,
    )


def _sync_product_lists(
    entity: str,
    source: ApiSource,
    warehouse: Warehouse,
    options: SyncOptions,
    fetch_one: Callable[[CustomerApiClient, Product], Awaitable[Parsed]],
    write: Callable[..., WriteStats],
) -> EntityResult:
    """Features and user stories: one complete list per product, re-read every cycle."""
    products = scoped_products(warehouse, options)
    started = time.perf_counter()

    async def fetch(client: CustomerApiClient) -> tuple[dict[int, Parsed], dict[int, str]]:
        return await _per_product(products, lambda p: fetch_one(client, p))

    (ok, errors), api = _run(fetch, source)
    fetch_s = time.perf_counter() - started
    records = [r for parsed in ok.values() for r in parsed.records]
    rejected = [r for parsed in ok.values() for r in parsed.rejected]
    # These lists are complete whenever the call succeeded, so deletions are safe to detect
    # in both modes, but only for the products that answered with records we could all type
    # (a rejected record is still upstream; its stored row must not be marked deleted).
    complete = sorted(pid for pid, parsed in ok.items() if not parsed.rejected)
    for pid, parsed in ok.items():
        if parsed.rejected:
            errors[pid] = f"{len(parsed.rejected)} {entity} could not be typed (see rejected_records); deletions not checked"
    stats = write(records, options.clock(), complete_product_ids=complete, detect_deletions=True)
    return EntityResult(
        entity=entity,
        write=stats,
        api=api,
        products_complete=complete,
        product_errors=errors,
        rejected=rejected,
        fetch_s=fetch_s,
    )


@_records_issues
def sync_features(source: ApiSource, warehouse: Warehouse, options: SyncOptions) -> EntityResult:
    result = _sync_product_lists(
        "features", source, warehouse, options,
        lambda client, product: client.list_features(product),
        warehouse.write_features,
    )
    result.counts["features_refreshed"] = result.write.inserted + result.write.updated
    return result


@_records_issues
def sync_user_stories(source: ApiSource, warehouse: Warehouse, options: SyncOptions) -> EntityResult:
    result = _sync_product_lists(
        "user_stories", source, warehouse, options,
        lambda client, product: client.list_user_stories(product),
        warehouse.write_user_stories,
    )
    result.counts["user_stories_refreshed"] = result.write.inserted + result.write.updated
    return result


@_records_issues
def sync_tests(source: ApiSource, warehouse: Warehouse, options: SyncOptions) -> EntityResult:
    """Full: every page. Incremental: new tests from the top, plus a re-read of non-final ones."""
    with warehouse.reading():  # the reads before the fetch share one connection
        products = scoped_products(warehouse, options)
        known = warehouse.test_states([p.id for p in products]) if options.mode == "incremental" else {}
        # Products with unreadable list positions get a full listing, so the problem is re-checked.
        open_problems = _open_problems(warehouse, "exploratory_tests")
    known_by_product: dict[int, dict[int, str]] = {}
    for test_id, (product_id, status) in known.items():
        known_by_product.setdefault(product_id, {})[test_id] = status
    with warehouse.stage("tests") as staged:
        return _fetch_and_write_tests(source, warehouse, options, products, known_by_product, open_problems, staged)


def _fetch_and_write_tests(
    source: ApiSource,
    warehouse: Warehouse,
    options: SyncOptions,
    products: list[Product],
    known_by_product: dict[int, dict[int, str]],
    open_problems: dict[int, set[int]],
    staged: Stage,
) -> EntityResult:
    started = time.perf_counter()

    async def fetch_product(client: CustomerApiClient, product: Product):
        mine = known_by_product.get(product.id, {})
        if options.mode == "full" or not mine or product.id in open_problems:
            listing = await client.list_tests(product.id)
            reread: list[ExploratoryTest | None] = []
        else:
            # New tests appear on page 1 (newest first): stop at the first page holding a known one.
            listing = await client.list_tests(
                product.id, stop_when=lambda items: any(raw_id(i) in mine for i in items)
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
        return await _per_product(products, lambda p: fetch_product(client, p), limit=limit)

    (ok, errors), api = _run(fetch, source)
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
    stats = warehouse.write_tests(
        staged,
        options.clock(),
        complete_product_ids=sorted(complete),
        detect_deletions=options.mode == "full",
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
        problem_entity="exploratory_tests",
        problems_open_before=sorted(open_problems),
    )


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


@_records_issues
def sync_bugs(source: ApiSource, warehouse: Warehouse, options: SyncOptions) -> EntityResult:
    """Bugs of every test (full), or of tests that are new, not final or changed (incremental)."""
    with warehouse.reading():  # the reads before the fetch share one connection
        products = scoped_products(warehouse, options)
        wanted = warehouse.tests_needing_bugs([p.id for p in products], full=options.mode == "full")
        # Tests whose bug list failed before are asked for again (they may be final already).
        open_problems = _open_problems(warehouse, "bugs")
        retry = {test_id for starts in open_problems.values() for test_id in starts}
        if retry:
            for test_id, (product_id, _status) in warehouse.test_states([p.id for p in products]).items():
                if test_id in retry and test_id not in wanted.get(product_id, []):
                    wanted.setdefault(product_id, []).append(test_id)
    with warehouse.stage("bugs") as staged:
        return _fetch_and_write_bugs(source, warehouse, options, products, wanted, open_problems, staged)


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
    open_problems: dict[int, set[int]],
    staged: Stage,
) -> EntityResult:
    started = time.perf_counter()

    async def fetch(client: CustomerApiClient):
        by_product = {p.id: p for p in products}
        return await _per_product(
            [by_product[pid] for pid in wanted if pid in by_product],
            lambda p: _list_bugs_staged(client, wanted[p.id], p.id, staged),
        )

    (ok, errors), api = _run(fetch, source)
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
            problems.append(ProblemRange(product_id, test_id, test_id, f"bugs of test {test_id}: {error}"))
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
        problem_entity="bugs",
        problems_open_before=sorted(open_problems),
    )


SYNC_STEPS: dict[str, Callable[[ApiSource, Warehouse, SyncOptions], EntityResult]] = {
    "products": sync_products,
    "features": sync_features,
    "user_stories": sync_user_stories,
    "tests": sync_tests,
    "bugs": sync_bugs,
}


def run_cycle(source: ApiSource, warehouse: Warehouse, options: SyncOptions) -> dict[str, EntityResult]:
    """One whole refresh cycle outside Dagster, in dependency order (used by the benchmark)."""
    return {name: step(source, warehouse, options) for name, step in SYNC_STEPS.items()}
