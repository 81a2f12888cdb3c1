"""Row-level views: one row per bug (`bug_overview`) and per test (`test_overview`)."""

from __future__ import annotations

from testio_pipeline.domain.vocabulary import FINAL_TEST_STATUSES

from ..schema import sql_literal
from .model import (
    READABLE_BUG_STATUS,
    View,
    bug_count_columns,
    bug_count_select,
    col,
    count_filters,
)


BUG_OVERVIEW = View(
    name="bug_overview",
    description=(
        "One row per bug (deleted bugs excluded) with its product, test, feature and section "
        "names and a readable status: accepted, auto-accepted, rejected or open."
    ),
    select=f"""
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
    {READABLE_BUG_STATUS} AS status,
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
        col("bug_id", "BIGINT", "TestIO id of the bug (bugs.id)."),
        col("title", "VARCHAR", "Bug title."),
        col("product_id", "BIGINT", "Product the bug was found in (products.id)."),
        col("product_name", "VARCHAR", "Name of that product."),
        col("test_id", "BIGINT", "Test the bug was reported in (tests.id)."),
        col("test_title", "VARCHAR", "Title of that test."),
        col("feature_id", "BIGINT", "Product feature the bug was reported on (features.id)."),
        col("feature_title", "VARCHAR", "Title of that feature (as shown on the test if the feature itself is gone)."),
        col("section_id", "BIGINT", "Section the test covered (sections.id); empty for products without sections."),
        col("section_name", "VARCHAR", "Name of that section."),
        col("severity", "VARCHAR", "Severity: critical, high, low, visual, content or custom."),
        col("status", "VARCHAR", "Readable status: accepted (by a person), auto-accepted, rejected, or open (forwarded to the customer, not decided yet)."),
        col("api_status", "VARCHAR", "Status exactly as the API reports it (accepted, rejected, forwarded)."),
        col("known", "BOOLEAN", "True when the bug was marked as already known."),
        col("reported_at", "TIMESTAMP WITH TIME ZONE", "When the bug was reported (UTC)."),
        col("exported_at", "TIMESTAMP WITH TIME ZONE", "When the bug was exported to the customer's bug tracker (UTC); empty if never."),
        col("author_name", "VARCHAR", "Name of the tester who reported the bug."),
        col("location", "VARCHAR", "Where in the product the bug occurs (URL or screen)."),
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
        {count_filters()}
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
    {bug_count_select("bc")},
    t.bugs_synced_at
FROM tests t
LEFT JOIN products p ON p.id = t.product_id
LEFT JOIN bug_counts bc ON bc.test_id = t.id
LEFT JOIN covered c ON c.test_id = t.id
WHERE t.deleted_at IS NULL
""",
    columns=(
        col("test_id", "BIGINT", "TestIO id of the test (tests.id)."),
        col("title", "VARCHAR", "Test title."),
        col("product_id", "BIGINT", "Product under test (products.id)."),
        col("product_name", "VARCHAR", "Name of that product."),
        col("section_id", "BIGINT", "Section the test covers (sections.id); empty for products without sections."),
        col("section_name", "VARCHAR", "Name of that section."),
        col("status", "VARCHAR", "Test status as the API reports it: initialized, customer_finalized, waiting, running, locked (all can still change), archived or cancelled (final)."),
        col("is_final", "BOOLEAN", "True once the test is archived or cancelled (it will not change any more)."),
        col("testing_type", "VARCHAR", "Kind of test: coverage, focused, rapid, usability or external; empty for a test-case test."),
        col("review_status", "VARCHAR", "TestIO's review status of the test."),
        col("start_at", "TIMESTAMP WITH TIME ZONE", "When testing started (UTC)."),
        col("end_at", "TIMESTAMP WITH TIME ZONE", "When testing ended or is planned to end (UTC)."),
        col("duration", "INTERVAL", "end_at minus start_at."),
        col("duration_hours", "DOUBLE", "The duration in hours, rounded to two decimals."),
        col("features_covered", "BIGINT", "Number of features included in the test."),
        col("feature_titles", "VARCHAR[]", "Titles of the features included in the test, sorted."),
        *bug_count_columns("in this test"),
        col("bugs_synced_at", "TIMESTAMP WITH TIME ZONE", "When all bugs of this test were last fetched completely (UTC)."),
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
