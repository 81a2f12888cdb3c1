"""The report's sections on how long bugs wait, from the observed history (``bug_lifecycle``).

"Time to decision" is the hours from a bug's report (API time) to the first sync that saw it
decided, for the bugs of the window the mirror saw open first: an upper bound, exact to within
the sync interval (docs/analytics.md, "What happened over time"). Bugs first seen already
decided have no known time and are left out, never guessed. The view's SELECT is read inline,
so the report does not depend on the views having been created in the file.
"""

from __future__ import annotations

from ..warehouse.views.lifecycle import BUG_LIFECYCLE

# The window's bugs with their lifecycle, once for the account (scope NULL) and once per product.
_LIFECYCLE = f"""
WITH wl AS (
    SELECT * FROM ({BUG_LIFECYCLE.select.strip()}) bl
    WHERE bl.reported_at >= $start AND bl.reported_at < $end
), sl AS (
    SELECT NULL::BIGINT AS scope, * FROM wl
    UNION ALL
    SELECT product_id AS scope, * FROM wl WHERE list_contains($products, product_id)
)"""

_TIMES = """count(hours_to_decision) AS decided_bugs,
    round(median(hours_to_decision), 1) AS median_hours,
    round(quantile_cont(hours_to_decision, 0.9), 1) AS p90_hours,
    round(count(*) FILTER (hours_to_decision <= 24) / nullif(count(hours_to_decision), 0), 3) AS within_24h"""

SQL = {
    "time_to_decision": _LIFECYCLE + f"""
SELECT scope, reported_week AS week, {_TIMES}
FROM sl WHERE hours_to_decision IS NOT NULL GROUP BY ALL ORDER BY scope NULLS FIRST, week""",
    "time_to_decision_by_severity": _LIFECYCLE + f"""
SELECT scope, coalesce(severity, '(none)') AS severity, {_TIMES}
FROM sl WHERE hours_to_decision IS NOT NULL GROUP BY ALL
ORDER BY scope NULLS FIRST, coalesce(array_position(['critical', 'high', 'low', 'visual', 'content', 'custom'], any_value(sl.severity)), 99), 2""",
    "oldest_open_bugs": _LIFECYCLE + """
SELECT scope, bug_id, product, severity, timezone('UTC', reported_at)::DATE AS reported, round(open_hours / 24, 1) AS days_open, timezone('UTC', last_seen_at)::DATE AS still_open_on
FROM sl WHERE status = 'forwarded'
QUALIFY row_number() OVER (PARTITION BY scope ORDER BY open_hours DESC, bug_id) <= $top
ORDER BY scope NULLS FIRST, days_open DESC, bug_id""",
}
TITLES = {
    "time_to_decision": "Time to decision by week reported",
    "time_to_decision_by_severity": "Time to decision by severity",
    "oldest_open_bugs": "Oldest open bugs",
}
NEEDS = {name: ("bug_status_changes", "bug_id") for name in SQL}
MISSING = {name: "needs the `bug_status_changes` history, which this warehouse does not have yet" for name in SQL}
# Section → (label column, value column) of its horizontal bar chart.
BAR_CHARTS = {"time_to_decision": ("week", "median_hours"), "time_to_decision_by_severity": ("severity", "median_hours")}
AXES = {"median_hours": "median hours to decision"}
