"""One writing step at a time per DuckDB file, across processes: an advisory file lock.

Dagster's pool (``testio_duckdb``, limit 1) is what serialises the steps that write the
warehouse, but its slot claim is not atomic: it counts the free slots and assigns one in
separate statements, so two steps that claim at the same moment can both get the one slot
(seen with two runs started at once under load). DuckDB's own file lock keeps each write
unit whole, not a step's refresh cycle of fetches and writes; this lock does. The kernel
drops it when its process dies, so a killed run never leaves it held. A DuckLake has no file
to lock: its writers' commits conflict and are run again (``connection.py``).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def lock_path(db_path: Path) -> Path:
    """The lock file beside the DuckDB file (hidden, like its staging folder)."""
    return db_path.parent / f".{db_path.name}.writer"


@contextmanager
def exclusive_writer(
    db_path: Path, holder: str, on_wait: Callable[[str], None] | None = None
) -> Iterator[float]:
    """Hold the file's writer lock for the block; yields the seconds spent waiting for it.

    ``holder`` describes this writer (shown to the next one that has to wait). When another
    process holds the lock, ``on_wait`` gets that process's description once, then the call
    blocks until the lock is free (a signal, e.g. Dagster terminating the run, still
    interrupts the wait).
    """
    path = lock_path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waited = 0.0
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait(_read_holder(fd) or "another process")
            started = time.monotonic()
            fcntl.flock(fd, fcntl.LOCK_EX)
            waited = time.monotonic() - started
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder} (pid {os.getpid()})".encode(), 0)
        try:
            yield waited
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_holder(fd: int) -> str:
    return os.pread(fd, 512, 0).decode(errors="replace").strip()
