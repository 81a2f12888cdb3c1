"""Errors raised by the TestIO client, and the redaction every message goes through."""

from __future__ import annotations

import re

REDACTED = "***"


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


_TOKEN_HEADER = re.compile(r"(Token\s+)[^\s'\"]+", re.IGNORECASE)


def redact(text: str, *secrets: str | None) -> str:
    """Remove every given secret (and anything after an ``Authorization: Token``) from text."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _TOKEN_HEADER.sub(rf"\g<1>{REDACTED}", text)
