"""Opening the warehouse file: short-lived connections, lock-conflict retry, one write path.

DuckDB lets one process at a time open a file for writing, and one process cannot hold it
read-only and read-write at once. So every unit of work opens the file, does its work and
closes it again, leaving the file free in between for a second run or an analyst's
session. Opening retries with backoff while another connection holds the lock, and gives up
with :class:`WarehouseLockedError` after ``lock_timeout`` seconds.

Every write, entity or bookkeeping, goes through :meth:`Connections.write`: one transaction
in which the rows to write are first given names (:func:`name_sources`), the same way
whether they are the Arrow frames of a record list or views over the files of a
:class:`~.staging.Stage`, so the SQL after that does not care where they came from.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb
import pyarrow as pa

from .merge import run
from .staging import Stage

T = TypeVar("T")
log = logging.getLogger(__name__)

# What a write names as its sources: a stage, or one Arrow frame or several (in name order).
Rows = Stage | pa.Table | Sequence[pa.Table]


class WarehouseLockedError(RuntimeError):
    """Another process kept the DuckDB file locked for longer than ``lock_timeout``."""

    def __init__(self, path: Path, waited_s: float, lock_timeout: float, cause: BaseException):
        self.path = path
        self.waited_s = waited_s
        super().__init__(
            f"warehouse file {path} is locked by another process; gave up after {waited_s:.1f}s "
            f"(lock_timeout={lock_timeout}s). Last error: {cause}"
        )


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    msg = str(exc).lower()
    # Another process holds the file lock, or this process has it open in the other mode
    # (read-only vs read-write); both clear once the other connection closes.
    return (isinstance(exc, duckdb.IOException) and "lock" in msg) or (
        isinstance(exc, duckdb.ConnectionException) and "different configuration" in msg
    )


def name_sources(con: duckdb.DuckDBPyConnection, rows: Rows, names: Sequence[str]) -> None:
    """Name the rows to write as ``names`` in ``con``: views over the files of a stage, or
    the Arrow frames of a record list. Everything after this is the same SQL."""
    if isinstance(rows, Stage):
        rows.sources(con, names)
        return
    tables = (rows,) if isinstance(rows, pa.Table) else tuple(rows)
    for name, table in zip(names, tables, strict=True):
        con.register(name, table)


class Unit:
    """One open connection; ``held_s`` is filled in when it closes."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        self.held_s = 0.0


class Connections:
    """How the warehouse file at ``path`` is opened; every unit of work opens its own connection.

    ``prepare`` runs before a read or write for as long as ``ready`` is false (the facade
    passes ``migrations.ensure_ready``, which sets it once the schema is current).
    """

    def __init__(
        self,
        path: Path,
        lock_timeout: float,
        merge_memory_limit: str | None,
        prepare: Callable[[Connections], None],
    ):
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock_timeout = lock_timeout
        self.merge_memory_limit = merge_memory_limit
        self.ready = False
        self._prepare = prepare
        self._shared_read: tuple[int, duckdb.DuckDBPyConnection] | None = None

    def _ensure_ready(self) -> None:
        if not self.ready:
            self._prepare(self)

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        """Open the file, retrying with backoff while another process holds the lock."""
        start = time.monotonic()
        delay = 0.02
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.Error as exc:
                waited = time.monotonic() - start
                if not _is_lock_conflict(exc):
                    raise
                if waited >= self.lock_timeout:
                    raise WarehouseLockedError(self.path, waited, self.lock_timeout, exc) from exc
                time.sleep(min(delay * random.uniform(0.8, 1.2), self.lock_timeout - waited))
                delay = min(delay * 2, 1.0)
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
        con = self._open(read_only)
        unit = Unit(con)
        opened = time.perf_counter()
        try:
            if stage is not None:
                run(con, "SET preserve_insertion_order = false")
            if memory_limit is not None:
                # A merge can be far larger than memory: DuckDB's default (80% of RAM) would let
                # it buffer the whole stage; under this limit it spills to its temp directory.
                run(con, f"SET memory_limit = '{memory_limit}'")
            if read_only:
                yield unit
            else:
                con.begin()
                try:
                    yield unit
                    con.commit()
                except BaseException:
                    try:
                        con.rollback()
                    except duckdb.Error:  # the original error matters more
                        log.exception("rollback failed on %s", self.path)
                    raise
        finally:
            con.close()  # closing also checkpoints, so it belongs to the time the lock was held
            unit.held_s = time.perf_counter() - opened

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection (the shared one inside ``reading()`` on this thread)."""
        # Read-only, so analysts' read-only sessions on the same file do not block us (or we them).
        shared = self._shared_read
        if shared is not None and shared[0] == threading.get_ident():
            yield shared[1]
            return
        self._ensure_ready()
        with self.unit(read_only=True) as unit:
            yield unit.con

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Let the reads of this thread inside the block share one read-only connection."""
        if self._shared_read is not None:
            yield
            return
        with self.read() as con:
            self._shared_read = (threading.get_ident(), con)
            try:
                yield
            finally:
                self._shared_read = None

    def write(
        self,
        body: Callable[[duckdb.DuckDBPyConnection], T],
        *,
        rows: Rows = (),
        names: Sequence[str] = (),
    ) -> tuple[T, Unit]:
        """Run ``body`` in one write transaction, after naming ``rows`` as ``names``.

        A stage's merge runs under ``merge_memory_limit`` first; some operations (e.g.
        rewriting rows under a large primary-key index) cannot spill, so if DuckDB runs out
        of memory the transaction (rolled back) runs once more without the cap: a finished
        sync matters more than the memory goal.
        """
        stage = rows if isinstance(rows, Stage) else None
        limits = [self.merge_memory_limit, None] if stage is not None and self.merge_memory_limit else [None]
        for attempt, limit in enumerate(limits, start=1):
            try:
                self._ensure_ready()
                with self.unit(read_only=False, stage=stage, memory_limit=limit) as unit:
                    name_sources(unit.con, rows, names)
                    value = body(unit.con)
                return value, unit
            except duckdb.OutOfMemoryException:
                if attempt == len(limits):
                    raise
                log.warning("merge into %s ran out of memory under %s; retrying without the cap", self.path, limit)
        raise AssertionError("unreachable")  # pragma: no cover
