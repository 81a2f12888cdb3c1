"""Reading the bugs of many tests: batched ``/bugs`` queries, heavy ones split in halves.

``/bugs`` has no paging: it is asked for the bugs of a list of test ids. A query over too many
bugs times out (524, ``shared/TESTIO_API.md`` quirk 7), and retrying it as it is does not help,
so a batch that times out is split in halves at once, down to single tests. A single test's
query cannot be made lighter: it gets one retry, and if it still fails the test is reported as
failed (not its bugs as deleted). The result says exactly which tests' bug lists were read
completely, because only for those may a stored bug's absence mean deletion.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from ..domain.records import Bug, RejectedRecord, raw_id
from .errors import TestioApiError, TestioAuthError, TestioConnectionError, TestioTimeoutError
from .http import ApiRequester
from .paging import RECOVERY_ATTEMPTS
from .parsing import Parsed, envelope, parse_records


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


class BugReader:
    """Reads the bugs of a set of tests once, batch by batch, into one ``BugFetch``."""

    def __init__(
        self, api: ApiRequester, *, product_id: int | None = None, product_of: Mapping[int, int] | None = None
    ):
        self._api = api
        # What the bugs do not carry themselves: their product, one for all the tests, or
        # test id -> product when a query spans products (None when unknown).
        self._context = {"product_id": product_id} if product_id is not None else {}
        self._product_of = product_of
        self._result = BugFetch()

    async def read(self, test_ids: Sequence[int], batch_size: int) -> BugFetch:
        ids = sorted(set(test_ids))
        await asyncio.gather(*(self._batch(batch) for batch in _chunks(ids, batch_size)))
        return self._result

    async def _batch(self, batch: list[int]) -> None:
        result = self._result
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
            items = envelope(data, "bugs", "bugs")
        except TestioApiError as exc:
            if not single and (exc.status == 524 or isinstance(exc, TestioTimeoutError)):
                # Heavy query: halves usually succeed where the whole batch timed out.
                result.batches_split += 1
                middle = len(batch) // 2
                await asyncio.gather(self._batch(batch[:middle]), self._batch(batch[middle:]))
                return
            if isinstance(exc, (TestioAuthError, TestioConnectionError)):
                raise
            for test_id in batch:
                result.failed[test_id] = str(exc)
            return
        wanted = set(batch)
        for parsed in self._parse(items):
            result.bugs.extend(b for b in parsed.records if b.test_id in wanted)
            result.rejected.extend(parsed.rejected)
            for rejected in parsed.rejected:
                test_id = _test_id(rejected.raw)
                # A bug we could not type may belong to any test of the batch if it names none.
                result.with_rejects.update([test_id] if test_id in wanted else batch)
        result.fetched_test_ids.update(wanted - result.with_rejects)

    def _parse(self, items: list[Any]) -> list[Parsed]:
        """The batch's bugs typed, each with its product (one parse per product in the batch)."""
        if self._product_of is None:
            return [parse_records(Bug, items, entity="bugs", **self._context)]
        groups: dict[int | None, list[Any]] = {}
        for item in items:
            groups.setdefault(self._product_of.get(_test_id(item)), []).append(item)  # type: ignore[arg-type]
        return [
            parse_records(Bug, group, entity="bugs", **({"product_id": pid} if pid is not None else {}))
            for pid, group in groups.items()
        ]


def _test_id(raw: Any) -> int | None:
    return raw_id(raw.get("test")) if isinstance(raw, dict) else None


def _chunks(seq: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(seq), size):
        yield list(seq[start : start + size])
