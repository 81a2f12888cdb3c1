"""The report as Markdown (Dagster UI metadata) and as one self-contained HTML file.

The HTML has its style inline and its charts as inline SVG: no script, no font, no image
file, nothing fetched, so it opens the same from a mail attachment as from the share.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import pandas as pd

from . import charts

if TYPE_CHECKING:
    from . import Report, Scope

TITLES = {
    "tests_by_status": "Tests by status and type",
    "bugs_by_severity": "Bugs by severity and status",
    "rates": "Acceptance and rejection",
    "weekly": "Weekly trend",
    "rejection_reasons": "Rejection reasons",
    "critical_features": "Features with the most critical bugs",
    "bugs_by_os": "Bugs by operating system",
    "bugs_by_browser": "Bugs by browser",
    "top_testers": "Top testers",
}
MISSING = {
    "rejection_reasons": "needs `bugs.rejection_reason`, which this warehouse does not have yet",
    "bugs_by_os": "needs the `bug_devices` table, which this warehouse does not have yet",
    "bugs_by_browser": "needs the `bug_devices` table, which this warehouse does not have yet",
}
EMPTY = "Nothing in this period."
# A product's section charts only these (its tables have the rest): a chart costs a few
# hundred milliseconds to draw, and the account's charts show the other breakdowns.
PRODUCT_CHARTS = ("bugs_by_severity", "weekly")


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    return str(value).replace("|", "\\|")


def markdown_table(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def chart(name: str, frame: pd.DataFrame, scope_title: str) -> str | None:
    """The SVG chart of one section, if it has one and rows to draw."""
    if frame is None or frame.empty:
        return None
    title = f"{TITLES[name]} — {scope_title}"
    if name == "tests_by_status":
        return charts.barh(frame, "status", "tests", title)
    if name == "bugs_by_severity":
        return charts.stacked_status(frame, "severity", title)
    if name == "weekly":
        return charts.weekly_rates(frame, title)
    if name in ("rejection_reasons", "bugs_by_os", "bugs_by_browser"):
        return charts.barh(frame, frame.columns[0], "bugs", title)
    if name == "critical_features":
        return charts.barh(frame, "feature", "critical_bugs", title)
    return None


def scope_markdown(scope: Scope, level: str = "###") -> str:
    parts = [f"{level} {scope.title}"]
    for name, frame in scope.sections.items():
        parts.append(f"**{TITLES[name]}**")
        if frame is None:
            parts.append(f"_Not available: {MISSING[name]}._")
        elif frame.empty:
            parts.append(f"_{EMPTY}_")
        else:
            parts.append(markdown_table(frame))
    return "\n\n".join(parts)


def report_markdown(report: Report) -> str:
    w = report.window
    parts = [
        f"## Product quality report, {w.start:%Y-%m-%d} to {w.end:%Y-%m-%d} ({report.days} days)",
        f"HTML with charts: `{report.html_path}`" if report.html_path else "",
        "### Products",
        markdown_table(report.overview()) if report.products else f"_{EMPTY}_",
        scope_markdown(report.account),
    ]
    if report.omitted_products:
        parts.append(f"_{report.omitted_products} more products with bugs in the period are left out (max_products)._")
    return "\n\n".join(p for p in parts if p)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 2px solid #1565c0; padding-bottom: .2rem; margin-top: 2.5rem; }
h3 { font-size: 1.05rem; margin-bottom: .4rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 1rem 2rem; }
.section { min-width: 0; overflow-x: auto; }
table.data { border-collapse: collapse; font-size: .8rem; margin: .3rem 0 1rem; }
table.data th, table.data td { border-bottom: 1px solid #ddd; padding: .2rem .5rem; text-align: left; white-space: nowrap; }
table.data th { background: #f3f5f8; }
figure.chart { margin: 0; } figure.chart svg { max-width: 100%; height: auto; }
.note { color: #777; font-style: italic; }
nav a { margin-right: .8rem; }
"""


def _section_html(name: str, frame: pd.DataFrame | None, scope: Scope) -> str:
    head = f"<h3>{html.escape(TITLES[name])}</h3>"
    if frame is None:
        return f'<div class="section">{head}<p class="note">Not available: {html.escape(MISSING[name])}.</p></div>'
    if frame.empty:
        return f'<div class="section">{head}<p class="note">{EMPTY}</p></div>'
    drawn = scope.product_id is None or name in PRODUCT_CHARTS
    svg = chart(name, frame, scope.title) if drawn else None
    figure = f'<figure class="chart" data-chart="{name}">{svg}</figure>' if svg else ""
    table = frame.to_html(index=False, border=0, classes="data", na_rep="", float_format=lambda v: f"{v:.3f}")
    return f'<div class="section">{head}{figure}{table}</div>'


def scope_html(scope: Scope) -> str:
    sections = "".join(_section_html(name, frame, scope) for name, frame in scope.sections.items())
    return f'<h2 id="{scope.anchor}">{html.escape(scope.title)}</h2><div class="grid">{sections}</div>'


def report_html(report: Report) -> str:
    w = report.window
    title = f"Product quality report, {w.start:%Y-%m-%d} to {w.end:%Y-%m-%d}"
    nav = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in [report.account, *report.products])
    overview = (
        report.overview().to_html(index=False, border=0, classes="data", na_rep="", float_format=lambda v: f"{v:.3f}")
        if report.products
        else f'<p class="note">{EMPTY}</p>'
    )
    omitted = (
        f'<p class="note">{report.omitted_products} more products with bugs in the period are left out (max_products).</p>'
        if report.omitted_products
        else ""
    )
    body = "".join(scope_html(s) for s in [report.account, *report.products])
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p>The last {report.days} days (UTC, end exclusive); generated {report.generated_at:%Y-%m-%d %H:%M} UTC '
        f"from <code>{html.escape(str(report.source))}</code>.</p>"
        f"<nav>{nav}</nav><h2>Products</h2>{overview}{omitted}{body}</body></html>"
    )
