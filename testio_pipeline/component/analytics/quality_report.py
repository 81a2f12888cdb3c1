"""The product quality report as a Dagster asset (group `analytics`): `quality_report`.

The report itself is ``testio_pipeline.report`` (Dagster-free); this asset builds it, writes
the HTML to ``reports/`` beside the DuckDB file (``quality_report.html``, another customer's
``<name>_quality_report.html``: instances whose warehouses share a folder keep theirs), and shows the same report as Markdown
metadata with its headline numbers as KPIs the UI plots over time.

Like the views it follows the data on its own: ``AutomationCondition.eager()`` and
`testio_report_sensor` (running by default) rebuild it after a refresh wrote the tables it
reads. The window is run config (``days``, default 30, ending now or at ``as_of``).
"""

from datetime import datetime

import dagster as dg

from ...entities import WRITER_OF_TABLE
from ...run_log import CUSTOMER_TAG, TRIGGER_TAG
from ...warehouse import Warehouse
from ..naming import UNPREFIXED, Names
from ..resources import DEFAULT_CUSTOMER, Customer

GROUP = "analytics"
SENSOR_NAME = "testio_report_sensor"
READS = ("products", "features", "tests", "bugs")


class QualityReportConfig(dg.Config):
    days: int = 30
    as_of: str | None = None  # ISO 8601 end of the window (UTC when no offset); default: now
    max_products: int = 20  # products with the most bugs in the window get their own section


def build_quality_report(
    names: Names = UNPREFIXED, customer: Customer = DEFAULT_CUSTOMER
) -> tuple[dg.AssetsDefinition, dg.AutomationConditionSensorDefinition]:
    """One instance's report asset and the sensor that rebuilds it after its tables changed."""

    @dg.asset(
        key=names.key("quality_report"),
        description="Product quality report for the account and each product over the last days, as Markdown and an HTML file with charts.",
        deps=names.keys(sorted({WRITER_OF_TABLE[t] for t in READS})),
        group_name=names.of(GROUP),
        kinds={"duckdb", "html"},
        automation_condition=dg.AutomationCondition.eager(),
        required_resource_keys={names.warehouse},
    )
    def quality_report(context: dg.AssetExecutionContext, config: QualityReportConfig) -> dg.MaterializeResult:
        """Product quality report over the last days, as Markdown and an HTML file with charts."""
        wh = getattr(context.resources, names.warehouse).warehouse(customer)
        return _report(context, config, wh, f"{names.of('quality_report')}.html", customer.name)

    sensor = dg.AutomationConditionSensorDefinition(
        names.of(SENSOR_NAME),
        target=dg.AssetSelection.assets(quality_report),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        run_tags={TRIGGER_TAG: "report", CUSTOMER_TAG: customer.name},
        description="Rebuilds the product quality report after the tables it reads were refreshed.",
    )
    return quality_report, sensor


def _report(
    context: dg.AssetExecutionContext, config: QualityReportConfig, wh: Warehouse, file_name: str, customer: str
) -> dg.MaterializeResult:
    from ...report import build  # loads only when a report is built

    as_of = datetime.fromisoformat(config.as_of) if config.as_of else None
    report = build(wh, days=config.days, as_of=as_of, max_products=config.max_products, file_name=file_name, customer=customer)
    context.log.info(f"quality report for {len(report.products)} products written to {report.html_path}")
    account = report.account
    metadata = {
        "report": dg.MetadataValue.md(report.markdown()),
        "html_path": dg.MetadataValue.path(str(report.html_path)),
        "window_start": dg.MetadataValue.timestamp(report.window.start),
        "window_end": dg.MetadataValue.timestamp(report.window.end),
        "bugs": dg.MetadataValue.int(account.sections["rates"].first("bugs")),
        "products_reported": dg.MetadataValue.int(len(report.products)),
    }
    for name in ("acceptance_rate", "rejection_rate"):
        value = account.figure("rates", name)
        if value is not None:
            metadata[name] = dg.MetadataValue.float(round(value, 4))
    return dg.MaterializeResult(metadata=metadata)


quality_report, report_sensor = build_quality_report()  # the unprefixed instance's: what the tests run
