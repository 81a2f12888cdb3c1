"""What every sync step shares: options, the result record, per-product fan-out, issue notes."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable, Iterator, Literal

from ..domain.records import ProblemRange, Product, RejectedRecord
from ..domain.vocabulary import utcnow
from ..source import ApiSource
from ..testio import CustomerApiClient, TestioAuthError, TestioConnectionError, TestioNotFoundError
from ..warehouse import Warehouse, WriteStats

log = logging.getLogger("testio_pipeline.sync")

Mode = Literal["incremental", "full"]

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
    # they go to problematic_records. Open problems of the ``problems_checked`` products
    # that were not reported again are marked resolved.
    problems: list[ProblemRange] = field(default_factory=list)
    problems_checked: list[int] = field(default_factory=list)
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
            "write_longest_unit_seconds": round(self.write.longest_hold_s, 3),
            "write_units": self.write.units,
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
            f"product {p.product_id} {result.entity} {p.range_start}..{p.range_end}": {
                "neighbour_ids": list(p.neighbour_ids),
                "error": p.error[:300],
            }
            for p in result.problems[:limit]
        }
    return meta


def open_problems(warehouse: Warehouse, entity: str) -> dict[int, set[int]]:
    """Product id -> range starts of the unresolved problematic_records of ``entity``."""
    rows = warehouse.records(
        "SELECT product_id, range_start FROM problematic_records WHERE resolved_at IS NULL AND entity = ?",
        [entity],
    )
    found: dict[int, set[int]] = {}
    for row in rows:
        found.setdefault(int(row["product_id"]), set()).add(int(row["range_start"]))
    return found


_frozen_steps = 0
_frozen_lock = threading.Lock()


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

    Steps run at the same time (features next to tests, user stories next to bugs) and the
    frozen set is the process's, so the heap is unfrozen only when the last of them ends: a
    step that ended first used to unfreeze it under the bugs step, whose collections then
    walked the whole heap again.
    """
    global _frozen_steps
    with _frozen_lock:
        _frozen_steps += 1
        gc.freeze()
    try:
        yield
    finally:
        with _frozen_lock:
            _frozen_steps -= 1
            if not _frozen_steps:
                gc.unfreeze()


def records_issues(step: Callable[..., "EntityResult"]) -> Callable[..., "EntityResult"]:
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
        entity = result.entity
        if result.problems or set(result.problems_open_before) & set(result.problems_checked):
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


async def per_product(
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


def run_fetch(coro_factory: Callable[[CustomerApiClient], Awaitable[Any]], source: ApiSource) -> tuple[Any, dict]:
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
