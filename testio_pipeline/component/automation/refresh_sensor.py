"""`testio_refresh_sensor`: each evaluation is exactly one refresh cycle.

It reads the Dagster instance only (never the API, never DuckDB): the staleness helper
judges every asset from its freshness policy and last materialization; if any needs a
refresh and no run of its customer is queued or running, it requests ONE run for those
assets plus everything upstream of them. Another customer's runs do not hold it back. A run whose process died is marked failed first
(``run_health``), so a killed run neither blocks the cycle nor keeps its pool slot.
After a failed run the next cycle starts at once; after two or more in a row (a revoked
token, an API down) it backs off, doubling up to ``MAX_RETRY_WAIT_SECONDS``, so a customer
whose API is broken does not launch a run process every few seconds beside the others.
"""


from datetime import datetime, timedelta, timezone
from typing import Callable, Sequence

import dagster as dg

from ...domain.vocabulary import utcnow
from ...freshness import SCOPE_METADATA_KEY, Staleness, cycle_members, judge_assets, policies_of, scope_label
from ...run_health import fail_dead_runs
from ...run_log import CUSTOMER_TAG, TRIGGER_TAG
from ...settings import DEFAULT_SENSOR_INTERVAL_SECONDS

SENSOR_NAME = "testio_refresh_sensor"
DEFAULT_CUSTOMER_NAME = "testio"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _scope_changed(instance: dg.DagsterInstance, keys: list[dg.AssetKey], current: str) -> list[dg.AssetKey]:
    """Assets last materialized for a different product scope than the configured one."""
    latest = instance.get_latest_materialization_events(keys)
    changed = []
    for key in keys:
        event = latest.get(key)
        materialization = event.asset_materialization if event else None
        if materialization is None:
            continue
        recorded = materialization.metadata.get(SCOPE_METADATA_KEY)
        if recorded is not None and getattr(recorded, "value", recorded) != current:
            changed.append(key)
    return changed


# The longest a customer whose refresh runs keep failing waits between attempts.
MAX_RETRY_WAIT_SECONDS = 600
ENDED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def _failed_in_a_row(instance: dg.DagsterInstance, customer: str) -> tuple[int, datetime | None]:
    """How many of this sensor's latest ended runs for ``customer`` failed in a row, and when
    the newest of them ended."""
    records = instance.get_run_records(
        dg.RunsFilter(tags={CUSTOMER_TAG: customer, TRIGGER_TAG: "sensor"}, statuses=ENDED), limit=12
    )
    failed = 0
    for record in records:  # newest first
        if record.dagster_run.status != dg.DagsterRunStatus.FAILURE:
            break
        failed += 1
    if not failed:
        return 0, None
    newest = records[0]
    ended = datetime.fromtimestamp(newest.end_time, tz=timezone.utc) if newest.end_time else newest.update_timestamp
    return failed, ended


def retry_wait_seconds(failed_in_a_row: int, interval_seconds: int) -> float:
    """The pause before the next attempt: none after one failure (the next cycle retries),
    then two, four, eight ... sensor intervals, at most ``MAX_RETRY_WAIT_SECONDS``."""
    if failed_in_a_row < 2:
        return 0.0
    return float(min(interval_seconds * 2 ** min(failed_in_a_row - 1, 20), MAX_RETRY_WAIT_SECONDS))


def _own_run_in_flight(
    instance: dg.DagsterInstance, customer: str, keys: Sequence[dg.AssetKey]
) -> dg.DagsterRun | None:
    """A queued or running run of this customer: tagged for it, or untagged (the UI, an op
    job) and not known to touch only other assets, which may write its warehouse."""
    own = set(keys)
    for record in instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT)):
        run = record.dagster_run
        tagged = run.tags.get(CUSTOMER_TAG)
        if tagged == customer:
            return run
        if tagged is None and (run.asset_selection is None or run.asset_selection & own):
            return run
    return None


def build_refresh_sensor(
    assets: Sequence[dg.AssetsDefinition],
    *,
    clock: Callable[[], datetime] = utcnow,
    current_scope: Callable[[], str] = lambda: scope_label(None),
    interval_seconds: int = DEFAULT_SENSOR_INTERVAL_SECONDS,
    name: str = SENSOR_NAME,
    customer: str = DEFAULT_CUSTOMER_NAME,
) -> dg.SensorDefinition:
    """The refresh sensor over ``assets``, for the instance's configured product scope
    (``current_scope``, the label of its ``product_ids``); ``clock`` is injectable for tests."""
    keys = [key for asset in assets for key in asset.keys]
    scope_of = current_scope
    interval = interval_seconds

    @dg.sensor(
        name=name,
        description="Runs one refresh cycle per evaluation: requests a run for the TestIO assets that are due.",
        target=dg.AssetSelection.assets(*keys),
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def testio_refresh_sensor(context: dg.SensorEvaluationContext):
        now = clock()
        for run_id in fail_dead_runs(context.instance):
            context.log.warning(f"run {run_id} lost its process; marked failed and its pool slot freed")
        run = _own_run_in_flight(context.instance, customer, keys)
        if run is not None:
            return dg.SkipReason(
                f"a run of {customer} is already {run.status.value.lower()} ({run.run_id[:8]}); not overlapping it"
            )
        failed, last_failure = _failed_in_a_row(context.instance, customer)
        retry_at = last_failure + timedelta(seconds=retry_wait_seconds(failed, interval)) if last_failure else now
        if now < retry_at:
            return dg.SkipReason(
                f"the last {failed} refresh runs of {customer} failed; backing off until "
                f"{retry_at:%Y-%m-%d %H:%M:%S} UTC (in {int((retry_at - now).total_seconds())} s)"
            )
        asset_graph = context.repository_def.asset_graph
        judged = judge_assets(context.instance, policies_of(asset_graph, keys), now)
        due = cycle_members(judged, now, interval)
        rescoped = _scope_changed(context.instance, keys, scope_of())
        due |= {key.to_user_string() for key in rescoped}
        if not due:
            return dg.SkipReason(_next_cycle(judged.values(), now))
        selected = {dg.AssetKey.from_user_string(name) for name in due}
        for key in list(selected):
            selected |= asset_graph.get_ancestor_asset_keys(key)
        selected &= set(keys)
        reasons = "; ".join(judged[name].describe(now) for name in sorted(due) if name in judged)
        if rescoped:
            reasons = f"product scope changed to {scope_of()}; {reasons}"
        context.log.info(f"refresh cycle: {reasons}")
        return dg.RunRequest(
            run_key=f"testio-refresh-{now.isoformat()}",
            asset_selection=sorted(selected, key=lambda k: k.to_user_string()),
            tags={TRIGGER_TAG: "sensor", CUSTOMER_TAG: customer, "testio/cycle_reason": reasons[:200]},
        )

    return testio_refresh_sensor


def _next_cycle(judged: Sequence[Staleness] | object, now: datetime) -> str:
    judged = list(judged)  # type: ignore[arg-type]
    nxt = min(judged, key=lambda s: s.due_at)
    wait = int((nxt.due_at - now).total_seconds())
    return f"all {len(judged)} assets fresh; next cycle due at {nxt.due_at:%Y-%m-%d %H:%M:%S} UTC (in {wait} s, {nxt.asset})"
