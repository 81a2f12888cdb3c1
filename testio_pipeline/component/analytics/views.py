"""The analyst views as Dagster assets: `bug_overview`, `test_overview`, `feature_quality`,
`product_summary` (group `analytics`), all four from one step.

The views are SQL views: a step only (re)creates the ones whose definition changed since
their last materialization — the view's SQL and comments (its code version), the warehouse's
schema version, or the file — or that are missing from the file; otherwise it only reads
their column schema, Markdown preview and numeric KPIs. One step for the four (a multi-asset
that can be subset) instead of one per view keeps a run's step count, and its events, small.
Lineage comes from the declaration: a view depends on the assets that write the tables it
reads (and on the views it reads).

The views follow the data on their own: they carry ``AutomationCondition.eager()`` and
`testio_views_sensor` (running by default) requests them after the entity assets they read
were refreshed, so their KPIs are recomputed once per refresh cycle and plotted over time.
They have no freshness policy: a view is as fresh as the tables under it, whose freshness
the TTL already judges; a second clock on the views would only report the same staleness
twice (or a false one when just the KPIs lag a cycle).
"""

import hashlib
from typing import Iterator

import dagster as dg

from ...entities import WRITER_OF_TABLE
from ...metadata import column_schema, view_metadata
from ...run_log import CUSTOMER_TAG, TRIGGER_TAG
from ...warehouse import Warehouse
from ...warehouse.schema_versions import LATEST_VERSION
from ...warehouse.views import EXISTING_VIEWS_SQL, VIEWS, View, create_views
from ..naming import UNPREFIXED, Names
from ..resources import DEFAULT_CUSTOMER, Customer, WarehouseResource, writing_step

GROUP = "analytics"
KINDS = {"duckdb", "sql"}
SENSOR_NAME = "testio_views_sensor"
DEFINITION_KEY = "view_definition"  # materialization metadata: what the view was created from


def view_deps(view: View) -> list[str]:
    """Asset keys a view depends on: the views it reads, and the writers of every table it
    reads directly or through those views. Naming the writers directly lets the eager
    condition see a refresh run still in progress and wait for it, instead of rebuilding a
    view between two steps of that run."""
    deps: list[str] = []
    for name in view.reads:
        keys = [name, *view_deps(VIEWS[name])] if name in VIEWS else [WRITER_OF_TABLE[name]]
        deps.extend(key for key in keys if key not in deps)
    return deps


def _code_version(view: View) -> str:
    """Changes whenever the view's SQL or its comments change, so the UI flags a redefinition."""
    return hashlib.sha256("\n".join(view.create_sql()).encode()).hexdigest()[:12]


def _definition(view: View, wh: Warehouse) -> str:
    return f"{_code_version(view)} schema v{LATEST_VERSION} {wh.location}"


def _spec(view: View, names: Names) -> dg.AssetSpec:
    return dg.AssetSpec(
        names.key(view.name),
        description=view.description,
        deps=names.keys(view_deps(view)),
        group_name=names.of(GROUP),
        kinds=KINDS,
        code_version=_code_version(view),
        automation_condition=dg.AutomationCondition.eager(),
        metadata={"dagster/column_schema": column_schema(view.columns)},  # shown before any run
    )


def _outdated(context: dg.AssetExecutionContext, names: Names, wh: Warehouse, views: list[View]) -> list[str]:
    """The views last materialized from another definition (or never), in one instance query."""
    latest = context.instance.get_latest_materialization_events([names.key(v.name) for v in views])
    outdated = []
    for view in views:
        event = latest.get(names.key(view.name))
        materialization = event.asset_materialization if event else None
        previous = materialization.metadata.get(DEFINITION_KEY) if materialization else None
        if getattr(previous, "value", None) != _definition(view, wh):
            outdated.append(view.name)
    return outdated


def _all_present(wh: Warehouse, views: list[View]) -> bool:
    existing = {r["view_name"] for r in wh.records(EXISTING_VIEWS_SQL)}
    return all(view.name in existing for view in views)


def _readouts(names: Names, wh: Warehouse, views: list[View]) -> Iterator[dg.MaterializeResult]:
    for view in views:
        metadata = {**view_metadata(wh, view), DEFINITION_KEY: _definition(view, wh)}
        yield dg.MaterializeResult(asset_key=names.key(view.name), metadata=metadata)


def build_views(
    names: Names = UNPREFIXED, customer: Customer = DEFAULT_CUSTOMER
) -> tuple[dg.AssetsDefinition, dg.AutomationConditionSensorDefinition]:
    """One instance's views step and the sensor that keeps it following that instance's tables."""

    @dg.multi_asset(
        name=names.of("analytics_views"),
        specs=[_spec(v, names) for v in VIEWS.values()],
        can_subset=True,
        pool=customer.pool,  # creating a view writes the catalog: one writer at a time
        required_resource_keys={names.warehouse},
    )
    def analytics_views(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        warehouse: WarehouseResource = getattr(context.resources, names.warehouse)
        wh = warehouse.warehouse(customer)
        with writing_step(context, wh, names.of("analytics_views")):
            yield from _views(context, names, wh)

    sensor = dg.AutomationConditionSensorDefinition(
        names.of(SENSOR_NAME),
        target=dg.AssetSelection.assets(*names.keys(VIEWS)),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        # Like the refresh runs: at most one run of the customer at a time (dagster.yaml's run queue limit).
        run_tags={TRIGGER_TAG: "views", CUSTOMER_TAG: customer.name},
        description="Recreates the analyst views (and recomputes their KPIs) after the tables under them were refreshed.",
    )
    return analytics_views, sensor


def _views(context: dg.AssetExecutionContext, names: Names, wh: Warehouse) -> Iterator[dg.MaterializeResult]:
    selected = [v for v in VIEWS.values() if names.key(v.name) in context.selected_asset_keys]
    outdated = _outdated(context, names, wh, selected)
    if not outdated:
        with wh.reading():  # one read-only connection: the views are all there, then every readout
            if _all_present(wh, selected):
                yield from _readouts(names, wh, selected)
                return
    # The outdated ones are replaced; any other selected view missing from the file is created.
    created = create_views(wh, outdated, missing=[v.name for v in selected])
    if created:
        context.log.info(f"(re)created view(s) {', '.join(created)} in {wh.location}")
    with wh.reading():  # one read-only connection for every view's readout
        yield from _readouts(names, wh, selected)


_views_asset, views_sensor = build_views()
VIEW_ASSETS = [_views_asset]  # the unprefixed instance's: what the tests run
