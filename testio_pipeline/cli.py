"""Command line entry points: `python -m testio_pipeline.cli run` is what `make run` does."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .settings import Settings, SettingsError

EXAMPLE_QUERY = """\
SELECT p.name AS product, b.severity, count(*) AS bugs
FROM bugs b JOIN products p ON p.id = b.product_id
WHERE b.deleted_at IS NULL
GROUP BY ALL ORDER BY bugs DESC LIMIT 5"""


def _run(args: argparse.Namespace) -> int:
    import dagster as dg

    from .definitions import defs
    from .warehouse import Warehouse

    settings = Settings.from_env()
    if settings.uses_simulator:
        print(f"Source: the built-in TestIO simulator (preset {settings.simulator_preset!r}, fake data).")
    else:
        print(f"Source: {settings.effective_base_url}")
    print(f"Warehouse: {os.path.abspath(settings.duckdb_path)}")

    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    job = defs.resolve_implicit_global_asset_job_def()
    run_config = {
        "resources": {"refresh": {"config": {"mode": args.mode}}},
        # Step-level DEBUG chatter drowns the summary; the UI keeps every event anyway.
        "loggers": {"console": {"config": {"log_level": "INFO"}}},
    }
    result = job.execute_in_process(
        instance=instance,
        run_config=run_config,
        tags={"testio/trigger": "cli", "testio/mode": args.mode},
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

    warehouse = Warehouse(settings.duckdb_path)
    counts = warehouse.table_counts()
    print(f"\nSync finished (run {result.run_id}, mode {args.mode}). Rows per table:")
    for table, count in counts.items():
        print(f"  {table:<14} {count:>8}")
    print(f"\nQuery it, e.g.: duckdb -readonly {settings.duckdb_path}")
    print(EXAMPLE_QUERY + ";")
    print(warehouse.query(EXAMPLE_QUERY).to_string(index=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="testio-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="sync all five assets into DuckDB, then print a summary")
    run.add_argument("--mode", choices=["incremental", "full"], default="full")
    run.set_defaults(func=_run)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
