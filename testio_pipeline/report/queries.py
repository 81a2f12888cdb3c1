"""The numbers of the quality report: one query per section, for the account and every product.

Every query reads the base tables (deleted rows left out) over one time window: a test
counts when it ran in the window (started before its end, ended after its start or has not
ended), a bug when it was reported in it. A bug's readable status and the rates are the
analyst views' (``warehouse/views``): acceptance = (accepted + auto-accepted) / decided,
rejection = rejected / decided, where decided = accepted + auto-accepted + rejected.

Each section is one query over all scopes at once (its rows tagged with the scope: NULL for
the account, else the product id), not one per product: a query costs milliseconds of
planning whatever its size, the scan of a month of bugs much less. Rows come back as plain
tuples in a :class:`Table` (pandas costs more to import than the whole report to build).

Sections over tables or columns the file does not have yet (``bug_devices``,
``bugs.rejection_reason``) come back as ``None``, so the report says so instead of failing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import duckdb

from ..warehouse.views.model import READABLE_BUG_STATUS
from . import waiting

if TYPE_CHECKING:
    import pandas as pd

# The bugs of the window with their readable status, once for the account (scope NULL) and
# once more for each reported product: every bug section groups this by scope.
_BUGS = f"""
WITH wb AS (
    SELECT b.*, {READABLE_BUG_STATUS} AS readable_status
    FROM bugs b
    WHERE b.deleted_at IS NULL AND b.reported_at >= $start AND b.reported_at < $end
), sb AS (
    SELECT NULL::BIGINT AS scope, * FROM wb
    UNION ALL
    SELECT product_id AS scope, * FROM wb WHERE list_contains($products, product_id)
)"""

_RATES = """
    count(*) FILTER (readable_status IN ('accepted', 'auto-accepted')) AS accepted,
    count(*) FILTER (readable_status = 'rejected') AS rejected,
    count(*) FILTER (readable_status = 'open') AS open,
    round(count(*) FILTER (readable_status IN ('accepted', 'auto-accepted'))
        / nullif(count(*) FILTER (readable_status IN ('accepted', 'auto-accepted', 'rejected')), 0), 3) AS acceptance_rate,
    round(count(*) FILTER (readable_status = 'rejected')
        / nullif(count(*) FILTER (readable_status IN ('accepted', 'auto-accepted', 'rejected')), 0), 3) AS rejection_rate"""


def _top(grouped: str, order: str) -> str:
    """The first ``$top`` rows of each scope of ``grouped`` in ``order``, scopes in report order."""
    return f"""{_BUGS}
SELECT * FROM ({grouped})
QUALIFY row_number() OVER (PARTITION BY scope ORDER BY {order}) <= $top
ORDER BY scope NULLS FIRST, {order}"""


_TESTS = """
WITH wt AS (
    SELECT * FROM tests
    WHERE deleted_at IS NULL AND coalesce(start_at, end_at) < $end AND (end_at IS NULL OR end_at >= $start)
), st AS (
    SELECT NULL::BIGINT AS scope, * FROM wt
    UNION ALL
    SELECT product_id AS scope, * FROM wt WHERE list_contains($products, product_id)
)"""

SQL = {
    # Long form (status, type, tests); _status_by_type pivots it.
    "tests_by_status": _TESTS + """
SELECT scope, coalesce(status, '(none)') AS status, coalesce(testing_type, '(test cases)') AS testing_type, count(*) AS tests
FROM st GROUP BY ALL ORDER BY scope NULLS FIRST, status, testing_type""",
    "bugs_by_severity": _BUGS + """
SELECT scope, coalesce(severity, '(none)') AS severity,
    count(*) FILTER (readable_status = 'accepted') AS accepted,
    count(*) FILTER (readable_status = 'auto-accepted') AS "auto-accepted",
    count(*) FILTER (readable_status = 'rejected') AS rejected,
    count(*) FILTER (readable_status = 'open') AS open,
    count(*) AS bugs
FROM sb GROUP BY ALL
ORDER BY scope NULLS FIRST, coalesce(array_position(['critical', 'high', 'low', 'visual', 'content', 'custom'], any_value(sb.severity)), 99), 2""",
    "rates": _BUGS + f"""
SELECT scope, count(*) AS bugs, {_RATES} FROM sb GROUP BY ALL ORDER BY scope NULLS FIRST""",
    "weekly": _BUGS + f"""
SELECT scope, date_trunc('week', timezone('UTC', reported_at))::DATE AS week, count(*) AS bugs, {_RATES}
FROM sb GROUP BY ALL ORDER BY scope NULLS FIRST, week""",
    "rejection_reasons": _BUGS + """
SELECT scope, coalesce(rejection_reason, '(not derived)') AS rejection_reason, count(*) AS bugs
FROM sb WHERE readable_status = 'rejected' GROUP BY ALL ORDER BY scope NULLS FIRST, bugs DESC, rejection_reason""",
    "critical_features": _top(
        """SELECT scope, coalesce(f.title, '(no feature)') AS feature, p.name AS product,
            count(*) AS critical_bugs, count(*) FILTER (readable_status = 'rejected') AS rejected
        FROM sb LEFT JOIN features f ON f.id = sb.feature_id LEFT JOIN products p ON p.id = sb.product_id
        WHERE sb.severity = 'critical' GROUP BY ALL""",
        "critical_bugs DESC, feature, product",
    ),
    "bugs_by_os": _top(
        """SELECT scope, coalesce(d.operating_system, '(unknown)') AS operating_system, count(DISTINCT sb.id) AS bugs
        FROM sb JOIN bug_devices d ON d.bug_id = sb.id GROUP BY ALL""",
        "bugs DESC, operating_system",
    ),
    "bugs_by_browser": _top(
        """SELECT scope, coalesce(d.browser, '(no browser: app)') AS browser, count(DISTINCT sb.id) AS bugs
        FROM sb JOIN bug_devices d ON d.bug_id = sb.id GROUP BY ALL""",
        "bugs DESC, browser",
    ),
    "top_testers": _top(
        f"""SELECT scope, coalesce(author_name, '(unknown)') AS tester, count(*) AS bugs,
            count(*) FILTER (severity = 'critical') AS critical, {_RATES}
        FROM sb GROUP BY ALL""",
        "bugs DESC, critical DESC, tester",
    ),
}

SQL |= waiting.SQL  # how long bugs wait: from the observed history

# Section → the table and column it needs beyond the core entity tables.
NEEDS = {
    "rejection_reasons": ("bugs", "rejection_reason"),
    "bugs_by_os": ("bug_devices", "bug_id"),
    "bugs_by_browser": ("bug_devices", "bug_id"),
    **waiting.NEEDS,
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


@dataclass(frozen=True)
class Table:
    """One section's rows: column names and plain Python values (int, float, str, date, None)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...] = ()

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def empty(self) -> bool:
        return not self.rows

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [row[i] for row in self.rows]

    def first(self, name: str) -> Any:
        """``name`` of the first row, or None when there is none."""
        return self.rows[0][self.columns.index(name)] if self.rows else None

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(list(self.rows), columns=list(self.columns))


Sections = dict[str, Table | None]


def available(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    """(table, column) pairs in the file's main schema."""
    rows = con.execute("SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = 'main'").fetchall()
    return {(t, c) for t, c in rows}


def products(con: duckdb.DuckDBPyConnection, window: Window) -> Table:
    """Non-deleted products, the ones with most bugs in the window first."""
    return _table(con.execute(_bind(PRODUCTS_SQL, {"start": window.start, "end": window.end})))


def _literal(value: object) -> str:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return f"TIMESTAMPTZ '{value.isoformat()}'"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return f"[{', '.join(str(v) for v in value)}]::BIGINT[]"
    raise TypeError(f"not a report parameter (an aware datetime, an int or a list of ints): {value!r}")


def _bind(sql: str, params: dict[str, object]) -> str:
    """``sql`` with its ``$name`` parameters as literals. DuckDB imports pandas to bind any
    Python parameter, which would cost a report-only run more than its queries; the values
    are aware datetimes and ints, whose literals cannot carry SQL."""
    return re.sub(r"\$(\w+)", lambda m: _literal(params[m.group(1)]), sql)


def sections(
    con: duckdb.DuckDBPyConnection, window: Window, product_ids: Sequence[int], top: int, have: set[tuple[str, str]]
) -> dict[int | None, Sections]:
    """Every section for the account (key None) and for each of ``product_ids``."""
    scopes: list[int | None] = [None, *product_ids]
    out: dict[int | None, Sections] = {scope: {} for scope in scopes}
    params = {"start": window.start, "end": window.end, "products": [int(p) for p in product_ids], "top": top}
    for name, sql in SQL.items():
        if name in NEEDS and NEEDS[name] not in have:
            for scope in scopes:
                out[scope][name] = None
            continue
        cursor = con.execute(_bind(sql, params))
        columns = tuple(d[0] for d in cursor.description[1:])
        rows: dict[int | None, list[tuple]] = {scope: [] for scope in scopes}
        for row in cursor.fetchall():
            rows[row[0]].append(row[1:])
        for scope in scopes:
            table = Table(columns, tuple(rows[scope]))
            if name == "tests_by_status":
                table = _status_by_type(table)
            elif name == "rates" and table.empty:  # no bugs at all: still one row of zeros
                table = Table(columns, ((0, 0, 0, 0, None, None),))
            out[scope][name] = table
    return out


def _status_by_type(long: Table) -> Table:
    """One row per test status, one column per testing type, and the total; most tests first."""
    if long.empty:
        return Table(("status", "tests"))
    types = sorted({testing_type for _, testing_type, _ in long.rows})
    wide: dict[str, dict[str, int]] = {}
    for status, testing_type, tests in long.rows:
        wide.setdefault(status, {})[testing_type] = tests
    rows = [(status, *(counts.get(t, 0) for t in types), sum(counts.values())) for status, counts in wide.items()]
    rows.sort(key=lambda row: (-row[-1], row[0]))
    return Table(("status", *types, "tests"), tuple(rows))


def _table(cursor: duckdb.DuckDBPyConnection) -> Table:
    return Table(tuple(d[0] for d in cursor.description), tuple(cursor.fetchall()))
