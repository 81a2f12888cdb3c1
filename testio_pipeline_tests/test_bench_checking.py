"""The benchmark checks a phase in a child process (benchmarks/checking.py), so what the check
builds and leaves behind is not counted in the sync process's memory."""

from __future__ import annotations

import io
import os
import pickle

from benchmarks import bench_sync, checking, verify

TINY = ["--scale", "tiny", "--latency-ms", "2", "--no-overhead"]


def test_the_check_runs_in_a_child_process_and_hands_back_the_truth(tmp_path, monkeypatch):
    db = tmp_path / "bench.duckdb"
    assert bench_sync.main([*TINY, "--phases", "a", "--server", "thread", "--db", str(db)], out=io.StringIO()) == 0
    config = bench_sync.simulator_config(bench_sync.build_parser().parse_args(TINY))[1]

    def not_here(*_args, **_kwargs):
        raise AssertionError(f"the truth was built in the benchmark's process {os.getpid()}")

    monkeypatch.setattr(verify, "snapshot", not_here)  # a child imports its own, unpatched
    checked = checking.check(config, bench_sync.START, db, mode="full", previous=None, latency_s=0.002, cap=10)

    assert checked.report.ok, checked.report.problems
    assert sum(checked.report.checked.values()) > 0
    assert checked.plan["requests_min"] > 0 and checked.bounds["lower_bound_s"] > 0
    assert checked.peak_rss_mib > 0
    truth = pickle.loads(checked.truth)
    assert isinstance(truth, verify.Truth) and truth.total_tests > 0
    again = checking.check(
        config, bench_sync.START, db, mode="incremental", previous=checked.truth, latency_s=0.002, cap=10
    )
    assert again.report.ok and again.plan["requests_min"] > 0
