"""Rolled-up views: one row per feature (`feature_quality`) and per product (`product_summary`)."""

from __future__ import annotations


from ..schema import sql_literal
from .model import (
    STARTED_TEST_STATUSES,
    TEST_STATUS_COLUMNS,
    View,
    ACCEPTANCE_DOC,
    bug_count_columns,
    bug_count_select,
    col,
    count_filters,
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
        {count_filters()},
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
    {bug_count_select("bc")},
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
        col("feature_id", "BIGINT", "TestIO id of the feature (features.id)."),
        col("feature_title", "VARCHAR", "Feature title."),
        col("product_id", "BIGINT", "Product the feature belongs to (products.id)."),
        col("product_name", "VARCHAR", "Name of that product."),
        col("user_stories", "BIGINT", "User stories matched to this feature."),
        col("tests_covering", "BIGINT", "Tests (not deleted) that included this feature."),
        col("last_tested_at", "TIMESTAMP WITH TIME ZONE", "Start of the most recent test that covered the feature and has started (running, locked or archived); empty if none."),
        *bug_count_columns("on this feature"),
        col("acceptance_rate", "DOUBLE", ACCEPTANCE_DOC),
        col("last_bug_reported_at", "TIMESTAMP WITH TIME ZONE", "When the most recent bug on this feature was reported (UTC)."),
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
        {count_filters()}
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
    {bug_count_select("bc")},
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
        col("product_id", "BIGINT", "TestIO id of the product (products.id)."),
        col("product_name", "VARCHAR", "Product name."),
        col("product_type", "VARCHAR", "Kind of product: website, mobile_app_ios, mobile_app_android, mobile_app_windows, streaming_app or gaming."),
        col("sections", "BIGINT", "Sections of the product (0 for products without sections)."),
        col("features", "BIGINT", "Features of the product."),
        col("user_stories", "BIGINT", "User stories of the product."),
        col("tests", "BIGINT", "Tests of the product, in any status."),
        *(col(f"tests_{s}", "BIGINT", f"Tests whose status is {s}.") for s in TEST_STATUS_COLUMNS),
        *bug_count_columns("in this product"),
        col("acceptance_rate", "DOUBLE", ACCEPTANCE_DOC),
        col("features_synced_at", "TIMESTAMP WITH TIME ZONE", "When the product's features were last fetched completely (UTC)."),
        col("user_stories_synced_at", "TIMESTAMP WITH TIME ZONE", "When the product's user stories were last fetched completely (UTC)."),
        col("tests_synced_at", "TIMESTAMP WITH TIME ZONE", "When the product's test list was last fetched completely (UTC)."),
        col("bugs_synced_at", "TIMESTAMP WITH TIME ZONE", "When the bugs of all the product's tests were last fetched completely (UTC)."),
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
