"""Features and user stories: one complete list per product, re-read every cycle."""

from __future__ import annotations

import time
from typing import Awaitable, Callable

from ..domain.records import Product
from ..source import ApiSource
from ..testio import CustomerApiClient, Parsed
from ..warehouse import Warehouse
from .common import EntityResult, SyncOptions, per_product, records_issues, run_fetch, scoped_products


def _sync_product_lists(
    entity: str,
    source: ApiSource,
    warehouse: Warehouse,
    options: SyncOptions,
    fetch_one: Callable[[CustomerApiClient, Product], Awaitable[Parsed]],
) -> EntityResult:
    """Features and user stories: one complete list per product, re-read every cycle."""
    products = scoped_products(warehouse, options)
    started = time.perf_counter()

    async def fetch(client: CustomerApiClient) -> tuple[dict[int, Parsed], dict[int, str]]:
        return await per_product(products, lambda p: fetch_one(client, p))

    (ok, errors), api = run_fetch(fetch, source)
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
    stats = warehouse.write(entity, records, options.clock(), complete={"products": complete}, detect_deletions=True)
    return EntityResult(
        entity=entity,
        write=stats,
        api=api,
        products_complete=complete,
        product_errors=errors,
        rejected=rejected,
        counts={f"{entity}_refreshed": stats.inserted + stats.updated},
        fetch_s=fetch_s,
    )


@records_issues
def sync_features(source: ApiSource, warehouse: Warehouse, options: SyncOptions) -> EntityResult:
    return _sync_product_lists(
        "features", source, warehouse, options,
        lambda client, product: client.list_features(product),
    )


@records_issues
def sync_user_stories(source: ApiSource, warehouse: Warehouse, options: SyncOptions) -> EntityResult:
    return _sync_product_lists(
        "user_stories", source, warehouse, options,
        lambda client, product: client.list_user_stories(product),
    )
