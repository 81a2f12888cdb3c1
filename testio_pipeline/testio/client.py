"""The TestIO Customer API v2 client: every endpoint the pipeline needs, typed records out.

Knows the API's quirks (see ``shared/TESTIO_API.md``): sectioned products, a test list
with no paging metadata that truncates without ``page`` and is sometimes not paged at
all, heavy bug queries that time out. Knows nothing of Dagster or DuckDB.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence, TypeVar

import httpx
from pydantic import ValidationError

from .errors import (
    MalformedResponseError,
    TestioApiError,
    TestioAuthError,
    TestioConnectionError,
    TestioNotFoundError,
    TestioTimeoutError,
)
from .http import ApiRequester, RequestStats, RetryPolicy
from ..domain.credentials import strip_credentials
from ..domain.records import (
    Bug,
    ExploratoryTest,
    Feature,
    Product,
    ProblemRange,
    Record,
    RejectedRecord,
    UserStory,
    raw_id,
)

log = logging.getLogger("testio_pipeline.client")

R = TypeVar("R", bound=Record)

DEFAULT_PER_PAGE = 25
DEFAULT_BUG_BATCH = 15  # the id list clients send to /bugs; more risks a 524
# A test-list page that keeps failing is re-read in smaller windows (TESTIO_API.md quirk 6).
RECOVERY_PER_PAGE = (10, 5, 2, 1)
# Attempts per window while recovering (and for a single test's bugs): the range is already
# known to fail, so each smaller window gets one retry, not the full policy.
RECOVERY_ATTEMPTS = 2


@dataclass
class Parsed:
    """Records that could be typed, and the ones that could not (kept, with the reason)."""

    records: list[Any] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)

    def extend(self, other: "Parsed") -> None:
        self.records.extend(other.records)
        self.rejected.extend(other.rejected)


@dataclass
class TestListing:
    """One product's test list as far as it was read."""

    __test__ = False

    product_id: int
    tests: list[ExploratoryTest] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    pages_fetched: int = 0
    # Why paging stopped: "short_page", "empty_page", "paging_ignored" (the whole list came
    # in one response), "known_reached" (incremental stop) or "max_pages".
    stop_reason: str = ""
    # Positions that failed even one at a time.
    problems: list[ProblemRange] = field(default_factory=list)
    pages_recovered: int = 0  # failing pages re-read in smaller windows
    # Known tests re-read one by one (incremental mode) that could not be read: id -> error.
    reread_failed: dict[int, str] = field(default_factory=dict)
    _seen: set[int] = field(default_factory=set, repr=False)
    _offsets: dict[int, int] = field(default_factory=dict, repr=False)  # offset -> test id
    _failed: list[tuple[int, int, str]] = field(default_factory=list, repr=False)

    @property
    def reached_end(self) -> bool:
        """The listing went to the end of the list (possibly with unreadable positions)."""
        return self.stop_reason in {"short_page", "empty_page", "paging_ignored"}

    @property
    def complete(self) -> bool:
        """True only when every record of the list was read and typed, so absence means deletion.

        Unreadable positions or rejected records leave tests unaccounted for: a test stored
        earlier may be one of them, so it must not be marked deleted.
        """
        return self.reached_end and not self.problems and not self.rejected


@dataclass
class BugFetch:
    """Bugs for a set of tests, and exactly which tests' bug lists were read completely."""

    bugs: list[Bug] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    fetched_test_ids: set[int] = field(default_factory=set)
    failed: dict[int, str] = field(default_factory=dict)  # test id -> error
    # Tests whose bug list was read but held records that could not be typed: their stored
    # bugs must not be marked deleted, and they are asked for again next cycle.
    with_rejects: set[int] = field(default_factory=set)
    batches_split: int = 0


def parse_records(model: type[R], items: Any, *, entity: str, **context: Any) -> Parsed:
    """Type each API object; anything that does not fit goes to ``rejected`` with its reason.

    ``context`` holds what the request implies but the objects do not carry (product_id,
    section_id).
    """
    parsed = Parsed()
    product_id = context.get("product_id")
    if not isinstance(items, list):
        raise MalformedResponseError(f"expected a list of {entity}, got {type(items).__name__}")
    for item in items:
        try:
            parsed.records.append(model.from_api(item, **context))
        except (ValidationError, ValueError, TypeError) as exc:
            parsed.rejected.append(
                RejectedRecord(
                    entity=entity,
                    product_id=product_id,
                    record_id=str(item.get("id")) if isinstance(item, dict) and "id" in item else None,
                    reason=_short_reason(exc),
                    raw=strip_credentials(item),
                )
            )
    return parsed


def _short_reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<record>'}: {err['msg']}" for err in exc.errors()[:5]
        )
    return str(exc)


def _envelope(data: Any, key: str, path: str) -> Any:
    if not isinstance(data, dict) or key not in data:
        found = sorted(data)[:5] if isinstance(data, dict) else type(data).__name__
        raise MalformedResponseError(f"GET {path}: expected a {{{key!r}: ...}} envelope, got {found}")
    return data[key]


def _chunks(seq: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(seq), size):
        yield list(seq[start : start + size])


def _is_window_failure(exc: TestioApiError) -> bool:
    """A server-side failure of one list window (5xx or timeout, after retries).

    Only these are worth re-reading in smaller windows; a refused token, a vanished product,
    an unreachable host or a body that is not the documented JSON say nothing about one record.
    """
    if isinstance(exc, (TestioAuthError, TestioNotFoundError, TestioConnectionError, MalformedResponseError)):
        return False
    return isinstance(exc, TestioTimeoutError) or (exc.status is not None and exc.status >= 500)


def _merge_failed(failed: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Join adjacent failing positions into ranges (the first error of a range is kept)."""
    merged: list[tuple[int, int, str]] = []
    for start, end, error in sorted(failed):
        if merged and start <= merged[-1][1] + 1:
            first, last, kept = merged[-1]
            merged[-1] = (first, max(last, end), kept)
        else:
            merged.append((start, end, error))
    return merged


class CustomerApiClient:
    """Async client for the TestIO Customer API v2 (use as ``async with``)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        max_concurrent: int = 10,
        max_requests_per_second: float | None = None,
        timeout: float = 60.0,
        per_page: int = DEFAULT_PER_PAGE,
        bug_batch_size: int = DEFAULT_BUG_BATCH,
        page_prefetch: int | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.per_page = per_page
        self.bug_batch_size = bug_batch_size
        # Pages fetched ahead in parallel while the list length is unknown (at most; see list_tests).
        self.page_prefetch = page_prefetch or max(1, min(4, max_concurrent))
        self._pages_pending = 0  # test-list pages asked for and not yet answered, all products
        self._api = ApiRequester(
            base_url,
            token,
            max_concurrent=max_concurrent,
            max_requests_per_second=max_requests_per_second,
            timeout=timeout,
            retry=retry,
            transport=transport,
        )

    @property
    def stats(self) -> RequestStats:
        return self._api.stats

    async def __aenter__(self) -> "CustomerApiClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._api.aclose()

    # -- products --------------------------------------------------------------------------

    async def list_products(self) -> Parsed:
        data = await self._api.get_json("products", endpoint="products")
        return parse_records(Product, _envelope(data, "products", "products"), entity="products")

    async def get_product(self, product_id: int) -> Product:
        path = f"products/{product_id}"
        data = await self._api.get_json(path, endpoint="product")
        return Product.from_api(_envelope(data, "product", path))

    # -- features and user stories (section-aware) -----------------------------------------

    async def list_features(self, product: Product) -> Parsed:
        """All features of a product; a feature listed under several sections appears once."""
        if not product.has_sections:
            path = f"products/{product.id}/features"
            data = await self._api.get_json(path, endpoint="features")
            return parse_records(
                Feature, _envelope(data, "features", path), entity="features", product_id=product.id
            )
        per_section = await asyncio.gather(
            *(self._section_features(product.id, sid) for sid in product.section_ids)
        )
        merged: dict[int, Feature] = {}
        result = Parsed()
        for section_id, parsed in zip(product.section_ids, per_section):
            result.rejected.extend(parsed.rejected)
            for feature in parsed.records:
                kept = merged.setdefault(feature.id, feature)
                if section_id not in kept.section_ids:
                    kept.section_ids.append(section_id)
        result.records = list(merged.values())
        return result

    async def _section_features(self, product_id: int, section_id: int) -> Parsed:
        path = f"products/{product_id}/sections/{section_id}/features"
        data = await self._api.get_json(path, endpoint="section_features")
        return parse_records(
            Feature, _envelope(data, "features", path), entity="features", product_id=product_id
        )

    async def list_user_stories(self, product: Product) -> Parsed:
        path = f"products/{product.id}/user_stories"
        if not product.has_sections:
            data = await self._api.get_json(path, endpoint="user_stories")
            return parse_records(
                UserStory, _envelope(data, "user_stories", path), entity="user_stories", product_id=product.id
            )

        async def one_section(section_id: int) -> Parsed:
            data = await self._api.get_json(path, endpoint="user_stories", params={"section_id": section_id})
            return parse_records(
                UserStory,
                _envelope(data, "user_stories", path),
                entity="user_stories",
                product_id=product.id,
                section_id=section_id,
            )

        result = Parsed()
        seen: set[int] = set()
        for parsed in await asyncio.gather(*(one_section(sid) for sid in product.section_ids)):
            result.rejected.extend(parsed.rejected)
            for story in parsed.records:
                if story.id not in seen:
                    seen.add(story.id)
                    result.records.append(story)
        return result

    # -- exploratory tests -----------------------------------------------------------------

    async def _test_page(
        self, product_id: int, page: int, per_page: int | None = None, *, attempts: int | None = None
    ) -> list[Any]:
        path = f"products/{product_id}/exploratory_tests"
        # Always send `page`: without it the API silently returns only the newest 150 tests.
        data = await self._api.get_json(
            path,
            endpoint="exploratory_tests",
            params={"page": page, "per_page": per_page or self.per_page},
            attempts=attempts,
        )
        items = _envelope(data, "exploratory_tests", path)
        if not isinstance(items, list):
            raise MalformedResponseError(f"GET {path}: 'exploratory_tests' is not a list")
        return items

    async def _page_or_failure(
        self, product_id: int, page: int, per_page: int, *, attempts: int | None = None
    ) -> list[Any] | TestioApiError:
        """A page's items, or the window failure (5xx/timeout) to recover from; other errors raise."""
        try:
            return await self._test_page(product_id, page, per_page, attempts=attempts)
        except TestioApiError as exc:
            if _is_window_failure(exc):
                return exc
            raise

    async def _recover(
        self, product_id: int, first: int, last: int, error: TestioApiError, *, top: bool = True
    ) -> tuple[dict[int, Any], list[tuple[int, int, str]], int | None]:
        """Re-read list positions ``first..last`` (0-based, inclusive) in smaller windows.

        Returns the items found by offset, the positions that failed even one at a time
        (``(start, end, error)``), and the offset where the list ends if that lies in the
        range. Window sizes follow RECOVERY_PER_PAGE; the page numbers of each size are
        chosen so their windows cover the range, and items outside it are ignored.
        """
        span = last - first + 1
        size = next((s for s in RECOVERY_PER_PAGE if s < span), None)
        if size is None:  # a single position (or the smallest window) that cannot be read
            return {}, [(first, last, str(error))], None
        pages = list(range(first // size + 1, last // size + 2))
        results = await asyncio.gather(
            *(self._page_or_failure(product_id, n, size, attempts=RECOVERY_ATTEMPTS) for n in pages)
        )
        if top and all(isinstance(r, TestioApiError) for r in results):
            # Not one bad record: every smaller window fails too, so the list is unreadable here.
            raise error
        found: dict[int, Any] = {}
        failed: list[tuple[int, int, str]] = []
        end: int | None = None
        for n, result in zip(pages, results):
            lo = (n - 1) * size
            a, b = max(lo, first), min(lo + size - 1, last)
            if isinstance(result, TestioApiError):
                sub_found, sub_failed, sub_end = await self._recover(product_id, a, b, result, top=False)
                found.update(sub_found)
                failed.extend(sub_failed)
                if sub_end is not None:
                    end = sub_end if end is None else min(end, sub_end)
                continue
            for i, item in enumerate(result[:size]):
                if a <= lo + i <= b:
                    found[lo + i] = item
            if len(result) < size:
                list_end = lo + len(result)
                end = list_end if end is None else min(end, list_end)
        if end is not None:
            found = {o: item for o, item in found.items() if o < end}
            failed = [(s, min(e, end - 1), err) for s, e, err in failed if s < end]
        return found, failed, end

    async def list_tests(
        self,
        product_id: int,
        *,
        stop_when: Callable[[list[Any]], bool] | None = None,
        max_pages: int = 10_000,
    ) -> TestListing:
        """Page through a product's tests, newest first.

        Without ``stop_when`` every page is read, fetching up to ``page_prefetch`` pages at a
        time because the list length is unknown, as far as the in-flight cap is not already
        kept busy by other lists' pages. With it, pages are read one by one and paging
        stops after the first page for which ``stop_when(raw_items)`` is true (incremental
        discovery: new tests appear on page 1).
        """
        listing = TestListing(product_id=product_id)
        per_page = self.per_page
        page = 1
        while page <= max_pages:
            # Speculative pages (past the one surely needed) only fill idle in-flight slots:
            # while other products' pages keep the cap busy, a page past the end of this list
            # would be a wasted request that delays theirs.
            idle = self._api.max_concurrent - self._pages_pending
            window = 1 if stop_when is not None else max(1, min(self.page_prefetch, idle))
            numbers = list(range(page, min(page + window, max_pages + 1)))
            self._pages_pending += len(numbers)
            try:
                results = await asyncio.gather(*(self._page_or_failure(product_id, n, per_page) for n in numbers))
            finally:
                self._pages_pending -= len(numbers)
            for n, result in zip(numbers, results):
                listing.pages_fetched += 1
                start = (n - 1) * per_page
                if isinstance(result, TestioApiError):
                    # A page that keeps failing: read its range in smaller windows instead.
                    found, failed, end = await self._recover(product_id, start, start + per_page - 1, result)
                    listing.pages_recovered += 1
                    listing._failed.extend(failed)
                    items = [found[o] for o in sorted(found)]
                    for offset in sorted(found):
                        self._add_tests(listing, [found[offset]], offset)
                    if end is not None:
                        listing.stop_reason = "short_page" if end > start else "empty_page"
                        return self._finish(listing)
                else:
                    items = result
                    if len(items) > per_page:
                        self._add_tests(listing, items, 0)
                        listing.stop_reason = "paging_ignored"
                        return self._finish(listing)
                    self._add_tests(listing, items, start)
                    if not items:
                        listing.stop_reason = "empty_page"
                        return self._finish(listing)
                    if len(items) < per_page:
                        listing.stop_reason = "short_page"
                        return self._finish(listing)
                if stop_when is not None and stop_when(items):
                    listing.stop_reason = "known_reached"
                    return self._finish(listing)
            page += len(numbers)
        listing.stop_reason = "max_pages"
        return self._finish(listing)

    @staticmethod
    def _add_tests(listing: TestListing, items: list[Any], first_offset: int) -> None:
        for i, item in enumerate(items):
            if (test_id := raw_id(item)) is not None:  # an int or a numeric string
                listing._offsets.setdefault(first_offset + i, test_id)
        parsed = parse_records(ExploratoryTest, items, entity="tests", product_id=listing.product_id)
        for test in parsed.records:
            # A test can move between pages while we read; keep its first sighting only.
            if test.id not in listing._seen:
                listing._seen.add(test.id)
                listing.tests.append(test)
        listing.rejected.extend(parsed.rejected)

    @staticmethod
    def _finish(listing: TestListing) -> TestListing:
        """Turn the positions that could not be read into problems, naming their neighbours."""
        for start, end, error in _merge_failed(listing._failed):
            neighbours = [listing._offsets.get(start - 1), listing._offsets.get(end + 1)]
            listing.problems.append(
                ProblemRange(listing.product_id, start, end, error, tuple(n for n in neighbours if n is not None))
            )
        return listing

    async def get_test(self, test_id: int) -> ExploratoryTest:
        path = f"exploratory_tests/{test_id}"
        data = await self._api.get_json(path, endpoint="exploratory_test")
        return ExploratoryTest.from_api(_envelope(data, "exploratory_test", path))

    # -- bugs ------------------------------------------------------------------------------

    async def list_bugs(self, test_ids: Sequence[int], *, product_id: int | None = None) -> BugFetch:
        """Bugs of the given tests, asked for in batches; a batch that times out is split."""
        result = BugFetch()
        ids = sorted(set(test_ids))
        await asyncio.gather(
            *(self._bug_batch(batch, product_id, result) for batch in _chunks(ids, self.bug_batch_size))
        )
        return result

    async def _bug_batch(self, batch: list[int], product_id: int | None, result: BugFetch) -> None:
        params = {"filter_test_cycle_ids": ",".join(str(i) for i in batch)}
        single = len(batch) == 1
        try:
            data = await self._api.get_json(
                "bugs",
                endpoint="bugs",
                params=params,
                # A heavy batch is split at once instead of being retried; a single test gets
                # one retry, since its query cannot be made lighter.
                fail_fast=frozenset() if single else frozenset({524}),
                fail_fast_timeouts=not single,
                attempts=RECOVERY_ATTEMPTS if single else None,
            )
            items = _envelope(data, "bugs", "bugs")
        except TestioApiError as exc:
            if not single and (exc.status == 524 or isinstance(exc, TestioTimeoutError)):
                # Heavy query: halves usually succeed where the whole batch timed out.
                result.batches_split += 1
                middle = len(batch) // 2
                await asyncio.gather(
                    self._bug_batch(batch[:middle], product_id, result),
                    self._bug_batch(batch[middle:], product_id, result),
                )
                return
            if isinstance(exc, (TestioAuthError, TestioConnectionError)):
                raise
            for test_id in batch:
                result.failed[test_id] = str(exc)
            return
        context = {"product_id": product_id} if product_id is not None else {}
        parsed = parse_records(Bug, items, entity="bugs", **context)
        wanted = set(batch)
        result.bugs.extend(b for b in parsed.records if b.test_id in wanted)
        result.rejected.extend(parsed.rejected)
        for rejected in parsed.rejected:
            test = rejected.raw.get("test") if isinstance(rejected.raw, dict) else None
            test_id = test.get("id") if isinstance(test, dict) else None
            # A bug we could not type may belong to any test of the batch if it names none.
            result.with_rejects.update([test_id] if test_id in wanted else batch)
        result.fetched_test_ids.update(wanted - result.with_rejects)
