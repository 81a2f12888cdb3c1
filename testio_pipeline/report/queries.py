"""The numbers of the quality report: one query per section, for one product or the account.

Every query reads the base tables (deleted rows left out) over one time window: a test
counts when it ran in the window (started before its end, ended after its start or has not
ended), a bug when it was reported in it. A bug's readable status and the rates are the
analyst views' (``warehouse/views``): acceptance = (accepted + auto-accepted) / decided,
rejection = rejected / decided, where decided = accepted + auto-accepted + rejected.

Sections over tables or columns the file does not have yet (``bug_devices``,
``bugs.rejection_reason``) come back as ``None``, so the report says so instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import pandas as pd

STATUS = """CASE
    WHEN b.status = 'accepted' AND b.auto_accepted THEN 'auto-accepted'
    WHEN b.status = 'accepted' THEN 'accepted'
    WHEN b.status = 'forwarded' THEN 'open'
    ELSE b.status
END"""

# The bugs of the window and scope, with their readable status: every bug section reads this.
_BUGS = f"""
WITH wb AS (
    SELECT b.*, {STATUS} AS readable_status
    FROM bugs b
    WHERE b.deleted_at IS NULL AND b.reported_at >= $start AND b.reported_at < $end
      AND ($product IS NULL OR b.product_id = $product)
)"""

_RATES = """
    count(*) FILTER (readable_status IN ('accepted', 'auto-accepted')) AS accepted,
    count(*) FILTER (readable_status = 'rejected') AS rejected,
    count(*) FILTER (readable_status = 'open') AS open,
    round(count(*) FILTER (readable_status IN ('accepted', 'auto-accepted'))
        / nullif(count(*) FILTER (readable_status IN ('accepted', 'auto-accepted', 'rejected')), 0), 3) AS acceptance_rate,
    round(count(*) FILTER (readable_status = 'rejected')
        / nullif(count(*) FILTER (readable_status IN ('accepted', 'auto-accepted', 'rejected')), 0), 3) AS rejection_rate"""

SQL = {
    "tests_by_status": """
SELECT coalesce(status, '(none)') AS status, coalesce(testing_type, '(test cases)') AS testing_type, count(*) AS tests
FROM tests
WHERE deleted_at IS NULL AND ($product IS NULL OR product_id = $product)
  AND coalesce(start_at, end_at) < $end AND (end_at IS NULL OR end_at >= $start)
GROUP BY ALL""",
    "bugs_by_severity": _BUGS + """
SELECT coalesce(severity, '(none)') AS severity,
    count(*) FILTER (readable_status = 'accepted') AS accepted,
    count(*) FILTER (readable_status = 'auto-accepted') AS "auto-accepted",
    count(*) FILTER (readable_status = 'rejected') AS rejected,
    count(*) FILTER (readable_status = 'open') AS open,
    count(*) AS bugs
FROM wb GROUP BY 1
ORDER BY coalesce(array_position(['critical', 'high', 'low', 'visual', 'content', 'custom'], any_value(wb.severity)), 99), 1""",
    "rates": _BUGS + f"""
SELECT count(*) AS bugs, {_RATES} FROM wb""",
    "weekly": _BUGS + f"""
SELECT date_trunc('week', reported_at)::DATE AS week, count(*) AS bugs, {_RATES}
FROM wb GROUP BY ALL ORDER BY week""",
    "rejection_reasons": _BUGS + """
SELECT coalesce(rejection_reason, '(not derived)') AS rejection_reason, count(*) AS bugs
FROM wb WHERE readable_status = 'rejected' GROUP BY ALL ORDER BY bugs DESC, rejection_reason""",
    "critical_features": _BUGS + """
SELECT coalesce(f.title, '(no feature)') AS feature, p.name AS product,
    count(*) AS critical_bugs, count(*) FILTER (readable_status = 'rejected') AS rejected
FROM wb LEFT JOIN features f ON f.id = wb.feature_id LEFT JOIN products p ON p.id = wb.product_id
WHERE wb.severity = 'critical'
GROUP BY ALL ORDER BY critical_bugs DESC, feature LIMIT $top""",
    "bugs_by_os": _BUGS + """
SELECT coalesce(d.operating_system, '(unknown)') AS operating_system, count(DISTINCT wb.id) AS bugs
FROM wb JOIN bug_devices d ON d.bug_id = wb.id
GROUP BY ALL ORDER BY bugs DESC, operating_system LIMIT $top""",
    "bugs_by_browser": _BUGS + """
SELECT coalesce(d.browser, '(no browser: app)') AS browser, count(DISTINCT wb.id) AS bugs
FROM wb JOIN bug_devices d ON d.bug_id = wb.id
GROUP BY ALL ORDER BY bugs DESC, browser LIMIT $top""",
    "top_testers": _BUGS + f"""
SELECT coalesce(author_name, '(unknown)') AS tester, count(*) AS bugs,
    count(*) FILTER (severity = 'critical') AS critical, {_RATES}
FROM wb GROUP BY ALL ORDER BY bugs DESC, critical DESC, tester LIMIT $top""",
}

# Section → the table and column it needs beyond the core entity tables.
NEEDS = {
    "rejection_reasons": ("bugs", "rejection_reason"),
    "bugs_by_os": ("bug_devices", "bug_id"),
    "bugs_by_browser": ("bug_devices", "bug_id"),
}

PRODUCTS_SQL = """
SELECT p.id, p.name, count(b.id) AS bugs
FROM products p
LEFT JOIN bugs b ON b.product_id = p.id AND b.deleted_at IS NULL AND b.reported_at >= $start AND b.reported_at < $end
WHERE p.deleted_at IS NULL
GROUP BY ALL ORDER BY bugs DESC, p.id
"""


@dataclass(frozen=True)
class Window:
    """The report's period: [start, end)."""

    start: datetime
    end: datetime


def available(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    """(table, column) pairs in the file's main schema."""
    rows = con.execute("SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = 'main'").fetchall()
    return {(t, c) for t, c in rows}


def section_frames(
    con: duckdb.DuckDBPyConnection, window: Window, product_id: int | None, top: int, have: set[tuple[str, str]]
) -> dict[str, pd.DataFrame | None]:
    """Every section for one product (or the account, ``product_id`` None)."""
    out: dict[str, pd.DataFrame | None] = {}
    for name, sql in SQL.items():
        if name in NEEDS and NEEDS[name] not in have:
            out[name] = None
            continue
        params = {"start": window.start, "end": window.end, "product": product_id}
        if "$top" in sql:
            params["top"] = top
        out[name] = con.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql}).df()
    out["tests_by_status"] = _status_by_type(out["tests_by_status"])
    return out


def _status_by_type(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per test status, one column per testing type, and the total."""
    if frame.empty:
        return pd.DataFrame(columns=["status", "tests"])
    wide = frame.pivot_table(index="status", columns="testing_type", values="tests", aggfunc="sum", fill_value=0)
    wide = wide.astype("int64")
    wide["tests"] = wide.sum(axis=1)
    wide = wide.sort_values("tests", ascending=False).reset_index()
    wide.columns.name = None
    return wide


def products(con: duckdb.DuckDBPyConnection, window: Window) -> pd.DataFrame:
    """Non-deleted products, the ones with most bugs in the window first."""
    return con.execute(PRODUCTS_SQL, {"start": window.start, "end": window.end}).df()
