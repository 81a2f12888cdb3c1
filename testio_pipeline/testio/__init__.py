"""The TestIO Customer API v2 client layer (httpx, async). Knows nothing of Dagster or DuckDB."""

from .client import BugFetch, CustomerApiClient, Parsed, TestListing, parse_records
from .errors import (
    MalformedResponseError,
    TestioApiError,
    TestioAuthError,
    TestioConnectionError,
    TestioNotFoundError,
    TestioTimeoutError,
)
from .http import RequestStats, RetryPolicy

__all__ = [
    "BugFetch",
    "CustomerApiClient",
    "MalformedResponseError",
    "Parsed",
    "RequestStats",
    "RetryPolicy",
    "TestListing",
    "TestioApiError",
    "TestioAuthError",
    "TestioConnectionError",
    "TestioNotFoundError",
    "TestioTimeoutError",
    "parse_records",
]
