"""The one staleness helper and the refresh sensor, with an injected clock (no sleeping)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from testio_pipeline.component.testio.assets import TESTIO_ASSETS
from testio_pipeline.component.resources import CustomerApiResource, RefreshResource, WarehouseResource
from testio_pipeline.freshness import State, cycle_members, judge, ttl_policy
from testio_pipeline.component.automation.refresh_sensor import build_refresh_sensor

from .conftest import make_simulator
from .test_assets import materialize

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
ALL = ["bugs", "features", "products", "tests", "user_stories"]


# -- the helper -----------------------------------------------------------------------------


def test_the_helper_at_the_ttl_boundary():
    policy = ttl_policy(3600)  # warn (= refresh due) at 3240 s, fail (= stale) at 3600 s
    at = lambda seconds: judge("x", policy, T0, T0 + timedelta(seconds=seconds))  # noqa: E731
    assert at(0).state is State.FRESH
    assert at(3239).state is State.FRESH and not at(3239).needs_refresh
    assert at(3240).state is State.DUE and at(3240).needs_refresh
    assert at(3599).state is State.DUE
    assert at(3600).state is State.STALE
    assert at(0).due_at == T0 + timedelta(seconds=3240)
    assert at(0).stale_at == T0 + timedelta(seconds=3600)
    assert judge("x", policy, None, T0).state is State.NEVER


def test_a_one_minute_ttl_has_no_warn_window_and_is_due_when_stale():
    policy = ttl_policy(60)
    assert policy.warn_window is None
    assert judge("x", policy, T0, T0 + timedelta(seconds=59)).state is State.FRESH
    assert judge("x", policy, T0, T0 + timedelta(seconds=60)).state is State.STALE
    with pytest.raises(ValueError):
        ttl_policy(59)


def test_the_helper_needs_a_policy():
    with pytest.raises(ValueError, match="freshness policy"):
        judge("x", None, T0, T0)


# -- the sensor -----------------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def definitions(sensor, ttl=3600):
    policy = ttl_policy(ttl)
    resources = {"testio_api": CustomerApiResource(), "warehouse": WarehouseResource(), "refresh": RefreshResource()}
    return dg.Definitions(assets=TESTIO_ASSETS, sensors=[sensor], resources=resources).map_resolved_asset_specs(
        func=lambda spec: spec.replace_attributes(freshness_policy=policy)
    )


def evaluate(sensor, defs, instance):
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        return sensor(context)


def selected(request) -> list[str]:
    assert isinstance(request, dg.RunRequest), request
    return sorted(k.to_user_string() for k in request.asset_selection)


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def last_materialization(instance) -> datetime:
    events = instance.get_latest_materialization_events([dg.AssetKey(k) for k in ALL])
    return max(datetime.fromtimestamp(e.timestamp, tz=timezone.utc) for e in events.values())


def last_materialization_of(instance, names) -> datetime:
    events = instance.get_latest_materialization_events([dg.AssetKey(k) for k in names])
    return max(datetime.fromtimestamp(e.timestamp, tz=timezone.utc) for e in events.values() if e)


def first_materialization(instance) -> datetime:
    events = instance.get_latest_materialization_events([dg.AssetKey(k) for k in ALL])
    return min(datetime.fromtimestamp(e.timestamp, tz=timezone.utc) for e in events.values())


def test_on_an_empty_instance_the_first_evaluation_requests_the_initial_sync(instance):
    clock = Clock(T0)
    sensor = build_refresh_sensor(TESTIO_ASSETS, clock=clock, current_scope=lambda: "all")
    request = evaluate(sensor, definitions(sensor), instance)
    assert selected(request) == ALL
    assert request.tags["testio/trigger"] == "sensor"
    clock.now += timedelta(seconds=60)
    again = evaluate(sensor, definitions(sensor), instance)
    assert again.run_key != request.run_key, "each cycle has its own run key"


def test_after_a_sync_it_skips_until_due_then_requests_one_run_for_everything(instance, tmp_path):
    materialize(make_simulator("tiny"), tmp_path / "t.duckdb", instance=instance)
    last = last_materialization(instance)
    clock = Clock(last)
    sensor = build_refresh_sensor(TESTIO_ASSETS, clock=clock, current_scope=lambda: "all", interval_seconds=60)
    defs = definitions(sensor)

    skip = evaluate(sensor, defs, instance)
    assert isinstance(skip, dg.SkipReason)
    assert "next cycle due at" in skip.skip_message

    # Before anyone's warn window by more than one interval (the run took a moment, so
    # the first asset it wrote is the first to fall due).
    first = first_materialization(instance)
    clock.now = first + timedelta(seconds=3240 - 61)
    assert isinstance(evaluate(sensor, defs, instance), dg.SkipReason)

    clock.now = last + timedelta(seconds=3240)  # in the warn window: still within the TTL
    assert selected(evaluate(sensor, defs, instance)) == ALL

    clock.now = last + timedelta(seconds=3601)  # past the TTL
    assert selected(evaluate(sensor, defs, instance)) == ALL


def test_it_never_overlaps_a_run_in_progress(instance):
    sensor = build_refresh_sensor(TESTIO_ASSETS, clock=Clock(T0), current_scope=lambda: "all")
    run = create_run_for_test(instance, job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED)
    skip = evaluate(sensor, definitions(sensor), instance)
    assert isinstance(skip, dg.SkipReason)
    assert run.run_id[:8] in skip.skip_message and "not overlapping" in skip.skip_message


def test_only_its_own_customers_runs_hold_it_back(instance):
    """Another customer's run, tagged or only selecting that customer's assets, does not stop a
    cycle; a run tagged for this customer, or an untagged one that may write its assets, does."""
    from testio_pipeline.run_log import CUSTOMER_TAG

    sensor = build_refresh_sensor(TESTIO_ASSETS, clock=Clock(T0), current_scope=lambda: "all", customer="acme")
    defs = definitions(sensor)
    started = dg.DagsterRunStatus.STARTED
    create_run_for_test(instance, job_name="__ASSET_JOB", status=started, tags={CUSTOMER_TAG: "globex"})
    create_run_for_test(
        instance, job_name="__ASSET_JOB", status=started, asset_selection={dg.AssetKey(["globex", "bugs"])}
    )
    request = evaluate(sensor, defs, instance)
    assert selected(request) == ALL and request.tags[CUSTOMER_TAG] == "acme"

    ui_run = create_run_for_test(
        instance, job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTING, asset_selection={dg.AssetKey("bugs")}
    )
    skip = evaluate(sensor, defs, instance)
    assert isinstance(skip, dg.SkipReason) and ui_run.run_id[:8] in skip.skip_message
    instance.delete_run(ui_run.run_id)
    own = create_run_for_test(instance, job_name="__ASSET_JOB", status=started, tags={CUSTOMER_TAG: "acme"})
    skip = evaluate(sensor, defs, instance)
    assert isinstance(skip, dg.SkipReason) and own.run_id[:8] in skip.skip_message and "acme" in skip.skip_message


def test_a_product_scope_change_triggers_a_refresh_of_fresh_assets(instance, tmp_path):
    materialize(make_simulator("tiny"), tmp_path / "t.duckdb", instance=instance)
    clock = Clock(last_materialization(instance))
    scope = {"now": "all"}
    sensor = build_refresh_sensor(TESTIO_ASSETS, clock=clock, current_scope=lambda: scope["now"])
    defs = definitions(sensor)
    assert isinstance(evaluate(sensor, defs, instance), dg.SkipReason)
    scope["now"] = "20001"
    request = evaluate(sensor, defs, instance)
    assert selected(request) == ALL
    assert "product scope changed" in request.tags["testio/cycle_reason"]


def test_only_due_assets_and_their_upstream_are_requested(instance, tmp_path):
    # Everything but `bugs` is materialized: bugs is due (never written), the others fresh.
    materialize(make_simulator("tiny"), tmp_path / "t.duckdb", instance=instance,
                selection=["products", "features", "user_stories", "tests"])
    clock = Clock(last_materialization_of(instance, ["products", "features", "user_stories", "tests"]))
    sensor = build_refresh_sensor(TESTIO_ASSETS, clock=clock, current_scope=lambda: "all", interval_seconds=60)
    request = evaluate(sensor, definitions(sensor), instance)
    assert selected(request) == ["bugs", "products", "tests"], "bugs plus what it needs upstream"


def test_one_cycle_takes_assets_falling_due_moments_apart_but_not_fresh_ones():
    policy = ttl_policy(3600)  # window: 360 s
    now = T0 + timedelta(seconds=3240)
    judged = {
        "products": judge("products", policy, T0, now),  # due now
        "tests": judge("tests", policy, T0 + timedelta(seconds=20), now),  # due in 20 s
        "bugs": judge("bugs", policy, T0 + timedelta(seconds=300), now),  # due in 5 min
        "features": judge("features", policy, T0 + timedelta(seconds=3000), now),  # due in 50 min
    }
    assert cycle_members(judged, now, interval_seconds=5) == {"products", "tests", "bugs"}
    # Nothing due yet (earliest in 20 s, the next evaluation in 5 s): no cycle at all.
    earlier = {name: judge(name, policy, s.last_materialized_at, now - timedelta(seconds=25)) for name, s in judged.items()}
    assert cycle_members(earlier, now - timedelta(seconds=25), interval_seconds=5) == set()
    # A one-minute TTL still takes a whole run's worth of assets in one cycle.
    short = ttl_policy(60)
    at = T0 + timedelta(seconds=60)
    judged = {"a": judge("a", short, T0, at), "b": judge("b", short, T0 + timedelta(seconds=8), at)}
    assert cycle_members(judged, at, interval_seconds=3) == {"a", "b"}
    just_after = T0 + timedelta(seconds=9)
    rejudged = {name: judge(name, short, s.last_materialized_at, just_after) for name, s in judged.items()}
    assert cycle_members(rejudged, just_after, interval_seconds=3) == set()


def test_a_customer_whose_runs_keep_failing_backs_off_and_another_does_not_wait(instance):
    """One failed run: the next cycle retries at once. Two or more in a row (a revoked token,
    an API down): wait two, four ... intervals, at most ten minutes. Only its own runs count."""
    from testio_pipeline.component.automation.refresh_sensor import MAX_RETRY_WAIT_SECONDS, retry_wait_seconds
    from testio_pipeline.run_log import CUSTOMER_TAG, TRIGGER_TAG

    assert [retry_wait_seconds(n, 30) for n in (0, 1, 2, 3, 4)] == [0, 0, 60, 120, 240]
    assert retry_wait_seconds(50, 30) == MAX_RETRY_WAIT_SECONDS == 600

    def ended_run(customer: str, status: dg.DagsterRunStatus) -> None:
        create_run_for_test(
            instance, job_name="__ASSET_JOB", status=status, tags={CUSTOMER_TAG: customer, TRIGGER_TAG: "sensor"}
        )

    ended_run("acme", dg.DagsterRunStatus.SUCCESS)
    # The runs' end times are the instance's clock (its database's, not Python's, which a test
    # run may move): the sensor's clock starts there.
    stamped = instance.get_run_records(limit=1)[0].update_timestamp
    clock = Clock(stamped if stamped.tzinfo else stamped.replace(tzinfo=timezone.utc))
    acme = build_refresh_sensor(TESTIO_ASSETS, clock=clock, current_scope=lambda: "all", customer="acme", interval_seconds=30)
    defs = definitions(acme)
    ended_run("acme", dg.DagsterRunStatus.FAILURE)
    assert selected(evaluate(acme, defs, instance)) == ALL, "one failure: the next cycle retries"

    ended_run("acme", dg.DagsterRunStatus.FAILURE)
    skip = evaluate(acme, defs, instance)
    assert isinstance(skip, dg.SkipReason) and "the last 2 refresh runs of acme failed" in skip.skip_message
    clock.now += timedelta(seconds=61)  # two intervals (and the second the end time is rounded to)
    assert selected(evaluate(acme, defs, instance)) == ALL

    for _ in range(3):
        ended_run("globex", dg.DagsterRunStatus.FAILURE)
    globex = build_refresh_sensor(TESTIO_ASSETS, clock=clock, current_scope=lambda: "all", customer="globex")
    assert isinstance(evaluate(globex, definitions(globex), instance), dg.SkipReason)
    assert selected(evaluate(acme, defs, instance)) == ALL, "globex's failures do not hold acme back"
    ended_run("acme", dg.DagsterRunStatus.SUCCESS)
    ended_run("acme", dg.DagsterRunStatus.FAILURE)
    assert selected(evaluate(acme, defs, instance)) == ALL, "a success in between starts the count again"
