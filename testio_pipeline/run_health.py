"""Runs whose process is gone (kill -9, OOM) are marked failed, which frees their pool slot.

Dagster's default run launcher cannot check a run worker's health, so a run killed with
``kill -9`` stays STARTED and keeps its ``testio_duckdb`` slot: every later writing step waits
for that slot until someone terminates the run in the UI. ``fail_dead_runs`` is called by the
refresh sensor and by ``make run`` before they start anything: a started run of this host
whose run-worker process (the pid of its RUN_START event) no longer runs is reported failed,
and its concurrency slots are freed at once (the daemon's run monitoring would free them only
later, and ``make run`` may have no daemon).

Only runs tagged with this host (``HOST_TAG``, set by the run's ``refresh`` resource) are
judged: a run of another machine sharing the instance cannot be seen from here.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import dagster as dg

log = logging.getLogger("testio_pipeline.runs")

HOST_TAG = "testio/host"
# A process started this long after the run's RUN_START is not its worker but a reused pid.
_START_SLACK_SECONDS = 5.0


def host_name() -> str:
    return socket.gethostname()


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark this host's started runs whose worker process is gone as failed; their run ids."""
    failed = []
    statuses = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
    for record in instance.get_run_records(dg.RunsFilter(statuses=statuses)):
        run = record.dagster_run
        if run.tags.get(HOST_TAG) != host_name():
            continue
        worker = _run_worker(instance, run.run_id)
        if worker is None or _alive(*worker):
            continue
        pid = worker[0]
        message = f"the run's process (pid {pid}) is gone (killed?); marked failed so its pool slot is freed"
        log.warning("run %s: %s", run.run_id, message)
        instance.report_run_failed(run, message=message)
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        failed.append(run.run_id)
    return failed


def _run_worker(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, start timestamp) of the process that started the run, from its RUN_START event."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_START, limit=1).records
    if not records:
        return None
    entry = records[0].event_log_entry
    pid = entry.dagster_event.pid if entry.dagster_event is not None else None
    return (pid, entry.timestamp) if pid else None


def _alive(pid: int, run_started: float) -> bool:
    """The process runs (not a zombie) and is no younger than the run: a pid reused since is not it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    started = _linux_start_time(pid)
    if started is None:  # no /proc (or the process ended meanwhile): trust kill(0)
        return True
    state, at = started
    return state != "Z" and at <= run_started + _START_SLACK_SECONDS


def _linux_start_time(pid: int) -> tuple[str, float] | None:
    """(state, start time as a Unix timestamp) from /proc; None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
    except (OSError, StopIteration, ValueError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    state, ticks = fields[0], int(fields[19])
    return state, boot + ticks / os.sysconf("SC_CLK_TCK")

