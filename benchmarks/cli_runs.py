"""Whole Dagster CLI runs for the benchmark: the pipeline as a user starts it, and a trivial run.

``whole_run`` times ``dagster asset materialize --select '*' -m testio_pipeline.definitions``
from an empty warehouse and a fresh instance, pointed at the benchmark's HTTP server through
the same environment variables a user sets. ``trivial_run`` times the same CLI on
``benchmarks/trivial_defs.py`` (one asset that does nothing): the fixed cost of any Dagster
CLI run. Each run gets its own ``DAGSTER_HOME`` holding a copy of the project's
``dagster.yaml``, so pools and run monitoring are configured as in a real deployment.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DAGSTER = Path(sys.executable).with_name("dagster")


def _env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TESTIO_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), PYTHONPATH=str(ROOT), **extra)
    return env


def _event_log(home: Path) -> dict[str, Any]:
    """From the run's event log (the CLI's console output can lose a line): the steps it
    finished, its events, and what one stored event costs — the median gap between a step's
    output and the materialization or check result stored right after it, which is the
    time to store one event."""
    import statistics

    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs(limit=1)
        logs = instance.all_logs(run.run_id)
    kinds = [entry.dagster_event.event_type if entry.dagster_event else None for entry in logs]
    stored_after_output = {dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION}
    gaps = [
        later.timestamp - entry.timestamp
        for entry, kind, later, later_kind in zip(logs, kinds, logs[1:], kinds[1:])
        if kind == dg.DagsterEventType.STEP_OUTPUT and later_kind in stored_after_output
    ]
    return {
        "steps": kinds.count(dg.DagsterEventType.STEP_SUCCESS),
        "events": len(logs),
        "event_ms": round(statistics.median(gaps) * 1000, 1) if gaps else None,
    }


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _materialize(selection: str, module: str, extra_env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="testio-bench-home-") as tmp:
        home = Path(tmp)
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        command = [str(DAGSTER), "asset", "materialize", "--select", selection, "-m", module]
        rss0 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        cpu0 = _children_cpu_s()
        t0 = time.perf_counter()
        done = subprocess.run(
            command, cwd=tmp, env=_env(home, extra_env), capture_output=True, text=True, timeout=1800
        )
        wall = time.perf_counter() - t0
        cpu = _children_cpu_s() - cpu0
        rss1 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        logged = _event_log(home) if done.returncode == 0 else {"steps": 0, "events": 0, "event_ms": None}
    if done.returncode != 0 or "RUN_SUCCESS" not in done.stderr + done.stdout:
        raise RuntimeError(
            f"`{' '.join(command)}` failed (exit {done.returncode}):\n{(done.stderr or done.stdout)[-4000:]}"
        )
    return {
        "command": " ".join(command),
        "wall_s": round(wall, 3),
        # User + system CPU of the CLI process and every process it waited for (its workers).
        "cpu_s": round(cpu, 3),
        **logged,
        # ru_maxrss of waited-for children is a maximum, so it only says something when it grew.
        "peak_rss_mib": round(rss1 / 1024, 1) if rss1 > rss0 else None,
    }


def trivial_run() -> dict[str, Any]:
    return _materialize("noop", "benchmarks.trivial_defs", {})


def whole_run(base_url: str, token: str, db_path: Path, concurrency: int) -> dict[str, Any]:
    return _materialize(
        "*",
        "testio_pipeline.definitions",
        {
            "TESTIO_CUSTOMER_API_BASE_URL": base_url,
            "TESTIO_CUSTOMER_API_TOKEN": token,
            "TESTIO_DUCKDB_PATH": str(db_path),
            "TESTIO_MAX_CONCURRENT_REQUESTS": str(concurrency),
        },
    )
