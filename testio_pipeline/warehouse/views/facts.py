"""Fact views for analysis: one row per bug (`bug_facts`) and per test (`test_facts`) with every
dimension the metrics are grouped by, and one row per person and role (`users`).

The dimensions are plain columns (the test's operating systems as a list), so a metric is
one ``GROUP BY`` over one view (``metrics.py``). Periods are those of the test's end, in
UTC whatever the session's time zone. Deleted rows are left out, as in every view.
"""

from __future__ import annotations

from .model import View, col

# The test's operating systems (from its requirements), as a sorted list.
_PLATFORMS = """platforms AS (
    SELECT test_id, list(DISTINCT operating_system ORDER BY operating_system) AS platforms
    FROM test_platforms WHERE operating_system IS NOT NULL GROUP BY test_id
)"""


def _period_columns(alias: str) -> str:
    utc = f"timezone('UTC', {alias}.end_at)"
    return f"""date_trunc('month', {utc})::DATE AS test_end_month,
    date_trunc('week', {utc})::DATE AS test_end_week,
    date_trunc('quarter', {utc})::DATE AS test_end_quarter"""


_PERIOD_DOCS = (
    col("test_end_month", "DATE", "First day of the month (UTC) the test ended in."),
    col("test_end_week", "DATE", "Monday of the ISO week (UTC) the test ended in."),
    col("test_end_quarter", "DATE", "First day of the quarter (UTC) the test ended in."),
)

BUG_FACTS = View(
    name="bug_facts",
    description=(
        "One row per bug (deleted bugs excluded) with every dimension bug metrics are grouped by: "
        "product, feature, the test's platforms, tester, customer, severity, status, rejection "
        "reason, testing type, test environment and the period the test ended in."
    ),
    select=f"""
WITH {_PLATFORMS}
SELECT
    b.id AS bug_id,
    b.test_id,
    b.product_id,
    p.name AS product,
    b.feature_id,
    coalesce(f.title, tf.title) AS feature,
    coalesce(pl.platforms, []::VARCHAR[]) AS platforms,
    b.author_name AS tester,
    t.created_by AS customer,
    b.severity,
    b.status,
    b.auto_accepted,
    b.known,
    b.rejection_reason,
    t.testing_type,
    t.test_environment_title AS test_environment,
    b.reported_at,
    {_period_columns("t")}
FROM bugs b
LEFT JOIN products p ON p.id = b.product_id
LEFT JOIN tests t ON t.id = b.test_id
LEFT JOIN features f ON f.id = b.feature_id
LEFT JOIN test_features tf ON tf.id = b.test_feature_id AND tf.test_id = b.test_id
LEFT JOIN platforms pl ON pl.test_id = b.test_id
WHERE b.deleted_at IS NULL
""",
    columns=(
        col("bug_id", "BIGINT", "TestIO id of the bug (bugs.id)."),
        col("test_id", "BIGINT", "Test the bug was reported in (tests.id)."),
        col("product_id", "BIGINT", "Product the bug was found in (products.id)."),
        col("product", "VARCHAR", "Name of that product."),
        col("feature_id", "BIGINT", "Product feature the bug was reported on (features.id)."),
        col("feature", "VARCHAR", "Title of that feature (as shown on the test if the feature itself is gone)."),
        col("platforms", "VARCHAR[]", "Operating systems the test asked for (test_platforms), sorted; empty when it named none."),
        col("tester", "VARCHAR", "Name of the tester who reported the bug."),
        col("customer", "VARCHAR", "Username of the customer's person who created the test."),
        col("severity", "VARCHAR", "Severity: critical, high, low, visual, content or custom."),
        col("status", "VARCHAR", "Status as the API reports it: accepted, rejected or forwarded (open)."),
        col("auto_accepted", "BOOLEAN", "True when an accepted bug was accepted automatically."),
        col("known", "BOOLEAN", "True when the bug was marked as already known."),
        col("rejection_reason", "VARCHAR", "For a rejected bug: the reason its rejection comment gives (bugs.rejection_reason)."),
        col("testing_type", "VARCHAR", "Kind of test: coverage, focused, rapid, usability or external; empty for a test-case test."),
        col("test_environment", "VARCHAR", "Name of the test environment used."),
        col("reported_at", "TIMESTAMP WITH TIME ZONE", "When the bug was reported (UTC)."),
        *_PERIOD_DOCS,
    ),
    reads=("bugs", "products", "tests", "features", "test_features", "test_platforms"),
    order_by="reported_at DESC, bug_id",
    preview=("bug_id", "product", "feature", "severity", "status", "rejection_reason", "tester", "test_end_month"),
    kpis="""
SELECT
    count(*) AS bugs,
    count(DISTINCT tester) AS active_testers,
    count(*) FILTER (WHERE status = 'rejected') AS rejected_bugs,
    count(*) FILTER (WHERE rejection_reason = 'other') AS rejected_without_standard_reason
FROM bug_facts
""",
)

TEST_FACTS = View(
    name="test_facts",
    description=(
        "One row per test (deleted tests excluded) with every dimension test metrics are grouped "
        "by, the features it covers and its number of bugs."
    ),
    select=f"""
WITH {_PLATFORMS},
bug_counts AS (
    SELECT test_id, count(*) AS bugs FROM bugs WHERE deleted_at IS NULL GROUP BY test_id
),
covered AS (
    SELECT test_id, list(DISTINCT feature_id ORDER BY feature_id) AS feature_ids
    FROM test_features WHERE feature_id IS NOT NULL GROUP BY test_id
)
SELECT
    t.id AS test_id,
    t.product_id,
    p.name AS product,
    coalesce(c.feature_ids, []::BIGINT[]) AS feature_ids,
    coalesce(pl.platforms, []::VARCHAR[]) AS platforms,
    t.created_by AS customer,
    t.submitted_by AS submitter,
    t.status,
    t.testing_type,
    t.test_environment_title AS test_environment,
    t.start_at,
    t.end_at,
    {_period_columns("t")},
    coalesce(bc.bugs, 0) AS bugs
FROM tests t
LEFT JOIN products p ON p.id = t.product_id
LEFT JOIN covered c ON c.test_id = t.id
LEFT JOIN platforms pl ON pl.test_id = t.id
LEFT JOIN bug_counts bc ON bc.test_id = t.id
WHERE t.deleted_at IS NULL
""",
    columns=(
        col("test_id", "BIGINT", "TestIO id of the test (tests.id)."),
        col("product_id", "BIGINT", "Product under test (products.id)."),
        col("product", "VARCHAR", "Name of that product."),
        col("feature_ids", "BIGINT[]", "Product features the test covers (features.id), sorted."),
        col("platforms", "VARCHAR[]", "Operating systems the test asked for (test_platforms), sorted."),
        col("customer", "VARCHAR", "Username of the customer's person who created the test."),
        col("submitter", "VARCHAR", "Username of the person who submitted it; empty while not submitted."),
        col("status", "VARCHAR", "Test status as the API reports it."),
        col("testing_type", "VARCHAR", "Kind of test: coverage, focused, rapid, usability or external; empty for a test-case test."),
        col("test_environment", "VARCHAR", "Name of the test environment used."),
        col("start_at", "TIMESTAMP WITH TIME ZONE", "When testing started (UTC)."),
        col("end_at", "TIMESTAMP WITH TIME ZONE", "When testing ended or is planned to end (UTC)."),
        *_PERIOD_DOCS,
        col("bugs", "BIGINT", "Bugs reported in the test (deleted bugs excluded)."),
    ),
    reads=("tests", "products", "test_features", "test_platforms", "bugs"),
    order_by="end_at DESC, test_id",
    preview=("test_id", "product", "status", "testing_type", "customer", "bugs", "test_end_month"),
    kpis="""
SELECT
    count(*) AS tests,
    count(*) FILTER (WHERE submitter IS NOT NULL) AS tests_submitted,
    round(avg(bugs), 2) AS bugs_per_test
FROM test_facts
""",
)

USERS = View(
    name="users",
    description=(
        "One row per person and role: testers (authors of bugs) and the customer's people "
        "(who created or submitted tests), with what they did and when they were active. "
        "A name appears at most once per role; deleted bugs and tests are left out."
    ),
    select="""
WITH testers AS (
    SELECT author_name AS name, count(*) AS bugs_reported, min(reported_at) AS first_seen_at,
           max(reported_at) AS last_seen_at
    FROM bugs WHERE deleted_at IS NULL AND author_name IS NOT NULL GROUP BY author_name
), roles AS (
    SELECT created_by AS name, 1 AS created, 0 AS submitted, start_at FROM tests
    WHERE deleted_at IS NULL AND created_by IS NOT NULL
    UNION ALL
    SELECT submitted_by, 0, 1, start_at FROM tests
    WHERE deleted_at IS NULL AND submitted_by IS NOT NULL
), customers AS (
    SELECT name, sum(created) AS tests_created, sum(submitted) AS tests_submitted,
           min(start_at) AS first_seen_at, max(start_at) AS last_seen_at
    FROM roles GROUP BY name
)
SELECT name, 'tester' AS user_type, bugs_reported, 0::BIGINT AS tests_created,
       0::BIGINT AS tests_submitted, first_seen_at, last_seen_at
FROM testers
UNION ALL
SELECT name, 'customer', 0::BIGINT, tests_created::BIGINT, tests_submitted::BIGINT, first_seen_at, last_seen_at
FROM customers
""",
    columns=(
        col("name", "VARCHAR", "The person's name (testers) or username (the customer's people), as the API gives it."),
        col("user_type", "VARCHAR", "tester (reported bugs) or customer (created or submitted tests); a person with both roles has a row for each."),
        col("bugs_reported", "BIGINT", "Bugs the tester reported (0 for customers)."),
        col("tests_created", "BIGINT", "Tests the person created (0 for testers)."),
        col("tests_submitted", "BIGINT", "Tests the person submitted (0 for testers)."),
        col("first_seen_at", "TIMESTAMP WITH TIME ZONE", "Earliest activity (UTC): a tester's first bug report, or the start of a customer's first test."),
        col("last_seen_at", "TIMESTAMP WITH TIME ZONE", "Latest activity (UTC): a tester's last bug report, or the start of a customer's last test."),
    ),
    reads=("bugs", "tests"),
    order_by="user_type, name",
    kpis="""
SELECT
    count(*) FILTER (WHERE user_type = 'tester') AS testers,
    count(*) FILTER (WHERE user_type = 'customer') AS customers,
    count(*) FILTER (WHERE user_type = 'tester' AND last_seen_at >= now() - INTERVAL 30 DAY)
        AS testers_active_last_30_days
FROM users
""",
)
