"""The registry's entities as one subsettable multi-asset: one asset each, one step per run.

Independent entities refresh at the same time inside that step (``sync.graph``: features ∥
tests, then user stories ∥ bugs), sharing the source's in-flight cap; each entity's data checks
run right after its write (``checks.py``), and its materialization is recorded as soon as it
is done. Selecting some of the assets runs just their steps.
"""

import time
from dataclasses import dataclass
from typing import Any, Iterator

import dagster as dg

from ...entities import ENTITIES, Entity
from ...freshness import SCOPE_METADATA_KEY, scope_label
from ...metadata import entity_metadata
from ...quality import CheckOutcome, run_checks
from ...source import SIMULATOR_NOTICE, ApiSource
from ...sync import EntityResult, SyncOptions
from ...sync.graph import run_in_dependency_order
from ...warehouse import Warehouse
from ..resources import DUCKDB_POOL, CustomerApiResource, RefreshResource, WarehouseResource, writing_step
from .checks import check_result, check_specs

GROUP = "testio"
KINDS = {"python", "duckdb"}
STEP_NAME = "testio_refresh"


@dataclass
class Refreshed:
    """One entity's step, done in its worker thread: the sync, its checks and its readout."""

    result: EntityResult
    checks: list[CheckOutcome]
    readout: dict[str, Any]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(outcome.passed for outcome in self.checks if outcome.blocking)


def _refresh_one(entity: Entity, source: ApiSource, wh: Warehouse, options: SyncOptions) -> Refreshed:
    started = time.perf_counter()
    result = entity.sync_step()(source, wh, options)
    with wh.reading():  # every check and readout query on one connection: opening one costs more
        checks, readout = run_checks(wh, entity, options.run_id), entity_metadata(wh, entity)
    return Refreshed(result=result, checks=checks, readout=readout, seconds=time.perf_counter() - started)


def _materialization(
    entity: Entity, done: Refreshed, source: ApiSource, options: SyncOptions, check_keys: set[dg.AssetCheckKey]
) -> dg.MaterializeResult:
    result = done.result
    metadata = {
        "dagster/row_count": dg.MetadataValue.int(result.write.total_rows),
        "source": dg.MetadataValue.text(source.label),
        "source_is_simulator": dg.MetadataValue.bool(source.is_simulator),
        "mode": dg.MetadataValue.text(options.mode),
        SCOPE_METADATA_KEY: dg.MetadataValue.text(scope_label(options.product_ids)),
        "duration_seconds": dg.MetadataValue.float(round(done.seconds, 3)),
    }
    for key, value in result.metadata().items():
        if key != "row_count":
            metadata[key] = dg.MetadataValue.json(value) if isinstance(value, dict) else value
    key = dg.AssetKey(entity.name)
    return dg.MaterializeResult(
        asset_key=key,
        # Column schema, Markdown preview and KPIs (metadata.py); the run's own counts win on a clash.
        metadata={**done.readout, **metadata},
        check_results=[
            check_result(outcome, key)
            for outcome in done.checks
            if dg.AssetCheckKey(key, outcome.name) in check_keys
        ],
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


@dg.multi_asset(
    name=STEP_NAME,
    specs=[
        dg.AssetSpec(
            entity.name,
            description=entity.description,
            deps=list(entity.upstream),
            group_name=GROUP,
            kinds=KINDS,
            # Not produced when its upstream failed in the same step (the step then fails).
            skippable=True,
        )
        for entity in ENTITIES
    ],
    check_specs=[spec for entity in ENTITIES for spec in check_specs(entity)],
    can_subset=True,
    pool=DUCKDB_POOL,
)
def testio_refresh(
    context: dg.AssetExecutionContext,
    testio_api: CustomerApiResource,
    warehouse: WarehouseResource,
    refresh: RefreshResource,
) -> Iterator[dg.MaterializeResult]:
    """Refresh the selected TestIO entities, independent ones at the same time."""
    source = testio_api.source()
    if source.is_simulator:
        context.log.warning(SIMULATOR_NOTICE)
    options = refresh.options(context)
    wh = warehouse.warehouse()  # shared by the worker threads: a reading() block is per thread
    with writing_step(context, wh, STEP_NAME):
        yield from _refresh(context, source, wh, options, refresh)


def _refresh(
    context: dg.AssetExecutionContext, source: ApiSource, wh: Warehouse, options: SyncOptions, refresh: RefreshResource
) -> Iterator[dg.MaterializeResult]:
    run_log = refresh.run_log(context, wh)  # opens the run's sync_events row
    selected = [entity for entity in ENTITIES if dg.AssetKey(entity.name) in context.selected_asset_keys]
    check_keys = set(context.selected_asset_check_keys)
    errors: list[BaseException] = []
    for outcome in run_in_dependency_order(
        selected,
        lambda entity: _refresh_one(entity, source, wh, options),
        passed=lambda done: done.passed,
    ):
        name = outcome.entity.name
        if outcome.error is not None:
            run_log.fail(name, outcome.error)
            context.log.error(f"{name}: failed: {type(outcome.error).__name__}: {outcome.error}")
            errors.append(outcome.error)
        elif outcome.not_run_because is not None:
            context.log.warning(f"{name}: not refreshed, because {outcome.not_run_because}")
        else:
            run_log.record(outcome.value.result)
            _log_outcome(context, outcome.value.result)
            yield _materialization(outcome.entity, outcome.value, source, options, check_keys)
    if errors:
        raise errors[0]


TESTIO_ASSETS = [testio_refresh]

defs = dg.Definitions(assets=TESTIO_ASSETS)
