"""The TestIO Customer API v2 client layer (httpx, async). Knows nothing of Dagster or DuckDB."""

from .bugs import BugFetch
from .client import CustomerApiClient
from .errors import (
    MalformedResponseError,
    TestioApiError,
    TestioAuthError,
    TestioConnectionError,
    TestioNotFoundError,
    TestioTimeoutError,
)
from .http import RequestStats, RetryPolicy
from .paging import TestListing
from .parsing import Parsed, parse_records

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
