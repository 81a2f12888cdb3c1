"""Reading one product's test list: paging without metadata, and recovery from poison pages.

The exploratory-test list is the API's only paged list, and its paging cannot be trusted
(``shared/TESTIO_API.md``, quirks 2, 4 and 6): there are no totals or next links, so the end
is a short or empty page; some deployments ignore paging and send the whole list at once;
and some pages fail every time because of one bad record, while smaller windows of the same
range work. ``TestListReader`` owns the state of reading one list (pages read, tests seen,
which test sits at which position, positions that could not be read, why it stopped) and the
recovery strategy, and hands back a plain ``TestListing``. It knows no URL: the client gives
it a function that fetches one page.
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator, Protocol

from ..domain.records import ExploratoryTest, ProblemRange, RejectedRecord, raw_id
from .errors import (
    MalformedResponseError,
    TestioApiError,
    TestioAuthError,
    TestioConnectionError,
    TestioNotFoundError,
    TestioTimeoutError,
)
from .parsing import parse_records

# A test-list page that keeps failing is re-read in smaller windows (TESTIO_API.md quirk 6).
RECOVERY_PER_PAGE = (10, 5, 2, 1)
# Attempts per window while recovering (and for a single test's bugs): the range is already
# known to fail, so each smaller window gets one retry, not the full policy.
RECOVERY_ATTEMPTS = 2

# Why paging stopped when the reader went to the end of the list.
END_REASONS = frozenset({"short_page", "empty_page", "paging_ignored"})


class PageFetch(Protocol):
    """Fetches one page of the list: its raw items, or raises ``TestioApiError``."""

    def __call__(self, page: int, per_page: int, *, attempts: int | None = None) -> Awaitable[list[Any]]: ...


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
    # Known tests re-read one by one (incremental mode) that could not be read: id -> error.
    # Filled by the caller that re-reads them, not by the reader.
    reread_failed: dict[int, str] = field(default_factory=dict)

    @property
    def reached_end(self) -> bool:
        """The listing went to the end of the list (possibly with unreadable positions)."""
        return self.stop_reason in END_REASONS

    @property
    def complete(self) -> bool:
        """True only when every record of the list was read and typed, so absence means deletion.

        Unreadable positions or rejected records leave tests unaccounted for: a test stored
        earlier may be one of them, so it must not be marked deleted.
        """
        return self.reached_end and not self.problems and not self.rejected


class ReadAhead:
    """How many pages of one list to ask for at once while its length is unknown.

    One per client, shared by every list it reads: pages past the one surely needed only fill
    idle in-flight slots. While other lists' pages keep the cap busy, a page past this list's
    end would be a wasted request that delays theirs.
    """

    def __init__(self, *, pages: int, slots: int):
        self.pages = pages  # at most this many pages of one list at once
        self.slots = slots  # the client's in-flight cap
        self.pending = 0  # pages asked for and not yet answered, all lists

    def window(self) -> int:
        return max(1, min(self.pages, self.slots - self.pending))

    @contextmanager
    def claim(self, count: int) -> Iterator[None]:
        self.pending += count
        try:
            yield
        finally:
            self.pending -= count


# (first, last, error): list positions, 0-based and inclusive, that could not be read.
Failed = tuple[int, int, str]


class TestListReader:
    """Reads one product's test list once, newest first, recovering what failing pages hide."""

    __test__ = False

    def __init__(self, product_id: int, fetch: PageFetch, *, per_page: int, read_ahead: ReadAhead):
        self.product_id = product_id
        self.per_page = per_page
        self._fetch = fetch
        self._read_ahead = read_ahead
        self._pages_fetched = 0
        self._stop_reason = ""
        self._tests: list[ExploratoryTest] = []
        self._rejected: list[RejectedRecord] = []
        self._seen: set[int] = set()
        self._offsets: dict[int, int] = {}  # list position -> test id, to name a problem's neighbours
        self._failed: list[Failed] = []

    async def read(
        self,
        *,
        stop_when: Callable[[list[Any]], bool] | None = None,
        max_pages: int = 10_000,
        then_pages: Callable[[list[ExploratoryTest], int], int] | None = None,
    ) -> TestListing:
        """Read pages until the list ends, ``stop_when(raw_items)`` holds for a page, or
        ``max_pages`` were read. With ``stop_when`` pages are read one by one (the stop is
        decided page by page); without it, as many at a time as ``ReadAhead`` allows.

        ``then_pages(tests read so far, pages read)``, asked once ``stop_when`` stopped the paging, says
        how many of the following pages to read as well, all at once (incremental cycles
        read down to stored tests when that is cheaper than asking for them one by one).
        """
        if self._stop_reason:
            raise RuntimeError("a TestListReader reads its list once")
        page = 1
        while page <= max_pages:
            window = 1 if stop_when is not None else self._read_ahead.window()
            numbers = list(range(page, min(page + window, max_pages + 1)))
            if await self._read_pages(numbers, stop_when):
                if self._stop_reason == "known_reached" and then_pages is not None:
                    more = list(range(page + len(numbers), page + len(numbers) + then_pages(self._tests, self._pages_fetched)))
                    await self._read_pages(more[: max(0, max_pages - page - len(numbers) + 1)], None)
                return self._listing()
            page += len(numbers)
        self._stop_reason = "max_pages"
        return self._listing()

    async def _read_pages(self, numbers: list[int], stop_when: Callable[[list[Any]], bool] | None) -> bool:
        """Fetch ``numbers`` at once and take them in order; True once a page says stop."""
        with self._read_ahead.claim(len(numbers)):
            results = await asyncio.gather(*(self._page_or_failure(n, self.per_page) for n in numbers))
        for n, result in zip(numbers, results):
            self._pages_fetched += 1
            reason = await self._take_page(n, result, stop_when)
            if reason:
                self._stop_reason = reason
                return True
        return False

    async def _take_page(
        self, number: int, result: list[Any] | TestioApiError, stop_when: Callable[[list[Any]], bool] | None
    ) -> str:
        """Take one page's tests; the reason to stop paging after it, or "" to read on."""
        start = (number - 1) * self.per_page
        if isinstance(result, TestioApiError):
            # A page that keeps failing: read its range in smaller windows instead.
            found, failed, end = await self._recover(start, start + self.per_page - 1, result)
            self._failed.extend(failed)
            placed = sorted(found.items())
            self._add(placed)
            items = [item for _, item in placed]
            if end is not None:
                return "short_page" if end > start else "empty_page"
        else:
            items = result
            if len(items) > self.per_page:
                # The whole list in one answer: the server ignores paging.
                self._add(list(enumerate(items)))
                return "paging_ignored"
            self._add(list(enumerate(items, start)))
            if not items:
                return "empty_page"
            if len(items) < self.per_page:
                return "short_page"
        if stop_when is not None and stop_when(items):
            return "known_reached"
        return ""

    async def _page_or_failure(
        self, page: int, per_page: int, *, attempts: int | None = None
    ) -> list[Any] | TestioApiError:
        """A page's items, or the window failure (5xx/timeout) to recover from; other errors raise."""
        try:
            return await self._fetch(page, per_page, attempts=attempts)
        except TestioApiError as exc:
            if _is_window_failure(exc):
                return exc
            raise

    async def _recover(
        self, first: int, last: int, error: TestioApiError, *, top: bool = True
    ) -> tuple[dict[int, Any], list[Failed], int | None]:
        """Re-read list positions ``first..last`` (0-based, inclusive) in smaller windows.

        Returns the items found by offset, the positions that failed even one at a time, and
        the offset where the list ends if that lies in the range. Window sizes follow
        RECOVERY_PER_PAGE; the page numbers of each size are chosen so their windows cover the
        range, and items outside it are ignored.
        """
        span = last - first + 1
        size = next((s for s in RECOVERY_PER_PAGE if s < span), None)
        if size is None:  # a single position (or the smallest window) that cannot be read
            return {}, [(first, last, str(error))], None
        pages = list(range(first // size + 1, last // size + 2))
        results = await asyncio.gather(
            *(self._page_or_failure(n, size, attempts=RECOVERY_ATTEMPTS) for n in pages)
        )
        if top and all(isinstance(r, TestioApiError) for r in results):
            # Not one bad record: every smaller window fails too, so the list is unreadable here.
            raise error
        found: dict[int, Any] = {}
        failed: list[Failed] = []
        end: int | None = None
        for n, result in zip(pages, results):
            lo = (n - 1) * size
            a, b = max(lo, first), min(lo + size - 1, last)
            if isinstance(result, TestioApiError):
                sub_found, sub_failed, sub_end = await self._recover(a, b, result, top=False)
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

    def _add(self, placed: list[tuple[int, Any]]) -> None:
        """Take raw test objects with their list positions."""
        for offset, item in placed:
            if (test_id := raw_id(item)) is not None:  # an int or a numeric string
                self._offsets.setdefault(offset, test_id)
        items = [item for _, item in placed]
        parsed = parse_records(ExploratoryTest, items, entity="tests", product_id=self.product_id)
        for test in parsed.records:
            # A test can move between pages while we read; keep its first sighting only.
            if test.id not in self._seen:
                self._seen.add(test.id)
                self._tests.append(test)
        self._rejected.extend(parsed.rejected)

    def _listing(self) -> TestListing:
        """The result, with the positions that could not be read as problems naming their neighbours."""
        problems = []
        for start, end, error in _merge_failed(self._failed):
            neighbours = (self._offsets.get(start - 1), self._offsets.get(end + 1))
            problems.append(
                ProblemRange(self.product_id, start, end, error, tuple(n for n in neighbours if n is not None))
            )
        return TestListing(
            product_id=self.product_id,
            tests=self._tests,
            rejected=self._rejected,
            pages_fetched=self._pages_fetched,
            stop_reason=self._stop_reason,
            problems=problems,
        )


def _is_window_failure(exc: TestioApiError) -> bool:
    """A server-side failure of one list window (5xx or timeout, after retries).

    Only these are worth re-reading in smaller windows; a refused token, a vanished product,
    an unreachable host or a body that is not the documented JSON say nothing about one record.
    """
    if isinstance(exc, (TestioAuthError, TestioNotFoundError, TestioConnectionError, MalformedResponseError)):
        return False
    return isinstance(exc, TestioTimeoutError) or (exc.status is not None and exc.status >= 500)


def _merge_failed(failed: list[Failed]) -> list[Failed]:
    """Join adjacent failing positions into ranges (the first error of a range is kept)."""
    merged: list[Failed] = []
    for start, end, error in sorted(failed):
        if merged and start <= merged[-1][1] + 1:
            first, last, kept = merged[-1]
            merged[-1] = (first, max(last, end), kept)
        else:
            merged.append((start, end, error))
    return merged
