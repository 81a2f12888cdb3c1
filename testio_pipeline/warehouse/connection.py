"""Opening the warehouse: one short-lived connection per unit of work, and one write path.

DuckDB lets one process at a time open a file for writing, and one process cannot hold it
read-only and read-write at once. So every unit of work opens the file, does its work and
closes it again, leaving the file free in between for a second run or an analyst's
session; waiting for the file is :mod:`.locks`' job, keeping a merge in its memory budget
:mod:`.memory`'s.

Every write, entity or bookkeeping, goes through :meth:`Connections.write`: one transaction
in which the rows to write are first given names (:func:`.staging.name_sources`), the same
way whether they are the Arrow frames of a record list or views over the files of a
:class:`~.staging.Stage`, so the SQL after that does not care where they came from. A write
that runs out of memory under the cap, or whose commit meets another DuckLake writer's, is
run again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from .backends import Backend, FileBackend
from .locks import Backoff, process_lock
from .memory import UnitSettings, empty_buffer_pool, out_of_memory
from .merge import run
from .staging import Rows, Stage, Staged, StagePart, name_sources

T = TypeVar("T")
log = logging.getLogger(__name__)


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
        backoff = Backoff(self.lock_timeout)
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
        self, read_only: bool, stage: Staged | None = None, memory_limit: str | None = None
    ) -> Iterator[Unit]:
        """One connection, closed on exit; a read-write one is one transaction, rolled back
        if the block raises. The schema is not checked here (migrations use this too)."""
        if stage is not None:
            stage.seal()  # the last batch is framed before the file is locked
        with self._process_lock.hold(read_only):
            yield from self._unit(read_only, memory_limit, stage)

    def _unit(self, read_only: bool, memory_limit: str | None, stage: Staged | None) -> Iterator[Unit]:
        con = self._open(read_only)
        unit = Unit(con)
        opened = time.perf_counter()
        settings = UnitSettings(con)
        try:
            staged_rows = stage.records_added if stage is not None else None
            evict = settings.for_merge(staged_rows, memory_limit, writing=not read_only)
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
                    empty_buffer_pool(con, memory_limit)
        finally:
            if settings.changed and self.backend.shares_instance:
                settings.reset()
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
        stage = rows if isinstance(rows, (Stage, StagePart)) else None
        if stage is not None:
            stage.seal()  # before the file is opened: sealing hands memory back (a collection)
        limit = self.merge_memory_limit if stage is not None or capped else None
        backoff = Backoff(self.lock_timeout)
        while True:
            try:
                with self.unit(read_only=False, stage=stage, memory_limit=limit) as unit:
                    if claim:
                        self.backend.claim(unit.con)
                    name_sources(unit.con, rows, names)
                    value = body(unit.con)
                return value, unit
            except duckdb.Error as exc:
                if out_of_memory(exc) and limit is not None:
                    log.warning("write to %s ran out of memory under %s; retrying without the cap", self.backend.location, limit)
                    limit = None
                    continue
                if not self.backend.is_conflict(exc):
                    raise
                log.info("write to %s met another writer's commit; running it again", self.backend.location)
                backoff.wait_or_raise(self.backend.location, exc)
