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

from .errors import MalformedResponseError, TestioApiError
from .http import ApiRequester, RequestStats, RetryPolicy
from .models import (
    Bug,
    ExploratoryTest,
    Feature,
    Product,
    Record,
    RejectedRecord,
    UserStory,
    strip_credentials,
)

log = logging.getLogger("testio_pipeline.client")

R = TypeVar("R", bound=Record)

DEFAULT_PER_PAGE = 25
DEFAULT_BUG_BATCH = 15  # the id list clients send to /bugs; more risks a 524


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
    # in one response), "known_reached" (incremental stop) or "error".
    stop_reason: str = ""
    _seen: set[int] = field(default_factory=set, repr=False)

    @property
    def complete(self) -> bool:
        """True only when the whole list was read, so absence from it means deletion."""
        return self.stop_reason in {"short_page", "empty_page", "paging_ignored"}


@dataclass
class BugFetch:
    """Bugs for a set of tests, and exactly which tests' bug lists were read completely."""

    bugs: list[Bug] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    fetched_test_ids: set[int] = field(default_factory=set)
    failed: dict[int, str] = field(default_factory=dict)  # test id -> error


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
        # Pages fetched ahead in parallel while the list length is unknown.
        self.page_prefetch = page_prefetch or max(1, min(4, max_concurrent))
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

    async def _test_page(self, product_id: int, page: int) -> list[Any]:
        path = f"products/{product_id}/exploratory_tests"
        # Always send `page`: without it the API silently returns only the newest 150 tests.
        data = await self._api.get_json(
            path, endpoint="exploratory_tests", params={"page": page, "per_page": self.per_page}
        )
        items = _envelope(data, "exploratory_tests", path)
        if not isinstance(items, list):
            raise MalformedResponseError(f"GET {path}: 'exploratory_tests' is not a list")
        return items

    async def list_tests(
        self,
        product_id: int,
        *,
        stop_when: Callable[[list[Any]], bool] | None = None,
        max_pages: int = 10_000,
    ) -> TestListing:
        """Page through a product's tests, newest first.

        Without ``stop_when`` every page is read, fetching ``page_prefetch`` pages at a time
        because the list length is unknown. With it, pages are read one by one and paging
        stops after the first page for which ``stop_when(raw_items)`` is true (incremental
        discovery: new tests appear on page 1).
        """
        listing = TestListing(product_id=product_id)
        window = 1 if stop_when is not None else self.page_prefetch
        page = 1
        while page <= max_pages:
            numbers = list(range(page, min(page + window, max_pages + 1)))
            pages = await asyncio.gather(*(self._test_page(product_id, n) for n in numbers))
            for items in pages:
                listing.pages_fetched += 1
                self._add_tests(listing, items)
                if len(items) > self.per_page:
                    listing.stop_reason = "paging_ignored"
                    return listing
                if not items:
                    listing.stop_reason = "empty_page"
                    return listing
                if len(items) < self.per_page:
                    listing.stop_reason = "short_page"
                    return listing
                if stop_when is not None and stop_when(items):
                    listing.stop_reason = "known_reached"
                    return listing
            page += len(numbers)
        listing.stop_reason = "max_pages"
        return listing

    @staticmethod
    def _add_tests(listing: TestListing, items: list[Any]) -> None:
        parsed = parse_records(ExploratoryTest, items, entity="tests", product_id=listing.product_id)
        for test in parsed.records:
            # A test can move between pages while we read; keep its first sighting only.
            if test.id not in listing._seen:
                listing._seen.add(test.id)
                listing.tests.append(test)
        listing.rejected.extend(parsed.rejected)

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
        try:
            data = await self._api.get_json(
                "bugs", endpoint="bugs", params=params, fail_fast=frozenset({524})
            )
            items = _envelope(data, "bugs", "bugs")
        except TestioApiError as exc:
            if exc.status == 524 and len(batch) > 1:
                # Heavy query: halves usually succeed where the whole batch timed out.
                middle = len(batch) // 2
                await asyncio.gather(
                    self._bug_batch(batch[:middle], product_id, result),
                    self._bug_batch(batch[middle:], product_id, result),
                )
                return
            if exc.status in (401, 403):
                raise
            for test_id in batch:
                result.failed[test_id] = str(exc)
            return
        context = {"product_id": product_id} if product_id is not None else {}
        parsed = parse_records(Bug, items, entity="bugs", **context)
        wanted = set(batch)
        result.bugs.extend(b for b in parsed.records if b.test_id in wanted)
        result.rejected.extend(parsed.rejected)
        result.fetched_test_ids.update(batch)
