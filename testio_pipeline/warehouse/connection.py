"""Opening the warehouse: short-lived connections, lock-conflict retry, one write path.

DuckDB lets one process at a time open a file for writing, and one process cannot hold it
read-only and read-write at once. So every unit of work opens the file, does its work and
closes it again, leaving the file free in between for a second run or an analyst's
session. Opening retries with backoff while another connection holds the lock, and gives up
with :class:`WarehouseLockedError` after ``lock_timeout`` seconds. A DuckLake
(:mod:`.backends`) has no lock to wait for; there a write whose commit meets another writer's
is run again from the start, within the same ``lock_timeout``.

Every write, entity or bookkeeping, goes through :meth:`Connections.write`: one transaction
in which the rows to write are first given names (:func:`name_sources`), the same way
whether they are the Arrow frames of a record list or views over the files of a
:class:`~.staging.Stage`, so the SQL after that does not care where they came from.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb
import pyarrow as pa

from .backends import Backend, FileBackend
from .merge import run
from .staging import Stage

T = TypeVar("T")
log = logging.getLogger(__name__)

# What a write names as its sources: a stage, or one Arrow frame or several (in name order).
Rows = Stage | pa.Table | Sequence[pa.Table]


# Past this many staged records a merge runs on one thread (see _unit).
ONE_THREAD_ROWS = 100_000
# After a capped merge commits, DuckDB's buffer pool is emptied by lowering its limit to this for
# a moment: what the merge read and wrote stays cached up to the cap, and the checkpoint (when the
# file is closed) rewrites the row groups the merge changed, which would come on top of it.
EVICT_TO = "16MB"
# A commit that ran out of memory under the cap fails as a TransactionException.
_COMMIT_OUT_OF_MEMORY = re.compile(r"failed to pin block|out of memory", re.IGNORECASE)


def _out_of_memory(exc: duckdb.Error) -> bool:
    return isinstance(exc, duckdb.OutOfMemoryException) or (
        isinstance(exc, duckdb.TransactionException) and bool(_COMMIT_OUT_OF_MEMORY.search(str(exc)))
    )


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


class _Backoff:
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


def name_sources(con: duckdb.DuckDBPyConnection, rows: Rows, names: Sequence[str]) -> None:
    """Name the rows to write as ``names`` in ``con``: views over the files of a stage, or
    the Arrow frames of a record list. Everything after this is the same SQL."""
    if isinstance(rows, Stage):
        rows.sources(con, names)
        return
    tables = (rows,) if isinstance(rows, pa.Table) else tuple(rows)
    for name, table in zip(names, tables, strict=True):
        con.register(name, table)


class _ProcessLock:
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


_PROCESS_LOCKS: dict[str, _ProcessLock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def process_lock(location: str) -> _ProcessLock:
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(location, _ProcessLock())


def _empty_buffer_pool(con: duckdb.DuckDBPyConnection, memory_limit: str) -> None:
    """Evict what DuckDB keeps cached (see :data:`EVICT_TO`); best effort, after the commit."""
    try:
        run(con, f"SET memory_limit = '{EVICT_TO}'")
    except duckdb.Error as exc:  # something could not be evicted: the checkpoint runs as before
        log.debug("could not empty the buffer pool: %s", exc)
    run(con, f"SET memory_limit = '{memory_limit}'")


def _reset(con: duckdb.DuckDBPyConnection, names: Sequence[str]) -> None:
    """Put settings back to DuckDB's defaults, for the instance's next users (a DuckLake's
    connections all share one in-memory instance, so one merge's one thread would stay)."""
    for name in names:
        try:
            run(con, f"RESET {name}")
        except duckdb.Error as exc:  # best effort: the write itself is done
            log.warning("could not reset %s on %s: %s", name, con, exc)


class Unit:
    """One open connection; ``held_s`` is filled in when it closes."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        self.held_s = 0.0


class Connections:
    """How the warehouse (a :mod:`.backends` backend) is opened; every unit of work opens its own connection.

    ``prepare`` runs before a read or write for as long as ``ready`` is false (the facade
    passes ``migrations.ensure_ready``, which sets it once the schema is current).
    """

    def __init__(
        self,
        backend: Backend,
        lock_timeout: float,
        merge_memory_limit: str | None,
        prepare: Callable[[Connections], None],
    ):
        self.backend = backend
        self.lock_timeout = lock_timeout
        self.merge_memory_limit = merge_memory_limit
        self.ready = False
        self._prepare = prepare
        self._local = threading.local()  # .shared_read: the connection of a reading() block
        self._process_lock = process_lock(
            str(backend.path.resolve()) if isinstance(backend, FileBackend) else backend.location
        )

    @property
    def path(self) -> Path:
        """The DuckDB file (a file backend only)."""
        if not isinstance(self.backend, FileBackend):
            raise AttributeError(f"the warehouse {self.backend.location} is a DuckLake, not a file")
        return self.backend.path

    def _ensure_ready(self) -> None:
        if not self.ready:
            self._prepare(self)

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        """Open a connection, retrying with backoff while another process holds the lock."""
        backoff = _Backoff(self.lock_timeout)
        while True:
            try:
                con = self.backend.connect(read_only)
                break
            except duckdb.Error as exc:
                if not self.backend.is_busy(exc):
                    raise
                backoff.wait_or_raise(self.backend.location, exc)
        try:
            run(con, "SET TimeZone = 'UTC'")  # TIMESTAMPTZ values come back as UTC datetimes
        except BaseException:
            con.close()
            raise
        return con

    @contextmanager
    def unit(
        self, read_only: bool, stage: Stage | None = None, memory_limit: str | None = None
    ) -> Iterator[Unit]:
        """One connection, closed on exit; a read-write one is one transaction, rolled back
        if the block raises. The schema is not checked here (migrations use this too)."""
        if stage is not None:
            stage.seal()  # the last batch is framed before the file is locked
        with self._process_lock.hold(read_only):
            yield from self._unit(read_only, memory_limit, stage)

    def _unit(self, read_only: bool, memory_limit: str | None, stage: Stage | None) -> Iterator[Unit]:
        con = self._open(read_only)
        unit = Unit(con)
        opened = time.perf_counter()
        changed: list[str] = []  # settings this unit set; they are global to the DuckDB instance

        def setting(name: str, value: str) -> None:
            run(con, f"SET {name} = {value}")
            changed.append(name)

        try:
            if stage is not None:
                setting("preserve_insertion_order", "false")
                if stage.records_added > ONE_THREAD_ROWS:
                    # Each of DuckDB's threads holds its own buffers outside the memory limit.
                    setting("threads", "1")
            if memory_limit is not None:
                # A merge can be far larger than memory: DuckDB's default (80% of RAM) would let
                # it buffer the whole stage; under this limit it spills to its temp directory.
                setting("memory_limit", f"'{memory_limit}'")
            evict = stage is not None and memory_limit is not None and not read_only
            if evict:
                setting("checkpoint_threshold", "'1TB'")  # the checkpoint comes after the eviction
            if read_only:
                yield unit
            else:
                con.begin()
                try:
                    yield unit
                except BaseException:
                    try:
                        con.rollback()
                    except duckdb.Error:  # the original error matters more
                        log.exception("rollback failed on %s", self.backend.location)
                    raise
                con.commit()  # a commit that fails (a lake conflict) has ended the transaction itself
                if evict:
                    _empty_buffer_pool(con, memory_limit)
        finally:
            if changed and self.backend.shares_instance:
                _reset(con, changed)
            con.close()  # closing also checkpoints, so it belongs to the time the lock was held
            unit.held_s = time.perf_counter() - opened

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection (the shared one inside ``reading()`` on this thread)."""
        # Read-only, so analysts' read-only sessions on the same file do not block us (or we them).
        shared = getattr(self._local, "shared_read", None)
        if shared is not None:
            yield shared
            return
        self._ensure_ready()
        with self.unit(read_only=True) as unit:
            yield unit.con

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Let the reads of this thread inside the block share one read-only connection."""
        if getattr(self._local, "shared_read", None) is not None:
            yield
            return
        with self.read() as con:
            self._local.shared_read = con
            try:
                yield
            finally:
                self._local.shared_read = None

    def write(
        self,
        body: Callable[[duckdb.DuckDBPyConnection], T],
        *,
        rows: Rows = (),
        names: Sequence[str] = (),
        capped: bool = False,
    ) -> tuple[T, Unit]:
        """Run ``body`` in one write transaction, after naming ``rows`` as ``names``.

        A stage's merge (and a ``capped`` body) runs under ``merge_memory_limit`` first; some operations (e.g.
        rewriting rows under a large primary-key index) cannot spill, so if DuckDB runs out
        of memory the transaction (rolled back) runs once more without the cap: a finished
        sync matters more than the memory goal. On a DuckLake, a transaction whose commit
        conflicts with another writer's is run again (``body`` must not keep state between tries).
        """
        self._ensure_ready()
        return self.transaction(body, rows=rows, names=names, capped=capped)

    def transaction(
        self,
        body: Callable[[duckdb.DuckDBPyConnection], T],
        *,
        rows: Rows = (),
        names: Sequence[str] = (),
        claim: bool = True,
        capped: bool = False,
    ) -> tuple[T, Unit]:
        """``write`` without the schema check (migrations use this, and claim the warehouse
        themselves once ``schema_migrations`` exists: ``claim=False``)."""
        stage = rows if isinstance(rows, Stage) else None
        if stage is not None:
            stage.seal()  # before the file is opened: sealing hands memory back (a collection)
        limit = self.merge_memory_limit if stage is not None or capped else None
        backoff = _Backoff(self.lock_timeout)
        while True:
            try:
                with self.unit(read_only=False, stage=stage, memory_limit=limit) as unit:
                    if claim:
                        self.backend.claim(unit.con)
                    name_sources(unit.con, rows, names)
                    value = body(unit.con)
                return value, unit
            except duckdb.Error as exc:
                if _out_of_memory(exc) and limit is not None:
                    log.warning("write to %s ran out of memory under %s; retrying without the cap", self.backend.location, limit)
                    limit = None
                    continue
                if not self.backend.is_conflict(exc):
                    raise
                log.info("write to %s met another writer's commit; running it again", self.backend.location)
                backoff.wait_or_raise(self.backend.location, exc)
