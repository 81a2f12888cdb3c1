"""Errors raised by the TestIO client (their messages are redacted by the requester)."""

from __future__ import annotations


class TestioApiError(RuntimeError):
    """The API could not answer a request, even after retries."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, message: str, *, status: int | None = None, endpoint: str | None = None):
        super().__init__(message)
        self.status = status
        self.endpoint = endpoint


class TestioAuthError(TestioApiError):
    """401/403: the token is wrong or lacks access; retrying cannot help."""

    __test__ = False


class TestioNotFoundError(TestioApiError):
    """404: the object is gone (a deleted product answers 404)."""

    __test__ = False


class TestioTimeoutError(TestioApiError):
    """The API did not answer within the timeout (after retries, or at once where the caller
    has a better remedy, e.g. splitting a heavy bug query)."""

    __test__ = False


class TestioConnectionError(TestioApiError):
    """The API host could not be reached at all."""

    __test__ = False


class MalformedResponseError(TestioApiError):
    """The body is not JSON or not the documented envelope."""

    __test__ = False
