"""One asset per entity of the registry. Each fetches for every product in scope, writes once,
then runs its data checks in the same step (``checks.py``)."""

import time

import dagster as dg

from ...entities import ENTITIES, Entity
from ...freshness import SCOPE_METADATA_KEY, scope_label
from ...metadata import entity_metadata
from ...source import SIMULATOR_NOTICE
from ...sync import EntityResult
from ..resources import DUCKDB_POOL, CustomerApiResource, RefreshResource, WarehouseResource
from .checks import check_results, check_specs

GROUP = "testio"
KINDS = {"python", "duckdb"}


def _refresh(
    context: dg.AssetExecutionContext,
    entity: Entity,
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
        result = entity.sync_step()(source, wh, options)
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
    return dg.MaterializeResult(
        metadata={**entity_metadata(wh, entity), **metadata},
        check_results=check_results(wh, entity, context.run.run_id),
    )


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


def _asset(entity: Entity) -> dg.AssetsDefinition:
    @dg.asset(
        name=entity.name,
        description=entity.description,
        deps=list(entity.upstream),
        group_name=GROUP,
        kinds=KINDS,
        pool=DUCKDB_POOL,
        check_specs=check_specs(entity),
    )
    def _the_asset(
        context: dg.AssetExecutionContext,
        testio_api: CustomerApiResource,
        warehouse: WarehouseResource,
        refresh: RefreshResource,
    ) -> dg.MaterializeResult:
        return _refresh(context, entity, testio_api, warehouse, refresh)

    return _the_asset


TESTIO_ASSETS = [_asset(entity) for entity in ENTITIES]

defs = dg.Definitions(assets=TESTIO_ASSETS)
