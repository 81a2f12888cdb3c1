"""The benchmark's check after a phase, in a fresh interpreter: the truth, the plan, the verification.

The check builds a second simulator of the whole world and reads the warehouse back. Done in
the benchmark's own process it left memory behind (Python arenas and heap it could not hand
back to the system), which every later phase then counted as the sync's RSS; in a child process
the sync process's numbers are the sync's alone, and the check's own peak is the child's. The
truth a phase was checked against stays pickled (the next incremental plan compares with it).
"""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks import lower_bound, memory, verify
from testio_pipeline.simulator import SimClock, Simulator, SimulatorConfig
from testio_pipeline.testio.client import DEFAULT_BUG_BATCH, DEFAULT_PER_PAGE


def plan(mode: str, truth: verify.Truth, previous: verify.Truth | None) -> lower_bound.Plan:
    """The requests a phase needs at least (``previous``: the truth the last phase was checked against)."""
    if mode == "full":
        return lower_bound.full_plan(
            ((p.id, p.list_calls, len(p.tests)) for p in truth.products.values()),
            per_page=DEFAULT_PER_PAGE,
            bug_batch=DEFAULT_BUG_BATCH,
        )
    known = previous.products if previous is not None else {}
    return lower_bound.incremental_plan(
        (
            (p.id, p.list_calls, p.test_ids, known[p.id].test_status if p.id in known else {})
            for p in truth.products.values()
        ),
        per_page=DEFAULT_PER_PAGE,
        bug_batch=DEFAULT_BUG_BATCH,
    )


@dataclass
class Checked:
    plan: dict[str, Any]  # Plan.summary()
    bounds: dict[str, float]
    report: verify.Report
    peak_rss_mib: float  # of the process that checked
    truth: bytes  # the pickled verify.Truth, for the next phase's plan


def _check(
    config: SimulatorConfig,
    now: datetime,
    db: str | Path,
    lake_data_path: str | None,
    mode: str,
    previous: bytes | None,
    latency_s: float,
    cap: int,
) -> Checked:
    sim = Simulator(config, clock=SimClock(now))
    truth = verify.snapshot(sim, now)
    planned = plan(mode, truth, pickle.loads(previous) if previous is not None else None)
    report = verify.verify(db, sim, truth, lake_data_path=lake_data_path)
    return Checked(
        plan=planned.summary(),
        bounds={k: round(v, 3) for k, v in planned.bounds(latency_s, cap).items()},
        report=report,
        peak_rss_mib=round(memory.peak_rss_mib(), 1),
        truth=pickle.dumps(truth),
    )


def check(
    config: SimulatorConfig,
    now: datetime,
    db: str | Path,
    *,
    mode: str,
    previous: bytes | None,
    latency_s: float,
    cap: int,
    lake_data_path: str | None = None,
) -> Checked:
    """Check the warehouse ``db`` against the simulator's truth at ``now``, in a child process."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_check, config, now, db, lake_data_path, mode, previous, latency_s, cap).result()
