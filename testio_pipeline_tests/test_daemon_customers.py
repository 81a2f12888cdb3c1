"""Two customers in one deployment, kept fresh by the real Dagster daemon: each
`testio_pipeline.TestIOMirror` instance (its own defs.yaml) syncs its own simulator over
HTTP with its own token, and one customer's broken API leaves the other syncing, fresh
and untouched."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef
import pytest

from testio_pipeline.entities import ENTITIES
from testio_pipeline.freshness import State, judge_assets, policies_of
from testio_pipeline.run_log import CUSTOMER_TAG, TRIGGER_TAG
from testio_pipeline.simulator.faults import server_errors, unauthorized
from testio_pipeline.warehouse import Warehouse

from .conftest import NOW, REPO, customer_project, dagster_env, make_simulator, stop_process_group, token_template
from .test_daemon import wait_for

# The first cycle of both customers, the healthy one's next cycle after its TTL and the
# broken one's failing cycles: real processes each, stretched by a busy machine.
DEADLINE_SECONDS = 600

# Two worlds apart (seed and clock), scopes apart, TTLs and sensor intervals apart. The
# broken customer's TTL is the shortest allowed, so its API fails it within a minute; the
# healthy one's is long enough for a warn window (the sensor refreshes before the TTL runs out).
CUSTOMERS = {
    "acme": {
        "world": {"seed": 42, "now": NOW},
        "product_ids": [20003, 20017],
        "ttl_seconds": 75,
        "sensor_interval_seconds": 2,
    },
    "globex": {
        "world": {"seed": 7, "now": NOW + timedelta(days=3)},
        "product_ids": [20013],
        "ttl_seconds": 60,
        "sensor_interval_seconds": 3,
    },
}
HEALTHY, BROKEN = "acme", "globex"


def refresh_runs(instance: dg.DagsterInstance, customer: str, created_after: float = 0.0) -> list[dg.DagsterRun]:
    """The customer's runs its refresh sensor requested, oldest first."""
    records = instance.get_run_records(dg.RunsFilter(tags={CUSTOMER_TAG: customer, TRIGGER_TAG: "sensor"}))
    records = [r for r in records if r.create_timestamp.timestamp() > created_after]
    return [r.dagster_run for r in sorted(records, key=lambda r: r.create_timestamp)]


def ended(instance, customer: str, status: dg.DagsterRunStatus, created_after: float = 0.0) -> list[dg.DagsterRun]:
    return [r for r in refresh_runs(instance, customer, created_after) if r.status == status]


def failure_text(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    records = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    return "\n".join(r.dagster_event.event_specific_data.error.to_string() for r in records)


def scoped_truth(sim, customer: str):
    """What the customer's simulator serves for the customer's product scope."""
    from benchmarks import verify  # noqa: PLC0415

    truth = verify.snapshot(sim, CUSTOMERS[customer]["world"]["now"])
    scope = CUSTOMERS[customer]["product_ids"]
    assert set(scope) <= set(truth.products), f"{customer}'s scope is in its world"
    return verify.Truth(truth.now, {pid: truth.products[pid] for pid in scope})


def assert_exact(sims, warehouses, customer: str) -> None:
    from benchmarks import verify  # noqa: PLC0415

    report = verify.verify(warehouses[customer], sims[customer], scoped_truth(sims[customer], customer))
    assert report.ok, (customer, report.problems)
    assert report.checked["bugs"] > 0 and report.checked["tests"] > 0, (customer, report.checked)


@pytest.mark.slow
@pytest.mark.code_server
def test_the_daemon_keeps_two_customers_apart_and_one_broken_api_does_not_touch_the_other(tmp_path, monkeypatch):
    sims = {
        name: make_simulator("tiny", now=c["world"]["now"], seed=c["world"]["seed"], products=3,
                             token=f"{name}-secret-token-{c['world']['seed']:03d}f9")
        for name, c in CUSTOMERS.items()
    }
    warehouses = {name: tmp_path / "data" / f"{name}.duckdb" for name in CUSTOMERS}
    log = tmp_path / "daemon.log"
    with sims[HEALTHY].serve() as healthy_server, sims[BROKEN].serve() as broken_server:
        servers = {HEALTHY: healthy_server, BROKEN: broken_server}
        project = customer_project(tmp_path / "project", {
            name: {
                "base_url": servers[name].base_url,
                "token": token_template(name),
                "product_ids": c["product_ids"],
                "ttl_seconds": c["ttl_seconds"],
                "sensor_interval_seconds": c["sensor_interval_seconds"],
                "warehouse": str(warehouses[name]),
            }
            for name, c in CUSTOMERS.items()
        })
        env = dagster_env(tmp_path, **{f"{n.upper()}_TESTIO_TOKEN": s.config.token for n, s in sims.items()})
        env["PYTHONPATH"] = f"{project}:{REPO}"

        checked = subprocess.run(
            [str(Path(sys.executable).parent / "dg"), "check", "defs"],
            cwd=project, env=env, capture_output=True, text=True, timeout=300,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "All definitions loaded successfully" in checked.stdout + checked.stderr

        # The definitions the daemon runs, loaded here too: their freshness policies judge "fresh".
        monkeypatch.syspath_prepend(str(project))
        defs = dg.ComponentTree.for_project(project / "multi").build_defs()
        graph = defs.resolve_asset_graph()
        entity_keys = {name: [dg.AssetKey([name, e.name]) for e in ENTITIES] for name in CUSTOMERS}

        def states(instance, customer: str) -> dict[str, State]:
            judged = judge_assets(instance, policies_of(graph, entity_keys[customer]), datetime.now(timezone.utc))
            return {name: s.state for name, s in judged.items()}

        with log.open("w") as out:
            # Its own process group, so one signal stops the daemon and the runs it launched.
            daemon = subprocess.Popen(
                [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", "multi.definitions"],
                cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + DEADLINE_SECONDS
        try:
            with dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"])) as instance:
                # Cycle 1 of each: its sensor finds nothing materialized and requests the initial sync.
                for name in CUSTOMERS:
                    wait_for(lambda: ended(instance, name, dg.DagsterRunStatus.SUCCESS),
                             f"{name}'s first sensor run to succeed", deadline, daemon, log)
                for name in CUSTOMERS:
                    assert not ended(instance, name, dg.DagsterRunStatus.FAILURE), f"{name}: a run failed"
                    assert_exact(sims, warehouses, name)
                    assert sims[name].stats.snapshot()["by_status"].get(401, 0) == 0, f"{name}'s server saw a wrong token"
                assert Warehouse(warehouses[HEALTHY]).ids("bugs") != Warehouse(warehouses[BROKEN]).ids("bugs")
                healthy_counts = Warehouse(warehouses[HEALTHY]).table_counts()

                # The broken customer's token is revoked: its API answers 401 from now on.
                broken_since = time.time()
                sims[BROKEN].add_fault(unauthorized())
                [refused] = wait_for(lambda: ended(instance, BROKEN, dg.DagsterRunStatus.FAILURE, broken_since),
                                     f"{BROKEN}'s run against the 401 API to fail", deadline, daemon, log)[:1]
                assert "refused the token (HTTP 401)" in failure_text(instance, refused)
                assert f"{BROKEN.upper()}_TESTIO_TOKEN" in failure_text(instance, refused)

                # ... then a 5xx storm: every request answers 500, retries included.
                storm_since = time.time()
                sims[BROKEN].clear_faults()
                sims[BROKEN].add_fault(server_errors(times=None))
                [stormed] = wait_for(lambda: ended(instance, BROKEN, dg.DagsterRunStatus.FAILURE, storm_since),
                                     f"{BROKEN}'s run against the 500 storm to fail", deadline, daemon, log)[:1]
                assert "500" in failure_text(instance, stormed), failure_text(instance, stormed)

                # Meanwhile the healthy customer's next cycle comes after its TTL, succeeds, and
                # leaves it fresh (polled: on a busy machine a later cycle may be under way).
                wait_for(
                    lambda: ended(instance, HEALTHY, dg.DagsterRunStatus.SUCCESS, broken_since)
                    and set(states(instance, HEALTHY).values()) == {State.FRESH},
                    f"{HEALTHY}'s cycle after {BROKEN}'s API broke to succeed and leave it fresh", deadline, daemon, log,
                )
                assert all(s.needs_refresh for s in states(instance, BROKEN).values()), states(instance, BROKEN)
                assert not ended(instance, HEALTHY, dg.DagsterRunStatus.FAILURE), f"a {HEALTHY} run failed"
                healthy_runs = {r.run_id for r in ended(instance, HEALTHY, dg.DagsterRunStatus.SUCCESS)}
                broken_runs = {r.run_id for r in refresh_runs(instance, BROKEN)}
        finally:
            stop_process_group(daemon)

    # The healthy customer: exactly its world, every cycle recorded as a success.
    assert_exact(sims, warehouses, HEALTHY)
    assert Warehouse(warehouses[HEALTHY]).table_counts() == healthy_counts, "its frozen world: nothing added, nothing lost"
    events = Warehouse(warehouses[HEALTHY]).query("SELECT run_id, trigger, status FROM sync_events")
    assert healthy_runs <= set(events.run_id) and len(healthy_runs) >= 2
    assert set(events.status) == {"success"} and not set(events.run_id) & broken_runs
    # The broken customer: its failed runs are on record, and left what its last good sync wrote.
    events = Warehouse(warehouses[BROKEN]).query("SELECT run_id, status, error FROM sync_events").set_index("run_id")
    assert events.status[refused.run_id] == "failed" and "HTTP 401" in events.error[refused.run_id]
    assert events.status[stormed.run_id] == "failed" and "HTTP 500" in events.error[stormed.run_id]
    assert_exact(sims, warehouses, BROKEN)
    # Each server only ever saw its own customer's token: the healthy one refused none.
    assert sims[HEALTHY].stats.snapshot()["by_status"].get(401, 0) == 0
    daemon_log = log.read_text()
    for sim in sims.values():
        token = sim.config.token
        assert token not in daemon_log
        for path in [*(tmp_path / "dagster_home").rglob("*"), *warehouses.values()]:
            if path.is_file():
                assert token.encode() not in path.read_bytes(), f"token found in {path}"
