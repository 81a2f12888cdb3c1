"""Dagster's cost per event-log entry: SQLite storage (dagster.yaml) against PostgreSQL
(deploy/dagster.postgres.yaml).

    .venv/bin/python benchmarks/event_storage.py                       # SQLite only
    DAGSTER_PG_URL=postgresql+psycopg2://… .venv/bin/python benchmarks/event_storage.py

For each storage, in a fresh DAGSTER_HOME holding that config: ``events`` engine events
written to one run (``report_engine_event``, each stored before the call returns, as every run
event is), timed one by one; then a ``dg.materialize`` of the five assets against the tiny
in-process simulator, with its wall time and the number of events it stored. Prints JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def measure(config_file: Path, events: int) -> dict:
    import dagster as dg

    from testio_pipeline.component.resources import CustomerApiResource, RefreshResource, WarehouseResource
    from testio_pipeline.component.testio.assets import TESTIO_ASSETS
    from testio_pipeline.simulator import SimClock, Simulator, SimulatorConfig

    with tempfile.TemporaryDirectory() as home:
        shutil.copy(config_file, Path(home) / "dagster.yaml")
        with dg.DagsterInstance.from_config(home) as instance:
            run = instance.create_run_for_job(dg.GraphDefinition("event_bench").to_job())
            times = []
            for i in range(events):
                t0 = time.perf_counter()
                instance.report_engine_event(f"event {i}", run)
                times.append(time.perf_counter() - t0)

            now = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)
            config = SimulatorConfig.preset("tiny", anchor=datetime(2026, 11, 1, tzinfo=timezone.utc))
            resources = {
                "testio_api": CustomerApiResource.for_simulator(Simulator(config, clock=SimClock(now))),
                "warehouse": WarehouseResource(path=str(Path(home) / "mirror.duckdb")),
                "refresh": RefreshResource(mode="full"),
            }
            t0 = time.perf_counter()
            result = dg.materialize(TESTIO_ASSETS, resources=resources, instance=instance, raise_on_error=True)
            wall = time.perf_counter() - t0
            run_events = len(instance.all_logs(result.run_id))
    return {
        "event_ms_median": round(statistics.median(times) * 1000, 2),
        "event_ms_mean": round(statistics.mean(times) * 1000, 2),
        "materialize_wall_s": round(wall, 2),
        "materialize_events": run_events,
    }


def main() -> int:
    events = int(os.environ.get("EVENTS", "200"))
    out = {"sqlite": measure(REPO / "dagster.yaml", events)}
    if os.environ.get("DAGSTER_PG_URL"):
        out["postgres"] = measure(REPO / "deploy" / "dagster.postgres.yaml", events)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
