"""The TestIO Customer API v2 client layer (httpx, async). Knows nothing of Dagster or DuckDB."""

from .client import BugFetch, CustomerApiClient, Parsed, TestListing, parse_records
from .errors import (
    MalformedResponseError,
    TestioApiError,
    TestioAuthError,
    TestioConnectionError,
    TestioNotFoundError,
    TestioTimeoutError,
    redact,
)
from .http import RequestStats, RetryPolicy
from .models import (
    FINAL_TEST_STATUSES,
    Bug,
    ExploratoryTest,
    Feature,
    Product,
    RejectedRecord,
    UserStory,
    strip_credentials,
)

__all__ = [
    "FINAL_TEST_STATUSES",
    "Bug",
    "BugFetch",
    "CustomerApiClient",
    "ExploratoryTest",
    "Feature",
    "MalformedResponseError",
    "Parsed",
    "Product",
    "RejectedRecord",
    "RequestStats",
    "RetryPolicy",
    "TestListing",
    "TestioApiError",
    "TestioAuthError",
    "TestioConnectionError",
    "TestioNotFoundError",
    "TestioTimeoutError",
    "UserStory",
    "parse_records",
    "redact",
    "strip_credentials",
]
