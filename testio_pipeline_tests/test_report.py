"""The product quality report: materialized in a refresh through Dagster, its numbers checked
against the simulator's truth, its automation, its HTML drawn by headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import duckdb
import pytest

from testio_pipeline import report
from testio_pipeline.component.analytics.quality_report import SENSOR_NAME, quality_report
from testio_pipeline.component.testio.assets import TESTIO_ASSETS
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


def _utc_week(ts: str) -> date:
    """The Monday (UTC) of the week ``ts`` falls in."""
    day = datetime.fromisoformat(ts).astimezone(timezone.utc).date()
    return day - timedelta(days=day.weekday())


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
        expected = Counter((b["severity"], _readable(b)) for b in bugs)
        got = Counter(
            {
                (row["severity"], status): n
                for row in scope.sections["bugs_by_severity"].records()
                for status, n in row.items()
                if status not in ("severity", "bugs") and n
            }
        )
        assert got == expected, product_id
        rates = scope.sections["rates"]
        assert rates.first("bugs") == len(bugs)
        assert scope.figure("rates", "acceptance_rate") == pytest.approx(_rate(bugs, "accepted"), abs=1e-3)
        weekly = scope.sections["weekly"]
        assert sum(weekly.column("bugs")) == len(bugs) and weekly.column("week") == sorted(weekly.column("week"))
        utc_weeks = Counter(_utc_week(b["reported_at"]) for b in bugs)
        assert dict(zip(weekly.column("week"), weekly.column("bugs"))) == utc_weeks, product_id
        testers = Counter(b["author"]["name"] for b in bugs)
        top = scope.sections["top_testers"]
        assert top.first("bugs") == max(testers.values()) and testers[top.first("tester")] == top.first("bugs")
        critical = Counter(b["feature"]["id"] for b in bugs if b["severity"] == "critical" and b.get("feature"))
        features = scope.sections["critical_features"]
        assert len(features) == min(len(critical), 10)
        assert features.column("critical_bugs") == sorted(critical.values(), reverse=True)[: len(features)]
        tests = [
            t
            for p in sim.truth_products()
            if product_id in (None, p["id"])
            for t in sim.truth_tests(p["id"])
            if datetime.fromisoformat(t["start_at"]) < NOW and datetime.fromisoformat(t["end_at"]) >= START
        ]
        by_status = scope.sections["tests_by_status"]
        assert dict(zip(by_status.column("status"), by_status.column("tests"))) == dict(Counter(t["status"] for t in tests)), product_id
    overview = built.overview()
    assert overview.column("product_id") == [s.product_id for s in built.products]
    assert sum(overview.column("bugs")) == len(_truth_bugs(sim))
    severity = built.account.sections["bugs_by_severity"]
    frame = severity.to_pandas()  # the analyst's way in
    assert list(frame.columns) == list(severity.columns) and int(frame.bugs.sum()) == len(_truth_bugs(sim))


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


def test_building_a_report_loads_neither_pandas_nor_a_plotting_library(refreshed, tmp_path):
    """Either import costs more than building the whole report (a report-only run has loaded neither)."""
    _, original, _ = refreshed
    db = tmp_path / "copy.duckdb"
    shutil.copy(original, db)
    code = (
        "import sys; from datetime import datetime; from testio_pipeline.report import build; "
        "from testio_pipeline.warehouse import Warehouse; "
        # the simulated world's clock, not today's: data simulated around NOW is gone from a
        # window ending on the real date once that is DAYS later
        f"built = build(Warehouse({str(db)!r}), days={DAYS}, as_of=datetime.fromisoformat({NOW.isoformat()!r})); "
        "assert built.html_path.is_file() and built.products; "
        "print(sorted(m for m in ('pandas', 'matplotlib') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["[]"]


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


# What the browser drew: per chart its size, its data marks (and how many have a drawn size),
# its texts that stick out of it, and the rows of its section's table; per table its width
# against its section's.
DRAWN_JS = """() => {
    const within = (a, b) => a.left >= b.left - 1 && a.right <= b.right + 1 && a.top >= b.top - 1 && a.bottom <= b.bottom + 1;
    const sized = m => m.tagName === 'path' ? m.getTotalLength() > 0
        : (r => r.width > 0 && r.height > 0)(m.getBoundingClientRect());
    const charts = [...document.querySelectorAll('figure.chart')].map(f => {
        const svg = f.querySelector('svg'); const box = svg.getBoundingClientRect();
        const marks = [...svg.querySelectorAll('.mark')]; const texts = [...svg.querySelectorAll('text')];
        return {name: f.dataset.chart, width: box.width, height: box.height,
                marks: marks.length, drawn: marks.filter(sized).length,
                rects: svg.querySelectorAll('rect.mark').length, circles: svg.querySelectorAll('circle.mark').length,
                rows: f.closest('.section').querySelectorAll('table tbody tr').length, texts: texts.length,
                outside: texts.filter(t => !within(t.getBoundingClientRect(), box)).map(t => t.textContent)};
    });
    const tables = [...document.querySelectorAll('.section table')].map(t => ({name: t.closest('.section').dataset.section,
        table: t.getBoundingClientRect().width, section: t.closest('.section').getBoundingClientRect().width}));
    return {charts, tables};
}"""


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
            drawn = page.evaluate(DRAWN_JS)
            page.screenshot(path=str(SHOTS / "quality_report.png"))
            page.locator("#account").scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "quality_report_full.png"), full_page=True)
        finally:
            browser.close()
    assert requests == [html_path.as_uri()], "the report loads nothing but itself"
    charts = drawn["charts"]
    assert len(charts) == expected >= 5
    names = {c["name"] for c in charts}
    assert {"tests_by_status", "bugs_by_severity", "weekly", "critical_features"} <= names
    for chart in charts:
        assert chart["width"] > 200 and chart["height"] > 100 and chart["texts"] >= 8, chart
        assert chart["marks"] >= 1 and chart["drawn"] == chart["marks"], f"a data mark without a size: {chart}"
        assert chart["outside"] == [], f"text drawn outside its chart: {chart}"
        if chart["name"] == "weekly":  # a bar per week, a dot per week and rate (when the week has decided bugs)
            assert chart["rects"] == chart["rows"] and 1 <= chart["circles"] <= 2 * chart["rows"], chart
        elif chart["name"] == "bugs_by_severity":  # a bar per severity, stacked by status
            assert chart["rects"] >= chart["rows"], chart
        else:  # a bar per row of the section's table
            assert chart["rects"] == chart["rows"], chart
    assert len(drawn["tables"]) > 9
    for table in drawn["tables"]:
        assert table["table"] <= table["section"] + 1, f"a table wider than its section is clipped: {table}"


def test_charts_are_well_formed_svg_with_escaped_text_and_a_mark_per_value():
    from xml.etree import ElementTree

    from testio_pipeline.report import charts

    ns = {"s": "http://www.w3.org/2000/svg"}
    hostile = '<b>&amp; "Pay" </svg>'
    long = "A feature whose title is far too long for the room left of the bars " * 2
    bars = ElementTree.fromstring(charts.barh([hostile, long, "zero"], [12, 3, 0], f"Title {hostile}", "critical bugs"))
    texts = [t.text for t in bars.iterfind(".//s:text", ns)]
    assert hostile in texts and f"Title {hostile}" in texts and "critical bugs" in texts
    assert bars.find("s:title", ns).text == f"Title {hostile}"
    shortened = next(t for t in texts if t.startswith("A feature"))
    assert shortened.endswith("…") and len(shortened) < len(long)
    assert long in [t.text for t in bars.iterfind(".//s:g/s:title", ns)], "a shortened label keeps its full text as tooltip"
    marks = bars.findall(".//s:rect[@class='mark']", ns)
    assert [m.find("s:title", ns).text for m in marks] == [f"{hostile}: 12", f"{long}: 3"]  # nothing drawn for 0
    assert float(marks[0].get("width")) == pytest.approx(4 * float(marks[1].get("width")), abs=0.5)  # 0.1 px rounding

    counts = [{"accepted": 3, "auto-accepted": 0, "rejected": 2, "open": 1}, {"open": 4}]
    stacked = ElementTree.fromstring(charts.stacked_status(["critical", "low"], counts, "Bugs"))
    segments = [m.find("s:title", ns).text for m in stacked.iterfind(".//s:rect[@class='mark']", ns)]
    assert segments == ["critical, accepted: 3", "critical, rejected: 2", "critical, open: 1", "low, open: 4"]

    weeks = [date(2026, 11, 2), date(2026, 11, 9), date(2026, 11, 16)]
    weekly = ElementTree.fromstring(charts.weekly_rates(weeks, [5, 3, 2], [0.5, None, 0.75], [0.5, None, 0.25], "Weekly"))
    assert len(weekly.findall(".//s:rect[@class='mark']", ns)) == 3
    assert len(weekly.findall(".//s:circle[@class='mark']", ns)) == 4, "a week without decided bugs has no dots"
    assert len(weekly.findall(".//s:path[@class='mark']", ns)) == 2
    single = ElementTree.fromstring(charts.weekly_rates(weeks[:1], [1], [1.0], [0.0], "One week"))
    assert single.findall(".//s:path", ns) == [] and len(single.findall(".//s:circle[@class='mark']", ns)) == 2
