"""The analyst views as Dagster assets: `bug_overview`, `test_overview`, `feature_quality`,
`product_summary` (group `analytics`).

Each asset (re)creates its DuckDB view with its comments and reports a column schema, a
Markdown preview and numeric KPIs. Lineage comes from the declaration: a view depends on
the assets that write the tables it reads (and on the views it reads).

The views follow the data on their own: they carry ``AutomationCondition.eager()`` and
`testio_views_sensor` (running by default) requests them after the entity assets they read
were refreshed, so their KPIs are recomputed once per refresh cycle and plotted over time.
They have no freshness policy: a view is as fresh as the tables under it, whose freshness
the TTL already judges; a second clock on the views would only report the same staleness
twice (or a false one when just the KPIs lag a cycle).
"""

import hashlib

import dagster as dg

from ...entities import WRITER_OF_TABLE
from ...metadata import column_schema, view_metadata
from ...run_log import TRIGGER_TAG
from ...warehouse.views import VIEWS, View, create_views
from ..resources import DUCKDB_POOL, WarehouseResource

GROUP = "analytics"
KINDS = {"duckdb", "sql"}
SENSOR_NAME = "testio_views_sensor"

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


def _view_asset(view: View) -> dg.AssetsDefinition:
    @dg.asset(
        name=view.name,
        description=view.description,
        deps=view_deps(view),
        group_name=GROUP,
        kinds=KINDS,
        pool=DUCKDB_POOL,  # creating a view writes the catalog: one writer at a time
        code_version=_code_version(view),
        automation_condition=dg.AutomationCondition.eager(),
        metadata={"dagster/column_schema": column_schema(view.columns)},  # shown before any run
    )
    def _the_view(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        wh = warehouse.warehouse()
        created = create_views(wh, [view.name])
        context.log.info(f"(re)created view(s) {', '.join(created)} in {wh.location}")
        return dg.MaterializeResult(metadata=view_metadata(wh, view))

    return _the_view


VIEW_ASSETS = [_view_asset(v) for v in VIEWS.values()]

views_sensor = dg.AutomationConditionSensorDefinition(
    SENSOR_NAME,
    target=dg.AssetSelection.assets(*VIEW_ASSETS),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    # Like the refresh runs: at most one tagged run at a time (dagster.yaml's run queue limit).
    run_tags={TRIGGER_TAG: "views"},
    description="Recreates the analyst views (and recomputes their KPIs) after the tables under them were refreshed.",
)

defs = dg.Definitions(assets=VIEW_ASSETS, sensors=[views_sensor])
