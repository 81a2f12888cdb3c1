"""The simulator sends a share of its records in the other shapes TestIO documents or sends,
and a sync of such a world ends equal to its truth, with nothing rejected.

``SimulatorConfig.shape_variants`` picks the records (from the seed); the truth stays in the
regular shape with the values a correct mirror holds (shapes.py).
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta

import numpy as np
import pandas as pd
from benchmarks import verify
from testio_pipeline.domain.records import Bug, ExploratoryTest, Feature, Product, UserStory
from testio_pipeline.simulator import SimResponse, faults
from testio_pipeline.simulator.shapes import VARIANTS
from testio_pipeline.testio.client import parse_records
from testio_pipeline.warehouse import Warehouse

from .conftest import make_simulator
from .test_assets import ENTITY_TABLES, truth_ids
from .test_refresh_cycle import cycle

SHARE = 0.4


def shaped(**overrides):
    overrides.setdefault("shape_variants", SHARE)
    return make_simulator("tiny", **overrides)


def get(sim, path, key=None, **params):
    response = sim.handle("GET", path, {k: str(v) for k, v in params.items()}, {"authorization": f"Token {sim.config.token}"})
    assert response.status == 200, response.body
    body = response.json()
    return body if key is None else body[key]


def served(sim) -> dict[str, list[dict]]:
    """Every record as the API sends it, by entity (each product read once)."""
    out: dict[str, list[dict]] = {"products": get(sim, "products", "products")}
    for product in sim.truth_products():
        pid = product["id"]
        if product["sections"]:
            sections = [s["id"] for s in product["sections"]]
            out.setdefault("features", []).extend(
                f for sid in sections for f in get(sim, f"products/{pid}/sections/{sid}/features", "features")
            )
            out.setdefault("user_stories", []).extend(
                s for sid in sections for s in get(sim, f"products/{pid}/user_stories", "user_stories", section_id=sid)
            )
        else:
            out.setdefault("features", []).extend(get(sim, f"products/{pid}/features", "features"))
            out.setdefault("user_stories", []).extend(get(sim, f"products/{pid}/user_stories", "user_stories"))
        out.setdefault("tests", []).extend(
            get(sim, f"products/{pid}/exploratory_tests", "exploratory_tests", page=1, per_page=1000)
        )
        out.setdefault("bugs", []).extend(get(sim, "bugs", "bugs", filter_product_ids=pid))
    return out


def truth(sim) -> dict[str, list[dict]]:
    pids = [p["id"] for p in sim.truth_products()]
    return {
        "products": sim.truth_products(),
        "features": [f for pid in pids for f in sim.truth_features(pid)],
        "user_stories": [s for pid in pids for s in sim.truth_user_stories(pid)],
        "tests": [t for pid in pids for t in sim.truth_tests(pid)],
        "bugs": [b for pid in pids for b in sim.truth_bugs(pid)],
    }


MODELS = {"products": Product, "features": Feature, "user_stories": UserStory, "tests": ExploratoryTest, "bugs": Bug}


def typed(entity: str, records: list[dict]) -> dict[int, dict]:
    """Records typed as the client types them (product_id given where the request implies it)."""
    context = {} if entity in ("products", "tests", "bugs") else {"product_id": 0}
    parsed = parse_records(MODELS[entity], records, entity=entity, **context)
    assert not parsed.rejected, [(r.record_id, r.reason) for r in parsed.rejected[:3]]
    return {r.id: r.model_dump(exclude={"raw_json"}) for r in parsed.records}


# --- the simulator ---------------------------------------------------------------------------


def test_a_share_of_records_reaches_every_variant_chosen_by_the_seed():
    sim = shaped(products=6, tests_per_product=30)
    records = truth(sim)
    reached: Counter = Counter()
    shaped_records = total = 0
    for entity, items in records.items():
        for item in items:
            chosen = sim.shapes.chosen(entity, item)
            total += 1
            shaped_records += bool(chosen)
            reached.update((entity, v.name) for v in chosen)
    every = {(entity, v.name) for entity, variants in VARIANTS.items() for v in variants}
    assert every <= set(reached), f"never sent: {sorted(every - set(reached))}"
    assert SHARE - 0.08 < shaped_records / total < SHARE + 0.08, (shaped_records, total)
    # The same seed picks the same records; another seed others; share 0 none.
    again = shaped(products=6, tests_per_product=30)
    assert [again.shapes.chosen("bugs", b) for b in records["bugs"]] == [sim.shapes.chosen("bugs", b) for b in records["bugs"]]
    other = shaped(products=6, tests_per_product=30, seed=7)
    assert [bool(other.shapes.chosen("bugs", b)) for b in records["bugs"]] != [
        bool(sim.shapes.chosen("bugs", b)) for b in records["bugs"]
    ]
    plain = make_simulator("tiny")
    as_sent, as_truth = served(plain), truth(plain)
    for entity in MODELS:
        assert {r["id"]: r for r in as_sent[entity]} == {r["id"]: r for r in as_truth[entity]}, entity


def test_the_served_records_really_come_in_the_other_shapes():
    sim = shaped(products=6, tests_per_product=30)
    sent = served(sim)
    bugs, tests = sent["bugs"], sent["tests"]

    def count(items, predicate):
        return sum(1 for item in items if predicate(item))

    assert count(bugs, lambda b: isinstance(b["steps"], str) and "\n" in b["steps"])
    assert count(bugs, lambda b: isinstance(b["steps"], str) and "\r\n\r\n" in b["steps"])
    assert count(bugs, lambda b: not {"status", "auto_accepted", "reported_at"} & b.keys())
    assert count(bugs, lambda b: isinstance(b["id"], str) and isinstance(b["test"]["id"], str))
    assert count(bugs, lambda b: b.get("known", False) is None)
    assert count(bugs, lambda b: b["exported_at"] == "")
    assert count(bugs, lambda b: b["feature"] is None and b["test_feature"] is None)
    assert count(bugs, lambda b: b["devices"][0].get("vendor", 1) is None)
    assert count(tests, lambda t: "title" not in t and "goal" not in t and "test_title" in t)
    assert count(tests, lambda t: "test_title" not in t and "goal_text" not in t and "title" in t)
    assert count(tests, lambda t: isinstance(t.get("title", t.get("test_title")), int))
    assert count(tests, lambda t: isinstance(t["id"], str) and isinstance(t["product"]["id"], str))
    assert count(tests, lambda t: t["test_environment"] is None)
    assert count(tests, lambda t: any(f["enable_content"] is None for f in t["features"]))
    assert count(tests, lambda t: t["enable_low"] is None)
    assert count(sent["products"], lambda p: isinstance(p["id"], str))
    assert count(sent["products"], lambda p: p["sections"] is None)
    assert count(sent["features"], lambda f: isinstance(f["id"], str))
    assert count(sent["user_stories"], lambda s: isinstance(s["id"], str))


def test_a_record_has_the_same_shape_on_every_endpoint_and_at_every_moment():
    sim = shaped(tests_per_product=30)
    pid = sim.truth_products()[0]["id"]
    listed = get(sim, f"products/{pid}/exploratory_tests", "exploratory_tests", page=1, per_page=1000)
    for item in listed[:12]:
        assert get(sim, f"exploratory_tests/{int(item['id'])}", "exploratory_test") == item
    by_product = sorted(get(sim, "bugs", "bugs", filter_product_ids=pid), key=lambda b: int(b["id"]))
    test_ids = sorted({int(b["test"]["id"]) for b in by_product})
    by_tests = sorted(
        get(sim, "bugs", "bugs", filter_test_cycle_ids=",".join(map(str, test_ids))), key=lambda b: int(b["id"])
    )
    assert by_tests == by_product
    stories = {int(s["id"]): s for s in served(sim)["user_stories"]}
    for story_id in list(stories)[:8]:
        assert get(sim, f"user_stories/{story_id}") == stories[story_id]
    products = get(sim, "products", "products")
    assert [get(sim, f"products/{int(p['id'])}", "product") for p in products] == products
    # Shapes do not change with time: a bug sent in a shape keeps it.
    shaped_now = {b["id"] for b in by_product if sim.shapes.chosen("bugs", {**b, "id": int(b["id"])})}
    sim.clock.advance(timedelta(days=2).total_seconds())
    later = {int(b["id"]): b for b in get(sim, "bugs", "bugs", filter_product_ids=pid)}
    assert all(type(later[int(i)]["id"]) is type(i) for i in shaped_now if int(i) in later)


def test_the_served_records_type_to_exactly_the_truth():
    sim = shaped(products=4, tests_per_product=30)
    sent, expected = served(sim), truth(sim)
    for entity in MODELS:
        assert typed(entity, sent[entity]) == typed(entity, expected[entity]), entity


# --- a real sync -----------------------------------------------------------------------------


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def stored(warehouse, table: str, columns: str, key: str = "id") -> dict:
    where = "WHERE deleted_at IS NULL" if table != "test_features" else ""
    frame = warehouse.query(f"SELECT {key}, {columns} FROM {table} {where}")
    return {_plain(row[0]): tuple(_plain(v) for v in row[1:]) for row in frame.itertuples(index=False)}


def _epoch(moment):
    return None if moment is None else moment.timestamp()


def expected_rows(sim) -> dict[str, dict]:
    """What a correct mirror holds, from the truth typed by the models."""
    records = truth(sim)
    tests = [ExploratoryTest.from_api(t) for t in records["tests"]]
    bugs = [Bug.from_api(b) for b in records["bugs"]]
    product_of_test = {t.id: t.product_id for t in tests}
    return {
        "products": {p["id"]: (p["name"], p["default_section_id"]) for p in records["products"]},
        "tests": {
            t.id: (
                t.product_id, t.title, t.status, t.goal, t.instructions, t.out_of_scope, t.enable_low,
                t.section_id, t.test_environment.id if t.test_environment else None, _epoch(t.end_at),
            )
            for t in tests
        },
        "test_features": {
            (f.id, t.id): (f.feature_id, f.enable_default, f.enable_content, f.enable_visual) for t in tests for f in t.features
        },
        "bugs": {
            b.id: (
                product_of_test[b.test_id], b.test_id, b.status, b.auto_accepted, b.known, b.steps,
                _epoch(b.reported_at), _epoch(b.exported_at), b.feature_id, b.test_feature_id, b.author_name,
            )
            for b in bugs
        },
    }


def assert_mirror_is_the_truth(sim, warehouse):
    truth = truth_ids(sim)
    for table in ENTITY_TABLES:
        assert warehouse.ids(table) == truth[table], table
    expected = expected_rows(sim)
    assert stored(warehouse, "products", "name, default_section_id") == expected["products"]
    assert stored(
        warehouse,
        "tests",
        "product_id, title, status, goal, instructions, out_of_scope, enable_low, section_id, "
        "test_environment_id, epoch(end_at)",
    ) == expected["tests"]
    tf = warehouse.query(
        "SELECT id, test_id, feature_id, enable_default, enable_content, enable_visual FROM test_features"
    )
    assert {
        (_plain(r[0]), _plain(r[1])): tuple(_plain(v) for v in r[2:]) for r in tf.itertuples(index=False)
    } == expected["test_features"]
    assert stored(
        warehouse,
        "bugs",
        "product_id, test_id, status, auto_accepted, known, steps, epoch(reported_at), epoch(exported_at), "
        "feature_id, test_feature_id, author_name",
    ) == expected["bugs"]


def test_a_sync_of_a_world_sending_every_variant_ends_equal_to_its_truth_with_nothing_rejected(tmp_path):
    sim = shaped(tests_per_product=40)
    warehouse = Warehouse(tmp_path / "t.duckdb")
    results = cycle(sim, warehouse, "full")
    assert warehouse.query("SELECT count(*) AS n FROM rejected_records").n[0] == 0
    assert all(not r.product_errors for r in results.values()), {e: r.product_errors for e, r in results.items()}
    assert_mirror_is_the_truth(sim, warehouse)
    report = verify.verify(tmp_path / "t.duckdb", sim, verify.snapshot(sim, sim.clock.now()))
    assert report.ok, report.problems
    # The shapes are stable: reading the same world again changes nothing.
    again = cycle(sim, warehouse, "full")
    for result in again.values():
        assert result.write.inserted == result.write.updated == result.write.marked_deleted == 0, result.entity
    # Time passes: new tests and bugs, status moves; incremental then full stay equal to the truth.
    sim.clock.advance(timedelta(days=3).total_seconds())
    cycle(sim, warehouse, "incremental")
    cycle(sim, warehouse, "full")
    assert warehouse.query("SELECT count(*) AS n FROM rejected_records").n[0] == 0
    assert_mirror_is_the_truth(sim, warehouse)
    report = verify.verify(tmp_path / "t.duckdb", sim, verify.snapshot(sim, sim.clock.now()))
    assert report.ok, report.problems


def test_a_malformed_record_among_the_variants_is_rejected_naming_the_field_and_its_page_is_stored(tmp_path):
    sim = shaped(tests_per_product=40)
    pid = sim.truth_products()[0]["id"]
    bugs = sim.truth_bugs(pid)
    tests = [t for t in sim.truth_tests(pid) if t["id"] not in {b["test"]["id"] for b in bugs}]
    bad_id, bad_date, no_test = (b["id"] for b in bugs[:3])
    bad_test = tests[0]["id"]  # a test without bugs: nothing else hangs off it
    sim.add_fault(faults.corrupt_records(sim, "bugs", {
        bad_id: faults.set_field("id", f"B-{bad_id}"),
        bad_date: faults.set_field("reported_at", "next tuesday"),
        no_test: faults.drop_field("test"),
    }))
    sim.add_fault(faults.corrupt_records(sim, "exploratory_tests", {bad_test: faults.set_field("end_at", "soon")}))
    warehouse = Warehouse(tmp_path / "t.duckdb")
    cycle(sim, warehouse, "full")
    rejected = warehouse.query("SELECT entity, record_id, reason FROM rejected_records ORDER BY ALL")
    reasons = {(r.entity, r.record_id): r.reason for r in rejected.itertuples()}
    assert set(reasons) == {
        ("bugs", f"B-{bad_id}"), ("bugs", str(bad_date)), ("bugs", str(no_test)), ("tests", str(bad_test))
    }
    assert reasons[("bugs", f"B-{bad_id}")].startswith("id: ")
    assert reasons[("bugs", str(bad_date))].startswith("reported_at: ")
    assert reasons[("bugs", str(no_test))].startswith("test.id: ")
    assert reasons[("tests", str(bad_test))].startswith("end_at: ")
    # Everything else, the rest of those pages included, is stored.
    all_tests = {t["id"] for p in sim.truth_products() for t in sim.truth_tests(p["id"])}
    all_bugs = {b["id"] for p in sim.truth_products() for b in sim.truth_bugs(p["id"])}
    assert warehouse.ids("tests") == all_tests - {bad_test}
    assert warehouse.ids("bugs") == all_bugs - {bad_id, bad_date, no_test}


# --- raw ids before typing: list positions and known tests -----------------------------------


def test_a_poison_position_next_to_a_test_sent_with_a_string_id_still_names_it(tmp_path):
    sim = shaped(tests_per_product=60)
    pid = sim.truth_products()[0]["id"]
    listed = sim.truth_tests(pid)
    sent_as_string = {
        i for i, t in enumerate(listed) if any(v.name == "ids_as_strings" for v in sim.shapes.chosen("tests", t))
    }
    before = next(i for i in sorted(sent_as_string) if i + 2 < len(listed))
    sim.add_fault(faults.poison_offsets(sim, pid, [before + 1]))
    warehouse = Warehouse(tmp_path / "t.duckdb")
    cycle(sim, warehouse, "full")
    problems = warehouse.query("SELECT range_start, neighbour_ids FROM problematic_records WHERE product_id = ?", [pid])
    assert list(problems.range_start) == [before + 1]
    assert list(problems.neighbour_ids[0]) == [listed[before]["id"], listed[before + 2]["id"]]


def test_incremental_discovery_knows_tests_whatever_the_type_of_their_ids(tmp_path):
    sim = make_simulator("tiny", tests_per_product=60)
    warehouse = Warehouse(tmp_path / "t.duckdb")
    cycle(sim, warehouse, "full")
    log = faults.RequestLog()
    sim.add_fault(log)

    def string_ids(request):  # every test on the list with its id as a numeric string
        if request.endpoint != "exploratory_tests":
            return None
        normal = sim.dispatch(request)
        tests = [{**t, "id": str(t["id"])} for t in normal.body["exploratory_tests"]]
        return SimResponse(200, dict(normal.headers), {"exploratory_tests": tests})

    sim.add_fault(string_ids)
    results = cycle(sim, warehouse, "incremental")
    assert len(log.of("exploratory_tests")) == len(sim.truth_products()), "one page per product: known tests found"
    assert all(not r.product_errors for r in results.values())
    assert warehouse.ids("tests") == truth_ids(sim)["tests"]
