"""The TestIO Customer API v2 client: every endpoint the pipeline needs, typed records out.

Each method knows its endpoint's path, envelope and quirks (see ``shared/TESTIO_API.md``):
sectioned products are read per section, and the test list is always asked for with
``page``. Reading a whole test list (no paging metadata, paging sometimes ignored, poison
pages) is ``paging.TestListReader``'s job; asking for bugs in batches that are split when
they time out is ``bugs.BugReader``'s; HTTP, retries and the in-flight cap are
``http.ApiRequester``'s. Knows nothing of Dagster or DuckDB.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Callable, Mapping, Sequence

import httpx

from .bugs import BugFetch, BugReader
from .errors import MalformedResponseError, TestioNotFoundError
from .http import DEFAULT_BASE_URL_SOURCE, DEFAULT_TOKEN_SOURCE, ApiRequester, RequestStats, RetryPolicy
from .limits import InFlightCap, MinInterval
from .paging import ReadAhead, TestListing, TestListReader
from .parsing import Parsed, envelope, parse_records
from ..domain.records import ExploratoryTest, Feature, Product, RejectReason, UserStory

__all__ = ["BugFetch", "CustomerApiClient", "Parsed", "TestListing", "parse_records"]

DEFAULT_PER_PAGE = 25
DEFAULT_BUG_BATCH = 15  # the id list clients send to /bugs; more risks a 524


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
        in_flight: InFlightCap | None = None,
        rate: MinInterval | None = None,
        token_source: str = DEFAULT_TOKEN_SOURCE,
        base_url_source: str = DEFAULT_BASE_URL_SOURCE,
    ):
        self.per_page = per_page
        max_concurrent = in_flight.limit if in_flight is not None else max_concurrent
        self.bug_batch_size = bug_batch_size
        # Test-list pages fetched ahead in parallel while a list's length is unknown (at most;
        # see list_tests), counted across every list this client reads.
        self._read_ahead = ReadAhead(pages=page_prefetch or max(1, min(4, max_concurrent)), slots=max_concurrent)
        self._api = ApiRequester(
            base_url,
            token,
            max_concurrent=max_concurrent,
            max_requests_per_second=max_requests_per_second,
            timeout=timeout,
            retry=retry,
            transport=transport,
            in_flight=in_flight,
            rate=rate,
            token_source=token_source,
            base_url_source=base_url_source,
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
        return parse_records(Product, envelope(data, "products", "products"), entity="products")

    # -- features and user stories (section-aware) -----------------------------------------

    async def list_features(self, product: Product) -> Parsed:
        """All features of a product; a feature listed under several sections appears once."""
        if not product.has_sections:
            path = f"products/{product.id}/features"
            data = await self._api.get_json(path, endpoint="features")
            return parse_records(
                Feature, envelope(data, "features", path), entity="features", product_id=product.id
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
            Feature, envelope(data, "features", path), entity="features", product_id=product_id
        )

    async def list_user_stories(self, product: Product) -> Parsed:
        path = f"products/{product.id}/user_stories"
        if not product.has_sections:
            data = await self._api.get_json(path, endpoint="user_stories")
            return parse_records(
                UserStory, envelope(data, "user_stories", path), entity="user_stories", product_id=product.id
            )

        async def one_section(section_id: int) -> Parsed:
            data = await self._api.get_json(path, endpoint="user_stories", params={"section_id": section_id})
            return parse_records(
                UserStory,
                envelope(data, "user_stories", path),
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

    async def _test_page(self, product_id: int, page: int, per_page: int, *, attempts: int | None = None) -> list[Any]:
        path = f"products/{product_id}/exploratory_tests"
        # Always send `page`: without it the API silently returns only the newest 150 tests.
        data = await self._api.get_json(
            path,
            endpoint="exploratory_tests",
            params={"page": page, "per_page": per_page},
            attempts=attempts,
        )
        items = envelope(data, "exploratory_tests", path)
        if not isinstance(items, list):
            raise MalformedResponseError(f"GET {path}: 'exploratory_tests' is not a list")
        return items

    async def list_tests(
        self,
        product_id: int,
        *,
        stop_when: Callable[[list[Any]], bool] | None = None,
        max_pages: int = 10_000,
        then_pages: Callable[[list[ExploratoryTest], int], int] | None = None,
    ) -> TestListing:
        """Page through a product's tests, newest first.

        Without ``stop_when`` every page is read, fetching up to ``page_prefetch`` pages at a
        time because the list length is unknown, as far as the in-flight cap is not already
        kept busy by other lists' pages. With it, pages are read one by one and paging
        stops after the first page for which ``stop_when(raw_items)`` is true (incremental
        discovery: new tests appear on page 1); ``then_pages(tests so far, pages read)`` may then ask for
        that many following pages at once.
        """
        fetch = functools.partial(self._test_page, product_id)
        reader = TestListReader(product_id, fetch, per_page=self.per_page, read_ahead=self._read_ahead)
        return await reader.read(stop_when=stop_when, max_pages=max_pages, then_pages=then_pages)

    async def get_test(self, test_id: int) -> ExploratoryTest:
        path = f"exploratory_tests/{test_id}"
        data = await self._api.get_json(path, endpoint="exploratory_test")
        return ExploratoryTest.from_api(envelope(data, "exploratory_test", path))

    # -- bugs ------------------------------------------------------------------------------

    async def list_bugs(
        self, test_ids: Sequence[int], *, product_id: int | None = None, product_of: Mapping[int, int] | None = None
    ) -> BugFetch:
        """Bugs of the given tests, asked for in batches; a batch that times out is split.

        The bugs do not name their product: give it as ``product_id``, or as ``product_of``
        (test id -> product id) when the tests span products.
        """
        reader = BugReader(self._api, product_id=product_id, product_of=product_of)
        return await reader.read(test_ids, self.bug_batch_size)

    async def list_reject_reasons(self) -> list[RejectReason] | None:
        """The customer's bug rejection reasons; None when the deployment does not have the
        endpoint (older ones answer 404). Entries without a key or default comment cannot be
        matched against comments and are left out."""
        path = "bugs/reject_reasons"
        try:
            data = await self._api.get_json(path, endpoint="reject_reasons")
        except TestioNotFoundError:
            return None
        items = envelope(data, "reject_reasons", path)
        if not isinstance(items, list):
            raise MalformedResponseError(f"GET {path}: 'reject_reasons' is not a list")
        return [
            RejectReason(str(item["key"]), item.get("name"), str(item["default_comment"]))
            for item in items
            if isinstance(item, dict) and item.get("key") and item.get("default_comment")
        ]
