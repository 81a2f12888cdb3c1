"""The lower bound of a sync's wall time: the latency cost of the requests it cannot avoid.

A sync against the TestIO API is bound by latency and the in-flight cap, not by bandwidth.
With every request taking the same latency ``L`` and at most ``C`` requests in flight, the
cheapest possible schedule runs the unavoidable requests in *rounds* of at most ``C``
concurrent requests, and a request can only start in a later round than the requests whose
answers it needs. So:

**Unavoidable requests** (what any correct client must ask, given the world at that moment;
``pp`` = test page size 25, ``B`` = test ids per bug query 15):

* ``R_p = 1``                         — the product list.
* ``R_f = Σ_p s_p``                   — features: one call per section (``s_p`` = number of
  sections), or 1 for a product without sections.
* ``R_s = Σ_p s_p``                   — user stories, the same way.
* ``R_t = Σ_p (pages_p + reread_p)`` — test list pages, plus single-test re-reads.
  *Full*: ``pages_p = ⌊n_p / pp⌋ + 1`` (the API gives no total, so the end is only known
  from a page shorter than ``pp``: with ``n_p`` a multiple of ``pp`` that is an extra empty
  page), ``reread_p = 0``.
  *Incremental*: ``pages_p = ⌊k_p / pp⌋ + 1`` where ``k_p`` is the position of the first
  already-known test (new tests are on top); ``reread_p`` = known tests stored as non-final
  that those pages did not show (each needs ``GET exploratory_tests/{id}``), or — if cheaper —
  the extra pages down to the deepest of them (``reread_pages_p``; the minimum takes the
  smaller of the two, the issue-3 budget the per-test calls).
* ``R_b = ⌈T_b / B⌉``                 — bug queries for the ``T_b`` tests whose bugs must be
  read (full: every test; incremental: new tests and tests stored as non-final), packed 15
  ids per query across products. The client packs per product (``Σ_p ⌈T_b,p / B⌉``), which is
  shown next to it and is what the issue-3 budget counts.

**Rounds.** ``rounds(R) = ⌈R / C⌉``. Within the tests step the paging is a chain: while the
list length is unknown, page ``k+1`` is only *known* to be needed once page ``k`` came back
full, so without wasted (speculative) requests one product's pages take ``pages_p`` rounds,
plus one round for its re-reads: ``chain_t = max_p (pages_p + [reread_p > 0])``.

**The bound** follows the asset graph (``products → features, tests → user_stories, bugs``),
whose levels cannot overlap because an asset only starts when its upstream has finished:

    LB = L × ( 1                                            # products
             + max(⌈(R_f + R_t) / C⌉, chain_t)               # features ∥ tests
             + ⌈(R_s + R_b) / C⌉ )                           # user_stories ∥ bugs

Two related numbers are printed for context:

* *steps in sequence* — one entity after another, as the pipeline ran before its independent
  steps overlapped (``sync.graph``), kept to show what the overlap is worth: ``L × (1 + ⌈R_f/C⌉ + ⌈R_s/C⌉ + max(⌈R_t/C⌉, chain_t) + ⌈R_b/C⌉)``;
* *request DAG* — the physical floor for any architecture, where only the real data
  dependencies order requests (product list → everything; a test page → the bug queries of its
  tests): ``L × (1 + max(⌈(R−1)/C⌉, chain_t + 1, 1 + ⌈R_b/C⌉))``.

The bound ignores CPU time (parsing, hashing, writing) on purpose: the distance between it and
the measured wall time *is* the cost of everything that is not waiting for the API.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

FINAL = frozenset({"archived", "cancelled"})


@dataclass
class ProductPlan:
    """What one product needs in one phase."""

    product_id: int
    list_calls: int  # feature calls = user-story calls: 1, or one per section
    tests: int  # tests listed at the phase's moment
    pages: int  # test-list pages that must be read
    reread_calls: int = 0  # single-test re-reads of known non-final tests not on those pages
    reread_pages: int = 0  # or: extra pages down to the deepest such test
    bug_tests: int = 0  # tests whose bugs must be read

    @property
    def reread_min(self) -> int:
        return min(self.reread_calls, self.reread_pages) if self.reread_calls else 0


@dataclass
class Plan:
    """The unavoidable requests of one phase and the bound they imply."""

    mode: str
    per_page: int
    bug_batch: int
    products: list[ProductPlan] = field(default_factory=list)

    # -- request counts ---------------------------------------------------------------------
    @property
    def r_features(self) -> int:
        return sum(p.list_calls for p in self.products)

    @property
    def r_stories(self) -> int:
        return sum(p.list_calls for p in self.products)

    @property
    def r_pages(self) -> int:
        return sum(p.pages for p in self.products)

    @property
    def r_rereads_min(self) -> int:
        return sum(p.reread_min for p in self.products)

    @property
    def r_rereads_calls(self) -> int:
        return sum(p.reread_calls for p in self.products)

    @property
    def r_tests(self) -> int:
        return self.r_pages + self.r_rereads_min

    @property
    def bug_tests(self) -> int:
        return sum(p.bug_tests for p in self.products)

    @property
    def r_bugs(self) -> int:
        return math.ceil(self.bug_tests / self.bug_batch)

    @property
    def r_bugs_per_product(self) -> int:
        return sum(math.ceil(p.bug_tests / self.bug_batch) for p in self.products)

    @property
    def requests(self) -> int:
        """The minimum number of requests (the ``R`` of the bound)."""
        return 1 + self.r_features + self.r_stories + self.r_tests + self.r_bugs

    @property
    def issue3_budget(self) -> int:
        """Issue 3's ceiling for an incremental cycle: 1 + feature calls + user-story calls +
        the test pages down to the known tests + a call per non-final test not on them + their
        bug queries (packed per product, as the client does)."""
        return (
            1 + self.r_features + self.r_stories + self.r_pages + self.r_rereads_calls + self.r_bugs_per_product
        )

    @property
    def chain_tests(self) -> int:
        return max((p.pages + (1 if p.reread_min else 0) for p in self.products), default=0)

    # -- the bounds (in rounds; multiply by the latency) -------------------------------------
    def rounds_asset_graph(self, cap: int) -> int:
        level2 = max(_rounds(self.r_features + self.r_tests, cap), self.chain_tests)
        level3 = _rounds(self.r_stories + self.r_bugs, cap)
        return 1 + level2 + level3

    def rounds_sequential(self, cap: int) -> int:
        return (
            1
            + _rounds(self.r_features, cap)
            + _rounds(self.r_stories, cap)
            + max(_rounds(self.r_tests, cap), self.chain_tests)
            + _rounds(self.r_bugs, cap)
        )

    def rounds_request_dag(self, cap: int) -> int:
        rest = max(_rounds(self.requests - 1, cap), self.chain_tests + (1 if self.r_bugs else 0))
        if self.r_bugs:
            rest = max(rest, 1 + _rounds(self.r_bugs, cap))
        return 1 + rest

    def bounds(self, latency_s: float, cap: int) -> dict[str, float]:
        return {
            "lower_bound_s": self.rounds_asset_graph(cap) * latency_s,
            "sequential_steps_bound_s": self.rounds_sequential(cap) * latency_s,
            "request_dag_bound_s": self.rounds_request_dag(cap) * latency_s,
        }

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "products": len(self.products),
            "requests_min": self.requests,
            "features_calls": self.r_features,
            "user_story_calls": self.r_stories,
            "test_pages": self.r_pages,
            "test_rereads_min": self.r_rereads_min,
            "test_rereads_per_test": self.r_rereads_calls,
            "bug_queries_min": self.r_bugs,
            "bug_queries_per_product": self.r_bugs_per_product,
            "tests_needing_bugs": self.bug_tests,
            "chain_tests": self.chain_tests,
            "issue3_budget": self.issue3_budget,
        }

    def as_dict(self) -> dict[str, Any]:
        return {**self.summary(), "per_product": [asdict(p) for p in self.products]}


def _rounds(requests: int, cap: int) -> int:
    return math.ceil(requests / cap) if requests > 0 else 0


def full_plan(
    lists: Iterable[tuple[int, int, int]], *, per_page: int, bug_batch: int
) -> Plan:
    """A full sync: ``lists`` gives (product id, list calls, number of tests) per product."""
    plan = Plan("full", per_page, bug_batch)
    for product_id, list_calls, n_tests in lists:
        plan.products.append(
            ProductPlan(product_id, list_calls, n_tests, pages=n_tests // per_page + 1, bug_tests=n_tests)
        )
    return plan


def incremental_plan(
    products: Iterable[tuple[int, int, Sequence[int], dict[int, str]]],
    *,
    per_page: int,
    bug_batch: int,
) -> Plan:
    """An incremental cycle.

    ``products`` gives per product: (id, list calls, the test ids the API lists now in its
    order, newest first, and the stored state before the cycle: known test id → status).
    """
    plan = Plan("incremental", per_page, bug_batch)
    for product_id, list_calls, listed, known in products:
        n = len(listed)
        if not known:  # nothing stored yet: the first cycle reads the whole list
            plan.products.append(
                ProductPlan(product_id, list_calls, n, pages=n // per_page + 1, bug_tests=n)
            )
            continue
        first_known = next((i for i, tid in enumerate(listed) if tid in known), n)
        pages = first_known // per_page + 1
        shown = set(listed[: pages * per_page])
        position = {tid: i for i, tid in enumerate(listed)}
        pending = [tid for tid, status in known.items() if status not in FINAL and tid not in shown]
        deepest = max((position.get(tid, -1) for tid in pending), default=-1)
        reread_pages = max(0, deepest // per_page + 1 - pages) if deepest >= 0 else 0
        if any(tid not in position for tid in pending):  # vanished: only a direct call can tell
            reread_pages = len(pending)
        new = sum(1 for tid in listed if tid not in known)
        nonfinal = sum(1 for status in known.values() if status not in FINAL)
        plan.products.append(
            ProductPlan(
                product_id,
                list_calls,
                n,
                pages=pages,
                reread_calls=len(pending),
                reread_pages=reread_pages,
                bug_tests=new + nonfinal,
            )
        )
    return plan


FORMULA = """\
lower bound = L x [ 1 + max(ceil((R_f + R_t)/C), chain_t) + ceil((R_s + R_b)/C) ]
  rounds of at most C requests along the asset graph products -> (features || tests) -> (user_stories || bugs);
  R_f = R_s = sum over products of max(1, sections); R_t = test pages + re-reads of stored non-final tests
  (full: floor(n/25)+1 pages per product, the end is only seen as a short page); R_b = ceil(tests needing bugs / 15);
  chain_t = max over products of (pages + 1 if re-reads): pages of one list are found one after another."""
