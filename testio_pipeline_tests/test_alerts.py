"""Alerts (docs/alerts.md): the alert sensor tells a webhook once per condition and once on
recovery; no webhook can fail or delay a sync run; `status --exit-code` for an outside monitor."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from testio_pipeline import alerts
from testio_pipeline.component.mirror import TestIOMirror
from testio_pipeline.simulator import faults
from testio_pipeline.warehouse import Warehouse

from .conftest import REPO, api_env, make_simulator, stop_process_group
from .test_daemon import wait_for
from .test_secrets import credentials_of
from .webhook import Hanging, Receiver, refusing

CLI = [sys.executable, "-m", "testio_pipeline.cli"]
UI_URL = "http://dagster.example:3000"


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)


def assert_no_secret(raw_bodies: list[bytes], *secrets: str) -> None:
    assert raw_bodies, "the receiver got nothing to scan"
    for raw in raw_bodies:
        text = raw.decode()
        for secret in secrets:
            assert secret not in text, f"a secret reached a webhook body: {text[:300]}"


# --- the body and its policy ---------------------------------------------------------------


def test_each_condition_is_announced_once_and_its_recovery_once():
    state = alerts.AlertState()
    now = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)
    failed = alerts.Condition(alerts.RUN_FAILED, "acme", "acme: refresh run failed", run_id="abcdef1234", url=f"{UI_URL}/runs/abcdef1234")
    stale = [alerts.Condition(alerts.FRESHNESS_FAILED, f"acme/t{i}", f"acme: t{i} stale") for i in range(11)]

    first = alerts.advance(state, [failed, *stale], now)
    assert [(t.state, t.condition["key"]) for t in first][0] == ("firing", "run_failed:acme")
    assert len(first) == 12 and {t.state for t in first} == {"firing"}
    again = alerts.AlertState.from_cursor(state.to_cursor())  # what a restarted daemon reads
    assert alerts.advance(again, [failed, *stale], now + timedelta(minutes=1)) == []
    cleared = alerts.advance(again, stale[:1], now + timedelta(minutes=2))
    assert {t.condition["key"] for t in cleared} == {failed.key, *(s.key for s in stale[1:])}
    assert {t.state for t in cleared} == {"resolved"}

    body = alerts.message("acme", first, now)
    assert body["text"].startswith("[testio acme] mirror alerts: 12 new")
    assert "... and 4 more" in body["text"], "many at once: one summary, not twelve lines"
    assert f"<{UI_URL}/runs/abcdef1234|run abcdef12>" in body["text"]
    assert body["testio"]["customer"] == "acme" and len(body["testio"]["alerts"]) == 12
    assert body["blocks"][0]["type"] == "header"
    json.dumps(body)  # JSON as it stands


def test_scrub_removes_the_token_a_lake_password_and_url_passwords():
    text = (
        "401 debug: {'authorization': 'Token tok-123'} tok-123 "
        "ATTACH 'ducklake:postgres:dbname=lake host=db user=u password=hunter2' "
        "postgresql://u:s3cret@db:5432/x"
    )
    clean = alerts.scrub(text, ["tok-123"])
    for secret in ("tok-123", "hunter2", "s3cret"):
        assert secret not in clean
    assert "dbname=lake" in clean and "db:5432/x" in clean


# --- per customer: checks, rejects, failed runs, read from a real instance ---------------------


def test_a_customers_failed_check_rejected_records_and_failed_run_are_one_body_and_so_is_their_recovery(
    tmp_path, monkeypatch
):
    """acme's run rejects a record and fails a blocking check: its alert sensor posts one body
    naming acme and the three conditions, the next evaluation nothing, and after a clean run
    one body resolving all three. globex, in the same code location, says nothing."""
    from testio_pipeline.domain import credentials
    from testio_pipeline.run_log import CUSTOMER_TAG

    sim = make_simulator("tiny")
    monkeypatch.setenv("ACME_TESTIO_TOKEN", sim.config.token)
    tests = sim.truth_tests(sim.truth_products()[0]["id"])
    with sim.serve() as server, Receiver() as hook, dg.instance_for_test() as instance:
        monkeypatch.setenv("ACME_ALERT_WEBHOOK_URL", hook.url)
        acme = TestIOMirror(
            name="acme", base_url=server.base_url, token=dg.EnvVar("ACME_TESTIO_TOKEN"),
            warehouse=str(tmp_path / "acme.duckdb"), alert_webhook_url=dg.EnvVar("ACME_ALERT_WEBHOOK_URL"),
            dagster_ui_url=UI_URL,
        )
        globex = TestIOMirror(name="globex", simulator_preset="tiny", warehouse=str(tmp_path / "globex.duckdb"))
        context = dg.ComponentTree.for_test().load_context
        defs = dg.Definitions.merge(acme.build_defs(context), globex.build_defs(context))
        job = defs.resolve_implicit_global_asset_job_def()
        entities = [k for k in acme.asset_keys() if k.path[-1] in {"products", "features", "user_stories", "tests", "bugs"}]

        def sync():
            return job.execute_in_process(
                instance=instance, asset_selection=entities, tags={CUSTOMER_TAG: "acme"}, raise_on_error=False
            )

        cursors: dict[str, str | None] = {"acme": None, "globex": None}

        def evaluate(customer: str):
            sensor = defs.get_sensor_def(f"{customer}_testio_alert_sensor")
            _, cursors[customer] = _evaluate(sensor, defs, instance, cursors[customer])

        # A regression in credential stripping (the blocking check must catch it) and a malformed test.
        with pytest.MonkeyPatch.context() as regression:
            regression.setattr(credentials, "strip_credentials", lambda obj, **_: obj)
            sim.add_fault(faults.corrupt_records(sim, "exploratory_tests", {tests[3]["id"]: faults.set_field("end_at", "soon")}))
            failed = sync()
        assert not failed.success
        evaluate("acme")
        evaluate("globex")
        [body] = hook.bodies
        assert {a["key"]: a["state"] for a in body["testio"]["alerts"]} == {
            "run_failed:acme": "firing",
            "check_failed:acme/tests:no_credentials_in_raw": "firing",
            "records_rejected:acme/tests": "firing",
        }
        assert body["testio"]["customer"] == "acme" and body["text"].startswith("[testio acme]")
        assert all(a["summary"].startswith("acme: ") for a in body["testio"]["alerts"])
        by_key = {a["key"]: a for a in body["testio"]["alerts"]}
        assert by_key["run_failed:acme"]["url"] == f"{UI_URL}/runs/{failed.run_id}"
        assert "not refreshed: bugs" in by_key["run_failed:acme"]["summary"]
        assert "1 records of acme/tests rejected" in by_key["records_rejected:acme/tests"]["summary"]
        evaluate("acme")
        assert len(hook.bodies) == 1, "nothing new: nothing sent"

        sim.clear_faults()
        assert sync().success
        evaluate("acme")
        evaluate("globex")
        assert len(hook.bodies) == 2
        assert {a["key"]: a["state"] for a in hook.bodies[1]["testio"]["alerts"]} == {
            key: "resolved" for key in by_key
        }
        assert hook.bodies[1]["text"].startswith("[testio acme] mirror alerts: 3 resolved")
        assert_no_secret(hook.raw, sim.config.token, *credentials_of(sim))


def test_a_webhook_url_is_named_by_its_variable_and_a_literal_one_is_refused():
    import yaml

    attributes = 'name: acme\nalert_webhook_url: "{{ env.ACME_ALERT_WEBHOOK_URL }}"\ndagster_ui_url: http://ui:3000\n'
    mirror = TestIOMirror.resolve_from_dict(yaml.safe_load(attributes))
    assert mirror.alert_webhook_url == dg.EnvVar("ACME_ALERT_WEBHOOK_URL")
    defs = mirror.build_defs(dg.ComponentTree.for_test().load_context)
    assert "$ACME_ALERT_WEBHOOK_URL" in defs.get_sensor_def("acme_testio_alert_sensor").description
    with pytest.raises(Exception, match="a literal URL is refused"):
        TestIOMirror.resolve_from_dict(yaml.safe_load("name: acme\nalert_webhook_url: https://hooks.slack.com/services/T0/B0/x\n"))


# --- cli status --exit-code ----------------------------------------------------------------


@pytest.mark.slow
def test_status_exit_code_is_1_before_a_sync_0_after_it_and_1_after_a_failed_cycle(tmp_path):
    sim = make_simulator("tiny")
    with sim.serve() as server:
        env = api_env(tmp_path, sim, server, tmp_path / "mirror.duckdb")
        before = cli(env, "status", "--exit-code")
        assert before.returncode == 1, before.stdout + before.stderr
        assert "never materialized" in before.stdout

        synced = cli(env, "run")
        assert synced.returncode == 0, synced.stderr
        after = cli(env, "status", "--exit-code")
        assert after.returncode == 0, after.stdout + after.stderr
        assert cli(env, "status").returncode == 0, "without --exit-code status always exits 0"

        sim.add_fault(faults.unauthorized())
        assert cli(env, "run").returncode == 1
        failed = cli(env, "status", "--exit-code")
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "The last cycle of testio failed" in failed.stdout

    no_home = {k: v for k, v in env.items() if k != "DAGSTER_HOME"}
    assert cli(no_home, "status", "--exit-code").returncode == 2, "no instance: cannot tell"


# --- a bad webhook never touches a sync run ------------------------------------------------


def _alert_sensor(monkeypatch, env: dict[str, str]):
    """The default instance's alert sensor and definitions, built in this process from ``env``."""
    for name, value in env.items():
        if name.startswith(("TESTIO_", "DAGSTER_")):
            monkeypatch.setenv(name, value)
    mirror = TestIOMirror(name="testio", prefix_keys=False, from_environment=True)
    defs = mirror.build_defs(dg.ComponentTree.for_test().load_context)
    return defs.get_sensor_def("testio_alert_sensor"), defs


def _evaluate(sensor, defs, instance, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=defs.get_repository_def())
    result = sensor(context)
    return result, context.cursor


@pytest.mark.slow
@pytest.mark.parametrize("webhook", ["refusing", "answering_500", "hanging"])
def test_a_refusing_failing_or_hanging_webhook_does_not_fail_or_delay_a_sync_run(tmp_path, monkeypatch, webhook):
    """A body is waiting for the webhook while the sync runs: the run succeeds without trying
    to deliver it (the receiver sees no request during the run); only the alert sensor
    tries, and it returns within its budget, keeping the body for the next evaluation."""
    sim = make_simulator("tiny")
    if webhook == "refusing":
        receiver_cm = refusing()
    elif webhook == "answering_500":
        receiver_cm = Receiver(status=500)
    else:
        receiver_cm = Hanging()
    with sim.serve() as server, receiver_cm as receiver:
        url = receiver if isinstance(receiver, str) else receiver.url

        def requests() -> int:
            return 0 if isinstance(receiver, str) else receiver.requests

        db = tmp_path / "mirror.duckdb"
        env = api_env(tmp_path, sim, server, db, TESTIO_ALERT_WEBHOOK_URL=url)
        sensor, defs = _alert_sensor(monkeypatch, env)
        # Structurally outside every run: the alert sensor starts none, and no job carries a hook.
        assert not sensor.targets
        assert all(not job.hook_defs for job in defs.resolve_all_job_defs())
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"])) as instance:
            sim.add_fault(faults.unauthorized())
            assert cli(env, "run").returncode == 1
            sim.clear_faults()
            _, cursor = _evaluate(sensor, defs, instance, None)
            waiting = alerts.AlertState.from_cursor(cursor)
            assert [a["key"] for a in waiting.outbox[0]["testio"]["alerts"]] == ["run_failed:testio"]
            tried = requests()
            if webhook != "refusing":
                assert tried >= 1, "the sensor tried the webhook"

            synced = cli(env, "run")
            assert synced.returncode == 0, synced.stderr
            assert requests() == tried, "the sync run did not contact the webhook"
            [run] = [r.dagster_run for r in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))]
            logged = " ".join(e.user_message or "" for e in instance.all_logs(run.run_id))
            assert "alert" not in logged.lower() and url not in logged
            assert set(Warehouse(str(db)).query("SELECT status FROM sync_events").status) == {"failed", "success"}

            # The next evaluation adds the recovery and tries again; the bodies keep waiting.
            started = time.monotonic()
            result, cursor = _evaluate(sensor, defs, instance, cursor)
            assert time.monotonic() - started < 60, "well within Dagster's limit for a sensor evaluation"
            waiting = alerts.AlertState.from_cursor(cursor)
            assert [b["testio"]["alerts"][0]["state"] for b in waiting.outbox] == ["firing", "resolved"]
            assert waiting.active == {}
            assert "webhook" in result.skip_message and url not in cursor

            # The webhook is back (here: another URL): the waiting bodies arrive, in order, once.
            with Receiver() as back:
                monkeypatch.setenv("TESTIO_ALERT_WEBHOOK_URL", back.url)
                _, cursor = _evaluate(sensor, defs, instance, cursor)
                _evaluate(sensor, defs, instance, cursor)
            assert [(a["key"], a["state"]) for a in back.alerts()] == [
                ("run_failed:testio", "firing"), ("run_failed:testio", "resolved")
            ]
            assert alerts.AlertState.from_cursor(cursor).outbox == []
            assert_no_secret(back.raw, sim.config.token)


def test_the_daemon_evaluates_each_sensor_in_its_own_thread():
    """So an alert sensor waiting on a slow webhook never holds back a refresh sensor."""
    import yaml

    sensors = yaml.safe_load((REPO / "dagster.yaml").read_text())["sensors"]
    assert sensors["use_threads"] is True and sensors["num_workers"] >= 2
    assert alerts.Delivery().budget_seconds + alerts.Delivery().read_timeout < 60, "within Dagster's sensor limit"


# --- the daemon, end to end ----------------------------------------------------------------


def _alert_ticks(instance: dg.DagsterInstance, after: float) -> int:
    states = [s for s in instance.all_instigator_state() if s.name == "testio_alert_sensor"]
    return sum(len(instance.get_ticks(s.instigator_origin_id, s.selector_id, after=after)) for s in states)


def _start_daemon(env: dict[str, str], log: Path) -> subprocess.Popen:
    daemon_bin = Path(sys.executable).parent / "dagster-daemon"
    with log.open("a") as out:
        return subprocess.Popen(
            [str(daemon_bin), "run", "-m", "testio_pipeline.definitions"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


@pytest.mark.slow
@pytest.mark.code_server
def test_the_daemon_alerts_once_per_condition_and_once_on_recovery_across_a_restart(tmp_path):
    """TTL 60 s. The first cycle succeeds; then the API refuses the token (its error page
    echoing the Authorization header): the failed run, every asset past its TTL and the
    missing successful cycle are each announced once; a daemon restart repeats nothing; the
    fault clears, a cycle succeeds, and each condition's recovery is announced once."""
    sim = make_simulator("tiny")
    log = tmp_path / "daemon.log"
    with sim.serve() as server, Receiver() as hook:
        env = api_env(
            tmp_path, sim, server, tmp_path / "mirror.duckdb",
            TESTIO_CACHE_TTL_SECONDS="60",
            TESTIO_SENSOR_INTERVAL_SECONDS="3",
            TESTIO_ALERT_WEBHOOK_URL=hook.url,
            TESTIO_DAGSTER_UI_URL=UI_URL,
        )
        deadline = time.monotonic() + 900
        daemon = _start_daemon(env, log)
        try:
            with dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"])) as instance:
                def succeeded_runs():
                    return instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))

                wait_for(succeeded_runs, "the initial sync", deadline, daemon, log)
                sim.add_fault(faults.echo_authorization(status=401))

                def fired(kind_prefix: str):
                    return [a for a in hook.alerts() if a["state"] == "firing" and a["key"].startswith(kind_prefix)]

                wait_for(lambda: fired("run_failed:"), "the failed-run alert", deadline, daemon, log)
                wait_for(lambda: fired("no_successful_cycle:"), "the no-successful-cycle alert", deadline, daemon, log)
                wait_for(
                    lambda: {"products", "features", "user_stories", "tests", "bugs"}
                    <= {a["subject"] for a in fired("freshness_failed:")},
                    "every entity's freshness alert", deadline, daemon, log,
                )
                [failed] = fired("run_failed:")
                assert failed["subject"] == "testio" and failed["url"] == f"{UI_URL}/runs/{failed['run_id']}"
                assert "refused the token" in failed["summary"] and "not refreshed: " in failed["summary"]

                # A restart: the new daemon's evaluations must not announce anything again.
                stop_process_group(daemon)
                restarted = time.time()
                daemon = _start_daemon(env, log)
                wait_for(lambda: _alert_ticks(instance, restarted) >= 2, "two alert evaluations after the restart",
                         deadline, daemon, log)
                before_recovery = [a["key"] for a in hook.alerts() if a["state"] == "firing"]
                assert len(before_recovery) == len(set(before_recovery)), f"repeated: {before_recovery}"

                sim.clear_faults()
                expected = {key for key in before_recovery if not key.startswith("records_rejected:")}
                wait_for(
                    lambda: expected <= {a["key"] for a in hook.alerts() if a["state"] == "resolved"},
                    "the recovery of every condition", deadline, daemon, log,
                )
                settled = time.time()
                wait_for(lambda: _alert_ticks(instance, settled) >= 2, "two more alert evaluations", deadline, daemon, log)
        finally:
            stop_process_group(daemon)

        received = hook.alerts()
        for state in ("firing", "resolved"):
            keys = [a["key"] for a in received if a["state"] == state]
            assert len(keys) == len(set(keys)), f"{state} twice: {sorted(keys)}"
        assert expected == {a["key"] for a in received if a["state"] == "resolved"}
        assert all(body["text"].startswith("[testio testio]") for body in hook.bodies), "the customer in every message"
        assert_no_secret(hook.raw, sim.config.token, *credentials_of(sim))
