"""Fault factories: the ways the real TestIO API misbehaves, as ``Simulator.add_fault`` callables.

Every factory returns a ``Fault`` (``SimRequest -> SimResponse | None``; ``None`` means "answer
normally"). Faults never change the world: ``Simulator.truth_*`` still says what the API holds,
so a test can check that what could be read was stored and what could not was recorded.

    sim.add_fault(rate_limited(times=3, retry_after="0"))
    sim.add_fault(poison_offsets(sim, product_id, [30]))
    sim.add_fault(corrupt_records(sim, "bugs", {bug_id: set_field("severity", "blocker")}))

Factories that take ``times`` fire for the first ``times`` matching requests (a burst), then
step aside; ``times=None`` means forever. ``endpoint`` is one of ``ENDPOINTS`` (or a set of
them); ``product_id`` matches the product id in the path (``products/{id}/...``).
"""

from __future__ import annotations

import copy
import hashlib
import email.utils
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from .app import Fault, SimRequest, SimResponse, Simulator, json_error

# The key of the JSON envelope each endpoint answers with (user_story answers the bare object).
ENVELOPES = {
    "products": "products",
    "product": "product",
    "features": "features",
    "section_features": "features",
    "user_stories": "user_stories",
    "exploratory_tests": "exploratory_tests",
    "exploratory_test": "exploratory_test",
    "bugs": "bugs",
}

PRODUCT_ENDPOINTS = frozenset(
    {"product", "features", "section_features", "user_stories", "exploratory_tests"}
)


class Budget:
    """A thread-safe countdown: ``take()`` is true for the first ``times`` calls (always if None)."""

    def __init__(self, times: int | None):
        self.times = times
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.times is not None and self.used >= self.times:
                return False
            self.used += 1
            return True


def _matches(request: SimRequest, endpoint: str | Collection[str] | None, product_id: int | None) -> bool:
    if endpoint is not None:
        wanted = {endpoint} if isinstance(endpoint, str) else set(endpoint)
        if request.endpoint not in wanted:
            return False
    if product_id is not None:
        if request.endpoint not in PRODUCT_ENDPOINTS or not request.ids or request.ids[0] != product_id:
            return False
    return True


def _when(
    respond: Callable[[SimRequest], SimResponse | None],
    *,
    endpoint: str | Collection[str] | None = None,
    product_id: int | None = None,
    times: int | None = None,
) -> Fault:
    budget = Budget(times)

    def fault(request: SimRequest) -> SimResponse | None:
        if not _matches(request, endpoint, product_id) or not budget.take():
            return None
        return respond(request)

    fault.budget = budget  # type: ignore[attr-defined] - lets tests see how often it fired
    return fault


# --- status faults ------------------------------------------------------------------------


def http_date_in(seconds: float, now: float | None = None) -> str:
    """A Retry-After value as an HTTP date ``seconds`` from now (wall clock, like a server)."""
    return email.utils.formatdate((time.time() if now is None else now) + seconds, usegmt=True)


def rate_limited(
    times: int | None = 1,
    *,
    retry_after: str | None = "1",
    endpoint: str | Collection[str] | None = None,
    product_id: int | None = None,
) -> Fault:
    """429 Too Many Requests, with ``Retry-After: <retry_after>`` (seconds or an HTTP date) or none."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return _when(
        lambda r: json_error(429, "Rate limit exceeded", headers),
        endpoint=endpoint, product_id=product_id, times=times,
    )


def server_errors(
    times: int | None = 3,
    *,
    status: int = 500,
    endpoint: str | Collection[str] | None = None,
    product_id: int | None = None,
    message: str = "Internal Server Error",
) -> Fault:
    """A burst of 5xx answers (``times`` of them), then normal service."""
    return _when(lambda r: json_error(status, message), endpoint=endpoint, product_id=product_id, times=times)


def random_errors(
    rate: float,
    *,
    seed: int = 0,
    max_in_a_row: int = 2,
    status: int = 500,
    endpoint: str | Collection[str] | None = None,
) -> Fault:
    """A share ``rate`` of requests answered with ``status`` at random; the same request
    succeeds after at most ``max_in_a_row`` failures in a row (a flaky, not a broken, server).

    Whether the n-th asking of a request fails is drawn from (seed, path, query, n), not from
    the order requests arrive in, so a scenario plays the same however its requests interleave.
    """
    if not 0 <= rate < 1:
        raise ValueError("rate must be in [0, 1)")
    asked: Counter[str] = Counter()
    streak: Counter[str] = Counter()  # failures in a row, per request
    lock = threading.Lock()

    def fault(request: SimRequest) -> SimResponse | None:
        if not _matches(request, endpoint, None):
            return None
        key = request.path + "?" + "&".join(f"{k}={v}" for k, v in sorted(request.params.items()))
        with lock:
            asked[key] += 1
            fails = streak[key] < max_in_a_row and _draw(seed, key, asked[key]) < rate
            streak[key] = streak[key] + 1 if fails else 0
            fault.fired += fails  # type: ignore[attr-defined]
        return json_error(status, "Internal Server Error") if fails else None

    fault.fired = 0  # type: ignore[attr-defined] - lets tests see how often it fired
    return fault


def _draw(seed: int, key: str, n: int) -> float:
    digest = hashlib.blake2b(f"{seed}|{key}|{n}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def unauthorized(status: int = 401, *, endpoint: str | Collection[str] | None = None) -> Fault:
    """The token is refused (e.g. revoked while a run is going)."""
    return _when(lambda r: json_error(status, "Invalid API token"), endpoint=endpoint)


def echo_authorization(
    times: int | None = None,
    *,
    status: int = 500,
    endpoint: str | Collection[str] | None = None,
    product_id: int | None = None,
) -> Fault:
    """An error page that echoes the request's Authorization header (a leaky debug page).

    For redaction tests: the token must not travel from here into errors, logs or storage.
    """
    return _when(
        lambda r: json_error(status, f"debug: request headers {{'authorization': '{r.headers.get('authorization', '')}'}}"),
        endpoint=endpoint, product_id=product_id, times=times,
    )


# --- poison pages, heavy bug queries -------------------------------------------------------


def _list_window(request: SimRequest) -> int:
    """The 0-based offset of the first item a list request answers with."""
    page = request.int_param("page")
    per_page = request.int_param("per_page") or 25
    return 0 if page is None else (page - 1) * per_page


def poison_where(
    sim: Simulator,
    bad: Callable[[int, dict[str, Any]], bool],
    *,
    product_id: int | None = None,
    status: int = 500,
) -> Fault:
    """Test-list windows holding a bad record (``bad(offset, item)``) fail every time.

    Smaller windows around it work, except the one holding only the bad record: the
    API's poison-page quirk (TESTIO_API.md, quirk 6). The single-test endpoint fails for a
    bad record too.
    """

    def fault(request: SimRequest) -> SimResponse | None:
        if request.endpoint not in {"exploratory_tests", "exploratory_test"}:
            return None
        if product_id is not None and request.endpoint == "exploratory_tests" and request.ids[0] != product_id:
            return None
        normal = sim.dispatch(request)
        if normal.status != 200:
            return None
        if request.endpoint == "exploratory_test":
            item = normal.body["exploratory_test"]
            offsets = {t["id"]: i for i, t in enumerate(sim.truth_tests(item["product"]["id"], request.now))}
            if bad(offsets.get(item["id"], -1), item):
                return json_error(status, "Internal Server Error")
            return None
        start = _list_window(request)
        if any(bad(start + i, item) for i, item in enumerate(normal.body["exploratory_tests"])):
            return json_error(status, "Internal Server Error")
        return None  # a healthy window: let other faults (or the normal answer) have it

    return fault


def poison_offsets(sim: Simulator, product_id: int, offsets: Iterable[int], *, status: int = 500) -> Fault:
    """Every test-list window of ``product_id`` covering one of ``offsets`` (0-based) fails."""
    wanted = frozenset(offsets)
    return poison_where(sim, lambda offset, item: offset in wanted, product_id=product_id, status=status)


def poison_tests(sim: Simulator, test_ids: Iterable[int], *, status: int = 500) -> Fault:
    """Windows holding one of ``test_ids`` fail, wherever the test currently is in its list."""
    wanted = frozenset(test_ids)
    return poison_where(sim, lambda offset, item: item.get("id") in wanted, status=status)


def _bug_test_ids(request: SimRequest) -> list[int]:
    raw = request.params.get("filter_test_cycle_ids") or ""
    return [int(part) for part in raw.split(",") if part.strip().isdigit()]


def heavy_bug_queries(max_ids: int, *, status: int = 524) -> Fault:
    """Bug queries for more than ``max_ids`` test ids time out at the edge (Cloudflare 524)."""

    def fault(request: SimRequest) -> SimResponse | None:
        if request.endpoint == "bugs" and len(_bug_test_ids(request)) > max_ids:
            return json_error(status, "A timeout occurred")
        return None

    return fault


def broken_bug_tests(test_ids: Iterable[int], *, status: int = 524) -> Fault:
    """Any bug query that includes one of ``test_ids`` fails, even for that test alone."""
    wanted = frozenset(test_ids)

    def fault(request: SimRequest) -> SimResponse | None:
        if request.endpoint == "bugs" and wanted & set(_bug_test_ids(request)):
            return json_error(status, "A timeout occurred")
        return None

    return fault


def hostile(
    sim: Simulator,
    *,
    rate: float = 0.05,
    seed: int = 0,
    heavy_above: int = 2,
    poisoned_tests: Iterable[int] = (),
    broken_bug_lists: Iterable[int] = (),
) -> Fault:
    """The fault suite's hostile API in one fault: random 500s (``rate`` of requests, at most
    two in a row for one request), 524 for bug queries over more than ``heavy_above`` tests,
    and what can never be read: list positions holding ``poisoned_tests``, and the bug lists
    of ``broken_bug_lists``. Everything else can be fetched within a retry budget of 3+."""
    parts = [
        random_errors(rate, seed=seed),
        heavy_bug_queries(heavy_above),
        poison_tests(sim, poisoned_tests),
        broken_bug_tests(broken_bug_lists),
    ]

    def fault(request: SimRequest) -> SimResponse | None:
        return next((r for r in (part(request) for part in parts) if r is not None), None)

    fault.random = parts[0]  # type: ignore[attr-defined]
    return fault


# --- the network: slow answers, dropped connections ----------------------------------------


def slow(
    sim: Simulator,
    seconds: float,
    *,
    times: int | None = 1,
    endpoint: str | Collection[str] | None = None,
    product_id: int | None = None,
    only: Callable[[SimRequest], bool] | None = None,
) -> Fault:
    """The normal answer, but only after ``seconds``: beyond the client's timeout it times out."""

    def respond(request: SimRequest) -> SimResponse | None:
        normal = sim.dispatch(request)
        normal.delay_s = seconds
        return normal

    inner = _when(respond, endpoint=endpoint, product_id=product_id, times=times)
    if only is None:
        return inner

    def fault(request: SimRequest) -> SimResponse | None:
        return inner(request) if only(request) else None

    fault.budget = inner.budget  # type: ignore[attr-defined]
    return fault


def disconnects(
    times: int | None = 2,
    *,
    kind: str = "close",
    endpoint: str | Collection[str] | None = None,
    product_id: int | None = None,
) -> Fault:
    """The connection is dropped (``close``) or refused (``refuse``) instead of answered."""
    if kind not in {"close", "refuse"}:
        raise ValueError("kind must be 'close' or 'refuse'")
    return _when(
        lambda r: SimResponse(0, disconnect=kind), endpoint=endpoint, product_id=product_id, times=times
    )


# --- bad bodies ----------------------------------------------------------------------------


Mutation = Callable[[dict[str, Any]], None]


def drop_field(*keys: str) -> Mutation:
    """Remove keys from a record (e.g. ``drop_field("id")``)."""

    def mutate(record: dict[str, Any]) -> None:
        for key in keys:
            record.pop(key, None)

    return mutate


def set_field(key: str, value: Any) -> Mutation:
    """Set a field to a wrong type, an unknown enum value or an unreadable timestamp."""

    def mutate(record: dict[str, Any]) -> None:
        record[key] = copy.deepcopy(value)

    return mutate


def corrupt_records(
    sim: Simulator,
    endpoint: str | Collection[str],
    changes: Mapping[int, Mutation | Iterable[Mutation]],
    *,
    product_id: int | None = None,
) -> Fault:
    """The normal answer with the records whose id is a key of ``changes`` mutated.

    Works on list envelopes (``products``, ``features``, ``exploratory_tests``, ``bugs``...)
    and on single-object ones (``exploratory_test``...).
    """

    def as_list(m: Mutation | Iterable[Mutation]) -> list[Mutation]:
        return [m] if callable(m) else list(m)

    plan = {record_id: as_list(m) for record_id, m in changes.items()}

    def hit(record: Any) -> bool:
        return isinstance(record, dict) and record.get("id") in plan

    def apply(record: Any) -> Any:
        if hit(record):
            record = copy.deepcopy(record)
            for mutate in plan[record["id"]]:
                mutate(record)
        return record

    def respond(request: SimRequest) -> SimResponse | None:
        normal = sim.dispatch(request)
        key = ENVELOPES.get(request.endpoint or "")
        if normal.status != 200 or key is None or not isinstance(normal.body, dict):
            return None
        body = dict(normal.body)
        value = body.get(key)
        records = value if isinstance(value, list) else [value]
        if not any(hit(r) for r in records):
            return None  # nothing to corrupt here: let other faults have the request
        body[key] = [apply(item) for item in value] if isinstance(value, list) else apply(value)
        return SimResponse(200, dict(normal.headers), body)

    return _when(respond, endpoint=endpoint, product_id=product_id)


def wrong_envelope(
    sim: Simulator,
    endpoint: str | Collection[str],
    *,
    product_id: int | None = None,
    key: str = "data",
    times: int | None = None,
) -> Fault:
    """The normal records under an undocumented envelope key (``{"data": [...]}``)."""

    def respond(request: SimRequest) -> SimResponse | None:
        normal = sim.dispatch(request)
        if normal.status != 200 or not isinstance(normal.body, dict):
            return None
        return SimResponse(200, dict(normal.headers), {key: next(iter(normal.body.values()), None)})

    return _when(respond, endpoint=endpoint, product_id=product_id, times=times)


def non_json(
    endpoint: str | Collection[str] | None = None,
    *,
    product_id: int | None = None,
    times: int | None = None,
    body: bytes = b"<html><body><h1>502 Bad Gateway</h1></body></html>",
) -> Fault:
    """HTTP 200 with an HTML page instead of JSON (a proxy or maintenance page)."""
    return _when(
        lambda r: SimResponse(200, {"Content-Type": "text/html"}, body),
        endpoint=endpoint, product_id=product_id, times=times,
    )


def deleted_product(sim: Simulator, product_id: int, *, listed: bool = False) -> Fault:
    """The product answers 404 everywhere; it also leaves the product list unless ``listed``.

    ``listed=True`` plays a product deleted between reading the list and reading its data.
    """

    def fault(request: SimRequest) -> SimResponse | None:
        if request.endpoint in PRODUCT_ENDPOINTS and request.ids and request.ids[0] == product_id:
            return json_error(404, f"Product {product_id} not found")
        if request.endpoint == "products" and not listed:
            normal = sim.dispatch(request)
            body = {"products": [p for p in normal.body["products"] if p.get("id") != product_id]}
            return SimResponse(200, dict(normal.headers), body)
        if request.endpoint == "bugs" and request.params.get("filter_product_ids") == str(product_id):
            return json_error(404, f"Product {product_id} not found")
        return None

    return fault


# --- observing -----------------------------------------------------------------------------


class RequestLog:
    """A fault that never fires: it records every authorized request (add it first)."""

    def __init__(self) -> None:
        self.requests: list[SimRequest] = []
        self._lock = threading.Lock()

    def __call__(self, request: SimRequest) -> None:
        with self._lock:
            self.requests.append(request)
        return None

    def of(self, endpoint: str) -> list[SimRequest]:
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint]
