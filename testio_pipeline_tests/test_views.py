"""Analyst views over a synced world, the documented warehouse, and readable metadata.

One small simulated world is synced through Dagster (the five entity assets and the four
view assets) into a real DuckDB file; the views are then checked against the base tables
and the simulator's truth, the data dictionary (docs/data-dictionary.md) against ``DESCRIBE`` and the
comments of every table and view, and each asset's latest materialization for its column
schema, preview and KPIs.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from testio_pipeline.cli import docs
from testio_pipeline.component.testio.assets import TESTIO_ASSETS
from testio_pipeline.metadata import markdown_table
from testio_pipeline.component.resources import CustomerApiResource, RefreshResource, WarehouseResource
from testio_pipeline.component.analytics.views import VIEW_ASSETS, view_deps
from testio_pipeline.warehouse import TABLES, Warehouse
from testio_pipeline.warehouse.views import VIEWS, create_views, describe_type

from .conftest import make_simulator

REPO = Path(__file__).resolve().parents[1]
ANALYTICS_DOC = REPO / "docs" / "analytics.md"
DICTIONARY_DOC = REPO / "docs" / "data-dictionary.md"
ENTITIES = ["products", "features", "user_stories", "tests", "bugs"]
READABLE = {"accepted", "auto-accepted", "rejected", "open"}


def _world():
    # Three products and more bugs than "tiny", so that last month holds critical bugs.
    return make_simulator("tiny", products=3, bugs_per_test=12)


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    """(simulator, DuckDB path, instance) after one full sync of all nine assets."""
    sim = _world()
    db = tmp_path_factory.mktemp("views") / "testio.duckdb"
    resources = {
        "testio_api": CustomerApiResource.for_simulator(sim),
        "warehouse": WarehouseResource(path=str(db)),
        "refresh": RefreshResource(mode="full"),
    }
    with dg.instance_for_test() as instance:
        result = dg.materialize([*TESTIO_ASSETS, *VIEW_ASSETS], resources=resources, instance=instance)
        assert result.success
        yield sim, db, instance


OCTOBER = (datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc))


def _utc(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(timezone.utc)


def _con(db: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    return con


def _one(con, sql: str, params=None):
    return con.execute(sql, params).fetchone()[0]


# --- the views ------------------------------------------------------------------------------


def test_every_live_bug_appears_once_in_bug_overview_and_deleted_ones_not(synced, tmp_path):
    sim, db, _ = synced
    truth = {b["id"] for p in sim.truth_products() for b in sim.truth_bugs(p["id"])}
    con = _con(db)
    try:
        ids = [r[0] for r in con.execute("SELECT bug_id FROM bug_overview").fetchall()]
    finally:
        con.close()
    assert len(ids) == len(set(ids)), "a bug appears twice in bug_overview"
    assert set(ids) == truth

    # A bug that vanished upstream keeps its row in `bugs` (deleted_at set) but leaves the view.
    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)
    con = duckdb.connect(str(copy))
    try:
        gone = sorted(truth)[3]
        con.execute("UPDATE bugs SET deleted_at = now() WHERE id = ?", [gone])
        assert _one(con, "SELECT count(*) FROM bug_overview WHERE bug_id = ?", [gone]) == 0
        assert _one(con, "SELECT count(*) FROM bug_overview") == len(truth) - 1
        assert _one(con, "SELECT count(*) FROM bugs") == len(truth)
        # ... and from every count built on it.
        assert _one(con, "SELECT sum(bugs) FROM product_summary") == len(truth) - 1
        assert _one(con, "SELECT sum(bugs) FROM test_overview") == len(truth) - 1
    finally:
        con.close()


def test_bug_status_reads_as_people_say_it(synced):
    sim, db, _ = synced
    expected = {}
    for p in sim.truth_products():
        for b in sim.truth_bugs(p["id"]):
            if b["status"] == "accepted":
                expected[b["id"]] = "auto-accepted" if b["auto_accepted"] else "accepted"
            else:
                expected[b["id"]] = {"forwarded": "open"}.get(b["status"], b["status"])
    con = _con(db)
    try:
        got = dict(con.execute("SELECT bug_id, status FROM bug_overview").fetchall())
        api = dict(con.execute("SELECT bug_id, api_status FROM bug_overview").fetchall())
    finally:
        con.close()
    assert got == expected
    assert set(got.values()) == READABLE, "the world has bugs in every readable status"
    assert {api[i] for i, s in got.items() if s == "open"} == {"forwarded"}


def test_names_are_joined_in_for_every_bug(synced):
    _, db, _ = synced
    con = _con(db)
    try:
        missing = con.execute(
            """SELECT count(*) FILTER (WHERE product_name IS NULL), count(*) FILTER (WHERE test_title IS NULL),
                      count(*) FILTER (WHERE feature_title IS NULL)
               FROM bug_overview"""
        ).fetchone()
        mismatched = _one(
            con,
            """SELECT count(*) FROM bug_overview o
               JOIN bugs b ON b.id = o.bug_id JOIN products p ON p.id = b.product_id
               JOIN tests t ON t.id = b.test_id
               WHERE o.product_name <> p.name OR o.test_title <> t.title
                  OR o.section_name IS DISTINCT FROM t.section_name OR o.severity <> b.severity""",
        )
        sectioned = _one(con, "SELECT count(*) FROM bug_overview WHERE section_name IS NOT NULL")
    finally:
        con.close()
    assert missing == (0, 0, 0)
    assert mismatched == 0
    assert sectioned > 0, "bugs of sectioned products carry their section"


def test_view_counts_agree_with_the_base_tables(synced):
    _, db, _ = synced
    con = _con(db)
    try:
        live = {t: _one(con, f"SELECT count(*) FROM {t} WHERE deleted_at IS NULL") for t in ENTITIES}
        assert _one(con, "SELECT count(*) FROM test_overview") == live["tests"]
        assert _one(con, "SELECT count(*) FROM feature_quality") == live["features"]
        assert _one(con, "SELECT count(*) FROM product_summary") == live["products"]
        for view in ("test_overview", "feature_quality", "product_summary"):
            assert _one(con, f"SELECT sum(bugs) FROM {view}") == live["bugs"], view
            # Severity and status counts each partition a row's bugs.
            parts = con.execute(
                f"""SELECT count(*) FROM {view}
                    WHERE bugs <> critical_bugs + high_bugs + low_bugs + visual_bugs + content_bugs + custom_bugs
                       OR bugs <> open_bugs + accepted_bugs + auto_accepted_bugs + rejected_bugs"""
            ).fetchone()[0]
            assert parts == 0, view
        summary = con.execute(
            "SELECT sum(features), sum(user_stories), sum(tests), sum(tests_running), sum(critical_bugs), sum(open_bugs) FROM product_summary"
        ).fetchone()
        base = con.execute(
            """SELECT (SELECT count(*) FROM features WHERE deleted_at IS NULL),
                      (SELECT count(*) FROM user_stories WHERE deleted_at IS NULL),
                      (SELECT count(*) FROM tests WHERE deleted_at IS NULL),
                      (SELECT count(*) FROM tests WHERE deleted_at IS NULL AND status = 'running'),
                      (SELECT count(*) FROM bugs WHERE deleted_at IS NULL AND severity = 'critical'),
                      (SELECT count(*) FROM bugs WHERE deleted_at IS NULL AND status = 'forwarded')"""
        ).fetchone()
        assert summary == base
        # Per test: bugs by test_id and features covered by test_features.
        wrong = _one(
            con,
            """SELECT count(*) FROM test_overview o
               WHERE o.bugs <> (SELECT count(*) FROM bugs b WHERE b.test_id = o.test_id AND b.deleted_at IS NULL)
                  OR o.features_covered <> (SELECT count(*) FROM test_features f WHERE f.test_id = o.test_id)""",
        )
        assert wrong == 0
        # The acceptance rate, recomputed by hand for each product.
        for pid, rate in con.execute("SELECT product_id, acceptance_rate FROM product_summary").fetchall():
            acc, rej = con.execute(
                "SELECT count(*) FILTER (WHERE status = 'accepted'), count(*) FILTER (WHERE status = 'rejected') "
                "FROM bugs WHERE product_id = ? AND deleted_at IS NULL",
                [pid],
            ).fetchone()
            assert rate == (round(acc / (acc + rej), 3) if acc + rej else None), pid
        # Per-product sync times come straight from products.
        times = _one(
            con,
            """SELECT count(*) FROM product_summary s JOIN products p ON p.id = s.product_id
               WHERE s.bugs_synced_at IS DISTINCT FROM p.bugs_synced_at
                  OR s.tests_synced_at IS DISTINCT FROM p.tests_synced_at""",
        )
        assert times == 0
        assert _one(con, "SELECT count(*) FROM product_summary WHERE bugs_synced_at IS NULL") == 0
    finally:
        con.close()


def test_the_documented_questions_run_and_last_months_critical_features_are_right(synced):
    sim, db, _ = synced
    section = ANALYTICS_DOC.read_text(encoding="utf-8").split("## Analyst views and example questions", 1)[1].split("\n## ", 1)[0]
    queries = re.findall(r"```sql\n(.*?)```", section, re.S)
    assert len(queries) >= 3
    con = _con(db)
    try:
        for sql in queries:
            con.execute(sql).fetchall()  # every example runs as written
        [critical] = [q for q in queries if "severity = 'critical'" in q]
        # "last month" as seen from mid-November 2026 (the simulated world's present) = October.
        fixed = critical.replace("current_date", "DATE '2026-11-15'")
        rows = con.execute(fixed).fetchall()
    finally:
        con.close()
    features = {f["id"]: (p["name"], f["title"]) for p in sim.truth_products() for f in sim.truth_features(p["id"])}
    counts = Counter(
        b["feature"]["id"]
        for p in sim.truth_products()
        for b in sim.truth_bugs(p["id"])
        if b["severity"] == "critical" and OCTOBER[0] <= _utc(b["reported_at"]) < OCTOBER[1]
    )
    expected = [(*features[fid], n) for fid, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]]
    assert len(expected) == 5 and expected[0][2] > 1, "the world has a top five worth asking about"
    assert rows == expected


def test_views_can_be_built_alone_on_a_fresh_file_and_rebuilt_with_their_comments(tmp_path):
    warehouse = Warehouse(tmp_path / "fresh.duckdb")
    # test_overview reads bug_overview, which does not exist yet: it is created too.
    assert create_views(warehouse, ["test_overview"]) == ["bug_overview", "test_overview"]
    assert create_views(warehouse, ["feature_quality"]) == ["feature_quality"]
    assert create_views(warehouse) == list(VIEWS)  # all, again: CREATE OR REPLACE
    con = _con(tmp_path / "fresh.duckdb")
    try:
        for view in VIEWS.values():
            assert _one(con, f"SELECT count(*) FROM {view.name}") == 0
            comment = _one(con, "SELECT comment FROM duckdb_views() WHERE view_name = ?", [view.name])
            assert comment == view.description
            missing = _one(
                con,
                "SELECT count(*) FROM duckdb_columns() WHERE table_name = ? AND (comment IS NULL OR comment = '')",
                [view.name],
            )
            assert missing == 0, f"{view.name}: a column lost its comment on replace"
    finally:
        con.close()


# --- the documented warehouse -----------------------------------------------------------------


def test_the_data_dictionary_doc_is_generated_and_current():
    text = DICTIONARY_DOC.read_text(encoding="utf-8")
    assert docs.regenerate(text) == text, "docs/data-dictionary.md is stale: run `python -m testio_pipeline.cli.docs`"
    assert docs.main(["--check", str(DICTIONARY_DOC)]) == 0
    assert docs.main(["--check"]) == 0, "the command's default file is docs/data-dictionary.md"


def test_the_data_dictionary_matches_describe_and_the_comments_of_every_table_and_view(synced):
    _, db, _ = synced
    documented = docs.parse_dictionary(DICTIONARY_DOC.read_text(encoding="utf-8"))
    con = _con(db)
    try:
        objects = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()}
        objects |= {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = 'main'").fetchall()}
        assert set(documented) == objects, "the dictionary lists exactly the tables and views in the file"
        assert objects == set(TABLES) | set(VIEWS)
        for name in sorted(objects):
            described = [(r[0], r[1]) for r in con.execute(f"DESCRIBE {name}").fetchall()]
            assert [(c, t) for c, t, _ in documented[name]] == described, name
            comments = dict(
                con.execute(
                    "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main'",
                    [name],
                ).fetchall()
            )
            for column, _, text in documented[name]:
                assert comments[column] == text, f"{name}.{column}: comment differs from the dictionary"
            own = _one(
                con,
                "SELECT comment FROM duckdb_tables() WHERE table_name = ? UNION ALL "
                "SELECT comment FROM duckdb_views() WHERE view_name = ?",
                [name, name],
            )
            assert own, f"{name} has no comment"
    finally:
        con.close()


def test_declared_types_are_spelled_as_describe_spells_them():
    assert describe_type("TIMESTAMPTZ") == "TIMESTAMP WITH TIME ZONE"
    assert describe_type("VARCHAR[]") == "VARCHAR[]"
    assert describe_type("BIGINT") == "BIGINT"


# --- metadata people can read ---------------------------------------------------------------


def _latest_metadata(instance, asset: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    assert event is not None, asset
    return event.asset_materialization.metadata


@pytest.mark.parametrize("asset", ENTITIES + list(VIEWS))
def test_each_materialization_carries_a_column_schema_a_preview_and_numeric_kpis(synced, asset):
    _, _, instance = synced
    meta = _latest_metadata(instance, asset)
    schema = meta["dagster/column_schema"].schema
    declared = VIEWS[asset].columns if asset in VIEWS else TABLES[asset].columns
    assert [(c.name, c.type) for c in schema.columns] == [(c.name, describe_type(c.type)) for c in declared]
    assert all(c.description for c in schema.columns)
    preview = meta["preview"]
    assert isinstance(preview, dg.MarkdownMetadataValue)
    lines = preview.value.splitlines()
    table_rows = [line for line in lines if line.startswith("| ") and not line.startswith("|---")]
    assert 2 <= len(table_rows) <= 6, "a header and up to five rows"
    numeric = {
        k: v.value for k, v in meta.items()
        if isinstance(v, (dg.IntMetadataValue, dg.FloatMetadataValue)) and k != "dagster/row_count"
    }
    assert len(numeric) >= 3, sorted(meta)


def test_kpis_say_what_the_tables_say(synced):
    _, db, instance = synced
    con = _con(db)
    try:
        open_bugs = _one(con, "SELECT count(*) FROM bugs WHERE status = 'forwarded' AND deleted_at IS NULL")
        running = _one(con, "SELECT count(*) FROM tests WHERE status = 'running' AND deleted_at IS NULL")
        decided = con.execute(
            "SELECT count(*) FILTER (WHERE status = 'accepted'), count(*) FILTER (WHERE status IN ('accepted', 'rejected')) FROM bugs WHERE deleted_at IS NULL"
        ).fetchone()
    finally:
        con.close()
    rate = round(decided[0] / decided[1], 3)
    assert _latest_metadata(instance, "bugs")["open_bugs"].value == open_bugs
    assert _latest_metadata(instance, "bugs")["acceptance_rate"].value == pytest.approx(rate)
    assert _latest_metadata(instance, "bug_overview")["open_bugs"].value == open_bugs
    assert _latest_metadata(instance, "tests")["tests_running"].value == running
    assert _latest_metadata(instance, "test_overview")["tests_running"].value == running
    assert _latest_metadata(instance, "product_summary")["acceptance_rate"].value == pytest.approx(rate)
    assert _latest_metadata(instance, "product_summary")["dagster/row_count"].value == 3


def test_markdown_preview_cells_are_short_single_line_and_escaped():
    md = markdown_table(
        ["a", "b", "c"],
        [["x|y", "line\nbreak " + "z" * 80, datetime(2026, 11, 2, 12, 30)], [None, ["p", "q"], 0.5]],
    )
    lines = md.splitlines()
    assert lines[0] == "| a | b | c |" and lines[1] == "|---|---|---|"
    assert "x\\|y" in lines[2] and "\n" not in lines[2] and "…" in lines[2]
    assert "2026-11-02 12:30" in lines[2]
    assert lines[3] == "|  | p, q | 0.5 |"


# --- the views in Dagster -------------------------------------------------------------------


def test_view_assets_are_wired_into_the_graph_without_a_ttl_of_their_own():
    from testio_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    for name, view in VIEWS.items():
        node = graph.get(dg.AssetKey(name))
        assert node.group_name == "analytics"
        assert {"duckdb", "sql"} <= set(node.kinds)
        assert defs.resolve_assets_def(name).op.pool == "testio_duckdb"
        assert node.freshness_policy is None  # as fresh as the tables under it
        assert node.automation_condition is not None
        assert sorted(p.to_user_string() for p in node.parent_keys) == sorted(view_deps(view))
    assert sorted(view_deps(VIEWS["bug_overview"])) == ["bugs", "features", "products", "tests"]
    assert "bug_overview" in view_deps(VIEWS["product_summary"])
    sensor = defs.resolve_sensor_def("testio_views_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_views_are_requested_again_after_the_tables_under_them_change(synced, tmp_path):
    """What testio_views_sensor does each tick: eager views follow a refresh of their tables."""
    sim, db, _ = synced
    resources = {
        "testio_api": CustomerApiResource.for_simulator(sim),
        "warehouse": WarehouseResource(path=str(tmp_path / "t.duckdb")),
        "refresh": RefreshResource(mode="full"),
    }
    defs = dg.Definitions(assets=[*TESTIO_ASSETS, *VIEW_ASSETS], resources=resources)
    with dg.instance_for_test() as instance:
        dg.materialize([*TESTIO_ASSETS, *VIEW_ASSETS], resources=resources, instance=instance)
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0, "everything was just materialized together"
        dg.materialize(TESTIO_ASSETS, resources=resources, instance=instance, selection=["bugs"])
        second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        requested = {name for name in VIEWS if second.get_num_requested(dg.AssetKey(name))}
        # In one run: bug_overview first, the rest after it; test_lifecycle reads nothing bugs write.
        assert requested == set(VIEWS) - {"test_lifecycle"}


def test_the_query_command_answers_from_the_views(synced, capsys):
    from testio_pipeline.cli import query

    _, db, _ = synced
    assert query.main(["--db", str(db), "SELECT count(*) AS live_bugs FROM bug_overview;"]) == 0
    out = capsys.readouterr().out
    con = _con(db)
    try:
        live = _one(con, "SELECT count(*) FROM bugs WHERE deleted_at IS NULL")
    finally:
        con.close()
    assert out.split() == ["live_bugs", str(live)]
    assert query.main(["--db", str(db), "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in [*VIEWS, *TABLES])
    assert query.main(["--db", str(db.parent / "missing.duckdb"), "--list"]) == 2
