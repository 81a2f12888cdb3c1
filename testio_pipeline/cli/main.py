"""`python -m testio_pipeline.cli run|status`: `make run` and `make status`."""

from __future__ import annotations

import argparse
import os
import sys

from ..settings import SettingsError, environment

EXAMPLE_QUERY = """\
SELECT p.name AS product, b.severity, count(*) AS bugs
FROM bugs b JOIN products p ON p.id = b.product_id
WHERE b.deleted_at IS NULL
GROUP BY ALL ORDER BY bugs DESC LIMIT 5"""


def _mirror(name: str | None):
    """The customer instance to run: the one named, else the unprefixed one, else the only one."""
    from ..definitions import mirrors

    found = mirrors()
    if name is not None:
        chosen = [m for m in found if m.name == name]
    else:
        chosen = [m for m in found if not m.prefix_keys] or (found if len(found) == 1 else [])
    if not chosen:
        names = ", ".join(m.name for m in found) or "none"
        raise SettingsError(f"name the customer to run with --customer (instances: {names})")
    return chosen[0]


def _run(args: argparse.Namespace) -> int:
    import dagster as dg

    from ..definitions import defs
    from ..run_health import fail_dead_runs
    from ..run_log import CUSTOMER_TAG, TRIGGER_TAG
    from ..warehouse import Warehouse
    from ..warehouse.backends import is_lake

    mirror = _mirror(args.customer)
    settings = mirror.settings()
    if settings.uses_simulator:
        print(f"Source: the built-in TestIO simulator (preset {settings.simulator_preset!r}, fake data).")
    else:
        print(f"Source: {settings.effective_base_url}")
    lake = is_lake(settings.duckdb_path)
    print(f"Warehouse: {settings.duckdb_path if lake else os.path.abspath(settings.duckdb_path)}")

    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    for run_id in fail_dead_runs(instance):  # a killed run would hold the pool slot forever
        print(f"Run {run_id} lost its process (killed?): marked failed, its pool slot freed.")
    job = defs.resolve_implicit_global_asset_job_def()
    run_config = {
        "resources": {mirror.names.refresh: {"config": {"mode": args.mode}}},
        # Step-level DEBUG chatter drowns the summary; the UI keeps every event anyway.
        "loggers": {"console": {"config": {"log_level": "INFO"}}},
    }
    result = job.execute_in_process(
        instance=instance,
        run_config=run_config,
        tags={TRIGGER_TAG: "cli", CUSTOMER_TAG: mirror.name, "testio/mode": args.mode},
        asset_selection=mirror.asset_keys(),
        raise_on_error=False,
    )
    if not result.success:
        for event in result.all_events:
            if event.is_failure and event.event_specific_data is not None:
                error = getattr(event.event_specific_data, "error", None)
                if error is not None:
                    print(f"FAILED {event.step_key}: {error.message.strip()}", file=sys.stderr)
        print(f"Sync failed (run {result.run_id}); previous data in the warehouse is intact.", file=sys.stderr)
        return 1

    warehouse = Warehouse(settings.duckdb_path, lake_data_path=settings.lake_data_path)
    counts = warehouse.table_counts()
    print(f"\nSync finished (run {result.run_id}, mode {args.mode}). Rows per table:")
    for table, count in counts.items():
        print(f"  {table:<14} {count:>8}")
    print(
        "\nQuery it: .venv/bin/python -m testio_pipeline.cli.query \"SELECT * FROM product_summary\"  "
        + (
            "(or any DuckDB client that ATTACHes the lake: see docs/operations.md, \"Beyond one machine\"). For example:"
            if lake
            else f"(or any DuckDB client: duckdb -readonly {settings.duckdb_path}). For example:"
        )
    )
    print(EXAMPLE_QUERY + ";")
    print(warehouse.query(EXAMPLE_QUERY).to_string(index=False))
    return 0


def _status(args: argparse.Namespace) -> int:
    """What the next refresh cycle would do: staleness of each asset, from the one helper."""
    import dagster as dg

    from ..component.automation.refresh_sensor import IN_FLIGHT
    from ..definitions import defs
    from ..domain.vocabulary import utcnow
    from ..freshness import judge_assets, policies_of
    from ..run_log import CUSTOMER_TAG

    if not os.environ.get("DAGSTER_HOME"):
        print("DAGSTER_HOME is not set: there is no instance to read (the Makefile sets it).", file=sys.stderr)
        return 2
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.get_all_asset_keys() if graph.get(k).freshness_policy is not None]
    now = utcnow()
    try:
        with dg.DagsterInstance.get() as instance:
            judged = judge_assets(instance, policies_of(graph, sorted(keys)), now)
            in_flight = instance.get_run_records(
                dg.RunsFilter(statuses=IN_FLIGHT), limit=5
            )
            failed_cycles = _failed_last_cycles(instance)
    except Exception as exc:  # noqa: BLE001 - any unreadable instance means "cannot tell"
        print(f"Cannot read the Dagster instance in {os.environ['DAGSTER_HOME']}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if not judged and args.exit_code:
        print("No asset has a freshness policy: nothing to judge.", file=sys.stderr)
        return 2
    print(f"Staleness at {now:%Y-%m-%d %H:%M:%S} UTC (TTL policy of each asset):")
    for staleness in judged.values():
        print(f"  {staleness.describe(now)}")
    due = sorted(name for name, s in judged.items() if s.needs_refresh)
    if in_flight:
        run = in_flight[0].dagster_run
        whose = run.tags.get(CUSTOMER_TAG)
        waiting = f"{whose}'s refresh sensor waits for it" if whose else "the refresh sensors of the customers it selects wait for it"
        print(f"A run is in flight ({run.run_id[:8]}): {waiting}.")
    elif due:
        print(f"The next sensor evaluation requests one run for: {', '.join(due)} (plus what they need upstream).")
    else:
        nxt = min(judged.values(), key=lambda s: s.due_at)
        print(f"Nothing is due; the next cycle starts at {nxt.due_at:%H:%M:%S} UTC ({nxt.asset}).")
    for customer, run_id in failed_cycles.items():
        print(f"The last cycle of {customer} failed (run {run_id[:8]}).")
    return _health_code(judged, failed_cycles) if args.exit_code else 0


def _failed_last_cycles(instance) -> dict[str, str]:
    """Customer -> run id, for each customer whose latest finished run did not succeed."""
    import dagster as dg

    from ..definitions import mirrors
    from ..run_log import CUSTOMER_TAG

    finished = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
    failed = {}
    for mirror in mirrors():
        last = instance.get_run_records(dg.RunsFilter(tags={CUSTOMER_TAG: mirror.name}, statuses=finished), limit=1)
        if last and last[0].dagster_run.status != dg.DagsterRunStatus.SUCCESS:
            failed[mirror.name] = last[0].dagster_run.run_id
    return failed


def _health_code(judged, failed_cycles) -> int:
    """`status --exit-code` (docs/alerts.md): 0 every asset within its TTL and every last
    cycle succeeded; 1 an asset never materialized or past its TTL, or a last cycle failed
    (2, cannot tell, is returned before: no instance, an unreadable one, no policies)."""
    from ..freshness import State

    unhealthy = [s.asset for s in judged.values() if s.state in (State.NEVER, State.STALE)]
    if unhealthy:
        print(f"Not fresh: {', '.join(unhealthy)}.", file=sys.stderr)
    return 1 if unhealthy or failed_cycles else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="testio-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="sync every TestIO asset into DuckDB, then print a summary")
    run.add_argument("--mode", choices=["incremental", "full"], default="full")
    run.add_argument("--customer", help="the TestIOMirror instance to sync (default: the unprefixed one)")
    run.set_defaults(func=_run)
    status = sub.add_parser("status", help="staleness of each asset and what the next cycle would do")
    status.add_argument(
        "--exit-code", action="store_true",
        help="exit 0 when every asset is fresh and each customer's last cycle succeeded, 1 when not, 2 when it cannot tell",
    )
    status.set_defaults(func=_status)
    args = parser.parse_args(argv)
    # As Dagster's own CLI does: a .env file's variables reach this process (the token is
    # read by its variable's name when the run starts), never overriding one that is set.
    for name, value in environment().items():
        os.environ.setdefault(name, value)
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
