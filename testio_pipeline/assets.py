"""The five TestIO assets. Each one fetches for every product in scope, then writes once."""


import time
from typing import Callable

import dagster as dg

from .freshness import SCOPE_METADATA_KEY, scope_label
from .metadata import entity_metadata
from .resources import CustomerApiResource, RefreshResource, WarehouseResource
from .source import SIMULATOR_NOTICE, ApiSource
from .sync import (
    EntityResult,
    SyncOptions,
    sync_bugs,
    sync_features,
    sync_products,
    sync_tests,
    sync_user_stories,
)
from .warehouse import Warehouse

GROUP = "testio"
KINDS = {"python", "duckdb"}
# Every asset that writes DuckDB takes a slot of this pool (limit 1 in dagster.yaml), so
# only one process ever holds the file for writing.
DUCKDB_POOL = "testio_duckdb"

Step = Callable[[ApiSource, Warehouse, SyncOptions], EntityResult]


def _refresh(
    context: dg.AssetExecutionContext,
    step: Step,
    testio_api: CustomerApiResource,
    warehouse: WarehouseResource,
    refresh: RefreshResource,
) -> dg.MaterializeResult:
    started = time.perf_counter()
    source = testio_api.source()
    if source.is_simulator:
        context.log.warning(SIMULATOR_NOTICE)
    options = refresh.options(context)
    wh = warehouse.warehouse()
    run_log = refresh.run_log(context, wh)
    try:
        result = step(source, wh, options)
    except Exception as exc:
        run_log.fail(context.asset_key.to_user_string(), exc)
        raise
    run_log.record(result)
    _log_outcome(context, result)
    metadata = {
        "dagster/row_count": dg.MetadataValue.int(result.write.total_rows),
        "source": dg.MetadataValue.text(source.label),
        "source_is_simulator": dg.MetadataValue.bool(source.is_simulator),
        "mode": dg.MetadataValue.text(options.mode),
        SCOPE_METADATA_KEY: dg.MetadataValue.text(scope_label(options.product_ids)),
        "duration_seconds": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
    }
    for key, value in result.metadata().items():
        if key != "row_count":
            metadata[key] = dg.MetadataValue.json(value) if isinstance(value, dict) else value
    # Column schema, Markdown preview and KPIs (metadata.py); the run's own counts win on a clash.
    return dg.MaterializeResult(metadata={**entity_metadata(wh, context.asset_key.to_user_string()), **metadata})


def _log_outcome(context: dg.AssetExecutionContext, result: EntityResult) -> None:
    """What was refreshed, and everything that was not, in the run log."""
    for product_id, error in result.product_errors.items():
        context.log.warning(f"{result.entity}: product {product_id} not refreshed: {error}")
    if result.rejected:
        context.log.warning(f"{result.entity}: {len(result.rejected)} records could not be typed (rejected_records)")
    for problem in result.problems:
        context.log.warning(
            f"{result.entity}: product {problem.product_id} positions "
            f"{problem.range_start}..{problem.range_end} unreadable (problematic_records): {problem.error}"
        )
    context.log.info(
        f"{result.entity}: {result.write.inserted} inserted, {result.write.updated} updated, "
        f"{result.write.unchanged} unchanged, {result.api_requests} API requests"
    )


def _asset(name: str, step: Step, description: str, deps: list[str]):
    @dg.asset(
        name=name,
        description=description,
        deps=deps,
        group_name=GROUP,
        kinds=KINDS,
        pool=DUCKDB_POOL,
    )
    def _the_asset(
        context: dg.AssetExecutionContext,
        testio_api: CustomerApiResource,
        warehouse: WarehouseResource,
        refresh: RefreshResource,
    ) -> dg.MaterializeResult:
        return _refresh(context, step, testio_api, warehouse, refresh)

    return _the_asset


products = _asset("products", sync_products, "TestIO products in scope, with their sections.", [])
features = _asset(
    "features", sync_features, "Features of each product, and the sections they belong to.", ["products"]
)
user_stories = _asset(
    "user_stories", sync_user_stories, "User stories of each product, matched to their feature.", ["features"]
)
tests = _asset(
    "tests", sync_tests, "Exploratory tests of each product, with the features they cover.", ["products"]
)
bugs = _asset("bugs", sync_bugs, "Bugs reported in each product's exploratory tests.", ["tests"])

TESTIO_ASSETS = [products, features, user_stories, tests, bugs]
