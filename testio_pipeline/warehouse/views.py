"""Analyst views, declared once as data like ``schema.TABLES``: SQL, column docs, KPIs.

Each :class:`View` carries its SELECT, a description and one :class:`~.schema.Column` per
output column (type as DESCRIBE reports it, and a sentence for analysts). From that come
the ``CREATE OR REPLACE VIEW`` statement, ``COMMENT ON VIEW`` / ``COMMENT ON COLUMN`` for
every column (DuckDB 2 supports comments on view columns; ``CREATE OR REPLACE`` drops them,
so they are re-applied after every creation), the README's data dictionary and the column
schema shown in Dagster. A test compares the declaration with ``DESCRIBE`` of each view.

Conventions shared by the views:
- deleted rows (``deleted_at`` set) are left out everywhere;
- a bug's readable ``status``: ``accepted`` (by a person), ``auto-accepted``, ``rejected``,
  ``open`` (the API's ``forwarded``); an unknown API status is shown as-is;
- bug counts by status are disjoint (``accepted_bugs`` excludes auto-accepted ones), and the
  acceptance rate is (accepted + auto-accepted) / (accepted + auto-accepted + rejected):
  open bugs are not decided yet, so they do not count either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from testio_pipeline.domain.vocabulary import BUG_SEVERITIES, FINAL_TEST_STATUSES, TEST_STATUSES

from . import merge
from .schema import Column, sql_literal

# The readable bug statuses, in the order they are counted.
BUG_STATUS_LABELS = ("open", "accepted", "auto-accepted", "rejected")
# Test statuses as the API reports them (tests.status), counted per product.
# In lifecycle order: initialized → customer_finalized (set up by the customer) → waiting →
# running → locked (testing over, bugs still reviewed) → archived; or cancelled.
TEST_STATUS_COLUMNS = TEST_STATUSES
# A feature counts as "tested" by a test that has started.
STARTED_TEST_STATUSES = ("running", "locked", "archived")


# Declared type → the spelling DESCRIBE uses (views declare theirs in that spelling already).
_TYPE_SPELLING = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}


def describe_type(declared: str) -> str:
    """A declared column type as DuckDB's DESCRIBE prints it (lists keep their ``[]``)."""
    if declared.endswith("[]"):
        return describe_type(declared[:-2]) + "[]"
    return _TYPE_SPELLING.get(declared, declared)


@dataclass(frozen=True)
class View:
    """One analyst view: its SELECT, what it is for, its columns, and what it reads."""

    name: str
    description: str
    select: str
    columns: tuple[Column, ...]
    reads: tuple[str, ...]  # tables and views it selects from (lineage in Dagster)
    order_by: str  # how its preview is sorted
    kpis: str  # one-row SELECT over the view: numeric KPIs for Dagster metadata
    preview: tuple[str, ...] = ()  # columns shown in the Markdown preview (default: all)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def view_deps(self) -> tuple[str, ...]:
        return tuple(r for r in self.reads if r in _VIEW_NAMES)

    def create_sql(self) -> list[str]:
        """CREATE OR REPLACE VIEW, then the comments (which the replace just dropped)."""
        return [f"CREATE OR REPLACE VIEW {self.name} AS\n{self.select.strip()}", *self.comment_sql()]

    def comment_sql(self) -> list[str]:
        stmts = [f"COMMENT ON VIEW {self.name} IS {sql_literal(self.description)}"]
        stmts += [
            f"COMMENT ON COLUMN {self.name}.{c.name} IS {sql_literal(c.description)}"
            for c in self.columns
        ]
        return stmts

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name}.{name}")


def _c(name: str, type_: str, description: str) -> Column:
    return Column(name, type_, description)


def _count_filters(prefix: str = "") -> str:
    """Bug counts by severity and by readable status over bug_overview rows."""
    sev = [f"count(*) FILTER (WHERE {prefix}severity = '{s}') AS {s}_bugs" for s in BUG_SEVERITIES]
    status = [
        f"count(*) FILTER (WHERE {prefix}status = '{s}') AS {s.replace('-', '_')}_bugs"
        for s in BUG_STATUS_LABELS
    ]
    return ",\n        ".join(["count(*) AS bugs", *sev, *status])


def _bug_count_columns(per: str) -> tuple[Column, ...]:
    cols = [_c("bugs", "BIGINT", f"Bugs reported {per} (deleted bugs excluded).")]
    cols += [_c(f"{s}_bugs", "BIGINT", f"Bugs of severity {s} {per}.") for s in BUG_SEVERITIES]
    cols += [
        _c("open_bugs", "BIGINT", f"Bugs {per} still open (forwarded to the customer, not yet decided)."),
        _c("accepted_bugs", "BIGINT", f"Bugs {per} accepted by a person (auto-accepted ones not included)."),
        _c("auto_accepted_bugs", "BIGINT", f"Bugs {per} accepted automatically."),
        _c("rejected_bugs", "BIGINT", f"Bugs {per} rejected."),
    ]
    return tuple(cols)


def _bug_count_select(alias: str) -> str:
    """coalesce(alias.x, 0) for every bug count column (LEFT JOINed counts)."""
    names = [c.name for c in _bug_count_columns("")]
    return ",\n    ".join(f"coalesce({alias}.{n}, 0) AS {n}" for n in names)


_ACCEPTANCE = (
    "round((accepted_bugs + auto_accepted_bugs)::DOUBLE"
    " / nullif(accepted_bugs + auto_accepted_bugs + rejected_bugs, 0), 3)"
)
_ACCEPTANCE_DOC = (
    "Share of decided bugs that were accepted: (accepted + auto-accepted) / (accepted + "
    "auto-accepted + rejected), 0 to 1; empty when no bug was decided yet."
)


# --- the declaration ----------------------------------------------------------------------

BUG_OVERVIEW = View(
    name="bug_overview",
    description=(
        "One row per bug (deleted bugs excluded) with its product, test, feature and section "
        "names and a readable status: accepted, auto-accepted, rejected or open."
    ),
    select="""
SELECT
    b.id AS bug_id,
    b.title,
    b.product_id,
    p.name AS product_name,
    b.test_id,
    t.title AS test_title,
    b.feature_id,
    coalesce(f.title, tf.title) AS feature_title,
    t.section_id,
    t.section_name,
    b.severity,
    CASE
        WHEN b.status = 'accepted' AND b.auto_accepted THEN 'auto-accepted'
        WHEN b.status = 'accepted' THEN 'accepted'
        WHEN b.status = 'forwarded' THEN 'open'
        ELSE b.status
    END AS status,
    b.status AS api_status,
    b.known,
    b.reported_at,
    b.exported_at,
    b.author_name,
    b.location
FROM bugs b
LEFT JOIN products p ON p.id = b.product_id
LEFT JOIN tests t ON t.id = b.test_id
LEFT JOIN features f ON f.id = b.feature_id
LEFT JOIN test_features tf ON tf.id = b.test_feature_id AND tf.test_id = b.test_id
WHERE b.deleted_at IS NULL
""",
    columns=(
        _c("bug_id", "BIGINT", "TestIO id of the bug (bugs.id)."),
        _c("title", "VARCHAR", "Bug title."),
        _c("product_id", "BIGINT", "Product the bug was found in (products.id)."),
        _c("product_name", "VARCHAR", "Name of that product."),
        _c("test_id", "BIGINT", "Test the bug was reported in (tests.id)."),
        _c("test_title", "VARCHAR", "Title of that test."),
        _c("feature_id", "BIGINT", "Product feature the bug was reported on (features.id)."),
        _c("feature_title", "VARCHAR", "Title of that feature (as shown on the test if the feature itself is gone)."),
        _c("section_id", "BIGINT", "Section the test covered (sections.id); empty for products without sections."),
        _c("section_name", "VARCHAR", "Name of that section."),
        _c("severity", "VARCHAR", "Severity: critical, high, low, visual, content or custom."),
        _c("status", "VARCHAR", "Readable status: accepted (by a person), auto-accepted, rejected, or open (forwarded to the customer, not decided yet)."),
        _c("api_status", "VARCHAR", "Status exactly as the API reports it (accepted, rejected, forwarded)."),
        _c("known", "BOOLEAN", "True when the bug was marked as already known."),
        _c("reported_at", "TIMESTAMP WITH TIME ZONE", "When the bug was reported (UTC)."),
        _c("exported_at", "TIMESTAMP WITH TIME ZONE", "When the bug was exported to the customer's bug tracker (UTC); empty if never."),
        _c("author_name", "VARCHAR", "Name of the tester who reported the bug."),
        _c("location", "VARCHAR", "Where in the product the bug occurs (URL or screen)."),
    ),
    reads=("bugs", "products", "tests", "features", "test_features"),
    order_by="reported_at DESC, bug_id",
    preview=("bug_id", "product_name", "feature_title", "severity", "status", "reported_at", "title"),
    kpis="""
SELECT
    count(*) AS bugs,
    count(*) FILTER (WHERE status = 'open') AS open_bugs,
    count(*) FILTER (WHERE severity = 'critical') AS critical_bugs,
    count(*) FILTER (WHERE severity = 'critical' AND status = 'open') AS open_critical_bugs,
    count(*) FILTER (WHERE exported_at IS NOT NULL) AS exported_bugs,
    round(count(*) FILTER (WHERE status IN ('accepted', 'auto-accepted'))::DOUBLE
          / nullif(count(*) FILTER (WHERE status IN ('accepted', 'auto-accepted', 'rejected')), 0), 3)
        AS acceptance_rate
FROM bug_overview
""",
)

TEST_OVERVIEW = View(
    name="test_overview",
    description=(
        "One row per test (deleted tests excluded): product, status, type, start/end and "
        "duration, features covered, and its bugs counted by severity and status."
    ),
    select=f"""
WITH bug_counts AS (
    SELECT test_id,
        {_count_filters()}
    FROM bug_overview
    GROUP BY test_id
), covered AS (
    SELECT test_id, count(*) AS features_covered, list(title ORDER BY title) AS feature_titles
    FROM test_features
    GROUP BY test_id
)
SELECT
    t.id AS test_id,
    t.title,
    t.product_id,
    p.name AS product_name,
    t.section_id,
    t.section_name,
    t.status,
    t.status IN ({', '.join(map(sql_literal, FINAL_TEST_STATUSES))}) AS is_final,
    t.testing_type,
    t.review_status,
    t.start_at,
    t.end_at,
    t.end_at - t.start_at AS duration,
    round(epoch(t.end_at - t.start_at) / 3600, 2) AS duration_hours,
    coalesce(c.features_covered, 0) AS features_covered,
    coalesce(c.feature_titles, []) AS feature_titles,
    {_bug_count_select("bc")},
    t.bugs_synced_at
FROM tests t
LEFT JOIN products p ON p.id = t.product_id
LEFT JOIN bug_counts bc ON bc.test_id = t.id
LEFT JOIN covered c ON c.test_id = t.id
WHERE t.deleted_at IS NULL
""",
    columns=(
        _c("test_id", "BIGINT", "TestIO id of the test (tests.id)."),
        _c("title", "VARCHAR", "Test title."),
        _c("product_id", "BIGINT", "Product under test (products.id)."),
        _c("product_name", "VARCHAR", "Name of that product."),
        _c("section_id", "BIGINT", "Section the test covers (sections.id); empty for products without sections."),
        _c("section_name", "VARCHAR", "Name of that section."),
        _c("status", "VARCHAR", "Test status as the API reports it: initialized, customer_finalized, waiting, running, locked (all can still change), archived or cancelled (final)."),
        _c("is_final", "BOOLEAN", "True once the test is archived or cancelled (it will not change any more)."),
        _c("testing_type", "VARCHAR", "Kind of test: coverage, focused, rapid, usability or external; empty for a test-case test."),
        _c("review_status", "VARCHAR", "TestIO's review status of the test."),
        _c("start_at", "TIMESTAMP WITH TIME ZONE", "When testing started (UTC)."),
        _c("end_at", "TIMESTAMP WITH TIME ZONE", "When testing ended or is planned to end (UTC)."),
        _c("duration", "INTERVAL", "end_at minus start_at."),
        _c("duration_hours", "DOUBLE", "The duration in hours, rounded to two decimals."),
        _c("features_covered", "BIGINT", "Number of features included in the test."),
        _c("feature_titles", "VARCHAR[]", "Titles of the features included in the test, sorted."),
        *_bug_count_columns("in this test"),
        _c("bugs_synced_at", "TIMESTAMP WITH TIME ZONE", "When all bugs of this test were last fetched completely (UTC)."),
    ),
    reads=("tests", "products", "test_features", "bug_overview"),
    order_by="start_at DESC NULLS LAST, test_id",
    preview=("test_id", "product_name", "status", "testing_type", "start_at", "duration_hours", "bugs", "open_bugs"),
    kpis="""
SELECT
    count(*) AS tests,
    count(*) FILTER (WHERE status = 'running') AS tests_running,
    count(*) FILTER (WHERE NOT is_final) AS tests_not_final,
    count(*) FILTER (WHERE open_bugs > 0) AS tests_with_open_bugs,
    round(avg(duration_hours), 2) AS avg_duration_hours,
    round(avg(bugs), 2) AS avg_bugs_per_test
FROM test_overview
""",
)

FEATURE_QUALITY = View(
    name="feature_quality",
    description=(
        "One row per feature (deleted features excluded): the tests that covered it, its "
        "bugs by severity and status, the acceptance rate and when it was last tested."
    ),
    select=f"""
WITH bug_counts AS (
    SELECT feature_id,
        {_count_filters()},
        max(reported_at) AS last_bug_reported_at
    FROM bug_overview
    GROUP BY feature_id
), coverage AS (
    SELECT tf.feature_id,
        count(DISTINCT tf.test_id) AS tests_covering,
        max(t.start_at) FILTER (WHERE t.status IN ({", ".join(map(sql_literal, STARTED_TEST_STATUSES))}))
            AS last_tested_at
    FROM test_features tf
    JOIN tests t ON t.id = tf.test_id AND t.deleted_at IS NULL
    GROUP BY tf.feature_id
), stories AS (
    SELECT feature_id, count(*) AS user_stories
    FROM user_stories
    WHERE deleted_at IS NULL
    GROUP BY feature_id
)
SELECT
    f.id AS feature_id,
    f.title AS feature_title,
    f.product_id,
    p.name AS product_name,
    coalesce(s.user_stories, 0) AS user_stories,
    coalesce(cv.tests_covering, 0) AS tests_covering,
    cv.last_tested_at,
    {_bug_count_select("bc")},
    round((coalesce(bc.accepted_bugs, 0) + coalesce(bc.auto_accepted_bugs, 0))::DOUBLE
          / nullif(coalesce(bc.accepted_bugs, 0) + coalesce(bc.auto_accepted_bugs, 0)
                   + coalesce(bc.rejected_bugs, 0), 0), 3) AS acceptance_rate,
    bc.last_bug_reported_at
FROM features f
LEFT JOIN products p ON p.id = f.product_id
LEFT JOIN bug_counts bc ON bc.feature_id = f.id
LEFT JOIN coverage cv ON cv.feature_id = f.id
LEFT JOIN stories s ON s.feature_id = f.id
WHERE f.deleted_at IS NULL
""",
    columns=(
        _c("feature_id", "BIGINT", "TestIO id of the feature (features.id)."),
        _c("feature_title", "VARCHAR", "Feature title."),
        _c("product_id", "BIGINT", "Product the feature belongs to (products.id)."),
        _c("product_name", "VARCHAR", "Name of that product."),
        _c("user_stories", "BIGINT", "User stories matched to this feature."),
        _c("tests_covering", "BIGINT", "Tests (not deleted) that included this feature."),
        _c("last_tested_at", "TIMESTAMP WITH TIME ZONE", "Start of the most recent test that covered the feature and has started (running, locked or archived); empty if none."),
        *_bug_count_columns("on this feature"),
        _c("acceptance_rate", "DOUBLE", _ACCEPTANCE_DOC),
        _c("last_bug_reported_at", "TIMESTAMP WITH TIME ZONE", "When the most recent bug on this feature was reported (UTC)."),
    ),
    reads=("features", "products", "test_features", "tests", "user_stories", "bug_overview"),
    order_by="critical_bugs DESC, bugs DESC, feature_id",
    preview=("feature_title", "product_name", "tests_covering", "bugs", "critical_bugs", "open_bugs", "acceptance_rate"),
    kpis="""
SELECT
    count(*) AS features,
    count(*) FILTER (WHERE tests_covering = 0) AS features_never_tested,
    count(*) FILTER (WHERE critical_bugs > 0) AS features_with_critical_bugs,
    count(*) FILTER (WHERE open_bugs > 0) AS features_with_open_bugs,
    round(avg(acceptance_rate), 3) AS avg_acceptance_rate
FROM feature_quality
""",
)

PRODUCT_SUMMARY = View(
    name="product_summary",
    description=(
        "One row per product (deleted products excluded): features, user stories, tests by "
        "status, bugs by severity and status, and when each entity was last synced."
    ),
    select=f"""
WITH feature_counts AS (
    SELECT product_id, count(*) AS features FROM features WHERE deleted_at IS NULL GROUP BY product_id
), story_counts AS (
    SELECT product_id, count(*) AS user_stories FROM user_stories WHERE deleted_at IS NULL GROUP BY product_id
), section_counts AS (
    SELECT product_id, count(*) AS sections FROM sections WHERE deleted_at IS NULL GROUP BY product_id
), test_counts AS (
    SELECT product_id,
        count(*) AS tests,
        {", ".join(f"count(*) FILTER (WHERE status = '{s}') AS tests_{s}" for s in TEST_STATUS_COLUMNS)}
    FROM tests
    WHERE deleted_at IS NULL
    GROUP BY product_id
), bug_counts AS (
    SELECT product_id,
        {_count_filters()}
    FROM bug_overview
    GROUP BY product_id
)
SELECT
    p.id AS product_id,
    p.name AS product_name,
    p.type AS product_type,
    coalesce(sc.sections, 0) AS sections,
    coalesce(fc.features, 0) AS features,
    coalesce(uc.user_stories, 0) AS user_stories,
    coalesce(tc.tests, 0) AS tests,
    {", ".join(f"coalesce(tc.tests_{s}, 0) AS tests_{s}" for s in TEST_STATUS_COLUMNS)},
    {_bug_count_select("bc")},
    round((coalesce(bc.accepted_bugs, 0) + coalesce(bc.auto_accepted_bugs, 0))::DOUBLE
          / nullif(coalesce(bc.accepted_bugs, 0) + coalesce(bc.auto_accepted_bugs, 0)
                   + coalesce(bc.rejected_bugs, 0), 0), 3) AS acceptance_rate,
    p.features_synced_at,
    p.user_stories_synced_at,
    p.tests_synced_at,
    p.bugs_synced_at
FROM products p
LEFT JOIN section_counts sc ON sc.product_id = p.id
LEFT JOIN feature_counts fc ON fc.product_id = p.id
LEFT JOIN story_counts uc ON uc.product_id = p.id
LEFT JOIN test_counts tc ON tc.product_id = p.id
LEFT JOIN bug_counts bc ON bc.product_id = p.id
WHERE p.deleted_at IS NULL
""",
    columns=(
        _c("product_id", "BIGINT", "TestIO id of the product (products.id)."),
        _c("product_name", "VARCHAR", "Product name."),
        _c("product_type", "VARCHAR", "Kind of product: website, mobile_app_ios, mobile_app_android, mobile_app_windows, streaming_app or gaming."),
        _c("sections", "BIGINT", "Sections of the product (0 for products without sections)."),
        _c("features", "BIGINT", "Features of the product."),
        _c("user_stories", "BIGINT", "User stories of the product."),
        _c("tests", "BIGINT", "Tests of the product, in any status."),
        *(_c(f"tests_{s}", "BIGINT", f"Tests whose status is {s}.") for s in TEST_STATUS_COLUMNS),
        *_bug_count_columns("in this product"),
        _c("acceptance_rate", "DOUBLE", _ACCEPTANCE_DOC),
        _c("features_synced_at", "TIMESTAMP WITH TIME ZONE", "When the product's features were last fetched completely (UTC)."),
        _c("user_stories_synced_at", "TIMESTAMP WITH TIME ZONE", "When the product's user stories were last fetched completely (UTC)."),
        _c("tests_synced_at", "TIMESTAMP WITH TIME ZONE", "When the product's test list was last fetched completely (UTC)."),
        _c("bugs_synced_at", "TIMESTAMP WITH TIME ZONE", "When the bugs of all the product's tests were last fetched completely (UTC)."),
    ),
    reads=("products", "sections", "features", "user_stories", "tests", "bug_overview"),
    order_by="product_id",
    preview=("product_name", "features", "tests", "tests_running", "bugs", "open_bugs", "critical_bugs", "acceptance_rate"),
    kpis="""
SELECT
    count(*) AS products,
    sum(tests_running)::BIGINT AS tests_running,
    sum(open_bugs)::BIGINT AS open_bugs,
    sum(critical_bugs)::BIGINT AS critical_bugs,
    round(sum(accepted_bugs + auto_accepted_bugs)::DOUBLE
          / nullif(sum(accepted_bugs + auto_accepted_bugs + rejected_bugs), 0), 3) AS acceptance_rate
FROM product_summary
""",
)

_VIEW_LIST = (BUG_OVERVIEW, TEST_OVERVIEW, FEATURE_QUALITY, PRODUCT_SUMMARY)
_VIEW_NAMES = frozenset(v.name for v in _VIEW_LIST)
# In creation order: a view comes after the views it reads.
VIEWS: dict[str, View] = {v.name: v for v in _VIEW_LIST}


def create_views_sql(names: Iterable[str] | None = None, existing: Iterable[str] = ()) -> list[str]:
    """Statements that (re)create ``names`` (default: all), in dependency order.

    A view that a requested view reads is created too unless it is in ``existing``.
    """
    wanted = set(VIEWS if names is None else names)
    unknown = wanted - set(VIEWS)
    if unknown:
        raise KeyError(f"unknown views: {sorted(unknown)}")
    have = set(existing)
    pending = list(wanted)
    while pending:
        for dep in VIEWS[pending.pop()].view_deps:
            if dep not in wanted and dep not in have:
                wanted.add(dep)
                pending.append(dep)
    return [stmt for v in VIEWS.values() if v.name in wanted for stmt in v.create_sql()]


def create_views(warehouse, names: Sequence[str] | None = None) -> list[str]:
    """(Re)create views in the warehouse in one short transaction; returns the views created.

    ``warehouse`` is a :class:`~testio_pipeline.warehouse.Warehouse`; its schema is migrated first if needed.
    Missing views that a requested view reads are created with it, so any one view can be
    built on a fresh file.
    """
    def body(con) -> list[str]:
        existing = {r[0] for r in merge.run(con, "SELECT view_name FROM duckdb_views() WHERE NOT internal")}
        statements = create_views_sql(names, existing)
        for stmt in statements:
            merge.run(con, stmt)
        return statements

    statements, _ = warehouse._db.write(body)  # noqa: SLF001 — same package; the one write path
    return [s.split()[4] for s in statements if s.startswith("CREATE OR REPLACE VIEW")]
