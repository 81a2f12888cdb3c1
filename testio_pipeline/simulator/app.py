"""Request handling of the simulated API: auth, routing, quirks, faults, stats, truth accessors."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Mapping

from pydantic_core import to_json

from .clock import SimClock, as_utc, midnight_utc
from .config import API_PREFIX, SimulatorConfig
from . import vocab
from .shapes import Shapes
from .wire_cache import WireCache
from .world import ProductInfo, Transition, World

if TYPE_CHECKING:
    import httpx

    from .server import SimulatorServer

ENDPOINTS = (
    "products",
    "product",
    "features",
    "section_features",
    "user_stories",
    "user_story",
    "exploratory_tests",
    "exploratory_test",
    "bugs",
    "reject_reasons",
)

# (endpoint name, pattern of the path after the base URL); groups are integer ids.
_ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("products", r"products"),
        ("product", r"products/(\d+)"),
        ("features", r"products/(\d+)/features"),
        ("section_features", r"products/(\d+)/sections/(\d+)/features"),
        ("user_stories", r"products/(\d+)/user_stories"),
        ("user_story", r"user_stories/(\d+)"),
        ("exploratory_tests", r"products/(\d+)/exploratory_tests"),
        ("exploratory_test", r"exploratory_tests/(\d+)"),
        ("bugs", r"bugs"),
        ("reject_reasons", r"bugs/reject_reasons"),
    )
)

DEFAULT_PER_PAGE = 25


class ApiError(Exception):
    """Raised inside an endpoint handler to answer with a JSON error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BadParameter(ApiError):
    """A query parameter the endpoint does not accept."""

    def __init__(self, message: str) -> None:
        super().__init__(422, f"Invalid parameter: {message}")


def _route(path: str) -> tuple[str | None, tuple[int, ...]]:
    for name, pattern in _ROUTES:
        match = pattern.fullmatch(path)
        if match:
            return name, tuple(int(g) for g in match.groups())
    return None, ()


def normalize_path(path: str) -> str:
    """The part of a URL path after the base URL: no slashes around, no ``customer/v2`` prefix."""
    path = path.strip("/")
    prefix = API_PREFIX.strip("/")
    if path == prefix:
        return ""
    if path.startswith(prefix + "/"):
        path = path[len(prefix) + 1 :]
    return path


@dataclass(frozen=True)
class SimRequest:
    """One parsed API request; faults receive it. ``now`` is the world time it is answered at."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    now: datetime | None = None
    endpoint: str | None = None  # one of ENDPOINTS, None for unknown paths
    ids: tuple[int, ...] = ()  # integer path parameters, e.g. (product_id, section_id)

    @classmethod
    def build(
        cls,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> "SimRequest":
        """Normalize a raw request: method upper-case, path relative, header names lower-case."""
        path = normalize_path(path)
        endpoint, ids = _route(path)
        return cls(
            method=method.upper(),
            path=path,
            params=dict(params or {}),
            headers={k.lower(): v for k, v in (headers or {}).items()},
            now=now,
            endpoint=endpoint,
            ids=ids,
        )

    def int_param(self, name: str) -> int | None:
        """An integer query parameter, None when absent; BadParameter when not an integer."""
        value = self.params.get(name)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except ValueError:
            raise BadParameter(f"{name} must be an integer, got {value!r}") from None


@dataclass
class SimResponse:
    """A response before it is put on the wire: ``body`` is bytes or a JSON-able object."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    # Fault hooks: answer only after this many seconds (a client with a shorter read timeout
    # times out), or do not answer at all ("close": the connection is dropped; "refuse": the
    # in-process transport raises a connect error, the HTTP server drops the connection).
    delay_s: float = 0.0
    disconnect: str | None = None
    _rendered: bytes | None = field(default=None, repr=False, compare=False)

    def render(self) -> "SimResponse":
        """Serialise the body now (once), so the work can happen inside the request's latency."""
        if self._rendered is None:
            self._rendered = self.body_bytes()
        return self

    def body_bytes(self) -> bytes:
        if self._rendered is not None:
            return self._rendered
        if isinstance(self.body, (bytes, bytearray)):
            return bytes(self.body)
        if self.body is None:
            return b""
        if isinstance(self.body, str):
            return self.body.encode()
        # pydantic-core's Rust serializer: same compact UTF-8 JSON as json.dumps(separators=
        # (",", ":"), ensure_ascii=False), ~5x faster, so the server costs the machine less.
        return to_json(self.body, inf_nan_mode="null")

    def wire_headers(self) -> dict[str, str]:
        """Headers to send, with a JSON content type unless the response chose its own."""
        headers = dict(self.headers)
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json; charset=utf-8"
        return headers

    def json(self) -> Any:
        """The body as a Python object (parses bytes bodies)."""
        if isinstance(self.body, (bytes, bytearray, str)):
            return json.loads(self.body)
        return self.body


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> SimResponse:
    return SimResponse(status, dict(headers or {}), {"error": message})


class SimulatedTimeout(Exception):
    """Raised by ``acall`` when a delayed response would outlast the caller's read timeout."""


class RequestStats:
    """Thread-safe request counters: total, per endpoint, per status, peak concurrency."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._total = 0
            self._by_endpoint: Counter[str] = Counter()
            self._by_status: Counter[int] = Counter()
            self._peak_in_flight = 0
            self._work_s = 0.0
            self._work_max_s = 0.0
            self._late = 0

    def record(self, endpoint: str | None, status: int) -> None:
        with self._lock:
            self._total += 1
            self._by_endpoint[endpoint or "unknown"] += 1
            self._by_status[status] += 1

    def note_work(self, seconds: float, latency_s: float) -> None:
        """Time spent building one answer; ``late`` counts answers that took longer than the
        configured latency (the client waited on the server's CPU, not on the network)."""
        with self._lock:
            self._work_s += seconds
            self._work_max_s = max(self._work_max_s, seconds)
            self._late += seconds > latency_s

    def note_in_flight(self, in_flight: int) -> None:
        with self._lock:
            self._peak_in_flight = max(self._peak_in_flight, in_flight)

    @property
    def total(self) -> int:
        with self._lock:
            return self._total

    def snapshot(self) -> dict[str, Any]:
        """{"total", "by_endpoint": {name: n}, "by_status": {code: n}, "peak_in_flight", and the
        answers' build time: "work_s" (sum), "work_max_s", "late" (longer than the latency)}."""
        with self._lock:
            return {
                "total": self._total,
                "by_endpoint": dict(sorted(self._by_endpoint.items())),
                "by_status": dict(sorted(self._by_status.items())),
                "peak_in_flight": self._peak_in_flight,
                "work_s": round(self._work_s, 3),
                "work_max_s": round(self._work_max_s, 4),
                "late": self._late,
            }


Fault = Callable[[SimRequest], "SimResponse | None"]


class Simulator:
    """A deterministic fake of the TestIO Customer API v2 (see shared/TESTIO_API.md)."""

    def __init__(
        self, config: SimulatorConfig = SimulatorConfig(), clock: SimClock | None = None, wire_cache_mb: float = 0
    ) -> None:
        """``wire_cache_mb``: keep serialised tests and bug lists up to this size (wire_cache.py);
        0 builds every answer afresh."""
        self.config = config
        self.clock = clock if clock is not None else SimClock()
        # Default anchor: midnight UTC of the clock's day, so processes started the same day
        # (or tests with the same frozen clock) see the same world.
        self.anchor = as_utc(config.anchor) if config.anchor is not None else midnight_utc(self.clock.now())
        self.world = World(config, self.anchor)
        if wire_cache_mb > 0:
            self.world.wire_cache = WireCache(int(wire_cache_mb * 2**20))
        self.shapes = Shapes(config.seed, config.shape_variants)
        self.stats = RequestStats()
        self._faults: list[Fault] = []
        self._faults_lock = threading.Lock()
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()

    # .. faults ...............................................................................

    def add_fault(self, fault: Fault) -> None:
        """Run ``fault`` on every authorized request before normal handling; first non-None wins."""
        with self._faults_lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._faults_lock:
            self._faults.clear()

    # .. the core: one request -> one response ...............................................

    def handle(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> SimResponse:
        """Answer one API request at ``clock.now()`` (no latency, no in-flight limit) and count it."""
        request = SimRequest.build(method, path, params, headers, now=self.clock.now())
        response = self._respond(request)
        self.stats.record(request.endpoint, response.status)
        return response

    def _respond(self, request: SimRequest) -> SimResponse:
        if not self._authorized(request):
            return json_error(401, "Invalid or missing API token. Send 'Authorization: Token <api-token>'.")
        with self._faults_lock:
            faults = list(self._faults)
        for fault in faults:
            response = fault(request)
            if response is not None:
                return self._shaped(request, response)
        return self._shaped(request, self.dispatch(request))

    def _shaped(self, request: SimRequest, response: SimResponse) -> SimResponse:
        """The answer with its records in the shapes chosen for them (``shape_variants``).

        Applied last, to what the faults left: faults see (and corrupt) the regular records.
        """
        if self.shapes.share <= 0 or response.status != 200 or response._rendered is not None:
            return response
        body = self.shapes.wire_body(request.endpoint, response.body)
        if body is response.body:
            return response
        return SimResponse(response.status, dict(response.headers), body, response.delay_s, response.disconnect)

    def _authorized(self, request: SimRequest) -> bool:
        return request.headers.get("authorization", "") == f"Token {self.config.token}"

    def dispatch(self, request: SimRequest) -> SimResponse:
        """The normal response to an (authorized) request, ignoring faults and stats.

        Faults may call this to get the regular answer and corrupt it.
        """
        if request.endpoint is None:
            return json_error(404, f"Not found: {request.path or '/'}")
        if request.method != "GET":
            return json_error(405, f"Method {request.method} not allowed", {"Allow": "GET"})
        ts = (request.now or self.clock.now()).timestamp()
        handler = getattr(self, f"_get_{request.endpoint}")
        try:
            return handler(request, ts)
        except ApiError as exc:
            return json_error(exc.status, exc.message)

    # .. endpoints ............................................................................

    def _wire(self) -> bool:
        """Whether answers may be assembled from serialised pieces: only with a wire cache and
        when nothing rewrites records (faults corrupt dicts; shape variants restructure them)."""
        return self.world.wire_cache is not None and self.shapes.share <= 0 and not self._faults

    def _product_or_404(self, product_id: int) -> ProductInfo:
        product = self.world.product(product_id)
        if product is None:
            raise ApiError(404, f"Product {product_id} not found")
        return product

    def _get_products(self, request: SimRequest, ts: float) -> SimResponse:
        return SimResponse(200, body={"products": self.truth_products_at(ts)})

    def _get_product(self, request: SimRequest, ts: float) -> SimResponse:
        product = self._product_or_404(request.ids[0])
        return SimResponse(200, body={"product": self.world.product_json(product)})

    def _get_features(self, request: SimRequest, ts: float) -> SimResponse:
        product = self._product_or_404(request.ids[0])
        if product.sectioned:  # quirk 9
            raise ApiError(
                422, f"Product {product.id} has sections; use products/{product.id}/sections/{{section_id}}/features"
            )
        features = [self.world.feature_json(f, ts) for f in self.world.features(product, ts)]
        return SimResponse(200, body={"features": features})

    def _get_section_features(self, request: SimRequest, ts: float) -> SimResponse:
        product = self._product_or_404(request.ids[0])
        section = product.section_by_id(request.ids[1])
        if section is None:
            raise ApiError(404, f"Section {request.ids[1]} not found in product {product.id}")
        found = self.world.features(product, ts, section.id)
        return SimResponse(200, body={"features": [self.world.feature_json(f, ts) for f in found]})

    def _get_user_stories(self, request: SimRequest, ts: float) -> SimResponse:
        product = self._product_or_404(request.ids[0])
        section_id = request.int_param("section_id")
        if section_id is None and product.sectioned:  # quirk 9
            raise ApiError(422, f"Product {product.id} has sections; section_id is required")
        if section_id is not None and product.section_by_id(section_id) is None:
            raise ApiError(404, f"Section {section_id} not found in product {product.id}")
        stories = self.world.stories(product, ts, section_id)
        return SimResponse(200, body={"user_stories": [s.as_json(ts) for s in stories]})

    def _get_user_story(self, request: SimRequest, ts: float) -> SimResponse:
        story = self.world.story(request.ids[0], ts)
        if story is None:
            raise ApiError(404, f"User story {request.ids[0]} not found")
        return SimResponse(200, body=story.as_json(ts))  # the doc's envelope: the bare story object

    def _get_exploratory_tests(self, request: SimRequest, ts: float) -> SimResponse:
        product = self._product_or_404(request.ids[0])
        specs = self.world.tests(product, ts)
        page = request.int_param("page")
        per_page = request.int_param("per_page")
        per_page = DEFAULT_PER_PAGE if per_page is None else per_page
        if (page is not None and page < 1) or per_page < 1:
            raise BadParameter("page and per_page must be positive integers")
        if self.config.ignore_paging:  # quirk 4: the whole list, whatever was asked
            window = specs
        elif page is None:  # quirk 3: silently only the newest N
            window = specs[: self.config.truncate_without_page]
        else:
            window = specs[(page - 1) * per_page : page * per_page]
        if self._wire():
            tests_wire = b",".join(self.world.test_wire(spec, ts) for spec in window)
            return SimResponse(200, body=b'{"exploratory_tests":[' + tests_wire + b"]}")
        tests = [self.world.test_json(spec, ts) for spec in window]
        return SimResponse(200, body={"exploratory_tests": tests})

    def _get_exploratory_test(self, request: SimRequest, ts: float) -> SimResponse:
        spec = self.world.test(request.ids[0], ts)
        if spec is None:
            raise ApiError(404, f"Exploratory test {request.ids[0]} not found")
        if self._wire():
            return SimResponse(200, body=b'{"exploratory_test":' + self.world.test_wire(spec, ts) + b"}")
        return SimResponse(200, body={"exploratory_test": self.world.test_json(spec, ts)})

    def _get_bugs(self, request: SimRequest, ts: float) -> SimResponse:
        test_ids = _int_list(request.params.get("filter_test_cycle_ids"))
        product_ids = _int_list(request.params.get("filter_product_ids"))
        section_ids = _int_list(request.params.get("filter_section_ids"))
        limit = self.config.max_bug_test_ids
        if test_ids is not None and limit is not None and len(test_ids) > limit:  # quirk 7
            raise ApiError(524, "A timeout occurred (the origin did not answer in time)")
        wanted = None
        if product_ids is not None:
            wanted = {p.index for p in map(self.world.product, product_ids) if p is not None}
        if test_ids is not None:
            found = (self.world.test(test_id, ts) for test_id in dict.fromkeys(test_ids))
            specs = [spec for spec in found if spec is not None]
        else:
            products = [p for p in self.world.products if wanted is None or p.index in wanted]
            specs = [spec for p in products for spec in self.world.tests(p, ts)]
        if wanted is not None:
            specs = [s for s in specs if s.product_index in wanted]
        if section_ids is not None:
            wanted_sections = set(section_ids)
            specs = [s for s in specs if self._section_id(s.product_index, s.section_index) in wanted_sections]
        filtered = request.params.get("export_status") in ("exported", "not_exported")
        if self._wire() and not filtered:
            parts = [piece for piece in (self.world.bugs_wire(spec, ts) for spec in specs) if piece]
            return SimResponse(200, body=b'{"bugs":[' + b",".join(parts) + b"]}")
        bugs = self.world.bugs(specs, ts)
        if filtered:
            exported = request.params["export_status"] == "exported"
            bugs = [b for b in bugs if (b["exported_at"] is not None) == exported]
        return SimResponse(200, body={"bugs": bugs})

    def _get_reject_reasons(self, request: SimRequest, ts: float) -> SimResponse:
        if not self.config.serves_reject_reasons:
            raise ApiError(404, "Not found: bugs/reject_reasons")
        return SimResponse(200, body={"reject_reasons": self.truth_reject_reasons()})

    def _section_id(self, product_index: int, section_index: int) -> int:
        product = self.world.products[product_index]
        return product.sections[section_index].id if section_index >= 0 else product.default_section.id

    # .. transports: latency and the in-flight limit live here, around handle() ..............

    def _admit(self) -> bool:
        with self._in_flight_lock:
            limit = self.config.max_in_flight
            if limit is not None and self._in_flight >= limit:
                return False
            self._in_flight += 1
            in_flight = self._in_flight
        self.stats.note_in_flight(in_flight)
        return True

    def _release(self) -> None:
        with self._in_flight_lock:
            self._in_flight -= 1

    def _too_many(self, method: str, path: str) -> SimResponse:
        """Quirk 8: over the in-flight limit -> 429 at once, before auth (the edge says no)."""
        endpoint = SimRequest.build(method, path).endpoint
        response = json_error(429, "Too many requests in flight", {"Retry-After": "1"})
        self.stats.record(endpoint, response.status)
        return response

    def call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        timeout: float | None = None,
    ) -> SimResponse:
        """Blocking entry of the HTTP server and the sync transport: limit, latency, handle().

        A fault's ``delay_s`` is slept here (the HTTP server's client times out on its own);
        with ``timeout`` (the in-process transport's read timeout) a longer delay raises
        SimulatedTimeout after ``timeout`` seconds instead. A response with ``disconnect``
        is returned as is: the server or transport drops the connection for it.
        """
        if not self._admit():
            return self._too_many(method, path)
        try:
            response, wait, timed_out = self._answer(method, path, params, headers, timeout)
            time.sleep(wait)
            if timed_out:
                raise SimulatedTimeout(f"no answer within {timeout}s")
            return response
        finally:
            self._release()

    async def acall(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        timeout: float | None = None,
    ) -> SimResponse:
        """Async entry of the in-process transport: limit, latency, handle(), fault delays."""
        if not self._admit():
            return self._too_many(method, path)
        try:
            response, wait, timed_out = self._answer(method, path, params, headers, timeout)
            await asyncio.sleep(wait)
            if timed_out:
                raise SimulatedTimeout(f"no answer within {timeout}s")
            return response
        finally:
            self._release()

    def _answer(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        timeout: float | None,
    ) -> tuple[SimResponse, float, bool]:
        """The answer (serialised), how long to wait before giving it, and whether the
        client's read ``timeout`` runs out first (a fault's delay longer than it).

        The latency is the time from request to answer, the server's own work included (as
        with a real API): the answer is built first and only what is left of the latency is
        waited. Waiting first would add every request's CPU time, serialised by the GIL, to
        its latency.
        """
        latency_s = self.config.latency_ms / 1000.0
        started = time.monotonic()
        response = self.handle(method, path, params, headers).render()
        done = time.monotonic()
        self.stats.note_work(done - started, latency_s)
        wait = max(0.0, started + latency_s - done)
        if response.delay_s and timeout is not None and response.delay_s > timeout:
            return response, wait + timeout, True
        return response, wait + response.delay_s, False

    def transport(self) -> "httpx.AsyncBaseTransport":
        """An in-process httpx transport (works with both httpx.AsyncClient and httpx.Client)."""
        from .transport import SimulatorTransport

        return SimulatorTransport(self)

    def warm(self) -> int:
        """Pre-build the world's cached parts at ``clock.now()`` (see ``World.warm``)."""
        return self.world.warm(self.clock.now().timestamp())

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> "SimulatorServer":
        """Start a real HTTP server in a daemon thread; close it (or use ``with``) when done."""
        from .server import SimulatorServer

        return SimulatorServer(self, host, port).start()

    # .. truth accessors: what the API serves at ``now`` (default: clock.now()) ..............
    # Records come in the regular shape, with the values a correct mirror holds: with
    # ``shape_variants`` the information a record's shape does not send is null (shapes.py).

    def _ts(self, now: datetime | None) -> float:
        return as_utc(now).timestamp() if now is not None else self.clock.now().timestamp()

    def _product(self, product_id: int) -> ProductInfo:
        product = self.world.product(product_id)
        if product is None:
            raise KeyError(f"no product {product_id}")
        return product

    def truth_products_at(self, ts: float) -> list[dict[str, Any]]:
        return [self.world.product_json(p) for p in self.world.products]

    def truth_products(self, now: datetime | None = None) -> list[dict[str, Any]]:
        return self.shapes.truth("products", self.truth_products_at(self._ts(now)))

    def truth_features(self, product_id: int, now: datetime | None = None) -> list[dict[str, Any]]:
        """Every feature of the product once (a feature shared by sections appears once)."""
        ts = self._ts(now)
        features = [self.world.feature_json(f, ts) for f in self.world.features(self._product(product_id), ts)]
        return self.shapes.truth("features", features)

    def truth_feature_sections(self, product_id: int, now: datetime | None = None) -> dict[int, list[int]]:
        """Feature id -> ids of the sections listing it ([] for products without sections)."""
        ts = self._ts(now)
        return {f.id: list(f.section_ids) for f in self.world.features(self._product(product_id), ts)}

    def truth_user_stories(self, product_id: int, now: datetime | None = None) -> list[dict[str, Any]]:
        """Every user story of the product once."""
        ts = self._ts(now)
        return self.shapes.truth("user_stories", [s.as_json(ts) for s in self.world.stories(self._product(product_id), ts)])

    def truth_user_story_sections(self, product_id: int, now: datetime | None = None) -> dict[int, list[int]]:
        """User story id -> ids of the sections whose story list includes it."""
        ts = self._ts(now)
        return {s.id: list(s.feature.section_ids) for s in self.world.stories(self._product(product_id), ts)}

    def truth_tests(self, product_id: int, now: datetime | None = None) -> list[dict[str, Any]]:
        """Every test of the product, newest first by end_at, as the list endpoint serves them."""
        ts = self._ts(now)
        return self.shapes.truth("tests", [self.world.test_json(s, ts) for s in self.world.tests(self._product(product_id), ts)])

    def truth_bugs(self, product_id: int, now: datetime | None = None) -> list[dict[str, Any]]:
        """Every bug of the product visible at ``now``, by id."""
        ts = self._ts(now)
        bugs = self.world.bugs(self.world.tests(self._product(product_id), ts), ts)
        return sorted(self.shapes.truth("bugs", bugs), key=lambda b: b["id"])

    def truth_transitions(self, now: datetime | None = None) -> list[Transition]:
        """The world's true log of test and bug field changes up to ``now`` (``World.transitions``)."""
        return self.world.transitions(self._ts(now))

    def truth_reject_reasons(self) -> list[dict[str, str]]:
        """The customer's rejection reasons, as ``bugs/reject_reasons`` serves them."""
        return [{"key": k, "name": n, "default_comment": c} for k, n, c in vocab.REJECT_REASONS]

    # .. truth of the rows the warehouse derives from tests and bugs ............................

    def _live_drafts(self, product_id: int, ts: float) -> list[tuple[Any, dict[str, Any]]]:
        """(draft, bug as served) of every bug of the product visible at ``ts``."""
        product = self._product(product_id)
        out = []
        for spec in self.world.tests(product, ts):
            if spec.n_bugs == 0 or ts < spec.start:
                continue
            for draft in self.world.bug_drafts(spec):
                if draft.reported > ts:
                    break
                out.append((draft, draft.as_json(ts)))
        return out

    def truth_rejection_reasons(self, product_id: int, now: datetime | None = None) -> dict[int, str | None]:
        """Bug id -> the reason the world rejected it for (``other``: no standard comment), or
        None while the bug is not rejected."""
        ts = self._ts(now)
        return {
            draft.id: draft.rejection_reason if bug["status"] == "rejected" else None
            for draft, bug in self._live_drafts(product_id, ts)
        }

    def truth_bug_devices(self, product_id: int, now: datetime | None = None) -> list[tuple]:
        """(bug_id, position, category, operating_system, os_version, device, vendor, browser):
        one row per device of a bug and browser of that device (browser None when it has none)."""
        rows = []
        for draft, _ in self._live_drafts(product_id, self._ts(now)):
            position = 0
            for d in draft.devices:
                for browser in d.browsers or (None,):
                    rows.append((draft.id, position, d.category, d.os, d.os_version, d.name, d.vendor, browser))
                    position += 1
        return rows

    def truth_bug_comments(self, product_id: int, now: datetime | None = None) -> list[tuple]:
        """(bug_id, position, comment_id, author_name, body, created_at) of every visible comment."""
        ts = self._ts(now)
        return [
            (draft.id, i, c.id, c.author, c.body, datetime.fromisoformat(c.at_iso).astimezone(timezone.utc))
            for draft, _ in self._live_drafts(product_id, ts)
            for i, c in enumerate(c for c in draft.comments if c.at <= ts)
        ]

    def truth_bug_report_fields(self, product_id: int, now: datetime | None = None) -> list[tuple]:
        """(bug_id, position, configuration_id, key, value) of every custom report field."""
        return [
            (draft.id, i, draft.report[0], key, value)
            for draft, _ in self._live_drafts(product_id, self._ts(now))
            if draft.report is not None
            for i, (key, value) in enumerate(draft.report[1])
        ]

    def truth_test_platforms(self, product_id: int, now: datetime | None = None) -> list[tuple]:
        """(test_id, position, category, operating_system, min_os_version, max_os_version, browsers)."""
        ts = self._ts(now)
        return [
            (spec.id, i, r.category, r.os, r.min_version, r.max_version, list(r.browsers))
            for spec in self.world.tests(self._product(product_id), ts)
            for i, r in enumerate(self.world.test_requirements(spec))
        ]


def _int_list(value: str | None) -> list[int] | None:
    """Parse "1,2,3" into integers; None when the parameter is absent."""
    if value is None:
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise BadParameter(f"expected a comma-separated list of ids, got {value!r}") from None
