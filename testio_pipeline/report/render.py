"""The report as Markdown (Dagster UI metadata) and as one self-contained HTML file.

The HTML has its style inline and its charts as inline SVG: no script, no font, no image
file, nothing fetched, so it opens the same from a mail attachment as from the share. Its
sections sit two to a row; headers and text wrap at word breaks (column names are shown with
spaces), numbers and dates do not, and a section whose table is still too wide for half the
page takes a row of its own (a flex item is never narrower than its content).
"""

from __future__ import annotations

import html
from datetime import date
from typing import TYPE_CHECKING

from . import charts, waiting
from .queries import Table

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
TITLES |= waiting.TITLES
MISSING |= waiting.MISSING
EMPTY = "Nothing in this period."
# A product's section charts only these, to keep the page short: its tables have the rest,
# and the account's charts show the other breakdowns.
PRODUCT_CHARTS = ("bugs_by_severity", "weekly")
# Section → (label column, value column) of its horizontal bar chart.
BAR_CHARTS = {
    "tests_by_status": ("status", "tests"),
    "rejection_reasons": ("rejection_reason", "bugs"),
    "critical_features": ("feature", "critical_bugs"),
    "bugs_by_os": ("operating_system", "bugs"),
    "bugs_by_browser": ("browser", "bugs"),
    **waiting.BAR_CHARTS,
}


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def markdown_table(table: Table) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |" for row in table.rows]
    return "\n".join(lines)


def html_table(table: Table) -> str:
    """The rows as an HTML table: numbers right-aligned (three decimals), numbers and dates
    kept on one line, text free to wrap."""
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="n">{v:.3f}</td>' if isinstance(v, float)
            else f'<td class="n">{v}</td>' if isinstance(v, int)
            else f'<td class="d">{v}</td>' if isinstance(v, date)
            else f"<td>{html.escape(_cell(v))}</td>"
            for v in row
        ) + "</tr>"
        for row in table.rows
    )
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def chart(name: str, table: Table | None, scope_title: str) -> str | None:
    """The SVG chart of one section, if it has one and rows to draw."""
    if table is None or table.empty:
        return None
    title = f"{TITLES[name]} — {scope_title}"
    if name in BAR_CHARTS:
        label, value = BAR_CHARTS[name]
        return charts.barh(table.column(label), table.column(value), title, waiting.AXES.get(value, value.replace("_", " ")))
    if name == "bugs_by_severity":
        return charts.stacked_status(table.column("severity"), table.records(), title)
    if name == "weekly":
        weeks: list[date] = table.column("week")
        return charts.weekly_rates(
            weeks, table.column("bugs"), table.column("acceptance_rate"), table.column("rejection_rate"), title
        )
    return None


def scope_markdown(scope: Scope, level: str = "###") -> str:
    parts = [f"{level} {scope.title}"]
    for name, table in scope.sections.items():
        parts.append(f"**{TITLES[name]}**")
        if table is None:
            parts.append(f"_Not available: {MISSING[name]}._")
        elif table.empty:
            parts.append(f"_{EMPTY}_")
        else:
            parts.append(markdown_table(table))
    return "\n\n".join(parts)


def report_markdown(report: Report) -> str:
    parts = [
        f"## {report.title} ({report.days} days)",
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
.grid { display: flex; flex-wrap: wrap; gap: 1rem 2rem; }
.section { flex: 1 1 460px; }
table.data { border-collapse: collapse; font-size: .8rem; margin: .3rem 0 1rem; }
table.data th, table.data td { border-bottom: 1px solid #ddd; padding: .2rem .4rem; text-align: left; }
table.data th { background: #f3f5f8; vertical-align: bottom; }
table.data td.n { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
table.data td.d { white-space: nowrap; }
figure.chart { margin: 0; } figure.chart svg { max-width: 100%; height: auto; }
.note { color: #777; font-style: italic; }
nav a { margin-right: .8rem; }
"""


def _section_html(name: str, table: Table | None, scope: Scope) -> str:
    head = f"<h3>{html.escape(TITLES[name])}</h3>"
    if table is None:
        return f'<div class="section">{head}<p class="note">Not available: {html.escape(MISSING[name])}.</p></div>'
    if table.empty:
        return f'<div class="section">{head}<p class="note">{EMPTY}</p></div>'
    drawn = scope.product_id is None or name in PRODUCT_CHARTS
    svg = chart(name, table, scope.title) if drawn else None
    figure = f'<figure class="chart" data-chart="{name}">{svg}</figure>' if svg else ""
    return f'<div class="section" data-section="{name}">{head}{figure}{html_table(table)}</div>'


def scope_html(scope: Scope) -> str:
    sections = "".join(_section_html(name, table, scope) for name, table in scope.sections.items())
    return f'<h2 id="{scope.anchor}">{html.escape(scope.title)}</h2><div class="grid">{sections}</div>'


def report_html(report: Report) -> str:
    title = report.title
    nav = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in [report.account, *report.products])
    overview = html_table(report.overview()) if report.products else f'<p class="note">{EMPTY}</p>'
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
