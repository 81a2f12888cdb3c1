"""The asset checks (checks.py) in real Dagster runs, on real DuckDB files."""

from __future__ import annotations

import os
import shutil

import dagster as dg
import duckdb
import pytest

from testio_pipeline import quality as checks_module
from testio_pipeline.component.testio.assets import TESTIO_ASSETS
from testio_pipeline.component.testio.checks import check_result
from testio_pipeline.entities import ENTITY_BY_NAME
from testio_pipeline.quality import references_resolve
from testio_pipeline.definitions import defs
from testio_pipeline.component.resources import CustomerApiResource, RefreshResource, WarehouseResource
from testio_pipeline.simulator import faults
from testio_pipeline.domain import credentials
from testio_pipeline.warehouse import Warehouse

from .conftest import make_simulator

# One worker (make test: --dist loadgroup), so the shared clean run is built once.
pytestmark = pytest.mark.xdist_group("checks")


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def serve(monkeypatch):
    """Serve a simulator over HTTP and point the runs' settings at it, so its faults apply."""
    servers = []

    def start(sim):
        server = sim.serve()
        servers.append(server)
        monkeypatch.setenv("TESTIO_CUSTOMER_API_BASE_URL", server.base_url)
        monkeypatch.setenv("TESTIO_CUSTOMER_API_TOKEN", sim.config.token)
        return sim

    yield start
    for server in servers:
        server.close()


def materialize(db, instance, *, mode="full"):
    resources = {
        "testio_api": CustomerApiResource(
            base_url=os.environ["TESTIO_CUSTOMER_API_BASE_URL"],
            token=dg.EnvVar("TESTIO_CUSTOMER_API_TOKEN"),
            retry_attempts=2,
            retry_wait_seconds=0.001,
        ),
        "warehouse": WarehouseResource(path=str(db)),
        "refresh": RefreshResource(mode=mode),
    }
    return dg.materialize(TESTIO_ASSETS, resources=resources, instance=instance, raise_on_error=False)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """One clean full run with every check, shared by the tests that only read or copy it."""
    db = tmp_path_factory.mktemp("checks") / "clean.duckdb"
    sim = make_simulator("tiny")
    with pytest.MonkeyPatch.context() as patch, sim.serve() as server, dg.instance_for_test() as instance:
        for name in [n for n in os.environ if n.startswith("TESTIO_")]:
            patch.delenv(name)
        patch.setenv("TESTIO_CUSTOMER_API_BASE_URL", server.base_url)
        patch.setenv("TESTIO_CUSTOMER_API_TOKEN", sim.config.token)
        result = materialize(db, instance)
    return sim, db, result


def evaluations(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {f"{e.asset_key.to_user_string()}:{e.check_name}": e for e in result.get_asset_check_evaluations()}


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def meta(evaluation) -> dict:
    return {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}


def test_every_check_is_registered_and_passes_on_a_clean_mirror(clean_run):
    registered = {key.to_user_string() for key in defs.resolve_asset_graph().asset_check_keys}
    assert len(registered) == 20
    sim, _, result = clean_run
    assert result.success
    found = evaluations(result)
    assert set(found) == registered
    failed = {name for name, e in found.items() if not e.passed}
    assert not failed
    blocking = {name for name, e in found.items() if e.blocking}
    assert blocking == {
        *(f"{a}:primary_key_unique" for a in ("products", "features", "user_stories", "tests", "bugs")),
        *(f"{a}:references_resolve" for a in ("products", "features", "user_stories", "tests", "bugs")),
        "tests:no_credentials_in_raw", "bugs:no_credentials_in_raw",
    }
    stories = meta(found["user_stories:user_stories_resolve_to_features"])
    listed = {t for p in sim.truth_products() for f in sim.truth_features(p["id"]) for t in f["user_stories"]}
    served = [s for p in sim.truth_products() for s in sim.truth_user_stories(p["id"])]
    assert stories["unmatched"] == sum(s["title"] not in listed for s in served) > 0
    assert stories["matched"] + stories["unmatched"] == len(served) and stories["dangling"] == 0
    assert meta(found["bugs:primary_key_unique"])["bugs_rows"] == sum(len(sim.truth_bugs(p["id"])) for p in sim.truth_products())


def test_rejects_and_unreadable_positions_of_the_run_are_reported_without_blocking(tmp_path, instance, serve):
    sim = serve(make_simulator("tiny", tests_per_product=40))
    pid = sim.truth_products()[0]["id"]
    tests = sim.truth_tests(pid)
    sim.add_fault(faults.corrupt_records(sim, "exploratory_tests", {tests[3]["id"]: faults.set_field("end_at", "soon")}))
    sim.add_fault(faults.poison_offsets(sim, pid, [30]))
    result = materialize(tmp_path / "t.duckdb", instance)
    assert result.success, "warnings do not fail the run"
    assert materialized(result) == {"products", "features", "user_stories", "tests", "bugs"}
    found = evaluations(result)
    rejects = found["tests:no_rejected_records_this_run"]
    assert not rejects.passed and rejects.severity == dg.AssetCheckSeverity.WARN
    assert meta(rejects)["rejected"] == 1
    assert list(meta(rejects)["sample"]) == [f"{tests[3]['id']} (product {pid})"]
    assert "end_at" in next(iter(meta(rejects)["sample"].values()))
    unreadable = found["tests:no_unreadable_positions"]
    assert not unreadable.passed and meta(unreadable)["open_problems"] == 1
    assert list(meta(unreadable)["sample"]) == [f"product {pid} 30..30"]
    assert found["bugs:no_rejected_records_this_run"].passed

    # The next run, with the API healed, reports only its own rejects: none.
    sim.clear_faults()
    again = evaluations(materialize(tmp_path / "t.duckdb", instance))
    assert again["tests:no_rejected_records_this_run"].passed
    assert again["tests:no_unreadable_positions"].passed


def test_a_credential_leak_fails_a_blocking_check_and_stops_the_downstream_asset(tmp_path, instance, monkeypatch, serve):
    # Simulate a regression in credential stripping (both the model layer and the writer's
    # defence in depth): the blocking check must catch it before bugs are synced.
    monkeypatch.setattr(credentials, "strip_credentials", lambda obj, **_: obj)
    serve(make_simulator("tiny"))
    result = materialize(tmp_path / "t.duckdb", instance)
    assert not result.success
    found = evaluations(result)
    leak = found["tests:no_credentials_in_raw"]
    assert not leak.passed and leak.severity == dg.AssetCheckSeverity.ERROR
    assert meta(leak)["tests rows with test-environment credentials"] > 0
    assert "tests" in materialized(result) and "bugs" not in materialized(result)
    assert Warehouse(tmp_path / "t.duckdb").table_counts()["bugs"] == 0


def test_the_api_token_in_stored_json_is_found_and_never_shown(tmp_path, clean_run):
    token = "check-secret-token-5c2a"
    db = tmp_path / "t.duckdb"
    shutil.copy(clean_run[1], db)
    assert check_result(checks_module.no_credentials_in_raw(Warehouse(db), ENTITY_BY_NAME["bugs"], token=token)).passed
    con = duckdb.connect(str(db))
    try:
        con.execute("UPDATE bugs SET raw = json_object('echo', ?) WHERE id = (SELECT min(id) FROM bugs)", [f"Token {token}"])
    finally:
        con.close()
    result = check_result(checks_module.no_credentials_in_raw(Warehouse(db), ENTITY_BY_NAME["bugs"], token=token))
    assert not result.passed
    assert result.metadata["bugs rows with the API token"].value == 1
    assert token not in repr(result)


def test_orphans_fail_the_reference_check(tmp_path, clean_run):
    db = tmp_path / "t.duckdb"
    shutil.copy(clean_run[1], db)
    assert check_result(references_resolve(Warehouse(db), ENTITY_BY_NAME["bugs"])).passed
    con = duckdb.connect(str(db))
    try:
        con.execute("UPDATE bugs SET test_id = 424242 WHERE id = (SELECT min(id) FROM bugs)")
    finally:
        con.close()
    result = check_result(references_resolve(Warehouse(db), ENTITY_BY_NAME["bugs"]))
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["bugs.test_id orphans"].value == 1
    assert result.metadata["bugs.test_id orphan sample"].value == [424242]
