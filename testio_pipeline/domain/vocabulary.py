"""TestIO's fixed vocabularies: the one place that lists statuses, severities and test types."""

from __future__ import annotations

from datetime import datetime, timezone

TEST_STATUSES = (
    "initialized",
    "customer_finalized",
    "waiting",
    "running",
    "locked",
    "archived",
    "cancelled",
)
# A test in a final status never changes again (TESTIO_API.md).
FINAL_TEST_STATUSES = ("archived", "cancelled")
BUG_SEVERITIES = ("critical", "high", "low", "visual", "content", "custom")
BUG_STATUSES = ("accepted", "rejected", "forwarded")
TESTING_TYPES = ("coverage", "focused", "rapid", "usability", "external")

# TestIO's standard rejection reasons: (key, name, the default comment TestIO posts on a bug
# rejected for it). ``bugs/reject_reasons`` gives a customer's own list; this one stands in
# where the API does not answer it (older deployments: 404) and completes it otherwise
# (``request_timeout`` is TestIO's own, not a customer's). A comment *containing* the
# default comment, case ignored, gives the reason, so "Rejected - this is a legit bug but
# already known. We fixed it in 4.2" is a known_bug.
STANDARD_REJECT_REASONS = (
    ("known_bug", "Known bug", "This is a legit bug but already known."),
    ("not_reproducible", "Not reproducible", "With the information provided it was not possible to reproduce this bug."),
    ("intended_behavior", "Intended behaviour", "The behaviour/design described here is intentional."),
    ("irrelevant", "Irrelevant", "This bug is not relevant and will not be fixed."),
    ("device_not_relevant", "Device not relevant", "This device is not relevant and the bug will not be fixed."),
    ("ignored_instructions", "Instructions ignored", "The test instructions were not followed."),
    ("request_timeout", "Request timed out", "Your bug was rejected automatically, because you didn't respond to the request within 24 hours"),
)
# A rejected bug whose comments contain none of the reasons' default comments.
OTHER_REJECTION = "other"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
