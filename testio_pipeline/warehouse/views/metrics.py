"""The analyst metrics, declared as SQL expressions over the fact and lifecycle views, and the
dimensions they are grouped by.

Each metric is one aggregate expression over one view (``bug_facts``, ``test_facts``,
``bug_lifecycle`` or ``test_lifecycle``), so
any metric by any of its view's dimensions is one query (``metric_sql``). The metrics
table of docs/analytics.md shows the same expressions (a test keeps the two equal).

Rates are shares of all bugs in the group (open ones included) between 0 and 1, except
``auto_acceptance_rate``, a share of the accepted ones; a group without bugs has none.
``bug_severity_score`` weighs TestIO's real severities (``SEVERITY_WEIGHTS``); the
reference system weighted ``major``/``minor``, which TestIO never sends.
"""

from __future__ import annotations

from dataclasses import dataclass

# Weights of bug_severity_score; an unknown severity weighs 0.
SEVERITY_WEIGHTS = {"critical": 5, "high": 3, "low": 1, "visual": 1, "content": 1, "custom": 1}

_SCORE = "sum(CASE severity " + " ".join(f"WHEN '{s}' THEN {w}" for s, w in SEVERITY_WEIGHTS.items()) + " ELSE 0 END)"


def _share(condition: str, of: str = "count(*)") -> str:
    return f"round(count(*) FILTER (WHERE {condition})::DOUBLE / nullif({of}, 0), 4)"


@dataclass(frozen=True)
class Metric:
    name: str
    view: str  # bug_facts, test_facts, bug_lifecycle or test_lifecycle
    expression: str  # an aggregate over one row per bug or test
    meaning: str
    example: str  # the dimension of the example query in docs/analytics.md


METRICS: tuple[Metric, ...] = (
    Metric("test_count", "test_facts", "count(*)", "Tests run.", "product"),
    Metric("bug_count", "bug_facts", "count(*)", "Bugs reported.", "severity"),
    Metric(
        "bug_severity_score", "bug_facts", _SCORE,
        "Bugs weighted by severity: critical 5, high 3, low, visual, content and custom 1.", "feature",
    ),
    Metric(
        "features_tested", "test_facts", "count(DISTINCT feature_id)",
        "Distinct product features the tests covered.", "product",
    ),
    Metric("active_testers", "bug_facts", "count(DISTINCT tester)", "Distinct testers who reported bugs.", "test_end_month"),
    Metric(
        "bugs_per_test", "test_facts", "round(avg(bugs), 4)",
        "Average bugs per test (tests without bugs count as 0).", "testing_type",
    ),
    Metric("tests_created", "test_facts", "count(customer)", "Tests created by a named customer user.", "customer"),
    Metric("tests_submitted", "test_facts", "count(submitter)", "Tests submitted for review.", "customer"),
    Metric(
        "overall_acceptance_rate", "bug_facts", _share("status = 'accepted'"),
        "Share of bugs accepted, by a person or automatically.", "product",
    ),
    Metric("rejection_rate", "bug_facts", _share("status = 'rejected'"), "Share of bugs rejected.", "test_end_quarter"),
    Metric(
        "review_rate", "bug_facts",
        _share("status = 'rejected' OR (status = 'accepted' AND NOT coalesce(auto_accepted, false))"),
        "Share of bugs a person reviewed (accepted by a person, or rejected).", "customer",
    ),
    Metric(
        "active_acceptance_rate", "bug_facts", _share("status = 'accepted' AND NOT coalesce(auto_accepted, false)"),
        "Share of bugs accepted by a person.", "tester",
    ),
    Metric(
        "auto_acceptance_rate", "bug_facts",
        _share("status = 'accepted' AND auto_accepted", "count(*) FILTER (WHERE status = 'accepted')"),
        "Share of accepted bugs that were accepted automatically.", "platform",
    ),
    # How long bugs and tests wait (views/lifecycle.py): a bug counts towards the decision
    # times once the mirror saw it open and then decided; its time is an upper bound.
    Metric(
        "median_hours_to_decision", "bug_lifecycle", "round(median(hours_to_decision), 2)",
        "Median hours from report to first decision, over the bugs the mirror saw open, then decided.", "severity",
    ),
    Metric(
        "p90_hours_to_decision", "bug_lifecycle", "round(quantile_cont(hours_to_decision, 0.9), 2)",
        "90th percentile of those hours: nine in ten were decided within it.", "product",
    ),
    Metric(
        "decided_within_24h_share", "bug_lifecycle", _share("hours_to_decision <= 24", "count(hours_to_decision)"),
        "Share of those bugs certainly decided within 24 hours of their report.", "reported_week",
    ),
    Metric(
        "decided_within_72h_share", "bug_lifecycle", _share("hours_to_decision <= 72", "count(hours_to_decision)"),
        "Share of those bugs certainly decided within 72 hours of their report.", "feature",
    ),
    Metric(
        "open_bugs", "bug_lifecycle", "count(*) FILTER (WHERE status = 'forwarded')",
        "Bugs open now; by open_age_bucket, how long they have waited since their report.", "open_age_bucket",
    ),
    Metric(
        "tests_locked_over_7_days", "test_lifecycle", "count(*) FILTER (WHERE hours_locked_so_far > 168)",
        "Tests locked now whose testing ended more than 7 days before the last sync (hours_locked_so_far for any other N).", "product",
    ),
)
METRIC_BY_NAME = {m.name: m for m in METRICS}

# dimension -> (view -> (the SELECT expression naming it, what the FROM clause adds)); a
# dimension a view lacks does not make sense for that view's metrics.
_COMMON = ("product", "customer", "testing_type", "test_environment", "test_end_month", "test_end_week", "test_end_quarter")
DIMENSIONS: dict[str, dict[str, tuple[str, str]]] = {
    **{d: {"bug_facts": (d, ""), "test_facts": (d, "")} for d in _COMMON},
    "platform": {
        "bug_facts": ("platform", ", unnest(platforms) AS u(platform)"),
        "test_facts": ("platform", ", unnest(platforms) AS u(platform)"),
    },
    "feature": {"bug_facts": ("feature", "")},
    **{d: {"bug_facts": (d, "")} for d in ("tester", "severity", "status", "known", "rejection_reason")},
}
for _d in ("product", "feature", "severity", "reported_week", "open_age_bucket"):
    DIMENSIONS.setdefault(_d, {})["bug_lifecycle"] = (_d, "")
for _d in ("product", "testing_type"):
    DIMENSIONS[_d]["test_lifecycle"] = (_d, "")
# features_tested counts the features a test covers: its rows are unnested per feature.
_FEATURE_ROWS = ", unnest(feature_ids) AS c(feature_id)"


def dimensions_of(metric: Metric) -> list[str]:
    return [d for d, views in DIMENSIONS.items() if metric.view in views]


def metric_sql(metric: Metric | str, dimension: str | None = None, *, across_customers: bool = False) -> str:
    """The one query giving ``metric`` per value of ``dimension`` (overall without one).

    ``across_customers``: per customer too, over the ``all_<view>`` views of a cross-customer
    session (``warehouse/customers.py``), with the customer's name (``tenant``) first.
    """
    m = METRIC_BY_NAME[metric] if isinstance(metric, str) else metric
    rows = _FEATURE_ROWS if m.name == "features_tested" else ""
    source = f"all_{m.view}" if across_customers else m.view
    if dimension is None:
        if across_customers:
            return f"SELECT tenant, {m.expression} AS {m.name}\nFROM {source}{rows}\nGROUP BY tenant\nORDER BY tenant"
        return f"SELECT {m.expression} AS {m.name}\nFROM {source}{rows}"
    if m.view not in DIMENSIONS.get(dimension, {}):
        raise ValueError(f"{m.name} cannot be grouped by {dimension}; it can by {', '.join(dimensions_of(m))}")
    select, joined = DIMENSIONS[dimension][m.view]
    if across_customers:
        select = f"tenant, {select}"
    return (
        f"SELECT {select}, {m.expression} AS {m.name}\nFROM {source}{joined}{rows}\n"
        f"GROUP BY {select}\nORDER BY {select} NULLS LAST"
    )
