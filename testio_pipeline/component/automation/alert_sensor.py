"""`testio_alert_sensor`: tells a webhook when a customer's mirror is failing or stale, and when it recovers.

It only reads the Dagster instance (runs, their events, check evaluations, materializations)
and never starts a run; sync runs and the refresh sensor never deliver anything, so a slow,
failing or hanging webhook cannot fail or delay them. What was announced lives in the
sensor's cursor (``alerts.AlertState``), so a daemon restart neither repeats nor loses an
alert. The policy (once per condition, one body per evaluation) is in ``alerts.py``.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from typing import Callable, Sequence

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from ... import alerts
from ...alerts import Condition
from ...domain.vocabulary import utcnow
from ...freshness import State, judge_assets
from ...run_log import CUSTOMER_TAG

SENSOR_NAME = "testio_alert_sensor"
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def _first_line(text: str) -> str:
    line = next((line.strip() for line in text.strip().splitlines() if line.strip()), "")
    return re.sub(r"^(?:[A-Za-z_][\w]*\.)+(?=[A-Za-z_]\w*:)", "", line)[:300]  # AuthError, not a.b.AuthError


def _root_cause(error):
    """Dagster wraps the step's exception ("Error occurred while executing op"): the innermost cause says what happened."""
    while error.cause is not None:
        error = error.cause
    return error


def _run_url(ui_url: str | None, run_id: str) -> str | None:
    return f"{ui_url.rstrip('/')}/runs/{run_id}" if ui_url else None


def _failed_run(instance: dg.DagsterInstance, customer: str, run: dg.DagsterRun, ui_url: str | None) -> Condition:
    """The run's failed step, the entities it did not refresh and its error's first line."""
    def events(kind):
        return [r.event_log_entry for r in instance.get_records_for_run(run.run_id, of_type=kind).records]

    planned = {e.dagster_event.asset_key for e in events(dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)}
    done = {e.dagster_event.asset_key for e in events(dg.DagsterEventType.ASSET_MATERIALIZATION)}
    missed = sorted(key.path[-1] for key in planned - done if key is not None)
    error, step = "", None
    for entry in events(dg.DagsterEventType.STEP_FAILURE):
        data = entry.dagster_event.step_failure_data
        step = entry.step_key
        error = _first_line(_root_cause(data.error).message if data and data.error else entry.dagster_event.message or "")
        break
    if not error:
        for entry in events(dg.DagsterEventType.RUN_FAILURE):
            error = _first_line(entry.dagster_event.message or entry.user_message or "")
    where = f"step {step}" if step else "the run"
    entities = f"; not refreshed: {', '.join(missed)}" if missed else ""
    return Condition(
        alerts.RUN_FAILED,
        customer,
        f"{customer}: refresh run {run.run_id[:8]} failed in {where}{entities}: {error or 'no error message'}",
        run_id=run.run_id,
        url=_run_url(ui_url, run.run_id),
    )


def current_conditions(
    instance: dg.DagsterInstance,
    asset_graph,
    *,
    customer: str,
    freshness_keys: Sequence[dg.AssetKey],
    entity_keys: Sequence[dg.AssetKey],
    blocking_checks: Sequence[dg.AssetCheckKey],
    watching_since: datetime,
    now: datetime,
    ui_url: str | None = None,
) -> list[Condition]:
    """Everything wrong with ``customer``'s mirror now, read from the instance."""
    found: list[Condition] = []
    finished = instance.get_run_records(dg.RunsFilter(tags={CUSTOMER_TAG: customer}, statuses=FINISHED), limit=1)
    if finished and finished[0].dagster_run.status != dg.DagsterRunStatus.SUCCESS:
        found.append(_failed_run(instance, customer, finished[0].dagster_run, ui_url))

    executions = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(blocking_checks))
    for key, record in sorted(executions.items(), key=lambda kv: kv[0].to_user_string()):
        if record.status == AssetCheckExecutionRecordStatus.FAILED:
            found.append(Condition(
                alerts.CHECK_FAILED,
                key.to_user_string(),
                f"{customer}: blocking check {key.name} failed on {key.asset_key.to_user_string()}",
                run_id=record.run_id,
                url=_run_url(ui_url, record.run_id),
            ))

    policies = {key: asset_graph.get(key).freshness_policy for key in freshness_keys}
    policies = {key: policy for key, policy in policies.items() if policy is not None}
    judged = judge_assets(instance, policies, now)
    for name, staleness in sorted(judged.items()):
        if staleness.state is State.STALE:
            found.append(Condition(alerts.FRESHNESS_FAILED, name, f"{customer}: freshness failing: {staleness.describe(now)}"))

    ttl = max((p.fail_window.to_timedelta() for p in policies.values()), default=None)
    if ttl is not None:
        succeeded = instance.get_run_records(
            dg.RunsFilter(tags={CUSTOMER_TAG: customer}, statuses=[dg.DagsterRunStatus.SUCCESS]), limit=1
        )
        last = succeeded[0].end_time if succeeded else None
        since = datetime.fromtimestamp(last, tz=timezone.utc) if last else watching_since
        if now - since > ttl:
            what = f"since {since:%Y-%m-%d %H:%M:%S} UTC" if last else f"since watching began ({since:%Y-%m-%d %H:%M:%S} UTC)"
            found.append(Condition(
                alerts.NO_SUCCESSFUL_CYCLE,
                customer,
                f"{customer}: no successful refresh cycle {what}, longer than the TTL ({int(ttl.total_seconds())} s)",
            ))

    latest = instance.get_latest_materialization_events(list(entity_keys))
    for key in sorted(entity_keys, key=lambda k: k.to_user_string()):
        event = latest.get(key)
        materialization = event.asset_materialization if event else None
        rejected = materialization.metadata.get("records_rejected") if materialization else None
        count = getattr(rejected, "value", rejected) or 0
        if count:
            found.append(Condition(
                alerts.RECORDS_REJECTED,
                key.to_user_string(),
                f"{customer}: {count} records of {key.to_user_string()} rejected in run {event.run_id[:8]} (table rejected_records)",
                run_id=event.run_id,
                url=_run_url(ui_url, event.run_id),
            ))
    return found


def build_alert_sensor(
    *,
    customer: str,
    freshness_keys: Sequence[dg.AssetKey],
    entity_keys: Sequence[dg.AssetKey],
    blocking_checks: Sequence[dg.AssetCheckKey],
    name: str = SENSOR_NAME,
    interval_seconds: int = 60,
    webhook_variable: str = alerts.WEBHOOK_VARIABLE,
    ui_url: str | None = None,
    secret_variables: Sequence[str] = (),
    delivery: alerts.Delivery = alerts.Delivery(),
    clock: Callable[[], datetime] = utcnow,
) -> dg.SensorDefinition:
    """The alert sensor of one customer. The webhook URL is read from ``webhook_variable`` at
    each evaluation (it is a secret: never in config, cursor or a message); ``ui_url``, the
    Dagster UI's base URL, makes run links."""

    @dg.sensor(
        name=name,
        description=f"Alerts {customer}'s webhook (${webhook_variable}) once when a run, check or freshness fails, and again on recovery.",
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def testio_alert_sensor(context: dg.SensorEvaluationContext):
        now = clock()
        state = alerts.AlertState.from_cursor(context.cursor)
        if state.watching_since is None:
            state.watching_since = now.timestamp()
        secrets = [os.environ.get(variable) for variable in (webhook_variable, *secret_variables)]
        conditions = current_conditions(
            context.instance,
            context.repository_def.asset_graph,
            customer=customer,
            freshness_keys=freshness_keys,
            entity_keys=entity_keys,
            blocking_checks=blocking_checks,
            watching_since=datetime.fromtimestamp(state.watching_since, tz=timezone.utc),
            now=now,
            ui_url=ui_url,
        )
        conditions = [
            Condition(c.kind, c.subject, alerts.scrub(c.summary, secrets), c.run_id, c.url) for c in conditions
        ]
        transitions = alerts.advance(state, conditions, now)
        url = os.environ.get(webhook_variable) or None
        for transition in transitions:
            line = f"alert {transition.state}: {transition.condition['summary']}"
            (context.log.warning if transition.state == alerts.FIRING else context.log.info)(line)
        if transitions and url:
            for dropped in alerts.enqueue(state, alerts.message(customer, transitions, now)):
                context.log.warning(f"alert outbox full: dropped an undelivered body of {dropped['testio']['sent_at']}")
        outcome = ""
        if url and state.outbox:
            report = alerts.deliver(url, state, delivery, secrets=secrets)
            outcome = f"; delivered {report.delivered}, {report.pending} waiting"
            if report.errors:
                context.log.warning(f"alert webhook (${webhook_variable}) not reached: {report.errors[-1]}; retried next evaluation")
                outcome += f" (webhook: {report.errors[-1]})"
        elif transitions and not url:
            outcome = f"; ${webhook_variable} is not set: logged only"
        context.update_cursor(state.to_cursor())
        firing = len(state.active)
        return dg.SkipReason(f"{customer}: {firing} conditions active, {len(transitions)} changed{outcome}")

    return testio_alert_sensor
