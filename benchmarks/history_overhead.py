"""What the status history adds to the tests and bugs writes, measured in one run.

    .venv/bin/python benchmarks/history_overhead.py [--rounds 3]

Syncs the default-scale world (20 products, 200 tests each, 8 bugs per test) in process, with
``bug_status_changes`` / ``test_status_changes`` recorded and with the two entities' ``History``
declarations removed, alternating the order each round so drift in the machine's load falls on
both: a full sync into an empty file, then an incremental cycle 24 simulated hours later. Prints
the mean tests + bugs write time (including the commit) of each and the difference. Requests are
the same either way: the history is computed from what a write already has.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testio_pipeline import entities  # noqa: E402
from testio_pipeline.settings import Settings  # noqa: E402
from testio_pipeline.simulator import SimClock, Simulator, SimulatorConfig  # noqa: E402
from testio_pipeline.source import ApiSource  # noqa: E402
from testio_pipeline.sync import SyncOptions, run_cycle  # noqa: E402
from testio_pipeline.testio import RetryPolicy  # noqa: E402
from testio_pipeline.warehouse import Warehouse  # noqa: E402

TRACKED = ("tests", "bugs")
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)  # frozen: every round syncs the same world
PHASES = ("full", "incremental")


def one_sync(folder: Path) -> list[float]:
    """Tests + bugs write seconds of a full sync, then of an incremental one a day later."""
    config = SimulatorConfig.preset("tiny", anchor=NOW, products=20, tests_per_product=200, bugs_per_test=8)
    sim = Simulator(config, clock=SimClock(NOW))
    source = ApiSource.from_settings(Settings(), simulator=sim)
    source.retry = RetryPolicy(attempts=3, wait_initial=0.001, wait_max=0.01, wait_jitter=0.0)
    warehouse = Warehouse(folder / "t.duckdb")
    seconds = []
    for mode in PHASES:
        results = run_cycle(source, warehouse, SyncOptions(mode=mode, clock=sim.clock.now))
        seconds.append(sum(results[e].write.duration_s for e in TRACKED))
        sim.clock.advance(86_400)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with_history = {e: entities.ENTITY_BY_NAME[e] for e in TRACKED}
    without = {e: dataclasses.replace(d, history=None) for e, d in with_history.items()}
    totals = {"with history": [0.0, 0.0], "without": [0.0, 0.0]}
    for r in range(args.rounds):
        order = [("without", without), ("with history", with_history)]
        for label, declarations in order if r % 2 == 0 else reversed(order):
            entities.ENTITY_BY_NAME.update(declarations)
            with tempfile.TemporaryDirectory() as folder:
                for i, s in enumerate(one_sync(Path(folder))):
                    totals[label][i] += s
    entities.ENTITY_BY_NAME.update(with_history)
    for label, sums in totals.items():
        print(f"{label:>13}: tests + bugs write " + ", ".join(f"{p} {s / args.rounds:.3f} s" for p, s in zip(PHASES, sums)))
    for i, phase in enumerate(PHASES):
        print(f"history adds {100 * (totals['with history'][i] / totals['without'][i] - 1):+.1f} % to the {phase} write")
    return 0


if __name__ == "__main__":
    sys.exit(main())
