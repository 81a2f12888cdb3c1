"""A sync in its own process, for tests that kill it or read beside it.

    python -m testio_pipeline_tests.sync_worker '{"db": ..., "now": ..., "sim": {...}, ...}'

``db`` is a DuckDB file or a ``ducklake:`` ATTACH string (then ``lake_data_path`` too).

Runs the five sync steps (the code the assets run) against an in-process simulator built
from the given config and frozen time, with a fixed sync clock so runs are reproducible.
It prints markers on stdout (flushed) so the parent knows where it is:

    START                 imports done, about to sync
    IN_WRITE <table>      inside the write transaction of <table>, after its upsert
    STEP_DONE <step>      the step's writes are committed
    DONE                  every step finished

Optional pauses make the interesting moments long enough to act on:
``pause_in_write: [table, seconds]`` sleeps inside that table's transaction (uncommitted),
``pause_after_step: [step, seconds]`` sleeps between steps (no connection open).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import datetime


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    # The warehouse's own notes (e.g. a lake write run again after a commit conflict) on stderr.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")

    from testio_pipeline.settings import Settings
    from testio_pipeline.simulator import SimClock, Simulator, SimulatorConfig
    from testio_pipeline.source import ApiSource
    from testio_pipeline.entities import ENTITIES
    from testio_pipeline.sync import SyncOptions
    from testio_pipeline.testio import RetryPolicy
    from testio_pipeline.warehouse import Warehouse
    from testio_pipeline.warehouse import merge as merge_module

    now = datetime.fromisoformat(spec["now"])
    sim_config = dict(spec.get("sim", {}))
    if sim_config.get("anchor"):
        sim_config["anchor"] = datetime.fromisoformat(sim_config["anchor"])
    sim = Simulator(SimulatorConfig.preset(spec.get("preset", "tiny"), **sim_config), clock=SimClock(now))
    source = ApiSource.from_settings(Settings(), simulator=sim)
    source.retry = RetryPolicy(attempts=3, wait_initial=0.001, wait_max=0.01, wait_jitter=0.0)
    warehouse = Warehouse(
        spec["db"], lock_timeout=spec.get("lock_timeout", 60.0), lake_data_path=spec.get("lake_data_path")
    )
    options = SyncOptions(mode=spec.get("mode", "full"), clock=lambda: now)

    pause_in_write = spec.get("pause_in_write")
    if pause_in_write:
        table, seconds = pause_in_write
        original = merge_module.upsert

        def upsert_then_pause(con, name, *args, **kwargs):
            counts = original(con, name, *args, **kwargs)
            if name == table:
                print(f"IN_WRITE {name}", flush=True)
                time.sleep(seconds)
            return counts

        merge_module.upsert = upsert_then_pause

    pause_after = spec.get("pause_after_step") or [None, 0]
    print("START", flush=True)
    for entity in ENTITIES:
        entity.sync_step()(source, warehouse, options)
        print(f"STEP_DONE {entity.name}", flush=True)
        if entity.name == pause_after[0]:
            time.sleep(pause_after[1])
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
