"""A sync in its own process, for tests that kill it or read beside it.

    python -m testio_pipeline_tests.sync_worker '{"db": ..., "now": ..., "sim": {...}, ...}'

``db`` is a DuckDB file or a ``ducklake:`` ATTACH string (then ``lake_data_path`` too).

Runs the five sync steps (the code the assets run) against an in-process simulator built
from the given config and frozen time, with a fixed sync clock so runs are reproducible.
It prints markers on stdout (flushed) so the parent knows where it is:

    START                 imports done, about to sync
    IN_WRITE <table>      inside the write transaction of <table>, after its upsert
    UNIT_DONE <entity> <k> <ids>  unit k of <entity>'s write (products <ids>, JSON) is committed
    STEP_DONE <step>      the step's writes are committed
    DONE                  every step finished

Optional holds keep the interesting moments open until the parent is done acting on them,
however slow a busy machine makes either process: the worker waits until a release file exists.
``hold_in_write: [table, path]`` waits inside that table's transaction (uncommitted),
``hold_after_step: [step, path]`` waits between steps (no connection open),
``hold_after_unit: [entity, k, path]`` between units k and k+1 of a write split in units
(``write_unit_rows`` sets the warehouse's unit size).
A path the parent never creates holds until the worker is killed.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import datetime
from pathlib import Path


# A parent that died without killing its worker does not leave it waiting forever.
HOLD_LIMIT_SECONDS = 900


def wait_for_release(path: str) -> None:
    deadline = time.monotonic() + HOLD_LIMIT_SECONDS
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"not released within {HOLD_LIMIT_SECONDS}s: {path}")
        time.sleep(0.02)


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
    if spec.get("write_unit_rows"):
        warehouse.write_unit_rows = spec["write_unit_rows"]
    options = SyncOptions(mode=spec.get("mode", "full"), clock=lambda: now)

    hold_in_write = spec.get("hold_in_write")
    if hold_in_write:
        table, release = hold_in_write
        original = merge_module.upsert

        def upsert_then_pause(con, name, *args, **kwargs):
            counts = original(con, name, *args, **kwargs)
            if name == table:
                print(f"IN_WRITE {name}", flush=True)
                wait_for_release(release)
            return counts

        merge_module.upsert = upsert_then_pause

    hold_after_unit = spec.get("hold_after_unit")
    if hold_after_unit:
        from testio_pipeline.warehouse.connection import Connections
        from testio_pipeline.warehouse.staging import StagePart

        entity_name, after_unit, release = hold_after_unit
        original_write = Connections.write
        units_done = 0

        def write_then_pause(self, body, **kwargs):
            nonlocal units_done
            value = original_write(self, body, **kwargs)
            rows = kwargs.get("rows")
            if isinstance(rows, StagePart) and rows.entity == entity_name:
                units_done += 1
                if units_done == after_unit:
                    print(f"UNIT_DONE {entity_name} {units_done} {json.dumps(sorted(rows.products.ids))}", flush=True)
                    wait_for_release(release)
            return value

        Connections.write = write_then_pause

    hold_after = spec.get("hold_after_step") or [None, None]
    print("START", flush=True)
    for entity in ENTITIES:
        entity.sync_step()(source, warehouse, options)
        print(f"STEP_DONE {entity.name}", flush=True)
        if entity.name == hold_after[0]:
            wait_for_release(hold_after[1])
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
