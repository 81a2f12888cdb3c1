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
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from testio_pipeline.defs.testio.assets import STEP_NAME as TESTIO_STEP

from .conftest import REPO, dagster_env
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
SERVER_START_TIMEOUT = 180  # seconds until the UI answers with the code location loaded
# Browser preferences a first-time visitor would click through: no newsletter pop-up,
# a top-down graph (which fits on one screen), and the freshness row on each asset node.
BROWSER_PREFS = """
localStorage.setItem('communityNux', '"1"');
localStorage.setItem('asset-graph-direction', '"vertical"');
localStorage.setItem('asset-node-facets', JSON.stringify(['freshness', 'status', 'automation', 'kind-tag', 'latest-event']));
"""

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dagster_ui")]


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


def _wait_for_ui(base: str, proc: subprocess.Popen, log: Path) -> None:
    """Until the webserver answers and the code location's nine assets are loaded."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    last_error: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dg dev exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            data = _graphql(base, "{ assetNodes { assetKey { path } } }")
            keys = {node["assetKey"]["path"][-1] for node in data.get("data", {}).get("assetNodes", [])}
            if set(ENTITY_ASSETS + VIEW_ASSETS) <= keys:
                return
            last_error = f"assets so far: {sorted(keys)}"
        except OSError as exc:  # connection refused / reset while starting
            last_error = exc
        time.sleep(1)
    pytest.fail(f"the UI did not come up within {SERVER_START_TIMEOUT}s ({last_error}):\n{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop `dg dev` and everything it started: they share its process group."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    # The webserver, daemon and code server may outlive their parent; end the whole group.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=15)


def _expect_after_reloads(page, locator, what: str, attempts: int = 6) -> None:
    """Visible within a few page loads (the freshness daemon judges every few seconds)."""
    from playwright.sync_api import expect  # its failures are AssertionErrors

    for attempt in range(attempts):
        try:
            expect(locator.first).to_be_visible(timeout=10_000)
            return
        except AssertionError:
            if attempt == attempts - 1:
                raise AssertionError(f"not shown after {attempts} page loads: {what}") from None
            page.reload()


def _materialize_everything(env: dict[str, str]) -> None:
    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run(
        [str(dagster), "asset", "materialize", "--select", "*", "-m", "testio_pipeline.definitions"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
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
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(viewport={"width": 1920, "height": 1200})
                context.add_init_script(BROWSER_PREFS)
                page = context.new_page()
                page.set_default_timeout(60_000)

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
                # The refresh, views and report sensors are switched on (the nightly schedule is off by default).
                expect(page.locator("input[type=checkbox]:checked")).to_have_count(3)
                page.screenshot(path=str(SHOTS / "ui_automation.png"))

                # 3. Freshness: each entity asset's page reports its policy as passing.
                for name in ENTITY_ASSETS:
                    page.goto(f"{base}/assets/{name}")
                    expect(page.get_by_text("Freshness policy").first).to_be_visible()
                    _expect_after_reloads(page, page.get_by_text("Passing", exact=True), f"{name}: freshness passing")
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
                browser.close()
    finally:
        _stop(proc)
