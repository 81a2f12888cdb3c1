"""The suite on another date: moves every test process's wall clock MOVED_CLOCK_DAYS ahead.

`make test-moved-clock` (365 days unless MOVED_CLOCK_DAYS says otherwise) puts a .pth file in
the venv that calls :func:`start` in every Python process the suite starts (pytest, its
workers, the Dagster CLI, daemon, webserver and runs), so each reads the same moved date from
``time.time()`` and ``datetime.now()``; monotonic clocks and sleeps are left alone. DuckDB's
``now()`` and PostgreSQL's clock are not moved.

Debian's ``faketime`` cannot do this for Python 3.11 here (libfaketime 0.9.10): with its
monotonic clock moved, a thread's timed wait (``sem_clockwait``) waits out the whole offset;
with it left alone, ``time.sleep`` fails with EINVAL (``clock_nanosleep`` with an absolute
deadline). Both were tried.

Left out (``-m "not code_server"``): the tests that go through Dagster's gRPC code server (the
daemon, ``dg dev``). gRPC's core keeps its deadlines on the real clock while a moved process
computes them from the moved one, so even ``dagster api grpc-health-check`` against a code
server fails when both are moved (tried); that is the harness, not the code under test.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

VARIABLE = "MOVED_CLOCK_DAYS"


def pth_line(directory: str) -> str:
    """The .pth line that starts the move in a process where the variable is set."""
    return (
        f"import os, sys; os.environ.get({VARIABLE!r}) and "
        f"(sys.path.append({directory!r}), __import__('moved_clock').start())\n"
    )


_started = False


def start() -> None:
    """Move this process's clock; once, though a venv's lib64 link makes site read the .pth twice."""
    global _started
    if _started:
        return
    import time_machine

    days = float(os.environ[VARIABLE])
    time_machine.travel(datetime.now(timezone.utc) + timedelta(days=days), tick=True).start()
    _started = True


if __name__ == "__main__":
    print(pth_line(os.path.dirname(os.path.abspath(__file__))), end="")
