"""The product quality report: for the whole account and each product, over the last N days.

Tests by status and type, bugs by severity and status, acceptance and rejection rates with
the weekly trend, rejection reasons, the features with most critical bugs, bugs by
operating system and browser, top testers. :func:`build` reads them in one read-only
connection (``queries``) and writes one self-contained HTML file with charts (``render``,
``charts``) to ``reports/`` beside the DuckDB file; :meth:`Report.markdown` is the same
report for the Dagster UI. Dagster-free: the asset in ``defs/analytics/`` is glue.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from ..warehouse import Warehouse
from ..warehouse.backends import is_lake
from . import queries, render
from .queries import Window

__all__ = ["Report", "Scope", "Window", "build", "report_path"]

FILE_NAME = "quality_report.html"


@dataclass
class Scope:
    """The report's sections for one product, or for the account (``product_id`` None)."""

    title: str
    product_id: int | None
    sections: dict[str, pd.DataFrame | None]

    @property
    def anchor(self) -> str:
        return "account" if self.product_id is None else f"product-{self.product_id}"

    def figure(self, section: str, column: str) -> float | None:
        frame = self.sections.get(section)
        if frame is None or frame.empty or pd.isna(frame[column].iloc[0]):
            return None
        return float(frame[column].iloc[0])


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

    def overview(self) -> pd.DataFrame:
        """One row per product in the report: its bugs and rates in the window."""
        rows = []
        for scope in self.products:
            rates = scope.sections["rates"]
            critical = scope.sections["bugs_by_severity"]
            rows.append({
                "product_id": scope.product_id,
                "product": scope.title,
                "tests": int(scope.sections["tests_by_status"]["tests"].sum()),
                "bugs": int(rates["bugs"].iloc[0]),
                "critical": int(critical.loc[critical.severity == "critical", "bugs"].sum()),
                "acceptance_rate": scope.figure("rates", "acceptance_rate"),
                "rejection_rate": scope.figure("rates", "rejection_rate"),
            })
        return pd.DataFrame(rows)

    def markdown(self) -> str:
        return render.report_markdown(self)

    def html(self) -> str:
        return render.report_html(self)


def report_path(warehouse: Warehouse) -> Path:
    """Where the HTML goes: ``reports/`` beside the DuckDB file; a DuckLake has no local file,
    so its report goes to ``data/reports/`` of the working directory."""
    if is_lake(warehouse.location):
        return Path("data") / "reports" / FILE_NAME
    return warehouse.path.parent / "reports" / FILE_NAME


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
) -> Report:
    """Read the report for the ``days`` before ``as_of`` (default: now) and write its HTML."""
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    generated_at = datetime.now(timezone.utc)
    end = (as_of or generated_at).astimezone(timezone.utc)
    window = Window(end - timedelta(days=days), end)
    with warehouse.read() as con:
        have = queries.available(con)
        account = Scope("Whole account", None, queries.section_frames(con, window, None, top, have))
        listed = queries.products(con, window)
        active = listed[listed.bugs > 0]
        scopes = [
            Scope(_product_title(row.name, int(row.id)), int(row.id), queries.section_frames(con, window, int(row.id), top, have))
            for row in active.head(max_products).itertuples()
        ]
    report = Report(window, days, generated_at, warehouse.location, account, scopes, max(len(active) - max_products, 0))
    if write_html:
        path = report_path(warehouse)
        path.parent.mkdir(parents=True, exist_ok=True)
        report.html_path = path
        partial = path.with_name(f".{path.name}.tmp")
        partial.write_text(report.html(), encoding="utf-8")
        os.replace(partial, path)  # a reader never sees half a report
    return report
