"""The product quality report: for the whole account and each product, over the last N days.

Tests by status and type, bugs by severity and status, acceptance and rejection rates with
the weekly trend, rejection reasons, the features with most critical bugs, bugs by
operating system and browser, top testers. :func:`build` reads them in one read-only
connection (``queries``: one query per section for all scopes) and writes one self-contained
HTML file with hand-written SVG charts (``render``, ``charts``) to ``reports/`` beside the
DuckDB file; :meth:`Report.markdown` is the same report for the Dagster UI. Sections are
:class:`Table` rows (``to_pandas()`` for a DataFrame): neither pandas nor a plotting library
is imported to build a report. Dagster-free: the asset in ``defs/analytics/`` is glue.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..warehouse import Warehouse
from ..warehouse.backends import is_lake
from . import queries, render
from .queries import Sections, Table, Window

__all__ = ["Report", "Scope", "Table", "Window", "build", "report_path"]

FILE_NAME = "quality_report.html"


@dataclass
class Scope:
    """The report's sections for one product, or for the account (``product_id`` None)."""

    title: str
    product_id: int | None
    sections: Sections

    @property
    def anchor(self) -> str:
        return "account" if self.product_id is None else f"product-{self.product_id}"

    def figure(self, section: str, column: str) -> float | None:
        """``column`` of the section's first row (e.g. the account's rate), None when unknown."""
        table = self.sections.get(section)
        value = None if table is None else table.first(column)
        return None if value is None else float(value)


@dataclass
class Report:
    window: Window
    days: int
    generated_at: datetime
    source: str  # the DuckDB file or the lake's ATTACH string
    account: Scope
    products: list[Scope] = field(default_factory=list)
    omitted_products: int = 0
    html_path: Path | None = None
    customer: str | None = None  # the instance's name: whose report this is

    @property
    def title(self) -> str:
        whose = f" for {self.customer}" if self.customer else ""
        return f"Product quality report{whose}, {self.window.start:%Y-%m-%d} to {self.window.end:%Y-%m-%d}"

    def overview(self) -> Table:
        """One row per product in the report: its bugs and rates in the window."""
        rows = []
        for scope in self.products:
            severity = scope.sections["bugs_by_severity"]
            critical = [r["bugs"] for r in severity.records() if r["severity"] == "critical"]
            rows.append((
                scope.product_id,
                scope.title,
                sum(scope.sections["tests_by_status"].column("tests")),
                scope.sections["rates"].first("bugs"),
                sum(critical),
                scope.figure("rates", "acceptance_rate"),
                scope.figure("rates", "rejection_rate"),
            ))
        columns = ("product_id", "product", "tests", "bugs", "critical", "acceptance_rate", "rejection_rate")
        return Table(columns, tuple(rows))

    def markdown(self) -> str:
        return render.report_markdown(self)

    def html(self) -> str:
        return render.report_html(self)


def report_path(warehouse: Warehouse, file_name: str = FILE_NAME) -> Path:
    """Where the HTML goes: ``reports/`` beside the DuckDB file; a DuckLake has no local file,
    so its report goes to ``data/reports/`` of the working directory."""
    if is_lake(warehouse.location):
        return Path("data") / "reports" / file_name
    return warehouse.path.parent / "reports" / file_name


def _product_title(name: object, product_id: int) -> str:
    text = str(name) if isinstance(name, str) and name else "Product"
    return f"{text} (#{product_id})"


def build(
    warehouse: Warehouse,
    *,
    days: int = 30,
    as_of: datetime | None = None,
    max_products: int = 20,
    top: int = 10,
    write_html: bool = True,
    file_name: str = FILE_NAME,
    customer: str | None = None,
) -> Report:
    """Read the report for the ``days`` before ``as_of`` (default: now) and write its HTML
    as ``file_name`` (each customer's own, when several share a folder), titled with ``customer``."""
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    generated_at = datetime.now(timezone.utc)
    end = (as_of or generated_at).astimezone(timezone.utc)
    window = Window(end - timedelta(days=days), end)
    with warehouse.read() as con:
        have = queries.available(con)
        active = [row for row in queries.products(con, window).records() if row["bugs"] > 0]
        shown = active[:max_products]
        found = queries.sections(con, window, [row["id"] for row in shown], top, have)
    account = Scope("Whole account", None, found[None])
    scopes = [Scope(_product_title(row["name"], row["id"]), row["id"], found[row["id"]]) for row in shown]
    report = Report(
        window, days, generated_at, warehouse.location, account, scopes, max(len(active) - max_products, 0), customer=customer
    )
    if write_html:
        path = report_path(warehouse, file_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        report.html_path = path
        partial = path.with_name(f".{path.name}.tmp")
        partial.write_text(report.html(), encoding="utf-8")
        os.replace(partial, path)  # a reader never sees half a report
    return report
