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
from ...freshness import ttl_policy
from ...quality import CheckOutcome, run_checks
from ...source import ApiSource
from ...sync import EntityResult, SyncOptions
from ...sync.graph import run_in_dependency_order
from ...warehouse import Warehouse
from ..naming import UNPREFIXED, Names
from ..resources import DEFAULT_CUSTOMER, Customer, CustomerApiResource, RefreshResource, WarehouseResource, writing_step
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
        checks = run_checks(wh, entity, options.run_id, token=source.settings.token)
        readout = entity_metadata(wh, entity)
    return Refreshed(result=result, checks=checks, readout=readout, seconds=time.perf_counter() - started)


def _materialization(
    key: dg.AssetKey, done: Refreshed, source: ApiSource, options: SyncOptions, check_keys: set[dg.AssetCheckKey]
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
    for name, value in result.metadata().items():
        if name != "row_count":
            metadata[name] = dg.MetadataValue.json(value) if isinstance(value, dict) else value
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


def build_testio_assets(
    names: Names = UNPREFIXED, customer: Customer = DEFAULT_CUSTOMER, ttl_seconds: int | None = None
) -> list[dg.AssetsDefinition]:
    """The entities' multi-asset of one instance; ``ttl_seconds`` becomes each asset's freshness policy."""
    policy = ttl_policy(ttl_seconds) if ttl_seconds is not None else None

    @dg.multi_asset(
        name=names.of(STEP_NAME),
        specs=[
            dg.AssetSpec(
                names.key(entity.name),
                description=entity.description,
                deps=names.keys(entity.upstream),
                group_name=names.of(GROUP),
                kinds=KINDS,
                freshness_policy=policy,
                # Not produced when its upstream failed in the same step (the step then fails).
                skippable=True,
            )
            for entity in ENTITIES
        ],
        check_specs=[spec for entity in ENTITIES for spec in check_specs(entity, names.key(entity.name))],
        can_subset=True,
        pool=customer.pool,
        required_resource_keys={names.api, names.warehouse, names.refresh},
    )
    def testio_refresh(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        """Refresh the selected TestIO entities, independent ones at the same time."""
        testio_api: CustomerApiResource = getattr(context.resources, names.api)
        warehouse: WarehouseResource = getattr(context.resources, names.warehouse)
        refresh: RefreshResource = getattr(context.resources, names.refresh)
        source = testio_api.source(customer)
        if source.is_simulator:
            context.log.warning(customer.simulator_notice)
        options = refresh.options(context, customer)
        wh = warehouse.warehouse(customer)  # shared by the worker threads: a reading() block is per thread
        with writing_step(context, wh, names.of(STEP_NAME)):
            yield from _refresh(context, names, source, wh, options, refresh)

    return [testio_refresh]


def _refresh(
    context: dg.AssetExecutionContext,
    names: Names,
    source: ApiSource,
    wh: Warehouse,
    options: SyncOptions,
    refresh: RefreshResource,
) -> Iterator[dg.MaterializeResult]:
    run_log = refresh.run_log(context, wh)  # opens the run's sync_events row
    selected = [entity for entity in ENTITIES if names.key(entity.name) in context.selected_asset_keys]
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
            yield _materialization(names.key(name), outcome.value, source, options, check_keys)
    if errors:
        raise errors[0]


# The unprefixed instance's asset, without a freshness policy: what the tests run.
TESTIO_ASSETS = build_testio_assets()
