"""The Dagster UI, checked as a person would: `dg dev` on 127.0.0.1 and headless Chromium.

The assets are materialized first with the documented CLI (`dagster asset materialize`)
against the same temporary DAGSTER_HOME and DuckDB file; then `dg dev` serves them and
the browser visits the asset graph, the refresh sensor, an entity asset and a view.
Screenshots land in `screenshots/` (git-ignored) for a human to look at.

Chromium is Debian's `chromium` package (`make browser` installs it); Playwright only
drives it, its own browser download is never used.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from testio_pipeline.component.testio.assets import STEP_NAME as TESTIO_STEP

from .conftest import REPO, dagster_env, stop_process_group
SHOTS = REPO / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ENTITY_ASSETS = ["products", "features", "user_stories", "tests", "bugs"]
VIEW_ASSETS = ["bug_overview", "test_overview", "feature_quality", "product_summary"]
REPORT_ASSET = "quality_report"
# A numeric KPI each entity asset's latest materialization carries (metadata.py).
ENTITY_KPIS = {
    "products": ["products_with_sections"],
    "features": ["features_without_user_stories"],
    "user_stories": ["user_stories_without_feature"],
    "tests": ["tests_running"],
    "bugs": ["open_bugs", "acceptance_rate"],
}
REFRESH_SENSOR = "testio_refresh_sensor"
LOCATION = "testio_pipeline"
SERVER_START_TIMEOUT = 300  # seconds until the UI answers with the code location loaded
# Seconds until the daemon `dg dev` started has ticked the sensor and judged freshness: a
# real process that must start on a machine that may be busy with other work.
DAEMON_TIMEOUT = 300
# Milliseconds a page element may take to show: the webserver and Chromium are real processes
# that answer and draw slowly when the machine is busy (Playwright's `expect` default is 5 s).
PAGE_TIMEOUT_MS = 180_000
# Browser preferences a first-time visitor would click through: no newsletter pop-up,
# a top-down graph (which fits on one screen), and the freshness row on each asset node.
BROWSER_PREFS = """
localStorage.setItem('communityNux', '"1"');
localStorage.setItem('asset-graph-direction', '"vertical"');
localStorage.setItem('asset-node-facets', JSON.stringify(['freshness', 'status', 'automation', 'kind-tag', 'latest-event']));
"""

pytestmark = [pytest.mark.slow, pytest.mark.code_server, pytest.mark.xdist_group("dagster_ui")]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path) -> dict[str, str]:
    return dagster_env(
        tmp_path,
        TESTIO_DUCKDB_PATH=str(tmp_path / "testio.duckdb"),
        TESTIO_SIMULATOR_PRESET="tiny",
        # Judge freshness every few seconds instead of every 30 s, so the UI reports it soon.
        FRESHNESS_DAEMON_INTERVAL_SECONDS="3",
    )


def _graphql(base: str, query: str) -> dict:
    request = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _wait_until(base: str, query: str, condition, what: str, timeout: float, proc: subprocess.Popen, log: Path):
    """Poll the webserver's GraphQL API with ``query`` until ``condition(data)`` holds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dg dev exited with {proc.returncode} while waiting for {what}:\n{log.read_text()[-4000:]}")
        try:
            last = _graphql(base, query).get("data") or {}
            if condition(last):
                return
        except OSError as exc:  # connection refused / reset while starting
            last = exc
        time.sleep(1)
    pytest.fail(f"no {what} within {timeout}s (last answer: {last}):\n{log.read_text()[-4000:]}")


def _asset_names(data: dict) -> set[str]:
    return {node["assetKey"]["path"][-1] for node in data.get("assetNodes", [])}


def _wait_for_ui(base: str, proc: subprocess.Popen, log: Path) -> None:
    """Until the webserver answers and the code location's nine assets are loaded."""
    _wait_until(
        base, "{ assetNodes { assetKey { path } } }",
        lambda data: set(ENTITY_ASSETS + VIEW_ASSETS) <= _asset_names(data),
        "UI with the code location loaded", SERVER_START_TIMEOUT, proc, log,
    )


SENSOR_TICKS = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
    sensors { name sensorState { ticks(limit: 1) { status skipReason } } } } } } }"""
FRESHNESS = "{ assetNodes { assetKey { path } freshnessStatusInfo { freshnessStatus } } }"


def _sensor_skipped_a_tick(data: dict) -> bool:
    """The refresh sensor's latest tick is a skip with its reason (what the page hovers over)."""
    for repository in data.get("repositoriesOrError", {}).get("nodes", []):
        for sensor in repository["sensors"]:
            if sensor["name"] == REFRESH_SENSOR:
                ticks = sensor["sensorState"]["ticks"]
                return bool(ticks) and ticks[0]["status"] == "SKIPPED" and bool(ticks[0]["skipReason"])
    return False


def _entities_fresh(data: dict) -> bool:
    """Every entity asset's freshness policy judged passing (HEALTHY; the UI says "Passing")."""
    status = {
        node["assetKey"]["path"][-1]: (node.get("freshnessStatusInfo") or {}).get("freshnessStatus")
        for node in data.get("assetNodes", [])
    }
    return all(status.get(name) == "HEALTHY" for name in ENTITY_ASSETS)


def _stop(proc: subprocess.Popen) -> None:
    """Stop `dg dev` and everything it started: they share its process group."""
    stop_process_group(proc, grace_s=15)


def _materialize_everything(env: dict[str, str]) -> None:
    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run(
        [str(dagster), "asset", "materialize", "--select", "*", "-m", "testio_pipeline.definitions"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    # One step for the five entities (their checks inside), one for the views, one for the
    # report; read from the run's event log, not the CLI's interleaved console output.
    import dagster as dg

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [run] = instance.get_runs(limit=1)
        succeeded = {e.step_key for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)}
    assert succeeded == {TESTIO_STEP, "analytics_views", REPORT_ASSET}, sorted(succeeded)


def test_the_dagster_ui_shows_assets_views_a_running_sensor_and_freshness(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    env = _env(tmp_path)
    _materialize_everything(env)

    SHOTS.mkdir(exist_ok=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "dg_dev.log"
    dg = Path(sys.executable).parent / "dg"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(dg), "dev", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: one signal reaches every child
        )
    try:
        _wait_for_ui(base, proc, log)
        # The pages below show what the daemon has done: wait for it, not for the clock.
        _wait_until(base, SENSOR_TICKS, _sensor_skipped_a_tick, "skipped refresh-sensor tick", DAEMON_TIMEOUT, proc, log)
        _wait_until(base, FRESHNESS, _entities_fresh, "passing freshness on every entity", DAEMON_TIMEOUT, proc, log)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(viewport={"width": 1920, "height": 1200})
                context.add_init_script(BROWSER_PREFS)
                page = context.new_page()
                page.set_default_timeout(PAGE_TIMEOUT_MS)
                expect.set_options(timeout=PAGE_TIMEOUT_MS)

                # 1. The global asset graph, both groups expanded: five assets and four views.
                page.goto(f"{base}/asset-groups?expanded=global@global:testio,global@global:analytics")
                graph = page.locator("svg")
                for name in ENTITY_ASSETS + VIEW_ASSETS:
                    expect(graph.get_by_text(name, exact=True).first).to_be_visible()
                expect(graph.get_by_text("testio", exact=True).first).to_be_visible()
                expect(graph.get_by_text("analytics", exact=True).first).to_be_visible()
                page.wait_for_timeout(1000)  # let the edges settle for the picture
                page.screenshot(path=str(SHOTS / "ui_asset_graph.png"))

                # 2. The refresh sensor: running, with at least one evaluation.
                page.goto(f"{base}/locations/{LOCATION}/sensors/{REFRESH_SENSOR}")
                expect(page.get_by_text(REFRESH_SENSOR).first).to_be_visible()
                expect(page.get_by_text("Running", exact=True).first).to_be_visible()
                expect(page.locator("input[type=checkbox]:checked").first).to_be_attached()
                expect(page.get_by_text("Latest tick").first).to_be_visible()
                # Hovering the latest tick shows the sensor's own story: its skip reason names
                # the freshness of the assets and when the next cycle is due.
                tick = page.locator("td").get_by_text("0 runs requested").first
                expect(tick).to_be_visible()
                tick.hover()
                expect(page.get_by_text(re.compile(r"fresh.*next cycle due")).first).to_be_visible()
                page.screenshot(path=str(SHOTS / "ui_refresh_sensor.png"))

                # The automation overview lists the sensor as running too.
                page.goto(f"{base}/automation")
                expect(page.get_by_text(REFRESH_SENSOR).first).to_be_visible()
                # The refresh, views, report and alert sensors are switched on (the nightly schedule
                # is off by default).
                expect(page.get_by_text("testio_alert_sensor").first).to_be_visible()
                expect(page.locator("input[type=checkbox]:checked")).to_have_count(4)
                page.screenshot(path=str(SHOTS / "ui_automation.png"))

                # 3. Freshness: each entity asset's page reports its policy as passing.
                for name in ENTITY_ASSETS:
                    page.goto(f"{base}/assets/{name}")
                    expect(page.get_by_text("Freshness policy").first).to_be_visible()
                    expect(page.get_by_text("Passing", exact=True).first).to_be_visible()
                    # Readable metadata: the column schema and the Markdown preview.
                    expect(page.get_by_text("Columns").first).to_be_visible()
                    expect(page.get_by_text("preview", exact=True).first).to_be_visible()
                    for kpi in ENTITY_KPIS[name]:
                        expect(page.get_by_text(kpi, exact=True).first).to_be_visible()
                page.screenshot(path=str(SHOTS / "ui_asset_bugs.png"))
                page.get_by_text("Metadata", exact=True).first.scroll_into_view_if_needed()
                page.screenshot(path=str(SHOTS / "ui_asset_bugs_metadata.png"))

                # 4. A view's page: column schema, preview and KPIs.
                page.goto(f"{base}/assets/feature_quality")
                expect(page.get_by_text("Columns").first).to_be_visible()
                for key in ("preview", "features_with_critical_bugs", "avg_acceptance_rate"):
                    expect(page.get_by_text(key, exact=True).first).to_be_visible()
                expect(page.get_by_text("acceptance_rate", exact=True).first).to_be_visible()  # a schema column
                page.get_by_text("Metadata", exact=True).first.scroll_into_view_if_needed()
                page.screenshot(path=str(SHOTS / "ui_view_feature_quality.png"))

                # 5. The quality report's page: its Markdown, the HTML file's path and its KPIs.
                page.goto(f"{base}/assets/{REPORT_ASSET}")
                for key in ("report", "html_path", "bugs", "products_reported"):
                    expect(page.get_by_text(key, exact=True).first).to_be_visible()
                page.get_by_text("Metadata", exact=True).first.scroll_into_view_if_needed()
                page.screenshot(path=str(SHOTS / "ui_quality_report.png"))
            finally:
                expect.set_options(timeout=None)  # back to Playwright's default for other tests
                browser.close()
    finally:
        _stop(proc)
