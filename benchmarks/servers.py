"""The simulator's HTTP server for the benchmark: in a thread of this process, or a subprocess.

Both expose the same small interface: ``base_url``, ``token``, ``advance(seconds)`` (move the
world clock), ``stats()`` / ``reset_stats()`` (the server's own request counts) and ``close()``.

A subprocess keeps the server's CPU work (building and serialising JSON) and its memory out
of the measured process, so on a multi-core machine the sync's wall time, CPU time and peak
RSS are the pipeline's own. The thread variant shares the GIL with the sync and is kept for
comparison (``--server thread``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from testio_pipeline.simulator import SimClock, Simulator, SimulatorConfig

SERVER_KINDS = ("subprocess", "thread")


class ThreadServer:
    """``Simulator.serve()``: a ThreadingHTTPServer in a daemon thread of this process."""

    kind = "thread"

    def __init__(self, config: SimulatorConfig, now: datetime, wire_cache_mb: float = 0):
        self.simulator = Simulator(config, clock=SimClock(now), wire_cache_mb=wire_cache_mb)
        self.simulator.warm()
        self._server = self.simulator.serve()
        self.base_url = self._server.base_url
        self.token = config.token
        self.description = f"in-process thread (Simulator.serve()) at {self.base_url}"

    def advance(self, seconds: float) -> datetime:
        self.simulator.clock.advance(seconds)
        return self.simulator.clock.now()

    def stats(self) -> dict[str, Any]:
        cache = self.simulator.world.wire_cache
        return dict(self.simulator.stats.snapshot(), wire_cache=cache and cache.snapshot())

    def reset_stats(self) -> None:
        self.simulator.stats.reset()

    def cpu_s(self) -> float | None:
        return None  # the server's CPU is part of this process's

    def rss_mib(self) -> dict[str, float] | None:
        return None  # the server's memory is part of this process's

    def close(self) -> None:
        self._server.close()


def cli_args(preset: str, config: SimulatorConfig, now: datetime, wire_cache_mb: float = 0) -> list[str]:
    """``python -m testio_pipeline.simulator serve`` options that rebuild ``config`` at ``now``.

    Raises ValueError when ``config`` differs from the preset in a field the CLI cannot set,
    so the subprocess can never serve a different world from the one the benchmark verifies.
    """
    flags = {
        "products": "--products",
        "tests_per_product": "--tests-per-product",
        "bugs_per_test": "--bugs-per-test",
        "features_per_product": "--features-per-product",
        "new_tests_per_day": "--new-tests-per-day",
        "latency_ms": "--latency-ms",
        "seed": "--seed",
        "token": "--token",
        "max_in_flight": "--max-in-flight",
        "max_bug_test_ids": "--max-bug-test-ids",
    }
    base = SimulatorConfig.preset(preset)
    args = ["serve", "--host", "127.0.0.1", "--port", "0", "--preset", preset, "--now", now.isoformat(), "--warm"]
    if wire_cache_mb > 0:
        args += ["--wire-cache-mb", str(wire_cache_mb)]
    for field in dataclasses.fields(SimulatorConfig):
        value, default = getattr(config, field.name), getattr(base, field.name)
        if field.name == "anchor":
            if value is not None:
                args += ["--anchor", value.isoformat()]
        elif field.name == "ignore_paging":
            if value:
                args.append("--ignore-paging")
        elif value != default:
            if field.name not in flags:
                raise ValueError(f"the simulator CLI cannot set {field.name}={value!r}; use --server thread")
            args += [flags[field.name], str(value)]
    return args


class SubprocessServer:
    """``python -m testio_pipeline.simulator serve`` in a child process, driven over /_sim/."""

    kind = "subprocess"

    def __init__(
        self,
        preset: str,
        config: SimulatorConfig,
        now: datetime,
        wire_cache_mb: float = 0,
        start_timeout: float = 1800.0,  # warming the large world's wire cache takes minutes
    ):
        command = [sys.executable, "-m", "testio_pipeline.simulator", *cli_args(preset, config, now, wire_cache_mb)]
        self.token = config.token
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1)
        deadline = time.monotonic() + start_timeout
        base_url = None
        assert self._process.stdout is not None
        self.warm_note = ""
        for line in self._process.stdout:  # the server prints its base_url once it listens
            if line.startswith("warmed "):
                self.warm_note = line.strip()
            match = re.search(r"base_url:\s*(\S+)", line)
            if match:
                base_url = match.group(1)
                break
            if time.monotonic() > deadline:
                break
        if base_url is None:
            self.close()
            raise RuntimeError(f"the simulator subprocess did not start: {' '.join(command)}")
        self.base_url = base_url
        self.root_url = base_url.split("/customer/")[0]
        self._admin = httpx.Client(base_url=self.root_url, timeout=30.0)
        served_now = self._admin.get("/_sim/clock").json()["now"]
        self.description = (
            f"subprocess `python -m testio_pipeline.simulator serve` (pid {self._process.pid}) at {base_url}"
        )
        if datetime.fromisoformat(served_now) != now:
            self.close()
            raise RuntimeError(f"simulator subprocess clock is {served_now}, expected {now.isoformat()}")

    def advance(self, seconds: float) -> datetime:
        answer = self._admin.post("/_sim/clock", json={"advance_seconds": seconds})
        answer.raise_for_status()
        return datetime.fromisoformat(answer.json()["now"])

    def stats(self) -> dict[str, Any]:
        return self._admin.get("/_sim/stats").json()

    def reset_stats(self) -> None:
        self._admin.post("/_sim/stats/reset").raise_for_status()

    def cpu_s(self) -> float | None:
        """CPU seconds the server process has used so far (Linux /proc; None elsewhere)."""
        try:
            fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def rss_mib(self) -> dict[str, float] | None:
        """The server process's resident memory now and at its peak (Linux /proc; None elsewhere)."""
        try:
            status = Path(f"/proc/{self._process.pid}/status").read_text()
        except OSError:
            return None
        kib = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M)}
        return {"rss": round(kib.get("VmRSS", 0) / 1024, 1), "peak": round(kib.get("VmHWM", 0) / 1024, 1)}

    def close(self) -> None:
        if getattr(self, "_admin", None) is not None:
            self._admin.close()
            self._admin = None
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.communicate(timeout=10)  # also drains its stdout
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.communicate()


def start_server(kind: str, preset: str, config: SimulatorConfig, now: datetime, wire_cache_mb: float = 0):
    """``wire_cache_mb``: the simulator's serialised-answer cache, warmed before it listens."""
    if kind == "thread":
        return ThreadServer(config, now, wire_cache_mb)
    if kind == "subprocess":
        return SubprocessServer(preset, config, now, wire_cache_mb)
    raise ValueError(f"unknown server kind {kind!r}; choose from {', '.join(SERVER_KINDS)}")
