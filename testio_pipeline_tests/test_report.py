"""The product quality report: materialized in a refresh through Dagster, its numbers checked
against the simulator's truth, its automation, its HTML drawn by headless Chromium."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import datetime, timedelta

import dagster as dg
import duckdb
import pytest

from testio_pipeline import report
from testio_pipeline.defs.analytics.quality_report import SENSOR_NAME, quality_report
from testio_pipeline.defs.testio.assets import TESTIO_ASSETS
from testio_pipeline.warehouse import Warehouse

from .conftest import NOW, make_simulator, full_refresh_resources
from .test_search import _readable

DAYS = 30
START = NOW - timedelta(days=DAYS)
RUN_CONFIG = {"ops": {"quality_report": {"config": {"as_of": NOW.isoformat(), "days": DAYS}}}}


def _in_window(ts: str) -> bool:
    return START <= datetime.fromisoformat(ts) < NOW


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory):
    """(simulator, DuckDB path, instance) after a full refresh that built the report."""
    sim = make_simulator("tiny", bugs_per_test=6)
    db = tmp_path_factory.mktemp("report") / "testio.duckdb"
    resources = full_refresh_resources(sim, db)
    with dg.instance_for_test() as instance:
        result = dg.materialize([*TESTIO_ASSETS, quality_report], resources=resources, instance=instance, run_config=RUN_CONFIG)
        assert result.success
        yield sim, db, instance


def _truth_bugs(sim, product_id: int | None = None) -> list[dict]:
    return [
        b
        for p in sim.truth_products()
        if product_id in (None, p["id"])
        for b in sim.truth_bugs(p["id"])
        if _in_window(b["reported_at"])
    ]


def _rate(bugs: list[dict], status: str) -> float:
    decided = [b for b in bugs if _readable(b) != "open"]
    wanted = ("accepted", "auto-accepted") if status == "accepted" else ("rejected",)
    return round(sum(_readable(b) in wanted for b in decided) / len(decided), 4)


def test_the_report_materializes_in_a_refresh_with_markdown_and_an_html_file(refreshed):
    sim, db, instance = refreshed
    event = instance.get_latest_materialization_event(dg.AssetKey("quality_report"))
    meta = event.asset_materialization.metadata
    bugs = _truth_bugs(sim)
    assert len(bugs) >= 20, "the window should hold a fair share of the world's bugs"
    assert meta["bugs"].value == len(bugs)
    assert meta["acceptance_rate"].value == pytest.approx(_rate(bugs, "accepted"), abs=1e-3)
    assert meta["rejection_rate"].value == pytest.approx(_rate(bugs, "rejected"), abs=1e-3)
    markdown = meta["report"].value
    assert "## Product quality report" in markdown and "### Whole account" in markdown
    for product in sim.truth_products():
        if _truth_bugs(sim, product["id"]):
            assert product["name"] in markdown
    html_path = db.parent / "reports" / "quality_report.html"
    assert meta["html_path"].value == str(html_path) and html_path.is_file()
    text = html_path.read_text(encoding="utf-8")
    assert text.count("<svg") >= 5
    for fetching in ('src="', "<script", "<link", "url(http", 'href="http'):
        assert fetching not in text, f"the report must be self-contained: {fetching}"


def test_every_section_agrees_with_the_simulator(refreshed):
    sim, db, _ = refreshed
    built = report.build(Warehouse(db), days=DAYS, as_of=NOW, write_html=False)
    scopes = [(None, built.account), *((s.product_id, s) for s in built.products)]
    assert len(scopes) == 1 + len(sim.truth_products())
    for product_id, scope in scopes:
        bugs = _truth_bugs(sim, product_id)
        by_severity = scope.sections["bugs_by_severity"].set_index("severity")
        expected = Counter((b["severity"], _readable(b)) for b in bugs)
        got = Counter(
            {(sev, status): int(n) for sev, row in by_severity.iterrows() for status, n in row.items() if status != "bugs" and n}
        )
        assert got == expected, product_id
        weekly = scope.sections["weekly"]
        assert int(weekly.bugs.sum()) == len(bugs) and list(weekly.week) == sorted(weekly.week)
        testers = Counter(b["author"]["name"] for b in bugs)
        top = scope.sections["top_testers"]
        assert int(top.bugs.iloc[0]) == max(testers.values()) and testers[top.tester.iloc[0]] == int(top.bugs.iloc[0])
        critical = Counter(b["feature"]["id"] for b in bugs if b["severity"] == "critical" and b.get("feature"))
        features = scope.sections["critical_features"]
        assert len(features) == min(len(critical), 10)
        assert list(features.critical_bugs) == sorted(critical.values(), reverse=True)[: len(features)]
        tests = [
            t
            for p in sim.truth_products()
            if product_id in (None, p["id"])
            for t in sim.truth_tests(p["id"])
            if datetime.fromisoformat(t["start_at"]) < NOW and datetime.fromisoformat(t["end_at"]) >= START
        ]
        by_status = scope.sections["tests_by_status"].set_index("status")["tests"].to_dict()
        assert by_status == dict(Counter(t["status"] for t in tests)), product_id


def test_sections_over_missing_tables_say_so_instead_of_failing(refreshed, tmp_path):
    _, original, _ = refreshed
    db = tmp_path / "older.duckdb"
    shutil.copy(original, db)
    con = duckdb.connect(str(db))
    try:  # a file from before devices and rejection reasons were mirrored
        con.execute("DROP TABLE IF EXISTS bug_devices")
        if con.execute("SELECT count(*) FROM duckdb_columns() WHERE table_name = 'bugs' AND column_name = 'rejection_reason'").fetchone()[0]:
            con.execute("ALTER TABLE bugs DROP COLUMN rejection_reason")
    finally:
        con.close()
    built = report.build(Warehouse(db), days=DAYS, as_of=NOW)
    for name in ("rejection_reasons", "bugs_by_os", "bugs_by_browser"):
        assert built.account.sections[name] is None
    assert "Not available: needs the `bug_devices` table" in built.markdown()
    assert built.html().count("Not available") == 3 * (1 + len(built.products))
    with pytest.raises(ValueError, match="days"):
        report.build(Warehouse(db), days=0)


def test_the_report_follows_each_refresh_of_the_tables_it_reads(refreshed, tmp_path):
    sim, _, _ = refreshed
    from testio_pipeline.definitions import defs as code_location

    assert code_location.resolve_sensor_def(SENSOR_NAME).default_status == dg.DefaultSensorStatus.RUNNING
    node = code_location.resolve_asset_graph().get(dg.AssetKey("quality_report"))
    assert node.group_name == "analytics"
    assert sorted(k.to_user_string() for k in node.parent_keys) == ["bugs", "features", "products", "tests"]
    resources = full_refresh_resources(sim, tmp_path / "t.duckdb")
    defs = dg.Definitions(assets=[*TESTIO_ASSETS, quality_report], resources=resources)
    with dg.instance_for_test() as instance:
        dg.materialize([*TESTIO_ASSETS, quality_report], resources=resources, instance=instance, run_config=RUN_CONFIG)
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0
        dg.materialize(TESTIO_ASSETS, resources=resources, instance=instance, selection=["bugs"])
        second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert second.get_num_requested(dg.AssetKey("quality_report")) == 1


@pytest.mark.slow
def test_headless_chromium_draws_every_chart_of_the_html(refreshed):
    from playwright.sync_api import sync_playwright

    from .test_ui import CHROMIUM, CHROMIUM_ARGS, SHOTS

    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    _, db, _ = refreshed
    html_path = db.parent / "reports" / "quality_report.html"
    expected = html_path.read_text(encoding="utf-8").count('<figure class="chart"')
    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html_path.as_uri())
            charts = page.evaluate(
                """() => [...document.querySelectorAll('figure.chart')].map(f => {
                    const svg = f.querySelector('svg'); const box = svg ? svg.getBoundingClientRect() : null;
                    return {name: f.dataset.chart, width: box ? box.width : 0, height: box ? box.height : 0,
                            shapes: svg ? svg.querySelectorAll('path, use, rect').length : 0};
                })"""
            )
            page.screenshot(path=str(SHOTS / "quality_report.png"))
            page.locator("#account").scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "quality_report_full.png"), full_page=True)
        finally:
            browser.close()
    assert requests == [html_path.as_uri()], "the report loads nothing but itself"
    assert len(charts) == expected >= 5
    names = {c["name"] for c in charts}
    assert {"tests_by_status", "bugs_by_severity", "weekly", "critical_features"} <= names
    for chart in charts:
        assert chart["width"] > 200 and chart["height"] > 100 and chart["shapes"] >= 10, chart
