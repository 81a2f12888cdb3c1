"""The simulator's truth at a moment, and a check of a warehouse against it.

The truth comes from the ``Simulator.truth_*`` accessors, which build exactly what the API
serves at a given time. The check compares, for every entity, the set of ids that are not
marked deleted and a few fields that change over time or identify the owner (titles, test
status and end, bug status and test). Bugs are compared product by product and never kept,
so the check stays small in memory at the large scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

import duckdb

from testio_pipeline.simulator import Simulator
from testio_pipeline.domain.records import Product
from testio_pipeline.warehouse import Warehouse

MAX_EXAMPLES = 5


@dataclass
class ProductTruth:
    id: int
    name: str
    has_sections: bool
    list_calls: int  # feature calls = user-story calls for this product
    features: dict[int, str] = field(default_factory=dict)  # id -> title
    feature_sections: set[tuple[int, int]] = field(default_factory=set)
    stories: dict[int, str] = field(default_factory=dict)  # id -> title
    tests: list[tuple[int, str, int]] = field(default_factory=list)  # (id, status, end epoch), list order

    @property
    def test_ids(self) -> list[int]:
        return [t[0] for t in self.tests]

    @property
    def test_status(self) -> dict[int, str]:
        return {t[0]: t[1] for t in self.tests}


@dataclass
class Truth:
    """Everything but the bugs, as the API serves it at ``now``."""

    now: datetime
    products: dict[int, ProductTruth]

    @property
    def total_tests(self) -> int:
        return sum(len(p.tests) for p in self.products.values())


def _epoch(iso: str | None) -> int | None:
    return None if iso is None else int(datetime.fromisoformat(iso).timestamp())


def snapshot(sim: Simulator, now: datetime) -> Truth:
    products: dict[int, ProductTruth] = {}
    for raw in sim.truth_products(now):
        product = Product.from_api(raw)
        truth = ProductTruth(
            id=product.id,
            name=product.name,
            has_sections=product.has_sections,
            list_calls=len(product.section_ids) if product.has_sections else 1,
        )
        truth.features = {f["id"]: f["title"] for f in sim.truth_features(product.id, now)}
        truth.feature_sections = {
            (fid, sid) for fid, sids in sim.truth_feature_sections(product.id, now).items() for sid in sids
        }
        truth.stories = {s["id"]: s["title"] for s in sim.truth_user_stories(product.id, now)}
        truth.tests = [(t["id"], t["status"], _epoch(t["end_at"])) for t in sim.truth_tests(product.id, now)]
        products[product.id] = truth
    return Truth(now, products)


@dataclass
class Report:
    """Differences per entity; empty means the warehouse matches the truth."""

    checked: dict[str, int] = field(default_factory=dict)  # entity -> rows compared
    problems: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)  # likely causes of the problems

    @property
    def ok(self) -> bool:
        return not self.problems

    def compare(self, entity: str, truth: dict[Any, Any], stored: dict[Any, Any]) -> list[Any]:
        """Record the differences; returns the keys whose fields differ."""
        self.checked[entity] = self.checked.get(entity, 0) + len(truth)
        missing = [k for k in truth if k not in stored]
        extra = [k for k in stored if k not in truth]
        differ = [k for k in truth if k in stored and truth[k] != stored[k]]
        if missing:
            self.problems.append(f"{entity}: {len(missing)} missing from DuckDB, e.g. {sorted(missing)[:MAX_EXAMPLES]}")
        if extra:
            self.problems.append(
                f"{entity}: {len(extra)} in DuckDB but not served by the API, e.g. {sorted(extra)[:MAX_EXAMPLES]}"
            )
        if differ:
            examples = [f"{k}: api={truth[k]!r} db={stored[k]!r}" for k in sorted(differ)[:MAX_EXAMPLES]]
            self.problems.append(f"{entity}: {len(differ)} rows differ, e.g. " + "; ".join(examples))
        return differ


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: Iterable[Any] | None = None) -> list[tuple]:
    return con.execute(sql, params).fetchall()


def verify(db_path: str | Path, sim: Simulator, truth: Truth, *, lake_data_path: str | None = None) -> Report:
    """Compare the warehouse (a DuckDB file or a ``ducklake:`` lake) with what the simulator
    serves at ``truth.now``."""
    report = Report()
    with Warehouse(db_path, lake_data_path=lake_data_path).read() as con:
        products = truth.products
        report.compare(
            "products",
            {p.id: (p.name, p.has_sections) for p in products.values()},
            {r[0]: (r[1], r[2]) for r in _rows(con, "SELECT id, name, has_sections FROM products WHERE deleted_at IS NULL")},
        )
        report.compare(
            "features",
            {fid: (p.id, title) for p in products.values() for fid, title in p.features.items()},
            {r[0]: (r[1], r[2]) for r in _rows(con, "SELECT id, product_id, title FROM features WHERE deleted_at IS NULL")},
        )
        report.compare(
            "feature_sections",
            {pair: True for p in products.values() for pair in p.feature_sections},
            {
                (r[0], r[1]): True
                for r in _rows(
                    con,
                    """SELECT fs.feature_id, fs.section_id FROM feature_sections fs
                       JOIN features f ON f.id = fs.feature_id WHERE f.deleted_at IS NULL""",
                )
            },
        )
        report.compare(
            "user_stories",
            {sid: (p.id, title) for p in products.values() for sid, title in p.stories.items()},
            {
                r[0]: (r[1], r[2])
                for r in _rows(con, "SELECT id, product_id, title FROM user_stories WHERE deleted_at IS NULL")
            },
        )
        # Tests and bugs product by product; then a global count catches rows of unknown products.
        stored_tests = stored_bugs = 0
        expected_bugs = 0
        stale_bug_tests: dict[int, int] = {}  # test id -> bugs whose fields differ
        for p in products.values():
            rows = _rows(
                con,
                "SELECT id, status, epoch(end_at)::BIGINT FROM tests WHERE deleted_at IS NULL AND product_id = ?",
                [p.id],
            )
            stored_tests += len(rows)
            report.compare(
                "tests", {t[0]: (t[1], t[2]) for t in p.tests}, {r[0]: (r[1], r[2]) for r in rows}
            )
            bugs = {b["id"]: (b["test"]["id"], b["status"]) for b in sim.truth_bugs(p.id, truth.now)}
            expected_bugs += len(bugs)
            rows = _rows(
                con, "SELECT id, test_id, status FROM bugs WHERE deleted_at IS NULL AND product_id = ?", [p.id]
            )
            stored_bugs += len(rows)
            for bug_id in report.compare("bugs", bugs, {r[0]: (r[1], r[2]) for r in rows}):
                test_id = bugs[bug_id][0]
                stale_bug_tests[test_id] = stale_bug_tests.get(test_id, 0) + 1
        total_tests, total_bugs = _rows(
            con,
            """SELECT (SELECT count(*) FROM tests WHERE deleted_at IS NULL),
                      (SELECT count(*) FROM bugs WHERE deleted_at IS NULL)""",
        )[0]
        if total_tests != stored_tests:
            report.problems.append(f"tests: {total_tests - stored_tests} rows belong to no product the API lists")
        if total_bugs != stored_bugs:
            report.problems.append(f"bugs: {total_bugs - stored_bugs} rows belong to no product the API lists")
        report.checked["bugs"] = expected_bugs
        if stale_bug_tests:
            final = _rows(
                con,
                "SELECT id FROM tests WHERE list_contains(?, id) AND status IN ('archived', 'cancelled')",
                [sorted(stale_bug_tests)],
            )
            on_final = sum(stale_bug_tests[r[0]] for r in final)
            report.hints.append(
                f"{on_final} of the {sum(stale_bug_tests.values())} differing bugs belong to tests the warehouse "
                "holds as final (archived/cancelled): an incremental cycle does not re-read the bugs of final "
                "tests, so a bug decided after its test was archived stays stale until a full sync"
            )
    return report
