"""How long bugs and tests wait: one row per bug (`bug_lifecycle`) and per test (`test_lifecycle`),
from the observed history (`bug_status_changes`, `test_status_changes`) and the API's own times.

The API keeps no history, so a moment the mirror only observed is known to a window: after the
last sync that saw the old state, at or before the first that saw the new one. The views give
both ends and derive durations from the API's times where it has them (``reported_at``,
``end_at``, ``exported_at``) and from the *later* end of a window otherwise, so a duration is an
upper bound exact to within its window. Where the mirror never saw the earlier state (a bug
first seen already decided, a test first seen already archived) the duration is empty, not guessed.
"""

from __future__ import annotations

from .model import View, col

_HOURS = "date_diff('second', {start}, {end}) / 3600.0"


def hours(start: str, end: str) -> str:
    """Hours from ``start`` to ``end`` (DOUBLE), rounded to the minute's precision."""
    return f"round({_HOURS.format(start=start, end=end)}, 2)"


# A bug's last observation: its own last write, or the last complete fetch of its test's bugs.
_BUG_LAST_SEEN = "greatest(b.synced_at, t.bugs_synced_at)"
OPEN_AGE_BUCKETS = ("under 1 day", "1-3 days", "3-7 days", "1-4 weeks", "over 4 weeks")

BUG_LIFECYCLE = View(
    name="bug_lifecycle",
    description=(
        "One row per bug (deleted bugs excluded): when it was reported (API) and first seen, its first decision and the "
        "window the mirror saw it in, the hours to that decision (an upper bound, exact to within the window), how often "
        "it was reopened, and how long an open bug has waited. Durations are empty where the mirror never saw the bug open."
    ),
    select=f"""
WITH ordered AS (
    SELECT *, lag(new_status) OVER (PARTITION BY bug_id ORDER BY change_number) AS status_before
    FROM bug_status_changes
), first_seen AS (
    SELECT bug_id, observed_at AS first_seen_at FROM bug_status_changes WHERE change = 'first_seen'
), decisions AS (
    -- The first row that shows the bug decided: either a change from forwarded, or a first sighting already decided.
    SELECT bug_id,
           arg_min_null(CASE WHEN new_status = 'accepted' AND new_auto_accepted THEN 'auto-accepted' ELSE new_status END, change_number) AS decision,
           arg_min_null(CASE WHEN change = 'first_seen' THEN NULL ELSE previous_observed_at END, change_number) AS decided_after,
           min(observed_at) AS decision_seen_at
    FROM ordered
    WHERE new_status IN ('accepted', 'rejected') AND (change = 'first_seen' OR status_before = 'forwarded')
    GROUP BY bug_id
), reopened AS (
    SELECT bug_id, count(*) AS times_reopened
    FROM ordered WHERE status_before IN ('accepted', 'rejected') AND new_status = 'forwarded'
    GROUP BY bug_id
), lifecycle AS (
    SELECT
        b.id AS bug_id, b.test_id, b.product_id, p.name AS product, b.feature_id,
        coalesce(f.title, tf.title) AS feature, b.severity, b.status, b.auto_accepted,
        b.reported_at,
        date_trunc('week', timezone('UTC', b.reported_at))::DATE AS reported_week,
        fs.first_seen_at,
        d.decision,
        d.decided_after,
        -- An exported bug was decided before its export (API time): the earlier of the two bounds.
        CASE WHEN d.decision IS NOT NULL THEN least(d.decision_seen_at, b.exported_at) END AS decided_by,
        coalesce(r.times_reopened, 0) AS times_reopened,
        {_BUG_LAST_SEEN} AS last_seen_at
    FROM bugs b
    LEFT JOIN products p ON p.id = b.product_id
    LEFT JOIN tests t ON t.id = b.test_id
    LEFT JOIN features f ON f.id = b.feature_id
    LEFT JOIN test_features tf ON tf.id = b.test_feature_id AND tf.test_id = b.test_id
    LEFT JOIN first_seen fs ON fs.bug_id = b.id
    LEFT JOIN decisions d ON d.bug_id = b.id
    LEFT JOIN reopened r ON r.bug_id = b.id
    WHERE b.deleted_at IS NULL
)
SELECT
    bug_id, test_id, product_id, product, feature_id, feature, severity, status, auto_accepted,
    reported_at, reported_week, first_seen_at, decision, decided_after, decided_by,
    CASE WHEN decided_after IS NOT NULL THEN {hours("reported_at", "decided_by")} END AS hours_to_decision,
    CASE WHEN decided_after IS NOT NULL THEN {hours("decided_after", "decided_by")} END AS decision_window_hours,
    times_reopened,
    CASE WHEN status = 'forwarded' THEN {hours("reported_at", "last_seen_at")} END AS open_hours,
    CASE WHEN status != 'forwarded' THEN NULL
         WHEN last_seen_at < reported_at + INTERVAL 1 DAY THEN '{OPEN_AGE_BUCKETS[0]}'
         WHEN last_seen_at < reported_at + INTERVAL 3 DAY THEN '{OPEN_AGE_BUCKETS[1]}'
         WHEN last_seen_at < reported_at + INTERVAL 7 DAY THEN '{OPEN_AGE_BUCKETS[2]}'
         WHEN last_seen_at < reported_at + INTERVAL 28 DAY THEN '{OPEN_AGE_BUCKETS[3]}'
         ELSE '{OPEN_AGE_BUCKETS[4]}' END AS open_age_bucket,
    last_seen_at
FROM lifecycle
""",
    columns=(
        col("bug_id", "BIGINT", "TestIO id of the bug (bugs.id)."),
        col("test_id", "BIGINT", "Test the bug was reported in (tests.id)."),
        col("product_id", "BIGINT", "Product the bug was found in (products.id)."),
        col("product", "VARCHAR", "Name of that product."),
        col("feature_id", "BIGINT", "Product feature the bug was reported on (features.id)."),
        col("feature", "VARCHAR", "Title of that feature (as shown on the test if the feature itself is gone)."),
        col("severity", "VARCHAR", "Severity now: critical, high, low, visual, content or custom."),
        col("status", "VARCHAR", "Status now as the API reports it: accepted, rejected or forwarded (open)."),
        col("auto_accepted", "BOOLEAN", "True when it is accepted now, automatically."),
        col("reported_at", "TIMESTAMP WITH TIME ZONE", "When the bug was reported (API time, UTC)."),
        col("reported_week", "DATE", "Monday of the ISO week (UTC) it was reported in."),
        col("first_seen_at", "TIMESTAMP WITH TIME ZONE", "The sync that first saw the bug (bug_status_changes); empty if no sync since the history began has."),
        col("decision", "VARCHAR", "Its first decision: accepted (by a person), auto-accepted or rejected; empty while never decided."),
        col("decided_after", "TIMESTAMP WITH TIME ZONE", "The last sync that saw it still open before that decision; empty when the mirror never saw it open (first seen decided)."),
        col("decided_by", "TIMESTAMP WITH TIME ZONE", "The decision happened at or before this: the first sync that saw it, or the bug's exported_at (API) if earlier."),
        col("hours_to_decision", "DOUBLE", "Hours from reported_at to decided_by: an upper bound, exact to within decision_window_hours; empty when decided_after is (the mirror never saw it open, so the time is not known)."),
        col("decision_window_hours", "DOUBLE", "Hours between decided_after and decided_by: how precisely the mirror knows when the decision happened."),
        col("times_reopened", "BIGINT", "How often a sync saw it go from accepted or rejected back to forwarded."),
        col("open_hours", "DOUBLE", "For a bug open now: hours from reported_at to last_seen_at (still open then); empty when decided."),
        col("open_age_bucket", "VARCHAR", "open_hours as a bucket: under 1 day, 1-3 days, 3-7 days, 1-4 weeks or over 4 weeks; empty when decided."),
        col("last_seen_at", "TIMESTAMP WITH TIME ZONE", "The last sync that saw the bug as it is now (its last write or the last complete fetch of its test's bugs)."),
    ),
    reads=("bugs", "products", "tests", "features", "test_features", "bug_status_changes"),
    order_by="bug_id",
    kpis="""SELECT count(*) AS bugs, count(hours_to_decision) AS bugs_with_time_to_decision,
       count(*) FILTER (WHERE status = 'forwarded') AS open_bugs,
       count(*) FILTER (WHERE times_reopened > 0) AS reopened_bugs FROM bug_lifecycle""",
    preview=("bug_id", "product", "severity", "status", "reported_at", "decision", "hours_to_decision", "times_reopened", "open_hours"),
)


def _seen(status: str, column: str) -> str:
    return f"""arg_min_null(CASE WHEN change = 'first_seen' THEN NULL ELSE previous_observed_at END, change_number)
            FILTER (WHERE new_{column} = '{status}' AND old_{column} IS DISTINCT FROM '{status}') AS {status}_after,
        min(observed_at) FILTER (WHERE new_{column} = '{status}' AND old_{column} IS DISTINCT FROM '{status}') AS {status}_seen_at"""


TEST_LIFECYCLE = View(
    name="test_lifecycle",
    description=(
        "One row per test (deleted tests excluded): when it ended (API) and when the mirror saw it locked, archived and "
        "reviewed, each with the sync before (the window), and the hours from end to lock, locked to archived and in "
        "review (upper bounds); empty where the mirror did not see the earlier state."
    ),
    select=f"""
WITH seen AS (
    SELECT test_id,
        {_seen("locked", "status")},
        {_seen("archived", "status")},
        {_seen("in_review", "review_status")},
        {_seen("review_successful", "review_status")},
        bool_or(old_status = 'locked') AS was_seen_locked,
        bool_or(new_review_status = 'in_review') AS was_seen_in_review
    FROM test_status_changes
    GROUP BY test_id
)
SELECT
    t.id AS test_id, t.product_id, p.name AS product, t.testing_type, t.status, t.review_status,
    t.start_at, t.end_at,
    s.locked_after, s.locked_seen_at,
    CASE WHEN s.locked_after IS NOT NULL THEN {hours("t.end_at", "s.locked_seen_at")} END AS hours_end_to_lock,
    s.archived_after, s.archived_seen_at,
    -- Testing (and so the lock) ends at end_at (API); the archive is known to its window.
    CASE WHEN s.was_seen_locked AND s.archived_after IS NOT NULL THEN {hours("t.end_at", "s.archived_seen_at")} END AS hours_locked_to_archived,
    CASE WHEN t.status = 'locked' THEN {hours("t.end_at", "p.tests_synced_at")} END AS hours_locked_so_far,
    s.in_review_seen_at, s.review_successful_seen_at,
    CASE WHEN s.in_review_after IS NOT NULL AND s.review_successful_after IS NOT NULL
         THEN {hours("s.in_review_after", "s.review_successful_seen_at")} END AS hours_in_review
FROM tests t
LEFT JOIN products p ON p.id = t.product_id
LEFT JOIN seen s ON s.test_id = t.id
WHERE t.deleted_at IS NULL
""",
    columns=(
        col("test_id", "BIGINT", "TestIO id of the test (tests.id)."),
        col("product_id", "BIGINT", "Product under test (products.id)."),
        col("product", "VARCHAR", "Name of that product."),
        col("testing_type", "VARCHAR", "Kind of test: coverage, focused, rapid, usability or external; empty for a test-case test."),
        col("status", "VARCHAR", "Status now as the API reports it."),
        col("review_status", "VARCHAR", "TestIO's review status now."),
        col("start_at", "TIMESTAMP WITH TIME ZONE", "When testing started (API time, UTC)."),
        col("end_at", "TIMESTAMP WITH TIME ZONE", "When testing ended (API time, UTC); the test locks then."),
        col("locked_after", "TIMESTAMP WITH TIME ZONE", "The last sync that saw it not yet locked; empty when the mirror first saw it locked or later."),
        col("locked_seen_at", "TIMESTAMP WITH TIME ZONE", "The first sync that saw it locked."),
        col("hours_end_to_lock", "DOUBLE", "Hours from end_at to locked_seen_at: at most this long from end to lock; empty when locked_after is."),
        col("archived_after", "TIMESTAMP WITH TIME ZONE", "The last sync that saw it not yet archived; empty when the mirror first saw it archived."),
        col("archived_seen_at", "TIMESTAMP WITH TIME ZONE", "The first sync that saw it archived."),
        col("hours_locked_to_archived", "DOUBLE", "Hours from end_at (the lock) to archived_seen_at: an upper bound, exact to within the archive's window; empty unless the mirror saw it locked and then archived."),
        col("hours_locked_so_far", "DOUBLE", "For a test locked now: hours from end_at to the last complete fetch of its product's tests (still locked then)."),
        col("in_review_seen_at", "TIMESTAMP WITH TIME ZONE", "The first sync that saw its review_status in_review."),
        col("review_successful_seen_at", "TIMESTAMP WITH TIME ZONE", "The first sync that saw its review_status review_successful."),
        col("hours_in_review", "DOUBLE", "Hours from the last sync before in_review_seen_at to review_successful_seen_at: at most this long in review; empty unless the mirror saw both moves."),
    ),
    reads=("tests", "products", "test_status_changes"),
    order_by="test_id",
    kpis="""SELECT count(*) AS tests, count(*) FILTER (WHERE status = 'locked') AS tests_locked,
       count(*) FILTER (WHERE hours_locked_so_far > 168) AS tests_locked_over_7_days,
       count(hours_locked_to_archived) AS tests_seen_locked_then_archived FROM test_lifecycle""",
)
