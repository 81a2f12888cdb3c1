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


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
