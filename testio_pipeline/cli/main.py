"""`python -m testio_pipeline.cli run|status`: `make run` and `make status`."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ..settings import SettingsError, environment

if TYPE_CHECKING:
    from ..freshness import Staleness

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
        raise SettingsError(f"name the customer to run with --customer or run them all with --all (instances: {names})")
    return chosen[0]


def _chosen(args: argparse.Namespace) -> list:
    """The instances a command is about: ``--all``, the one ``--customer`` names, else the default."""
    from ..definitions import mirrors

    if args.all:
        return mirrors()
    return [_mirror(args.customer)]


def _instance():
    import dagster as dg

    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


@dataclass(frozen=True)
class SyncOutcome:
    """How one customer's sync went: its run, and the rows it holds or why it failed."""

    customer: str
    run_id: str | None
    rows: dict[str, int] | None = None  # table -> rows, when the sync succeeded
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def line(self) -> str:
        run = f"run {self.run_id[:8]}" if self.run_id else "no run"
        if self.ok:
            counts = self.rows or {}
            what = ", ".join(f"{counts.get(t, 0)} {t}" for t in ("products", "tests", "bugs"))
            return f"{self.customer}: ok ({run}): {what}"
        return f"{self.customer}: FAILED ({run}): {self.error}"


def _sync(mirror, instance, mode: str, *, example: bool) -> SyncOutcome:
    """One customer's sync in this process, with what it prints: source, warehouse, the
    failure's steps, or the rows per table (and, for a single customer, an example query)."""
    from ..definitions import defs
    from ..run_log import CUSTOMER_TAG, TRIGGER_TAG
    from ..warehouse import Warehouse
    from ..warehouse.backends import is_lake, mask_password

    settings = mirror.settings()
    if settings.uses_simulator:
        print(f"Source: the built-in TestIO simulator (preset {settings.simulator_preset!r}, fake data).")
    else:
        print(f"Source: {settings.effective_base_url}")
    lake = is_lake(settings.duckdb_path)
    print(f"Warehouse: {mask_password(settings.duckdb_path) if lake else os.path.abspath(settings.duckdb_path)}")
    job = defs.resolve_implicit_global_asset_job_def()
    run_config = {
        "resources": {mirror.names.refresh: {"config": {"mode": mode}}},
        # Step-level DEBUG chatter drowns the summary; the UI keeps every event anyway.
        "loggers": {"console": {"config": {"log_level": "INFO"}}},
    }
    result = job.execute_in_process(
        instance=instance,
        run_config=run_config,
        tags={TRIGGER_TAG: "cli", CUSTOMER_TAG: mirror.name, "testio/mode": mode},
        asset_selection=mirror.asset_keys(),
        raise_on_error=False,
    )
    if not result.success:
        errors = []
        for event in result.all_events:
            if event.is_failure and event.event_specific_data is not None:
                error = getattr(event.event_specific_data, "error", None)
                root = None if error is None else _root_message(error)
                if root is not None and root not in errors:  # the run's failure repeats its step's
                    errors.append(root)
                    print(f"FAILED {event.step_key or 'run'}: {root}", file=sys.stderr)
        print(f"Sync failed (run {result.run_id}); previous data in the warehouse is intact.", file=sys.stderr)
        return SyncOutcome(mirror.name, result.run_id, error=errors[0] if errors else "the run failed")

    warehouse = Warehouse(settings.duckdb_path, lake_data_path=settings.lake_data_path)
    counts = warehouse.table_counts()
    print(f"\nSync finished (run {result.run_id}, mode {mode}). Rows per table:")
    for table, count in counts.items():
        print(f"  {table:<14} {count:>8}")
    if example:
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
    return SyncOutcome(mirror.name, result.run_id, rows=counts)


def _root_message(error) -> str:
    """The first line of the innermost cause: Dagster wraps what the step raised in its own
    "Error occurred while executing op" error."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    text = error.message.strip()
    _, colon, rest = text.partition(": ")
    if colon and "." in text.split(":", 1)[0]:  # "module.ExceptionClass: message"
        text = rest
    return text.splitlines()[0] if text else "the run failed"


def _run(args: argparse.Namespace) -> int:
    from ..run_health import fail_dead_runs

    chosen = _chosen(args)
    if not chosen:
        raise SettingsError("the code location has no TestIOMirror instance to run")
    instance = _instance()
    for run_id in fail_dead_runs(instance):  # a killed run would hold the pool slot forever
        print(f"Run {run_id} lost its process (killed?): marked failed, its pool slot freed.")
    if not args.all:
        return 0 if _sync(chosen[0], instance, args.mode, example=True).ok else 1
    # One after another: one process holds one DuckDB writer at a time anyway, and a failing
    # customer must not keep the next from syncing.
    outcomes = []
    for mirror in chosen:
        print(f"\n=== {mirror.name} ===")
        try:
            outcomes.append(_sync(mirror, instance, args.mode, example=False))
        except SettingsError as exc:
            print(f"Configuration error: {exc}", file=sys.stderr)
            outcomes.append(SyncOutcome(mirror.name, None, error=f"configuration error: {exc}"))
    print(f"\nSummary of {len(outcomes)} customers (mode {args.mode}):")
    for outcome in outcomes:
        print(f"  {outcome.line()}")
    failed = [o.customer for o in outcomes if not o.ok]
    if failed:
        print(f"{len(failed)} of {len(outcomes)} customers failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


@dataclass(frozen=True)
class CustomerStatus:
    """One customer's staleness: each of its assets judged, and its own run in flight."""

    customer: str
    warehouse: str
    now: datetime
    judged: dict[str, Staleness]
    in_flight: str | None = None  # id of a queued or running run of this customer
    failed_run: str | None = None  # id of its latest finished run, if that run did not succeed

    @property
    def due(self) -> list[str]:
        return sorted(name for name, s in self.judged.items() if s.needs_refresh)

    @property
    def stale(self) -> list[str]:
        """Assets past their TTL or never materialized."""
        from ..freshness import State

        return sorted(name for name, s in self.judged.items() if s.state in (State.STALE, State.NEVER))

    def lines(self) -> list[str]:
        out = [f"Customer {self.customer} (warehouse {self.warehouse})"]
        out += [f"  {s.describe(self.now)}" for s in self.judged.values()]
        if self.in_flight:
            out.append(f"  A run of {self.customer} is in flight ({self.in_flight[:8]}): its refresh sensor waits for it.")
        elif self.due:
            out.append(f"  The next sensor evaluation requests one run for: {', '.join(self.due)} (plus what they need upstream).")
        elif self.judged:
            nxt = min(self.judged.values(), key=lambda s: s.due_at)
            out.append(f"  Nothing is due; the next cycle starts at {nxt.due_at:%H:%M:%S} UTC ({nxt.asset}).")
        if self.failed_run:
            out.append(f"  The last cycle of {self.customer} failed (run {self.failed_run[:8]}).")
        return out


def customer_statuses(instance, mirrors, now: datetime) -> list[CustomerStatus]:
    """Each customer's staleness, from the one helper, as the refresh sensor judges it."""
    from ..component.automation.refresh_sensor import _own_run_in_flight
    from ..definitions import defs
    from ..freshness import judge_assets, policies_of
    from ..warehouse.backends import is_lake, mask_password

    graph = defs.resolve_asset_graph()
    known = graph.get_all_asset_keys()
    out = []
    for mirror in mirrors:
        keys = [k for k in mirror.asset_keys() if k in known and graph.get(k).freshness_policy is not None]
        judged = judge_assets(instance, policies_of(graph, keys), now)
        run = _own_run_in_flight(instance, mirror.name, keys)
        path = mirror.settings().duckdb_path
        shown = mask_password(path) if is_lake(path) else os.path.abspath(path)
        out.append(
            CustomerStatus(
                mirror.name, shown, now, judged, run.run_id if run else None, _last_cycle_failed(instance, mirror.name)
            )
        )
    return out


def _status(args: argparse.Namespace) -> int:
    """What the next refresh cycle would do: staleness of each asset of each customer."""
    import dagster as dg

    from ..definitions import mirrors
    from ..domain.vocabulary import utcnow

    if not os.environ.get("DAGSTER_HOME"):
        print("DAGSTER_HOME is not set: there is no instance to read (the Makefile sets it).", file=sys.stderr)
        return 2
    # Without a flag: every customer (one block each); the default instance alone is one block.
    chosen = [_mirror(args.customer)] if args.customer else mirrors()
    now = utcnow()
    try:
        with dg.DagsterInstance.get() as instance:
            statuses = customer_statuses(instance, chosen, now)
    except Exception as exc:  # noqa: BLE001 - any unreadable instance means "cannot tell"
        print(f"Cannot read the Dagster instance in {os.environ['DAGSTER_HOME']}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(f"Staleness at {now:%Y-%m-%d %H:%M:%S} UTC (TTL policy of each asset), {len(statuses)} customer(s):")
    for status in statuses:
        print()
        print("\n".join(status.lines()))
    return _health_code(statuses) if args.exit_code else 0


def _last_cycle_failed(instance, customer: str) -> str | None:
    """The id of the customer's latest finished run if it did not succeed."""
    import dagster as dg

    from ..run_log import CUSTOMER_TAG

    finished = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
    last = instance.get_run_records(dg.RunsFilter(tags={CUSTOMER_TAG: customer}, statuses=finished), limit=1)
    if last and last[0].dagster_run.status != dg.DagsterRunStatus.SUCCESS:
        return last[0].dagster_run.run_id
    return None


def _health_code(statuses: list[CustomerStatus]) -> int:
    """`status --exit-code` (docs/alerts.md): 0 every asset within its TTL and every customer's
    last cycle succeeded; 1 an asset never materialized or past its TTL, or a last cycle
    failed; 2 cannot tell (no instance, an unreadable one — returned before — or no policies)."""
    if not any(status.judged for status in statuses):
        print("No asset has a freshness policy: nothing to judge.", file=sys.stderr)
        return 2
    unhealthy = [name for status in statuses for name in status.stale]
    if unhealthy:
        print(f"Not fresh: {', '.join(unhealthy)}.", file=sys.stderr)
    return 1 if unhealthy or any(status.failed_run for status in statuses) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="testio-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="sync every TestIO asset into DuckDB, then print a summary")
    run.add_argument("--mode", choices=["incremental", "full"], default="full")
    which = run.add_mutually_exclusive_group()
    which.add_argument("--customer", help="the TestIOMirror instance to sync (default: the unprefixed one)")
    which.add_argument("--all", action="store_true", help="sync every instance, one after another, then a summary per customer")
    run.set_defaults(func=_run)
    status = sub.add_parser("status", help="staleness of each customer's assets and what the next cycle would do")
    which = status.add_mutually_exclusive_group()
    which.add_argument("--customer", help="only this TestIOMirror instance")
    which.add_argument("--all", action="store_true", help="every instance, one block each (the default)")
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
