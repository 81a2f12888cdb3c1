"""Independent entities refresh at the same time: the shared in-flight cap, the warehouse's
one writer inside a process, the dependency-order runner and the one Dagster step."""

from __future__ import annotations

import asyncio
import gc
import threading

import dagster as dg
import pytest

from testio_pipeline.component.resources import CustomerApiResource, RefreshResource, WarehouseResource
from testio_pipeline.component.testio.assets import STEP_NAME, TESTIO_ASSETS
from testio_pipeline.entities import ENTITIES, ENTITY_BY_NAME
from testio_pipeline.settings import Settings
from testio_pipeline.source import ApiSource
from testio_pipeline.sync.common import frozen_gc_heap
from testio_pipeline.sync.graph import run_in_dependency_order
from testio_pipeline.testio.limits import InFlightCap
from testio_pipeline.warehouse import Warehouse

from .conftest import make_simulator

WAIT = 60  # seconds an event may take on a busy machine before the test calls it a hang


# --- the in-flight cap shared by clients on different threads and event loops -------------


def test_the_in_flight_cap_holds_across_threads_and_event_loops():
    cap = InFlightCap(3)
    seen: list[int] = []
    lock = threading.Lock()

    async def request() -> None:
        async with cap:
            with lock:
                seen.append(cap.in_flight)
            for _ in range(3):
                await asyncio.sleep(0)

    async def many() -> None:
        await asyncio.gather(*(request() for _ in range(200)))

    threads = [threading.Thread(target=asyncio.run, args=(many(),)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    assert len(seen) == 600, "every request got a slot"
    assert max(seen) <= 3, "never more in flight than the one cap, whatever the loop"
    assert cap.in_flight == 0, "every slot came back"


def test_a_waiter_cancelled_while_its_slot_is_on_the_way_does_not_lose_the_slot():
    cap = InFlightCap(1)

    async def scenario() -> None:
        await cap.acquire()
        waiter = asyncio.ensure_future(cap.acquire())
        await asyncio.sleep(0)  # the waiter queues
        cap.release()  # hands the slot to the waiter...
        waiter.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.wait_for(cap.acquire(), WAIT)  # the slot is free again
        cap.release()

    asyncio.run(scenario())
    assert cap.in_flight == 0


def test_clients_of_one_source_share_its_cap():
    source = ApiSource.from_settings(Settings.from_env({}), simulator=make_simulator("tiny"))
    one, two = source.client(), source.client()
    assert one._api._in_flight is two._api._in_flight
    assert one._api._in_flight.limit == source.settings.max_concurrent_requests


# --- one writer per process --------------------------------------------------------------


def test_a_read_in_one_thread_waits_for_another_threads_write_instead_of_failing(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.migrate()
    in_write, reader_started = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def write(con) -> None:
        con.execute("CREATE TABLE t AS SELECT 42 AS answer")
        in_write.set()
        assert reader_started.wait(WAIT)

    def read() -> None:
        assert in_write.wait(WAIT)
        reader_started.set()
        try:
            with Warehouse(tmp_path / "w.duckdb").read() as con:  # another instance, same file
                seen["answer"] = con.execute("SELECT answer FROM t").fetchone()[0]
        except Exception as exc:  # noqa: BLE001 - the assertion below names it
            seen["error"] = exc

    reader = threading.Thread(target=read)
    reader.start()
    wh._db.write(write)
    reader.join(WAIT)
    assert "error" not in seen, seen.get("error")
    assert seen["answer"] == 42, "the read ran after the write committed"


def test_two_threads_writing_the_same_rows_take_turns_instead_of_conflicting(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.migrate()
    wh._db.write(lambda con: con.execute("CREATE TABLE counter AS SELECT 0 AS n"))
    in_write, second_started = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    second_runs: list[int] = []

    def increment(con) -> None:
        second_runs.append(1)
        con.execute("UPDATE counter SET n = n + 1")

    def first(con) -> None:
        con.execute("UPDATE counter SET n = n + 1")
        in_write.set()
        assert second_started.wait(WAIT)

    def second() -> None:
        assert in_write.wait(WAIT)
        second_started.set()
        try:
            Warehouse(tmp_path / "w.duckdb")._db.write(increment)
        except Exception as exc:  # noqa: BLE001 - the assertion below names it
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    wh._db.write(first)
    thread.join(WAIT)
    assert not errors, errors
    assert wh.records("SELECT n FROM counter") == [{"n": 2}]
    assert len(second_runs) == 1, "the second write waited its turn: no conflict, no transaction run again"


def test_a_write_inside_the_same_threads_read_is_refused_instead_of_deadlocking(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.migrate()
    with wh.reading():
        with pytest.raises(RuntimeError, match="inside this thread's own read"):
            wh._db.write(lambda con: con.execute("SELECT 1"))


# --- the dependency-order runner -----------------------------------------------------------


def test_independent_chains_run_at_the_same_time_and_each_step_after_its_upstream():
    started = {entity.name: threading.Event() for entity in ENTITIES}
    finished: list[str] = []

    def step(entity):
        started[entity.name].set()
        for name in entity.upstream:
            assert name in finished, f"{entity.name} started before its upstream {name} finished"
        # features and tests only finish once the other has started: they must overlap.
        partner = {"features": "tests", "tests": "features"}.get(entity.name)
        if partner is not None:
            assert started[partner].wait(WAIT), f"{entity.name} ran alone: {partner} never started"
        finished.append(entity.name)
        return entity.name

    outcomes = list(run_in_dependency_order(ENTITIES, step))
    assert {o.entity.name for o in outcomes} == {e.name for e in ENTITIES}
    assert all(o.error is None and o.not_run_because is None for o in outcomes)
    assert finished[0] == "products"


def test_the_heap_stays_frozen_until_the_last_of_two_overlapping_steps_ends():
    """A step that ends first must not unfreeze the heap under the one still running (its
    collections would walk every loaded module again)."""
    assert gc.get_freeze_count() == 0
    seen: dict[str, int] = {}

    def other_step() -> None:
        with frozen_gc_heap():
            pass

    with frozen_gc_heap():
        worker = threading.Thread(target=other_step)
        worker.start()
        worker.join(WAIT)
        assert not worker.is_alive(), "the other step hung"
        seen["after the other step ended"] = gc.get_freeze_count()
    seen["after both ended"] = gc.get_freeze_count()
    assert seen["after the other step ended"] > 0, seen
    assert seen["after both ended"] == 0, seen


def test_a_failed_or_not_passing_step_keeps_only_its_own_downstream_from_running():
    ran: list[str] = []

    def step(entity):
        ran.append(entity.name)
        if entity.name == "tests":
            raise RuntimeError("tests API down")
        return entity.name != "features"  # features "fails a blocking check"

    outcomes = {o.entity.name: o for o in run_in_dependency_order(ENTITIES, step, passed=bool)}
    assert isinstance(outcomes["tests"].error, RuntimeError), "the error is handed back, not raised"
    assert "tests failed" in outcomes["bugs"].not_run_because
    assert "features failed a blocking check" in outcomes["user_stories"].not_run_because
    assert sorted(ran) == ["features", "products", "tests"]


def test_a_selection_runs_only_the_selected_steps():
    ran: list[str] = []
    selection = [ENTITY_BY_NAME["bugs"], ENTITY_BY_NAME["features"]]
    outcomes = list(run_in_dependency_order(selection, lambda e: ran.append(e.name)))
    assert sorted(ran) == ["bugs", "features"], "upstream outside the selection is not waited for"
    assert len(outcomes) == 2


# --- the one Dagster step ------------------------------------------------------------------


def _resources(sim, db):
    return {
        "testio_api": CustomerApiResource.for_simulator(sim),
        "warehouse": WarehouseResource(path=str(db)),
        "refresh": RefreshResource(mode="full"),
    }


def _steps(instance, run_id, kind):
    return [e.step_key for e in instance.all_logs(run_id, of_type=kind)]


def test_the_five_entities_refresh_in_one_step_and_a_selection_in_the_same_step(tmp_path):
    sim = make_simulator("tiny")
    db = tmp_path / "testio.duckdb"
    with dg.instance_for_test() as instance:
        result = dg.materialize(TESTIO_ASSETS, resources=_resources(sim, db), instance=instance)
        assert result.success
        assert _steps(instance, result.run_id, dg.DagsterEventType.STEP_SUCCESS) == [STEP_NAME]
        materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
        assert materialized == {e.name for e in ENTITIES}
        checks = result.get_asset_check_evaluations()
        assert {c.asset_key.to_user_string() for c in checks} == {e.name for e in ENTITIES}
        assert all(c.passed for c in checks)

        only_bugs = dg.materialize(TESTIO_ASSETS, resources=_resources(sim, db), instance=instance, selection=["bugs"])
        assert only_bugs.success
        assert {m.asset_key.to_user_string() for m in only_bugs.get_asset_materialization_events()} == {"bugs"}
        assert {c.asset_key.to_user_string() for c in only_bugs.get_asset_check_evaluations()} == {"bugs"}


def test_a_failing_entity_fails_the_step_after_the_others_are_recorded(tmp_path, monkeypatch):
    import testio_pipeline.sync.tests as tests_step

    def broken(*args, **kwargs):
        raise RuntimeError("the test list is down")

    module, function = ENTITY_BY_NAME["tests"].step.split(":")
    assert module == tests_step.__name__
    monkeypatch.setattr(tests_step, function, broken)
    sim = make_simulator("tiny")
    db = tmp_path / "testio.duckdb"
    with dg.instance_for_test() as instance:
        result = dg.materialize(TESTIO_ASSETS, resources=_resources(sim, db), instance=instance, raise_on_error=False)
        assert not result.success
        materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
        assert materialized == {"products", "features", "user_stories"}, "the other chain is recorded"
        failure = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        assert "the test list is down" in failure[0].dagster_event.step_failure_data.error.cause.message
    [event] = Warehouse(db).records("SELECT status, error FROM sync_events")
    assert event["status"] == "failed" and "tests: RuntimeError: the test list is down" in event["error"]
    assert Warehouse(db).table_counts()["bugs"] == 0
