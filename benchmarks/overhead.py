"""The fixed cost of a Dagster run: what a run spends outside fetching and writing.

Run in a fresh interpreter (``python benchmarks/overhead.py``, prints JSON) so the import
time is a real cold import, as in a process the run launcher starts:

* ``import_s``: ``import testio_pipeline.definitions`` (Dagster, the assets, the sensor...).
* ``cold_run``/``warm_run``: ``dg.materialize`` of the five assets on ``dg.instance_for_test()``
  against the tiny in-process simulator (no latency, full mode), the first and the second run
  in this process. ``overhead_s`` = the run's wall time minus the sum of its assets'
  ``fetch_seconds`` and ``write_seconds`` (from their materialization metadata): the executor,
  event log, resources, metadata reads and step bookkeeping.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


def measure() -> dict:
    started = time.perf_counter()
    import testio_pipeline.definitions  # noqa: F401 - the import is what is measured

    import_s = time.perf_counter() - started

    import dagster as dg

    from testio_pipeline.component.testio.assets import TESTIO_ASSETS
    from testio_pipeline.component.resources import CustomerApiResource, RefreshResource, WarehouseResource
    from testio_pipeline.simulator import SimClock, Simulator, SimulatorConfig

    now = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)
    config = SimulatorConfig.preset("tiny", anchor=datetime(2026, 11, 1, tzinfo=timezone.utc))
    out: dict = {"import_s": round(import_s, 3), "scale": "tiny preset, in-process transport, no latency"}
    with tempfile.TemporaryDirectory() as tmp, dg.instance_for_test() as instance:
        for label in ("cold_run", "warm_run"):
            sim = Simulator(config, clock=SimClock(now))
            resources = {
                "testio_api": CustomerApiResource.for_simulator(sim),
                "warehouse": WarehouseResource(path=str(Path(tmp) / f"{label}.duckdb")),
                "refresh": RefreshResource(mode="full"),
            }
            t0 = time.perf_counter()
            result = dg.materialize(TESTIO_ASSETS, resources=resources, instance=instance, raise_on_error=True)
            wall = time.perf_counter() - t0
            fetch = write = 0.0
            for event in result.get_asset_materialization_events():
                meta = event.materialization.metadata
                fetch += float(getattr(meta.get("fetch_seconds"), "value", 0.0) or 0.0)
                write += float(getattr(meta.get("write_seconds"), "value", 0.0) or 0.0)
            out[label] = {
                "wall_s": round(wall, 3),
                "fetch_s": round(fetch, 3),
                "write_s": round(write, 3),
                "overhead_s": round(wall - fetch - write, 3),
            }
    out["fixed_overhead_s"] = round(out["import_s"] + out["cold_run"]["overhead_s"], 3)
    return out


def main() -> int:
    result = measure()
    sys.stdout.write("BENCH-OVERHEAD " + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
