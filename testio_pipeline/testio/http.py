"""The HTTP layer: one httpx.AsyncClient, one in-flight cap, retries, counters.

Endpoint knowledge lives in ``client.py`` (and ``bugs.py`` for ``/bugs``); this module only
knows how to GET a path politely and turn failures into the client's errors.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import ssl
import time
from collections import Counter
from urllib.parse import urlencode
from dataclasses import dataclass, field
from typing import Any, Mapping

import httpx
import stamina
from pydantic_core import from_json

from ..domain.credentials import redact
from .errors import (
    MalformedResponseError,
    TestioApiError,
    TestioAuthError,
    TestioConnectionError,
    TestioNotFoundError,
    TestioTimeoutError,
)
from .limits import InFlightCap, MinInterval

log = logging.getLogger("testio_pipeline.client")

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 524})
# What an auth error tells the reader to check, unless the client was told where its token is from.
DEFAULT_TOKEN_SOURCE = "TESTIO_CUSTOMER_API_TOKEN (and TESTIO_CUSTOMER_API_BASE_URL)"
# Likewise for an unreachable API: where its base URL was configured.
DEFAULT_BASE_URL_SOURCE = "TESTIO_CUSTOMER_API_BASE_URL"


@dataclass
class RetryPolicy:
    """How hard to try: bounded attempts, exponential backoff with jitter, Retry-After honoured."""

    attempts: int = 5
    wait_initial: float = 0.5
    wait_max: float = 30.0
    wait_jitter: float = 0.5
    # Retry-After: 0 must not turn into a busy loop against a rate-limited server.
    retry_after_floor: float = 0.25
    retry_after_cap: float = 120.0


@dataclass
class RequestStats:
    """Counts of HTTP attempts by endpoint and status, and of retries."""

    by_endpoint: Counter = field(default_factory=Counter)
    by_status: Counter = field(default_factory=Counter)
    retries: int = 0
    # Why requests were retried: "429", "500", "524"..., "timeout", "connection".
    retries_by_reason: Counter = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return sum(self.by_endpoint.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "by_endpoint": dict(self.by_endpoint),
            "by_status": {str(k): v for k, v in self.by_status.items()},
            "retries_by_reason": dict(self.retries_by_reason),
        }


class _RetryableStatus(Exception):
    def __init__(self, status: int, retry_after: float | None, detail: str):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header given in seconds or as an HTTP date."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def _describe(path: str, params: Mapping[str, Any] | None) -> str:
    """``path?query`` for messages: which page or batch failed matters when reading an error."""
    if not params:
        return path
    return f"{path}?{urlencode(dict(params), safe=',')}"


def _is_heavy(exc: Exception) -> bool:
    """The answer of a query too heavy to be served in time: an edge timeout (524) or ours."""
    return (isinstance(exc, _RetryableStatus) and exc.status == 524) or isinstance(exc, httpx.TimeoutException)


def _retry_reason(exc: Exception) -> str:
    if isinstance(exc, _RetryableStatus):
        return str(exc.status)
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    return "connection"


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context per process: building one loads the CA bundle, and a run opens a client per step."""
    return httpx.create_ssl_context()


class ApiRequester:
    """GETs JSON from the API with a global in-flight cap and polite retries."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        max_concurrent: int = 10,
        max_requests_per_second: float | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        in_flight: InFlightCap | None = None,
        rate: MinInterval | None = None,
        token_source: str = DEFAULT_TOKEN_SOURCE,
        base_url_source: str = DEFAULT_BASE_URL_SOURCE,
    ):
        self._token = token
        self._token_source = token_source
        self._base_url_source = base_url_source
        self._base_url = base_url.rstrip("/") + "/"
        # Given when several clients (a run's concurrent steps) share the account's limits.
        self._in_flight = in_flight or InFlightCap(max_concurrent)
        max_concurrent = self._in_flight.limit
        self._rate = rate or (MinInterval(max_requests_per_second) if max_requests_per_second else None)
        self.retry = retry or RetryPolicy()
        self.stats = RequestStats()
        self.max_concurrent = max_concurrent
        # Requests holding an in-flight slot whose bytes are not on the wire yet (see
        # _yield_to_senders); httpcore's trace events say when a request is sent, a custom
        # transport (the in-process simulator) sends none, so only the network path tracks.
        self._unsent = 0
        self._track_sending = transport is None
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            headers={"Authorization": f"Token {token}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            transport=transport,
            limits=httpx.Limits(max_connections=max_concurrent, max_keepalive_connections=max_concurrent),
            follow_redirects=True,
            verify=_ssl_context(),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def _redact(self, text: str) -> str:
        return redact(text, self._token)

    def _backoff(self, exc: Exception) -> bool | float:
        """stamina backoff hook: False = give up, True = retry on the exponential schedule
        (with jitter), a float = wait exactly that long (Retry-After, floored and capped)."""
        if isinstance(exc, _RetryableStatus):
            if exc.retry_after is not None:
                return min(max(exc.retry_after, self.retry.retry_after_floor), self.retry.retry_after_cap)
            return True
        return isinstance(exc, httpx.TransportError)  # timeouts and dropped connections

    async def get_json(
        self,
        path: str,
        *,
        endpoint: str,
        params: Mapping[str, Any] | None = None,
        attempts: int | None = None,
        heavy_attempts: int | None = None,
    ) -> Any:
        """GET ``path`` (relative to the base URL) and return the decoded JSON body.

        Transient failures (429, 5xx, timeouts, dropped connections) are retried on the
        policy's schedule. ``heavy_attempts`` is for queries the caller can make lighter (a
        bug batch, a window of a failing list): a 524 or a timeout says the query is too
        heavy, so after that many of them it gives up and the caller splits the query, while
        other transient errors (a random 500, a 429) still get the whole policy.
        ``attempts`` lowers the policy's number of attempts, for a query whose failure costs
        nothing but a finer re-read.
        """
        policy = self.retry
        tries = max(1, min(attempts or policy.attempts, policy.attempts))
        where = _describe(path, params)
        last_reason: list[str] = []
        heavy_seen = 0

        def on(exc: Exception) -> bool | float:
            nonlocal heavy_seen
            if heavy_attempts is not None and _is_heavy(exc):
                heavy_seen += 1
                if heavy_seen >= heavy_attempts:
                    return False
            verdict = self._backoff(exc)
            if verdict is not False:
                last_reason[:] = [_retry_reason(exc)]
            return verdict

        def how(exc: Exception) -> str:
            if heavy_attempts is not None and _is_heavy(exc) and heavy_seen >= heavy_attempts:
                return "once" if heavy_attempts == 1 else f"{heavy_seen} times"
            return f"after {tries} attempts"

        try:
            async for attempt in stamina.retry_context(
                on=on,
                attempts=tries,
                timeout=None,
                wait_initial=policy.wait_initial,
                wait_max=policy.wait_max,
                wait_jitter=policy.wait_jitter,
            ):
                if attempt.num > 1:
                    reason = last_reason[0] if last_reason else "unknown"
                    self.stats.retries += 1
                    self.stats.retries_by_reason[reason] += 1
                    log.info("retrying GET %s (attempt %d of %d, after %s)", path, attempt.num, tries, reason)
                with attempt:
                    return await self._get_once(path, endpoint=endpoint, params=params)
        except _RetryableStatus as exc:
            raise TestioApiError(
                self._redact(f"GET {where} failed {how(exc)}: {exc}"),
                status=exc.status,
                endpoint=endpoint,
            ) from None
        except httpx.TimeoutException as exc:
            raise TestioTimeoutError(
                self._redact(f"GET {where} timed out {how(exc)} ({type(exc).__name__})"),
                endpoint=endpoint,
            ) from None
        except httpx.TransportError as exc:
            raise TestioConnectionError(
                self._redact(
                    f"cannot reach the TestIO API at {self._base_url} ({type(exc).__name__}: {exc}); "
                    f"check {self._base_url_source} and the network"
                ),
                endpoint=endpoint,
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _get_once(self, path: str, *, endpoint: str, params: Mapping[str, Any] | None) -> Any:
        where = _describe(path, params)
        if self._rate is not None:
            await self._rate.wait()
        async with self._in_flight:
            self.stats.by_endpoint[endpoint] += 1
            response = await self._send(path, params)
            self.stats.by_status[response.status_code] += 1
        await self._yield_to_senders()
        status = response.status_code
        if status in RETRYABLE_STATUSES:
            raise _RetryableStatus(
                status,
                parse_retry_after(response.headers.get("Retry-After")),
                # stamina logs the exception of every scheduled retry: redact it already.
                self._redact(self._snippet(response)),
            )
        if status in (401, 403):
            raise TestioAuthError(
                f"the TestIO API refused the token (HTTP {status}) for GET {where}: "
                f"check {self._token_source}",
                status=status,
                endpoint=endpoint,
            )
        if status == 404:
            raise TestioNotFoundError(f"GET {where}: not found (HTTP 404)", status=404, endpoint=endpoint)
        if status >= 400:
            raise TestioApiError(
                self._redact(f"GET {where} failed with HTTP {status}: {self._snippet(response)}"),
                status=status,
                endpoint=endpoint,
            )
        try:
            return _decode_json(response)
        except (ValueError, UnicodeDecodeError):
            raise MalformedResponseError(
                self._redact(f"GET {where} returned a body that is not JSON: {self._snippet(response)!r}"),
                status=status,
                endpoint=endpoint,
            ) from None

    async def _send(self, path: str, params: Mapping[str, Any] | None) -> httpx.Response:
        if not self._track_sending:
            return await self._http.get(path, params=params)
        sent = False

        async def trace(event: str, info: Mapping[str, Any]) -> None:
            nonlocal sent
            if event == "http11.send_request_body.complete" and not sent:
                sent = True
                self._unsent -= 1

        self._unsent += 1
        try:
            return await self._http.get(path, params=params, extensions={"trace": trace})
        finally:
            if not sent:
                self._unsent -= 1

    async def _yield_to_senders(self, max_turns: int = 32) -> None:
        """Let the requests woken by the slot just freed reach the wire before this answer is
        decoded and parsed.

        Answers tend to land together; each takes milliseconds of CPU to parse, while a woken
        request needs several event-loop turns (pool, locks, socket) before it is sent. Parsing
        first would hold every new request back until all the answers are parsed, so requests
        would go out in synchronised rounds of latency + parsing instead of keeping the
        in-flight cap busy.
        """
        await asyncio.sleep(0)  # the woken waiter takes its slot
        turns = 0
        while self._unsent > 0 and turns < max_turns:
            await asyncio.sleep(0)
            turns += 1

    @staticmethod
    def _snippet(response: httpx.Response, limit: int = 200) -> str:
        try:
            text = response.text
        except Exception:  # a body we cannot even decode is still worth naming
            return "<undecodable body>"
        return text[:limit]


def _decode_json(response: httpx.Response) -> Any:
    """The body as JSON, decoded by pydantic-core (Rust; ``json.loads`` was the largest CPU
    item of a bug fetch); a body it refuses (another encoding than UTF-8, a byte-order mark,
    or not JSON) gets ``response.json()``'s answer, error included."""
    try:
        return from_json(response.content)
    except ValueError:
        return response.json()
