"""`testio_pipeline.TestIOMirror`: one customer per instance, named apart, its token only ever
named; the default instance keeps the names a deployment had before components."""

from __future__ import annotations

import socket
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._serdes import serialize_value

import testio_pipeline
from testio_pipeline.component.mirror import MirrorScaffolder, RequestLimits, TestIOMirror
from testio_pipeline.settings import SettingsError
from testio_pipeline.warehouse import Warehouse

ENTITIES = ["products", "features", "user_stories", "tests", "bugs"]
DEFAULT_YAML = Path(testio_pipeline.__file__).parent / "defs" / "testio" / "defs.yaml"


def build(*mirrors: TestIOMirror) -> dg.Definitions:
    context = dg.ComponentTree.for_test().load_context
    defs = dg.Definitions.merge(*(m.build_defs(context) for m in mirrors))
    dg.Definitions.validate_loadable(defs)
    return defs


def from_yaml(text: str) -> TestIOMirror:
    return TestIOMirror.resolve_from_dict(yaml.safe_load(text)["attributes"])


def test_the_type_is_exported_at_the_package_top_level():
    assert testio_pipeline.TestIOMirror is TestIOMirror
    assert "TestIOMirror" in dir(testio_pipeline)
    schema = TestIOMirror.get_model_cls().model_json_schema()["properties"]
    for attribute in ("name", "token", "base_url", "product_ids", "ttl_seconds", "sensor_interval_seconds",
                      "nightly_full_sync", "request_limits", "warehouse", "simulator_preset"):
        assert schema[attribute].get("description"), attribute


def test_two_instances_load_side_by_side_with_nothing_shared():
    defs = build(TestIOMirror(name="acme", warehouse="data/acme.duckdb"), TestIOMirror(name="globex", ttl_seconds=900))
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    for name in ENTITIES + ["bug_overview", "quality_report"]:
        assert {f"acme/{name}", f"globex/{name}"} <= keys
    assert not {k for k in keys if "/" not in k}
    sensors = {s.name for s in defs.sensors}
    assert {"acme_testio_refresh_sensor", "globex_testio_refresh_sensor"} <= sensors and len(sensors) == 8
    assert {"acme_testio_alert_sensor", "globex_testio_alert_sensor"} <= sensors
    assert {s.name for s in defs.schedules} == {"acme_testio_nightly_full_sync", "globex_testio_nightly_full_sync"}
    assert set(defs.resources) == {f"{c}_{r}" for c in ("acme", "globex") for r in ("testio_api", "warehouse", "refresh")}
    graph = defs.resolve_asset_graph()
    acme_bugs, globex_bugs = graph.get(dg.AssetKey(["acme", "bugs"])), graph.get(dg.AssetKey(["globex", "bugs"]))
    assert acme_bugs.freshness_policy.fail_window.to_timedelta().total_seconds() == 3600
    assert globex_bugs.freshness_policy.fail_window.to_timedelta().total_seconds() == 900
    assert {p.to_user_string() for p in acme_bugs.parent_keys} == {"acme/tests"}
    job = defs.resolve_job_def("globex_testio_full_sync")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {f"globex/{n}" for n in ENTITIES}


def test_the_default_instance_keeps_the_names_from_before_components():
    """The decision: the default instance is unprefixed, so an existing deployment keeps its
    asset history, sensors, schedule and the documented `--config-json` resource key."""
    mirror = from_yaml(DEFAULT_YAML.read_text())
    assert (mirror.prefix_keys, mirror.from_environment) == (False, True)
    defs = build(mirror)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert set(ENTITIES) | {"bug_overview", "quality_report"} <= keys
    assert {s.name for s in defs.sensors} == {
        "testio_refresh_sensor", "testio_views_sensor", "testio_report_sensor", "testio_alert_sensor"
    }
    assert {s.name for s in defs.schedules} == {"testio_nightly_full_sync"}
    assert set(defs.resources) == {"testio_api", "warehouse", "refresh"}
    assert defs.get_assets_def("bugs").op.name == "testio_refresh"


def test_from_environment_reads_the_variables_and_an_attribute_wins(monkeypatch):
    monkeypatch.setenv("TESTIO_CACHE_TTL_SECONDS", "600")
    monkeypatch.setenv("TESTIO_PRODUCT_IDS", "3,1")
    monkeypatch.setenv("TESTIO_DUCKDB_PATH", "env.duckdb")
    mirror = TestIOMirror(name="testio", prefix_keys=False, from_environment=True, warehouse="yaml.duckdb")
    settings = mirror.settings()
    assert (settings.cache_ttl_seconds, settings.product_ids, settings.duckdb_path) == (600, (1, 3), "yaml.duckdb")
    assert settings.uses_simulator and mirror.token_variable() is None
    monkeypatch.setenv("TESTIO_CUSTOMER_API_TOKEN", "s3cret-env-token")
    assert mirror.settings().effective_base_url == "https://api.test.io/customer/v2"
    assert mirror.token_variable().env_var_name == "TESTIO_CUSTOMER_API_TOKEN"
    monkeypatch.setenv("TESTIO_CACHE_TTL_SECONDS", "30")
    with pytest.raises(SettingsError, match="TESTIO_CACHE_TTL_SECONDS"):
        build(mirror)


@pytest.mark.parametrize("template", ["{{ env.ACME_TESTIO_TOKEN }}", "{{ env('ACME_TESTIO_TOKEN') }}"])
def test_the_token_is_only_ever_the_name_of_its_variable(monkeypatch, template):
    secret = "acme-s3cret-4f1b"
    monkeypatch.setenv("ACME_TESTIO_TOKEN", secret)
    mirror = from_yaml(
        f'attributes:\n  name: acme\n  base_url: https://api.test.io/customer/v2\n  token: "{template}"\n'
    )
    assert mirror.token.env_var_name == "ACME_TESTIO_TOKEN"
    defs = build(mirror)
    repository = defs.get_repository_def()
    snapshots = [serialize_value(job.get_job_snapshot()) for job in repository.get_all_jobs()]
    assert not any(secret in text for text in snapshots)
    assert secret not in repr(defs.resources) and secret not in repr(mirror) and secret not in repr(mirror.settings())


def test_a_literal_token_is_refused_with_a_clear_error():
    literal = 'attributes:\n  name: acme\n  base_url: https://api.test.io/customer/v2\n  token: "abc123"\n'
    with pytest.raises(Exception, match="literal token in defs.yaml is refused"):
        from_yaml(literal)
    with pytest.raises(ValueError, match="literal token"):
        TestIOMirror(name="acme", base_url="https://api.test.io/customer/v2", token="abc123")
    with pytest.raises(ValueError, match="token is set but base_url is not"):
        TestIOMirror(name="acme", token=dg.EnvVar("ACME_TESTIO_TOKEN"))
    with pytest.raises(ValueError, match="base_url is set but token is not"):
        TestIOMirror(name="acme", base_url="https://api.test.io/customer/v2")
    with pytest.raises(ValueError):
        TestIOMirror(name="Acme Corp")


def test_the_scaffolded_defs_yaml_works_as_written_against_the_simulator(tmp_path, monkeypatch):
    target = tmp_path / "customers" / "acme"
    MirrorScaffolder().scaffold(
        dg.ScaffoldRequest(
            type_name="testio_pipeline.TestIOMirror",
            target_path=target,
            scaffold_format="yaml",
            project_root=tmp_path,
            params=None,
        )
    )
    text = (target / "defs.yaml").read_text()
    document = yaml.safe_load(text)
    assert document["type"] == "testio_pipeline.TestIOMirror"
    assert '# token: "{{ env.ACME_TESTIO_TOKEN }}"' in text
    mirror = from_yaml(text)
    assert mirror.name == "acme" and mirror.settings().uses_simulator
    assert mirror.settings().duckdb_path == "data/acme.duckdb"
    defs = build(mirror)
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    assert dg.AssetKey(["acme", "bugs"]) in keys

    # ... and syncs unedited: every asset of the instance, its checks passing, into its warehouse
    monkeypatch.chdir(tmp_path)
    with dg.instance_for_test() as instance:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance)
    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert {dg.AssetKey(["acme", name]) for name in ENTITIES} <= materialized
    checks = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert checks and all(c.passed for c in checks), [c.check_name for c in checks if not c.passed]
    counts = Warehouse(tmp_path / "data" / "acme.duckdb").table_counts()
    assert all(counts[name] > 0 for name in ENTITIES), counts


# --- one writer per warehouse --------------------------------------------------------------


def _pools(defs: dg.Definitions, prefix: str | None) -> set[str]:
    step, views = (f"{prefix}_testio_refresh", f"{prefix}_analytics_views") if prefix else ("testio_refresh", "analytics_views")
    return {a.op.pool for a in defs.assets if isinstance(a, dg.AssetsDefinition) and a.op.name in (step, views)}


def test_each_warehouse_has_its_own_pool_and_one_warehouse_keeps_one(tmp_path):
    from testio_pipeline.component.resources import DUCKDB_POOL, writer_pool

    acme, globex = TestIOMirror(name="acme", warehouse="data/acme.duckdb"), TestIOMirror(name="globex", warehouse="data/globex.duckdb")
    initech = TestIOMirror(name="initech", warehouse="./data/../data/acme.duckdb")  # acme's file, spelled otherwise
    defs = build(acme, globex, initech, TestIOMirror(name="testio", prefix_keys=False))
    assert _pools(defs, "acme") == {writer_pool("data/acme.duckdb")} == _pools(defs, "initech")
    assert _pools(defs, "globex") == {writer_pool("data/globex.duckdb")} != _pools(defs, "acme")
    assert _pools(defs, None) == {DUCKDB_POOL}, "the default warehouse keeps the pool of before"
    assert writer_pool("data/acme.duckdb").startswith("testio_duckdb__acme_")
    lake = writer_pool("ducklake:postgres:dbname=lake host=db password=s3cret")
    assert "s3cret" not in lake and lake == writer_pool("ducklake:postgres:dbname=lake host=db password=other")
    assert lake != writer_pool("ducklake:postgres:dbname=other host=db")


def test_a_new_warehouse_pool_gets_the_default_limit_of_one(tmp_path):
    from testio_pipeline.component.resources import writer_pool

    from .conftest import create_storage, dagster_home

    home = dagster_home(tmp_path)
    create_storage(home)
    acme, globex = writer_pool(str(tmp_path / "acme.duckdb")), writer_pool(str(tmp_path / "globex.duckdb"))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        for pool in (acme, globex):  # what the executor does before a step of a pool without a limit claims
            storage.initialize_concurrency_limit_to_default(pool)
        assert storage.claim_concurrency_slot(acme, "run-a", "acme_testio_refresh").is_claimed
        assert not storage.claim_concurrency_slot(acme, "run-b", "initech_testio_refresh").is_claimed, "one writer per file"
        assert storage.claim_concurrency_slot(globex, "run-c", "globex_testio_refresh").is_claimed, "another file writes meanwhile"
        assert {storage.get_concurrency_info(pool).slot_count for pool in (acme, globex)} == {1}


# --- one customer's runs do not hold back another's ------------------------------------------


def test_every_run_an_instance_starts_names_its_customer():
    from testio_pipeline.run_log import CUSTOMER_TAG

    defs = build(TestIOMirror(name="acme", warehouse="data/acme.duckdb"), TestIOMirror(name="testio", prefix_keys=False))
    for customer, prefix in (("acme", "acme_"), ("testio", "")):
        assert defs.resolve_job_def(f"{prefix}testio_full_sync").tags[CUSTOMER_TAG] == customer
        for sensor in ("testio_views_sensor", "testio_report_sensor"):
            assert defs.get_sensor_def(f"{prefix}{sensor}").run_tags[CUSTOMER_TAG] == customer


def test_the_run_queue_lets_one_run_per_customer_start_at_a_time(tmp_path):
    """dagster.yaml and every deploy/ config: customers' runs start side by side, one customer's wait."""
    from dagster._core.test_utils import create_run_for_test
    from dagster._utils.tags import TagConcurrencyLimitsCounter

    from testio_pipeline.run_log import CUSTOMER_TAG, TRIGGER_TAG

    from .conftest import create_storage, dagster_home

    home = dagster_home(tmp_path)
    create_storage(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits

        def run(customer: str, trigger: str) -> dg.DagsterRun:
            return create_run_for_test(instance, job_name="__ASSET_JOB", tags={CUSTOMER_TAG: customer, TRIGGER_TAG: trigger})

        counter = TagConcurrencyLimitsCounter(limits, [run("acme", "sensor")])
        assert counter.is_blocked(run("acme", "views")), "one customer keeps one run at a time"
        assert counter.is_blocked(run("acme", "schedule"))
        assert not counter.is_blocked(run("globex", "sensor")), "another customer's run starts meanwhile"
        counter.update_counters_with_launched_item(run("globex", "sensor"))
        assert counter.is_blocked(run("globex", "report"))
        assert not counter.is_blocked(run("initech", "cli"))


# --- each customer's own report ---------------------------------------------------------------


def test_customers_whose_warehouses_share_a_folder_keep_their_own_report(tmp_path):
    now = "2026-11-20T15:30:00+00:00"
    mirrors = [
        TestIOMirror(name=name, warehouse=str(tmp_path / f"{name}.duckdb"), simulator_preset="tiny", simulator_now=now)
        for name in ("acme", "globex")
    ]
    defs = build(*mirrors)
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, asset_selection=[k for m in mirrors for k in m.asset_keys()])
        assert result.success
        for name in ("acme", "globex"):
            event = instance.get_latest_materialization_event(dg.AssetKey([name, "quality_report"]))
            path = tmp_path / "reports" / f"{name}_quality_report.html"
            assert event.asset_materialization.metadata["html_path"].value == str(path)
            html = path.read_text(encoding="utf-8")
            assert f"{name}.duckdb" in html and f"<h1>Product quality report for {name}, " in html, "each report names its customer"
            assert event.asset_materialization.metadata["report"].value.startswith(f"## Product quality report for {name}, ")
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["acme_quality_report.html", "globex_quality_report.html"]


# --- messages name the instance's own variable --------------------------------------------


def _failure_and_logs(defs: dg.Definitions, keys, instance) -> tuple[str, list[str]]:
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=keys, raise_on_error=False
    )
    failures = [e.event_specific_data.error.to_string() for e in result.all_events if e.is_step_failure]
    logs = [e.user_message for e in instance.all_logs(result.run_id) if e.user_message]
    return "\n".join(failures), logs


def test_a_refused_token_names_the_instances_own_variable(monkeypatch, tmp_path):
    from .conftest import make_simulator

    sim = make_simulator("tiny")
    wrong = "wrong-token-7d1e0c9a"
    monkeypatch.setenv("ACME_TESTIO_TOKEN", wrong)
    with sim.serve() as server, dg.instance_for_test() as instance:
        mirror = TestIOMirror(name="acme", base_url=server.base_url, token=dg.EnvVar("ACME_TESTIO_TOKEN"),
                             warehouse=str(tmp_path / "acme.duckdb"))
        failure, logs = _failure_and_logs(build(mirror), [dg.AssetKey(["acme", "products"])], instance)
    assert "refused the token (HTTP 401)" in failure, failure
    assert "check ACME_TESTIO_TOKEN, the 'acme' instance's token" in failure
    assert "TESTIO_CUSTOMER_API_TOKEN" not in failure and wrong not in failure + "".join(logs)


def test_the_simulator_notice_names_the_instance_not_the_default_variables(tmp_path):
    mirror = TestIOMirror(name="acme", simulator_preset="tiny", warehouse=str(tmp_path / "acme.duckdb"))
    with dg.instance_for_test() as instance:
        failure, logs = _failure_and_logs(build(mirror), [dg.AssetKey(["acme", "products"])], instance)
    assert not failure
    [notice] = [m for m in logs if "BUILT-IN TESTIO SIMULATOR" in m]
    assert "the 'acme' instance sets no base_url" in notice and "ACME_TESTIO_TOKEN" in notice
    assert "TESTIO_CUSTOMER_API_TOKEN" not in notice


def test_an_unreachable_api_names_the_instances_own_base_url(monkeypatch, tmp_path):
    monkeypatch.setenv("ACME_TESTIO_TOKEN", "token-of-acme-5b2f")
    with socket.socket() as closed:  # a port nothing listens on once the socket is closed
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with dg.instance_for_test() as instance:
        mirror = TestIOMirror(name="acme", base_url=f"http://127.0.0.1:{port}/customer/v2",
                             token=dg.EnvVar("ACME_TESTIO_TOKEN"), warehouse=str(tmp_path / "acme.duckdb"),
                             request_limits=RequestLimits(timeout_seconds=5))
        failure, _ = _failure_and_logs(build(mirror), [dg.AssetKey(["acme", "products"])], instance)
    assert "cannot reach the TestIO API" in failure, failure
    assert "check the 'acme' instance's base_url and the network" in failure
    assert "TESTIO_CUSTOMER_API_BASE_URL" not in failure
