"""Resident memory of this process: the kernel's high-water mark, resettable per phase.

Linux keeps the peak RSS of a process in ``/proc/self/status`` (``VmHWM``); writing ``5`` to
``/proc/self/clear_refs`` resets it to the current RSS, so every benchmark phase gets its own
peak. A sampling thread backs that up (and is the only source where ``/proc`` is missing) and
can abort the run when memory runs away, so a too-large scale cannot take the machine down.
"""

from __future__ import annotations

import os
import re
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Callable

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def current_rss_mib() -> float:
    kib = _status_kib("VmRSS")
    if kib is None:  # no /proc: the best we have is the lifetime peak
        return peak_rss_mib()
    return kib / 1024


def peak_rss_mib() -> float:
    """Peak RSS since the last :func:`reset_peak` (or since the process started)."""
    kib = _status_kib("VmHWM")
    if kib is None:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024
    return kib / 1024


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter to the current RSS; False when not supported."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class RssWatch:
    """Samples RSS in a thread: the peak between start() and stop(), and an emergency brake.

    ``abort_mib``: when RSS passes it, the process exits at once (code 3) with a message;
    a benchmark that outgrows the machine should fail loudly, not swap or get OOM-killed.
    """

    def __init__(
        self,
        interval_s: float = 0.05,
        abort_mib: float | None = None,
        on_abort: Callable[[float], None] | None = None,
    ):
        self.interval_s = interval_s
        self.abort_mib = abort_mib
        self.on_abort = on_abort  # called with the seconds since start(), before exiting
        self.peak_mib = 0.0
        self.label = ""
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, label: str = "") -> "RssWatch":
        self.label = label
        self._started = time.monotonic()
        self.peak_mib = current_rss_mib()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rss-watch", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            rss = current_rss_mib()
            self.peak_mib = max(self.peak_mib, rss)
            if self.abort_mib is not None and rss > self.abort_mib:
                print(
                    f"\n!!! BENCHMARK ABORTED: resident memory {rss:.0f} MiB passed the limit of "
                    f"{self.abort_mib:.0f} MiB during {self.label or 'the run'} (--rss-abort-mb).",
                    file=sys.stderr,
                    flush=True,
                )
                if self.on_abort is not None:
                    try:
                        self.on_abort(time.monotonic() - self._started)
                    except Exception:  # noqa: BLE001 - exiting anyway
                        pass
                os._exit(3)

    def stop(self) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.peak_mib = max(self.peak_mib, current_rss_mib())
        return self.peak_mib
