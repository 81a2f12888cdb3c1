"""Secrets: the API token and the customers' test-environment credentials appear nowhere.

A Dagster run over real HTTP against a simulator that behaves as badly as it can for
secrets: error pages that echo the Authorization header (transient ones, retried; permanent
ones, which become product errors and problematic_records rows), and rejected records that
carry credentials. Then every place a secret could end up is searched: captured stdout and
stderr, Python logs, the Dagster event log (every event, serialized) and the instance's files,
materialization and check metadata, exception messages, and the DuckDB file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import serialize_value

from testio_pipeline.component.testio.assets import TESTIO_ASSETS
from testio_pipeline.component.resources import CustomerApiResource, RefreshResource, WarehouseResource
from testio_pipeline.simulator import SimRequest, faults, json_error
from testio_pipeline.domain.credentials import clean_and_text, redact, strip_credentials
from testio_pipeline.testio import TestioApiError
from testio_pipeline.testio.http import ApiRequester
from testio_pipeline.warehouse import Warehouse

from .conftest import REPO, api_env, make_simulator

TOKEN = "secret-token-3b9d7f1e5a2c"


def credentials_of(sim) -> set[str]:
    return {
        value
        for p in sim.truth_products()
        for t in sim.truth_tests(p["id"])
        for key, value in t["test_environment"].items()
        if key in {"username", "password", "access"} and value
    }


def echoing_poison(sim, product_id: int, offset: int):
    """A poison position whose error page echoes the request's Authorization header."""
    poison = faults.poison_offsets(sim, product_id, [offset])

    def fault(request: SimRequest):
        if poison(request) is None:
            return None
        return json_error(500, f"upstream failed for {request.headers.get('authorization')}")

    return fault


def duckdb_text(db: Path) -> str:
    """Every text-like value in every table, as one string."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        columns = con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE NOT internal AND schema_name = 'main'"
        ).fetchall()
        return "\n".join(
            str(row[0])
            for table, column in columns
            for row in con.execute(f'SELECT "{column}"::VARCHAR FROM "{table}"').fetchall()
        )
    finally:
        con.close()


@pytest.mark.slow
def test_no_token_or_credential_reaches_logs_events_metadata_or_duckdb(tmp_path, monkeypatch, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    sim = make_simulator("tiny", token=TOKEN, tests_per_product=40)
    pid, other = [p["id"] for p in sim.truth_products()]
    victim = sim.truth_tests(pid)[5]
    assert victim["test_environment"].get("password")
    secrets = {TOKEN} | credentials_of(sim)

    sim.add_fault(faults.echo_authorization(times=3))  # transient: retried, logged by stamina
    sim.add_fault(faults.echo_authorization(endpoint={"features", "section_features"}, product_id=other))
    sim.add_fault(echoing_poison(sim, pid, 30))
    sim.add_fault(faults.corrupt_records(sim, "exploratory_tests", {victim["id"]: faults.set_field("end_at", "never")}))

    db = tmp_path / "t.duckdb"
    with dg.instance_for_test() as instance, sim.serve() as server:
        monkeypatch.setenv("TESTIO_CUSTOMER_API_BASE_URL", server.base_url)
        monkeypatch.setenv("TESTIO_CUSTOMER_API_TOKEN", TOKEN)
        result = dg.materialize(
            TESTIO_ASSETS,
            resources={
                "testio_api": CustomerApiResource(
                    base_url=server.base_url,
                    token=dg.EnvVar("TESTIO_CUSTOMER_API_TOKEN"),
                    retry_attempts=4,
                    retry_wait_seconds=0.001,
                ),
                "warehouse": WarehouseResource(path=str(db)),
                "refresh": RefreshResource(mode="full"),
            },
            instance=instance,
            raise_on_error=False,
        )
        assert result.success
        events = [serialize_value(e) for e in instance.all_logs(result.run_id)]
        instance_files = [p for p in Path(instance.root_directory).rglob("*") if p.is_file()]
        instance_bytes = b"".join(p.read_bytes() for p in instance_files)

    # The faults really offered the token to the pipeline, in every shape.
    warehouse = Warehouse(db)
    problems = warehouse.query("SELECT * FROM problematic_records")
    assert len(problems) == 1 and "Token ***" in problems.error[0]
    rejected = warehouse.query("SELECT * FROM rejected_records")
    assert list(rejected.record_id) == [str(victim["id"])]
    metadata = {
        e.asset_key.to_user_string(): {k: str(getattr(v, "value", v)) for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }
    assert "***" in metadata["features"]["product_errors"]
    retries = sum(int(m.get("api_retries", 0)) for m in metadata.values())
    assert retries >= 3

    out, err = capfd.readouterr()
    places = {
        "stdout": out,
        "stderr": err,
        "python logs": caplog.text,
        "event log": "\n".join(events),
        "materialization metadata": repr(metadata),
        "check metadata": repr([e.metadata for e in result.get_asset_check_evaluations()]),
        "duckdb values": duckdb_text(db),
    }
    assert "stamina.retry_scheduled" in out + err + caplog.text, "retries were logged"
    for place, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a secret ({secret[:4]}...) found in {place}"
    blobs = {"duckdb file": db.read_bytes(), "dagster instance files": instance_bytes}
    wal = db.with_name(db.name + ".wal")
    if wal.exists():
        blobs["duckdb wal"] = wal.read_bytes()
    for place, blob in blobs.items():
        for secret in secrets:
            assert secret.encode() not in blob, f"a secret ({secret[:4]}...) found in {place}"


def test_a_failed_run_names_the_setting_but_not_the_token(tmp_path, monkeypatch):
    sim = make_simulator("tiny", token=TOKEN)
    sim.add_fault(faults.unauthorized(endpoint="exploratory_tests"))
    with dg.instance_for_test() as instance, sim.serve() as server:
        monkeypatch.setenv("TESTIO_CUSTOMER_API_BASE_URL", server.base_url)
        monkeypatch.setenv("TESTIO_CUSTOMER_API_TOKEN", TOKEN)
        result = dg.materialize(
            TESTIO_ASSETS,
            resources={
                "testio_api": CustomerApiResource(
                    base_url=server.base_url,
                    token=dg.EnvVar("TESTIO_CUSTOMER_API_TOKEN"),
                    retry_attempts=2,
                    retry_wait_seconds=0.001,
                ),
                "warehouse": WarehouseResource(path=str(tmp_path / "t.duckdb")),
                "refresh": RefreshResource(mode="full"),
            },
            instance=instance,
            raise_on_error=False,
        )
        events = "\n".join(serialize_value(e) for e in instance.all_logs(result.run_id))
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.event_specific_data.error.to_string()
    assert "TESTIO_CUSTOMER_API_TOKEN" in message and "HTTP 401" in message
    assert TOKEN not in message and TOKEN not in events


def test_redaction_covers_the_token_and_any_authorization_header():
    text = f"GET x failed: {{'authorization': 'Token {TOKEN}'}} and again {TOKEN}; other: Token abc.def"
    cleaned = redact(text, TOKEN)
    assert TOKEN not in cleaned and "abc.def" not in cleaned
    assert cleaned.count("***") == 3
    assert str(TestioApiError(redact(f"boom {TOKEN}", TOKEN))) == "boom ***"


@pytest.mark.parametrize(
    "record",
    [
        {"id": 1, "title": "top-level environment only", "test_environment": {"id": 9, "username": "u", "password": "p", "access": "a"}},
        {"id": 2, "test_environment": {"id": 9, "password": "p"}, "features": [{"test_environment": {"access": "a2", "id": 3}}]},
        {"id": 3, "test_environment": {"id": 9, "inner": {"test_environment": {"username": "u3"}}}},
        {"id": 4, "requirements": [{"test_environment": {"password": "p4"}}]},
    ],
)
def test_parsing_strips_every_credential_whatever_the_shape(record):
    """The parser's shortcut for one top-level environment must match the full walk."""
    clean, text = clean_and_text(record)
    assert clean == strip_credentials(record)
    assert json.loads(text) == clean
    for secret in (b'"u"', b'"p"', b'"a"', b'"a2"', b'"u3"', b'"p4"'):
        assert secret not in text


def test_credentials_are_stripped_everywhere_in_a_record_but_nothing_else_is():
    record = {
        "id": 1,
        "test_environment": {"id": 9, "title": "Staging", "url": "https://s", "username": "u", "password": "p", "access": "a"},
        "nested": [{"test_environment": {"password": "p2", "title": "t"}}],
        "password": "a top-level field named password is not a test-environment credential",
    }
    clean = strip_credentials(record)
    assert clean["test_environment"] == {"id": 9, "title": "Staging", "url": "https://s"}
    assert clean["nested"][0]["test_environment"] == {"title": "t"}
    assert clean["password"] == record["password"]
    assert record["test_environment"]["password"] == "p", "the input is not modified"


def leaky(fault):
    """``fault``'s error answers, each echoing the request's Authorization header."""

    def wrapped(request: SimRequest):
        response = fault(request)
        if response is None or response.status < 400:
            return response
        return json_error(response.status, f"debug: authorization={request.headers.get('authorization')}")

    return wrapped


def files_text(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_the_hostile_fault_suite_through_a_real_dagster_run_leaves_no_secret_anywhere(tmp_path):
    """A `dagster asset materialize` process against the hostile API whose every error page
    echoes the token (random 500s, 524s, a poison position, a broken bug list, dropped
    connections, records with credentials rejected), then every trace it left is searched:
    its output, the event log with all metadata, compute logs and every other file of
    DAGSTER_HOME, every column of every table, and every file under its temp dirs."""
    sim = make_simulator("tiny", token=TOKEN, tests_per_product=40)
    pid = sim.truth_products()[0]["id"]
    tests = sim.truth_tests(pid)
    with_bugs = {b["test"]["id"] for b in sim.truth_bugs(pid)}
    poisoned, broken = [t["id"] for t in tests if t["id"] in with_bugs][3:5]
    rejected = next(t for t in tests if t["test_environment"].get("password") and t["id"] not in (poisoned, broken))
    secrets = {TOKEN} | credentials_of(sim)
    hostile = faults.hostile(sim, rate=0.1, seed=6, poisoned_tests=[poisoned], broken_bug_lists=[broken])
    sim.add_fault(leaky(hostile))
    sim.add_fault(faults.disconnects(times=2))
    sim.add_fault(faults.corrupt_records(sim, "exploratory_tests", {rejected["id"]: faults.set_field("end_at", "never")}))

    db = tmp_path / "mirror.duckdb"
    temp = tmp_path / "tmp"
    temp.mkdir()
    config = {
        "resources": {
            "refresh": {"config": {"mode": "full"}},
            "testio_api": {"config": {"retry_attempts": 5, "retry_wait_seconds": 0.01}},
        }
    }
    with sim.serve() as server:
        env = api_env(tmp_path, sim, server, db, TMPDIR=str(temp))
        dagster = Path(sys.executable).parent / "dagster"
        run = subprocess.run(
            [str(dagster), "asset", "materialize", "--select", "*", "-m", "testio_pipeline.definitions",
             "--config-json", json.dumps(config)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )
    assert run.returncode == 0, run.stderr[-3000:]

    # The run met every fault: the token was offered to it in error pages of every kind.
    assert hostile.random.fired > 0
    warehouse = Warehouse(db)
    problems = warehouse.query("SELECT entity, error FROM problematic_records ORDER BY entity")
    assert list(problems.entity) == ["bugs", "tests"]
    assert all("Token ***" in e for e in problems.error), "the echoed token was redacted, not absent"
    assert list(warehouse.query("SELECT record_id FROM rejected_records").record_id) == [str(rejected["id"])]

    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"])) as instance:
        [record] = instance.get_run_records()
        events = "\n".join(serialize_value(e) for e in instance.all_logs(record.dagster_run.run_id))
    assert "api_retries" in events and "product_errors" in events, "the event log holds the metadata"
    home_files = files_text(Path(env["DAGSTER_HOME"]))
    assert any("compute_logs" in str(p) for p in home_files), "compute logs were captured"
    places = {
        "run output": (run.stdout + run.stderr).encode(),
        "event log": events.encode(),
        "warehouse values": duckdb_text(db).encode(),
        **{str(p.relative_to(tmp_path)): blob for p, blob in {**home_files, **files_text(temp)}.items()},
        **{str(p.relative_to(tmp_path)): blob for p, blob in files_text(tmp_path).items() if p.suffix in (".duckdb", ".wal")},
    }
    for place, blob in places.items():
        for secret in secrets:
            assert secret.encode() not in blob, f"a secret ({secret[:4]}...) found in {place}"


def test_tls_verification_is_never_switched_off():
    sources = [p for p in (REPO / "testio_pipeline").rglob("*.py")]
    switched_off = re.compile(r"verify\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False|_create_unverified_context")
    assert not [str(p) for p in sources if switched_off.search(p.read_text())]

    async def context_of_a_client():
        requester = ApiRequester("https://api.test.io/customer/v2", TOKEN)
        try:
            return requester._http._transport._pool._ssl_context
        finally:
            await requester.aclose()

    context = asyncio.run(context_of_a_client())
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_a_lake_password_is_masked_wherever_the_warehouse_is_shown():
    from testio_pipeline.warehouse.backends import backend_for

    lake = backend_for("ducklake:postgres:dbname=testio host=db user=testio password=s3cret-pw", "/tmp/lake")
    assert "s3cret-pw" not in lake.location and "password=***" in lake.location
    assert lake.attach.endswith("password=s3cret-pw")  # what connects keeps it
