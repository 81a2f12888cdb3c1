"""The products step: the token's product list (one request), with deletion detection on full syncs."""

from __future__ import annotations

import time

from ..domain.records import Product
from ..source import ApiSource
from ..testio import CustomerApiClient, Parsed
from ..warehouse import Warehouse
from .common import EntityResult, SyncOptions, records_issues, run_fetch


@records_issues
def sync_products(source: ApiSource, warehouse: Warehouse, options: SyncOptions) -> EntityResult:
    started = time.perf_counter()

    async def fetch(client: CustomerApiClient) -> Parsed:
        return await client.list_products()

    parsed, api = run_fetch(fetch, source)
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
    write = warehouse.write(
        "products",
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
        counts={"products_synced": len(products)},
        fetch_s=fetch_s,
    )
