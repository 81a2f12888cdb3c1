"""Issue 22, item 5: one page comparing customers, computed in the cross-customer session; each
customer's row equals its own quality report, two simulator customers with different worlds."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree

import dagster as dg
import duckdb
import pytest

from testio_pipeline import report
from testio_pipeline.cli import report as report_cli
from testio_pipeline.component.testio.assets import TESTIO_ASSETS
from testio_pipeline.report.compare import compare
from testio_pipeline.warehouse import Warehouse
from testio_pipeline.warehouse.views import create_views

from .conftest import NOW, full_refresh_resources, make_simulator
from .test_report import DAYS, DRAWN_JS, _truth_bugs
from .test_search import _readable

WORLDS = {"acme": {"seed": 42, "bugs_per_test": 6}, "globex": {"seed": 7, "bugs_per_test": 3}}


@pytest.fixture(scope="module")
def two_customers(tmp_path_factory):
    """({name: simulator}, {name: warehouse file}): each a full sync of its own world, with views."""
    folder = tmp_path_factory.mktemp("compare")
    sims = {name: make_simulator("tiny", **world) for name, world in WORLDS.items()}
    files = {}
    for name, sim in sims.items():
        files[name] = folder / f"{name}.duckdb"
        with dg.instance_for_test() as instance:
            assert dg.materialize(TESTIO_ASSETS, resources=full_refresh_resources(sim, files[name]), instance=instance).success
        create_views(Warehouse(files[name]))
    return sims, files


@pytest.fixture(scope="module")
def compared(two_customers, tmp_path_factory):
    _, files = two_customers
    return compare(files, days=DAYS, as_of=NOW, out=tmp_path_factory.mktemp("page") / "comparison.html")


def test_each_customers_row_equals_its_own_report_and_its_worlds_truth(two_customers, compared):
    sims, files = two_customers
    rows = {c.customer: c for c in compared.customers}
    assert list(rows) == ["acme", "globex"]
    for name, file in files.items():
        mine = rows[name]
        own = report.build(Warehouse(file), days=DAYS, as_of=NOW, write_html=False)
        rates = own.account.sections["rates"].records()[0]
        assert (mine.bugs, mine.accepted, mine.rejected, mine.open) == (rates["bugs"], rates["accepted"], rates["rejected"], rates["open"])
        assert (mine.acceptance_rate, mine.rejection_rate) == (rates["acceptance_rate"], rates["rejection_rate"])
        assert mine.tests == sum(own.account.sections["tests_by_status"].column("tests"))
        severity = own.account.sections["bugs_by_severity"].records()
        assert mine.severities == {r["severity"]: r["bugs"] for r in severity}
        assert mine.statuses == {s: n for s in ("accepted", "auto-accepted", "rejected", "open") if (n := sum(r[s] for r in severity))}
        reasons = own.account.sections["rejection_reasons"].rows
        assert mine.rejection_reasons == [tuple(r) for r in reasons[:3]] and mine.rejection_reasons
        con = duckdb.connect(str(file), read_only=True)
        try:
            assert mine.last_success == con.execute("SELECT max(finished_at) FROM sync_events WHERE status = 'success'").fetchone()[0]
        finally:
            con.close()
        assert mine.last_status == "success"
        # and from the simulator's own truth, not the warehouse
        bugs = _truth_bugs(sims[name])
        assert mine.bugs == len(bugs) >= 10
        assert mine.severities == dict(Counter(b["severity"] for b in bugs))
        assert mine.statuses == dict(Counter(_readable(b) for b in bugs))
    assert rows["acme"].bugs != rows["globex"].bugs, "two different worlds, so crossed customers would show"


def test_the_page_is_one_self_contained_html_file_and_its_markdown(two_customers, compared):
    html = compared.html_path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.endswith("</body></html>")
    assert f"<h1>Customers compared, {compared.window.start:%Y-%m-%d} to {NOW:%Y-%m-%d}</h1>" in html
    for fetching in ('src="', "<script", "<link", "url(http", 'href="http'):
        assert fetching not in html, f"the page must be self-contained: {fetching}"
    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(svgs) == 2
    ns = {"s": "http://www.w3.org/2000/svg"}
    for svg in svgs:
        marks = ElementTree.fromstring(svg).findall(".//s:rect[@class='mark']", ns)
        assert marks and all(m.find("s:title", ns).text.split(":")[0].split(",")[0] in ("acme", "globex") for m in marks)
    for c in compared.customers:
        assert f"<td>{c.customer}</td><td class=\"n\">{c.tests}</td><td class=\"n\">{c.bugs}</td>" in html
    markdown = compared.html_path.with_suffix(".md").read_text(encoding="utf-8")
    assert markdown == compared.markdown()
    for c in compared.customers:
        assert f"| {c.customer} | {c.tests} | {c.bugs} | {c.accepted} | {c.rejected} | {c.open} |" in markdown


def test_the_cli_writes_the_page_for_the_customers_given(two_customers, tmp_path, capsys):
    _, files = two_customers
    out = tmp_path / "page" / "compare.html"
    args = [arg for name, file in files.items() for arg in ("--customer", f"{name}={file}")]
    assert report_cli.main(["--all-customers", *args, "--as-of", NOW.isoformat(), "--days", str(DAYS), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    page = compare(files, days=DAYS, as_of=NOW, out=None)
    assert printed.startswith(page.markdown().replace("\n\n", "\n\nHTML with charts: `%s`\n\n" % out, 1))
    assert out.is_file() and out.with_suffix(".md").is_file() and f"Written: {out}" in printed
    gone = ["--customer", f"initech={tmp_path / 'initech.duckdb'}"]
    assert report_cli.main(["--all-customers", *args, *gone]) == 2
    assert "no warehouse yet for initech" in capsys.readouterr().err


def test_each_customers_own_report_names_it(two_customers):
    _, files = two_customers
    for name, file in files.items():
        own = report.build(Warehouse(file), days=DAYS, as_of=NOW, file_name=f"{name}_quality_report.html", customer=name)
        title = f"Product quality report for {name}, "
        assert own.markdown().startswith(f"## {title}")
        html = own.html_path.read_text(encoding="utf-8")
        assert f"<title>{title}" in html and f"<h1>{title}" in html
        other = "globex" if name == "acme" else "acme"
        assert other not in html


@pytest.mark.slow
def test_headless_chromium_draws_the_comparison_page(compared):
    from playwright.sync_api import sync_playwright

    from .test_ui import CHROMIUM, CHROMIUM_ARGS, SHOTS

    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    page_path: Path = compared.html_path
    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1200})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.as_uri())
            drawn = page.evaluate(DRAWN_JS)
            page.screenshot(path=str(SHOTS / "customer_comparison.png"), full_page=True)
        finally:
            browser.close()
    assert requests == [page_path.as_uri()], "the page loads nothing but itself"
    charts = {c["name"]: c for c in drawn["charts"]}
    assert set(charts) == {"statuses", "critical"}
    for chart in charts.values():
        assert chart["width"] > 200 and chart["height"] > 80 and chart["texts"] >= 6, chart
        assert chart["marks"] >= 2 and chart["drawn"] == chart["marks"], f"a data mark without a size: {chart}"
        assert chart["outside"] == [], f"text drawn outside its chart: {chart}"
    assert charts["critical"]["rects"] == sum(1 for c in compared.customers if (c.severities or {}).get("critical"))
    assert charts["statuses"]["rects"] == sum(len(c.statuses or {}) for c in compared.customers)
    for table in drawn["tables"]:
        assert table["table"] <= table["section"] + 1, f"a table wider than its section is clipped: {table}"


def test_a_customer_not_synced_yet_has_a_row_of_zeros_and_no_sync(two_customers, tmp_path):
    _, files = two_customers
    new = tmp_path / "initech.duckdb"
    Warehouse(new).table_counts()  # the schema, no rows, no views: a first sync that failed
    page = compare({**files, "initech": new}, days=DAYS, as_of=NOW, out=None)
    initech = page.customers[-1]
    assert (initech.customer, initech.tests, initech.bugs, initech.acceptance_rate, initech.last_success) == ("initech", 0, 0, None, None)
    assert [c.bugs for c in page.customers[:2]] == [c.bugs for c in compare(files, days=DAYS, as_of=NOW, out=None).customers]
    assert "| initech | 0 | 0 | 0 | 0 | 0 |  |  | never | – |" in page.markdown()
