"""One page comparing customers: each customer's headline numbers side by side.

Computed in one session of every customer's warehouse (``warehouse/customers.py``: the
``all_*`` views with their ``tenant`` column), over the same window and with the same
definitions as each customer's own quality report: a bug counts when reported in the window,
a test when it ran in it, acceptance = (accepted + auto-accepted) / decided. So a customer's
row here equals the account section of its own report. Written as one self-contained HTML
file and the same page as Markdown.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from ..warehouse.customers import TENANT_COLUMN, open_session
from ..warehouse.views.model import READABLE_BUG_STATUS
from . import charts
from .queries import _RATES, Table, Window, _bind
from .render import STYLE, html_table, markdown_table

SEVERITIES = ("critical", "high", "low", "visual", "content", "custom")
STATUSES = tuple(charts.STATUS_COLOURS)  # accepted, auto-accepted, rejected, open
FILE_NAME = "customer_comparison.html"

_BUGS = f"""
WITH wb AS (
    SELECT b.{TENANT_COLUMN} AS tenant, b.severity, {{reason}} AS rejection_reason, {READABLE_BUG_STATUS} AS readable_status
    FROM all_bugs b
    WHERE b.deleted_at IS NULL AND b.reported_at >= $start AND b.reported_at < $end
)"""

SQL = {
    "rates": _BUGS + f"\nSELECT tenant, count(*) AS bugs, {_RATES} FROM wb GROUP BY ALL",
    "statuses": _BUGS + "\nSELECT tenant, readable_status, count(*) FROM wb GROUP BY ALL",
    "severities": _BUGS + "\nSELECT tenant, coalesce(severity, '(none)'), count(*) FROM wb GROUP BY ALL",
    "reasons": _BUGS + """
SELECT * FROM (
    SELECT tenant, coalesce(rejection_reason, '(not derived)') AS reason, count(*) AS bugs
    FROM wb WHERE readable_status = 'rejected' GROUP BY ALL
)
QUALIFY row_number() OVER (PARTITION BY tenant ORDER BY bugs DESC, reason) <= $top""",
    "tests": f"""
SELECT {TENANT_COLUMN}, count(*) FROM all_tests
WHERE deleted_at IS NULL AND coalesce(start_at, end_at) < $end AND (end_at IS NULL OR end_at >= $start)
GROUP BY ALL""",
    "syncs": f"""
SELECT {TENANT_COLUMN}, max(finished_at) FILTER (status = 'success'), arg_max(status, started_at)
FROM all_sync_events GROUP BY ALL""",
}


@dataclass
class CustomerFigures:
    """One customer's headline numbers in the window."""

    customer: str
    tests: int = 0
    bugs: int = 0
    accepted: int = 0  # by a person or automatically, as the report's rates count it
    rejected: int = 0
    open: int = 0
    acceptance_rate: float | None = None
    rejection_rate: float | None = None
    statuses: dict[str, int] | None = None  # readable status -> bugs
    severities: dict[str, int] | None = None  # severity -> bugs
    rejection_reasons: list[tuple[str, int]] | None = None  # the top ones, most bugs first; None: not mirrored
    last_success: datetime | None = None  # the last successful sync's end
    last_status: str | None = None  # the status of the latest sync


@dataclass
class Comparison:
    window: Window
    days: int
    generated_at: datetime
    customers: list[CustomerFigures]
    html_path: Path | None = None

    @property
    def title(self) -> str:
        return f"Customers compared, {self.window.start:%Y-%m-%d} to {self.window.end:%Y-%m-%d}"

    def headline(self) -> Table:
        columns = ("customer", "tests", "bugs", "accepted", "rejected", "open", "acceptance_rate", "rejection_rate",
                   "last_successful_sync", "last_sync_status")
        rows = tuple(
            (c.customer, c.tests, c.bugs, c.accepted, c.rejected, c.open, c.acceptance_rate, c.rejection_rate,
             f"{c.last_success:%Y-%m-%d %H:%M} UTC" if c.last_success else "never", c.last_status or "–")
            for c in self.customers
        )
        return Table(columns, rows)

    def severity_mix(self) -> Table:
        extra = sorted({s for c in self.customers for s in (c.severities or {})} - set(SEVERITIES))
        names = (*SEVERITIES, *extra)
        return Table(("customer", *names), tuple((c.customer, *((c.severities or {}).get(s, 0) for s in names)) for c in self.customers))

    def reasons(self) -> Table:
        rows = []
        for c in self.customers:
            if c.rejection_reasons is None:
                rows.append((c.customer, "(not mirrored in this warehouse)", None))
            rows += [(c.customer, reason, bugs) for reason, bugs in c.rejection_reasons or ()]
        return Table(("customer", "rejection_reason", "bugs"), tuple(rows))

    def markdown(self) -> str:
        parts = [
            f"## {self.title} ({self.days} days)",
            f"HTML with charts: `{self.html_path}`" if self.html_path else "",
            "### Headline", markdown_table(self.headline()),
            "### Severity mix (bugs)", markdown_table(self.severity_mix()),
            "### Top rejection reasons", markdown_table(self.reasons()) if self.reasons().rows else "_No rejected bugs in this period._",
        ]
        return "\n\n".join(p for p in parts if p) + "\n"

    def html(self) -> str:
        names = [c.customer for c in self.customers]
        by_status = charts.stacked_status(names, [c.statuses or {} for c in self.customers], "Bugs by status — per customer")
        critical = charts.barh(names, [(c.severities or {}).get("critical", 0) for c in self.customers],
                               "Critical bugs — per customer", "critical bugs")
        reasons = self.reasons()
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>"
            f"<p>{len(names)} customers: {html.escape(', '.join(names))}. The last {self.days} days (UTC, end exclusive); "
            f"generated {self.generated_at:%Y-%m-%d %H:%M} UTC from one session of every customer's warehouse. "
            "Each row equals the account section of that customer's own quality report.</p>"
            '<h2 id="headline">Headline</h2>'
            f'<div class="section" data-section="headline">{html_table(self.headline())}</div>'
            '<div class="grid">'
            f'<div class="section" data-section="statuses"><figure class="chart" data-chart="statuses">{by_status}</figure></div>'
            f'<div class="section" data-section="critical"><figure class="chart" data-chart="critical">{critical}</figure></div>'
            "</div>"
            '<h2 id="severity">Severity mix</h2>'
            f'<div class="section" data-section="severity">{html_table(self.severity_mix())}</div>'
            '<h2 id="reasons">Top rejection reasons</h2>'
            + (f'<div class="section" data-section="reasons">{html_table(reasons)}</div>' if reasons.rows
               else '<p class="note">No rejected bugs in this period.</p>')
            + "</body></html>"
        )


def compare(
    customers: Mapping[str, str | Path],
    *,
    days: int = 30,
    as_of: datetime | None = None,
    top: int = 3,
    out: Path | None = Path("data") / "reports" / FILE_NAME,
) -> Comparison:
    """Compare ``customers`` ({name: warehouse file or ``ducklake:`` string}) over the ``days``
    before ``as_of`` (default: now); write the HTML to ``out`` and the Markdown beside it."""
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    generated_at = datetime.now(timezone.utc)
    end = (as_of or generated_at).astimezone(timezone.utc)
    window = Window(end - timedelta(days=days), end)
    figures = {name: CustomerFigures(name, statuses={}, severities={}, rejection_reasons=[]) for name in customers}
    con = open_session(customers)
    try:
        _read(con, window, top, figures)
    finally:
        con.close()  # at once: an open session keeps every customer's sync from writing
    comparison = Comparison(window, days, generated_at, list(figures.values()))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        comparison.html_path = out
        for path, text in ((out, comparison.html()), (out.with_suffix(".md"), comparison.markdown())):
            partial = path.with_name(f".{path.name}.tmp")
            partial.write_text(text, encoding="utf-8")
            os.replace(partial, path)  # a reader never sees half a page
    return comparison


def _read(con: duckdb.DuckDBPyConnection, window: Window, top: int, figures: dict[str, CustomerFigures]) -> None:
    con.execute("SET TimeZone = 'UTC'")  # sync times shown as UTC whatever the machine's zone
    bug_columns = {d[0] for d in con.execute("SELECT * FROM all_bugs LIMIT 0").description}
    has_reasons = "rejection_reason" in bug_columns  # files from before it was mirrored lack it
    params = {"start": window.start, "end": window.end, "top": top}

    def rows(name: str) -> list[tuple]:
        sql = SQL[name].replace("{reason}", "b.rejection_reason" if has_reasons else "NULL::VARCHAR")
        return con.execute(_bind(sql, params)).fetchall()

    for tenant, bugs, accepted, rejected, open_, acceptance, rejection in rows("rates"):
        f = figures[tenant]
        f.bugs, f.accepted, f.rejected, f.open = bugs, accepted, rejected, open_
        f.acceptance_rate = None if acceptance is None else float(acceptance)
        f.rejection_rate = None if rejection is None else float(rejection)
    for tenant, status, bugs in rows("statuses"):
        figures[tenant].statuses[status] = bugs
    for tenant, severity, bugs in rows("severities"):
        figures[tenant].severities[severity] = bugs
    for tenant, tests in rows("tests"):
        figures[tenant].tests = tests
    for tenant, last_success, last_status in rows("syncs"):
        figures[tenant].last_success, figures[tenant].last_status = last_success, last_status
    if not has_reasons:
        for f in figures.values():
            f.rejection_reasons = None
        return
    for tenant, reason, bugs in sorted(rows("reasons"), key=lambda r: (r[0], -r[2], r[1])):
        figures[tenant].rejection_reasons.append((reason, bugs))
