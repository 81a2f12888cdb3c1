"""Waiting for the warehouse: other processes' locks and conflicts, and this process's threads.

DuckDB lets one process at a time open a file for writing; a second one is refused at once.
So a connection is retried with :class:`Backoff` while another process holds the file, and
gives up with :class:`WarehouseLockedError` after ``lock_timeout`` seconds (a DuckLake has no
lock to wait for, but a commit meeting another writer's is retried the same way). Within one
process, DuckDB refuses a read-only open of a file the process has open read-write (and the
other way round): :class:`ProcessLock` keeps a run's threads from overlapping a write with
anything else.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class WarehouseLockedError(RuntimeError):
    """Another process kept the warehouse busy (the DuckDB file locked, or the lake's commits
    conflicting) for longer than ``lock_timeout``."""

    def __init__(self, location: str, waited_s: float, lock_timeout: float, cause: BaseException):
        self.location = location
        self.waited_s = waited_s
        super().__init__(
            f"warehouse {location} is busy with another process's writes; gave up after {waited_s:.1f}s "
            f"(lock_timeout={lock_timeout}s). Last error: {cause}"
        )


class Backoff:
    """Jittered, doubling waits until ``timeout`` seconds have passed since it was made."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.start = time.monotonic()
        self.delay = 0.02

    def wait_or_raise(self, location: str, exc: BaseException) -> None:
        waited = time.monotonic() - self.start
        if waited >= self.timeout:
            raise WarehouseLockedError(location, waited, self.timeout, exc) from exc
        time.sleep(min(self.delay * random.uniform(0.8, 1.2), self.timeout - waited))
        self.delay = min(self.delay * 2, 1.0)


class ProcessLock:
    """Within this process: reads of a warehouse share it, a write has it alone.

    DuckDB refuses to open a file read-only in a process that has it open read-write (and the
    other way round), so a run's steps writing from several threads must not overlap a write
    with anyone's read or write. Other processes are kept out by DuckDB's own file lock.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._readers: dict[int, int] = {}  # thread -> open reads
        self._writer: int | None = None
        self._writer_depth = 0
        self._writers_waiting = 0

    @contextmanager
    def hold(self, read_only: bool) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:  # a thread may nest work inside its own write
                self._writer_depth += 1
            elif read_only:
                # Waiting writers go first, so a stream of reads cannot starve them.
                while self._writer is not None or (self._writers_waiting and me not in self._readers):
                    self._cond.wait()
                self._readers[me] = self._readers.get(me, 0) + 1
            else:
                if me in self._readers:
                    raise RuntimeError("a write was opened inside this thread's own read (reading() block)")
                self._writers_waiting += 1
                try:
                    while self._writer is not None or self._readers:
                        self._cond.wait()
                finally:
                    self._writers_waiting -= 1
                self._writer, self._writer_depth = me, 1
        try:
            yield
        finally:
            with self._cond:
                if self._writer == me:
                    self._writer_depth -= 1
                    if self._writer_depth == 0:
                        self._writer = None
                else:
                    self._readers[me] -= 1
                    if not self._readers[me]:
                        del self._readers[me]
                self._cond.notify_all()


_PROCESS_LOCKS: dict[str, ProcessLock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def process_lock(location: str) -> ProcessLock:
    """The one lock of this process for the warehouse at ``location``."""
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(location, ProcessLock())
