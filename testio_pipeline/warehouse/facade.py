"""The Warehouse: the one object the sync, checks and command line use for the DuckDB mirror.

A thin facade. Each method hands its call to the module that does the work: ``writes``
(entities), ``bookkeeping`` (rejected and problematic records, sync events), ``reads`` and
``migrations``, all over one :class:`~.connection.Connections`, which opens the file for
each call and closes it right after, so other processes get the file in between. The same
methods serve a DuckLake (``ducklake:…`` location, :mod:`.backends`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from testio_pipeline.domain.records import ProblemRange, Record, RejectedRecord
from testio_pipeline.entities import ENTITY_BY_NAME

from . import bookkeeping, migrations, reads, search, writer_lock, writes
from .backends import LakeBackend, backend_for

if TYPE_CHECKING:  # pandas is imported by DuckDB on the first .df(), not by every run
    import pandas as pd
from .connection import Connections
from .merge import WriteStats
from .staging import Stage


class Warehouse:
    """The DuckDB mirror of the TestIO data. Every method opens and closes its own connection.

    ``location`` is a DuckDB file path, or a ``ducklake:`` ATTACH string; a new lake's data
    files go under ``lake_data_path`` (a folder or an object-store URL).
    """

    def __init__(
        self,
        location: str | Path,
        lock_timeout: float = 60.0,
        merge_memory_limit: str = "384MB",
        *,
        lake_data_path: str | None = None,
        write_unit_rows: int = writes.UNIT_ROWS,
    ):
        backend = backend_for(location, lake_data_path)
        self._db = Connections(backend, lock_timeout, merge_memory_limit, prepare=migrations.ensure_ready)
        self.write_unit_rows = write_unit_rows  # a staged write of more rows is merged in units by product

    @property
    def location(self) -> str:
        """The DuckDB file's path, or the lake's ATTACH string."""
        return self._db.backend.location

    @property
    def is_lake(self) -> bool:
        return isinstance(self._db.backend, LakeBackend)

    @property
    def path(self) -> Path:
        """The DuckDB file (AttributeError for a DuckLake)."""
        return self._db.path

    @property
    def lock_timeout(self) -> float:
        """Seconds a connection waits for another process's lock before WarehouseLockedError."""
        return self._db.lock_timeout

    @lock_timeout.setter
    def lock_timeout(self, seconds: float) -> None:
        self._db.lock_timeout = seconds

    @property
    def merge_memory_limit(self) -> str | None:
        """DuckDB memory_limit for merging a stage (empty: no cap)."""
        return self._db.merge_memory_limit

    @merge_memory_limit.setter
    def merge_memory_limit(self, limit: str | None) -> None:
        self._db.merge_memory_limit = limit

    def exclusive_writer(
        self, holder: str, on_wait: Callable[[str], None] | None = None
    ) -> AbstractContextManager[float]:
        """Hold the file for one writing step across processes (``writer_lock.py``); yields the
        seconds waited. A DuckLake needs no such lock: it yields 0 at once."""
        if self.is_lake:
            return nullcontext(0.0)
        return writer_lock.exclusive_writer(self.path, holder, on_wait)

    # --- connections -----------------------------------------------------------------------

    def read(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A read-only connection for several queries in a row (the shared one inside ``reading()``)."""
        return self._db.read()

    @contextmanager
    def reading(self) -> Iterator["Warehouse"]:
        """Let the reads inside the block share one read-only connection (one open, one close).

        Only reads of the calling thread share it; writes open their own connection as always,
        so do not write inside the block (the file would be open in both modes at once).
        """
        with self._db.reading():
            yield self

    # --- staging ---------------------------------------------------------------------------

    @property
    def staging_dir(self) -> Path:
        """Where stages live: next to a warehouse file (same disk), in a hidden directory; a
        local temp folder for a lake."""
        return self._db.backend.staging_dir

    @contextmanager
    def stage(self, entity: str, *, batch_rows: int = 5000) -> Iterator[Stage]:
        """A per-run staging store for ``entity`` (tests, bugs), removed on exit.

        Fill it while fetching (``stage.add(records)``), then pass it to ``write`` in place of
        the record list: the write merges it in one transaction (past ``write_unit_rows``
        rows, in one per group of products).
        """
        staged = Stage(entity, self.staging_dir, batch_rows=batch_rows)
        try:
            yield staged
        finally:
            staged.discard()

    # --- schema ----------------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply missing schema versions in order, in one transaction; returns the current version."""
        return migrations.migrate(self._db)

    # --- entity writes ---------------------------------------------------------------------

    def write(
        self,
        entity: str,
        rows: Sequence[Record] | Stage,
        synced_at: datetime,
        *,
        complete: Mapping[str, Collection[int]] | None = None,
        detect_deletions: bool = False,
        run_id: str | None = None,
        **options: Any,
    ) -> WriteStats:
        """Merge ``entity``'s records (or its filled stage) and their child rows in one
        transaction, as its registry declaration says (a stage of more than
        ``write_unit_rows`` rows: in one transaction per group of products, ``writes.write_entity``).

        ``complete`` names, per parent table, the parents whose rows of ``entity`` were all
        fetched (e.g. ``{"products": ids}``; for bugs also ``{"tests": ids}``): deletions
        (``detect_deletions``) are only marked among their rows, and only they get their
        ``<entity>_synced_at``. ``options`` go to the entity's ``prepare`` hook (bugs:
        ``reject_reasons``, which replaces the stored list the comments are matched against).
        ``run_id`` marks the entity's history rows (``bug_status_changes``, ``test_status_changes``).
        """
        return writes.write_entity(
            self._db,
            ENTITY_BY_NAME[entity],
            rows,
            synced_at,
            complete=complete or {},
            detect_deletions=detect_deletions,
            run_id=run_id,
            unit_rows=self.write_unit_rows,
            **options,
        )

    # --- bookkeeping writes ----------------------------------------------------------------

    def write_rejected(self, rejects: Sequence[RejectedRecord], run_id: str | None, seen_at: datetime) -> int:
        """Note records the client could not type (one row per entity, record id and content);
        returns how many distinct ones this write saw."""
        return bookkeeping.write_rejected(self._db, rejects, run_id, seen_at)

    def write_problematic(
        self,
        problems: Sequence[ProblemRange],
        run_id: str | None,
        seen_at: datetime,
        *,
        entity: str,
        checked_product_ids: Collection[int] = (),
    ) -> WriteStats:
        """Record failing list spots, one row per spot (``ProblemRange.spot``).

        Unresolved problems of ``entity`` for ``checked_product_ids`` that are not reported again
        get ``resolved_at``; one that comes back is reopened (times_reopened); first_seen_at
        survives both.
        """
        return bookkeeping.write_problematic(
            self._db, problems, run_id, seen_at, entity=entity, checked_product_ids=checked_product_ids
        )

    def start_sync_event(self, run_id: str, trigger: str, mode: str, started_at: datetime) -> None:
        """Open the run's sync_events row (status running); a repeated start resets it."""
        bookkeeping.start_sync_event(self._db, run_id, trigger, mode, started_at)

    def finish_sync_event(
        self,
        run_id: str,
        status: str,
        finished_at: datetime,
        counts: Mapping[str, int],
        error: str | None = None,
    ) -> None:
        """Close the run's sync_events row with its outcome and counts (creates it if missing)."""
        bookkeeping.finish_sync_event(self._db, run_id, status, finished_at, counts, error)

    # --- reads ---------------------------------------------------------------------------

    def query(self, sql: str, params: Any = None) -> pd.DataFrame:
        """Run a read-only query and return a DataFrame."""
        return reads.query(self._db, sql, params)

    def records(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        """Run a read-only query and return its rows as dicts (no pandas: the run path uses this)."""
        return reads.rows(self._db, sql, params)

    def running_sync_events(self) -> list[str]:
        """Run ids whose sync_events row is still open."""
        return reads.running_sync_events(self._db)

    def product_ids(self, include_deleted: bool = False) -> list[int]:
        """Stored product ids, in order."""
        return reads.product_ids(self._db, include_deleted)

    def products(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Products with their current section ids and per-product sync times."""
        return reads.products(self._db, include_deleted)

    def products_in_scope(self, product_ids: Collection[int] | None = None) -> list[dict[str, Any]]:
        """The stored API objects of the non-deleted products in scope (None = all)."""
        return reads.products_in_scope(self._db, product_ids)

    def test_states(self, product_ids: Collection[int] | None = None) -> dict[int, tuple[int, str]]:
        """Test id → (product_id, status) for non-deleted tests, in the API's list order."""
        return reads.test_states(self._db, product_ids)

    def reject_reasons_synced(self) -> bool:
        """Whether a sync has written the rejection reasons (else: the schema's standard list)."""
        return reads.reject_reasons_synced(self._db)

    def tests_needing_bugs(self, product_ids: Collection[int], *, full: bool) -> dict[int, list[int]]:
        """Product id → test ids whose bugs a refresh must read.

        Full: every non-deleted test. Incremental: tests never bug-synced, not final, or
        changed since their bugs were last read — so a test that just became archived or
        cancelled has its bugs read once more, when its review is closed. A final test's bugs
        are settled after that; the nightly full sync catches any late change.
        """
        return reads.tests_needing_bugs(self._db, product_ids, full=full)

    def search_bugs(
        self, query: str, *, product_id: int | None = None, status: str | None = None, limit: int = 50
    ) -> pd.DataFrame:
        """Bugs matching ``query`` (BM25 over title, steps, results, comments), best first;
        ``status`` is the readable one: open, accepted, auto-accepted or rejected."""
        return search.search(self._db, query, product_id=product_id, status=status, limit=limit)

    def rebuild_search_index(self) -> search.IndexBuild:
        """Rebuild the bug search index now (the bug writes keep it up to date)."""
        return search.rebuild(self._db)[0]

    def table_counts(self) -> dict[str, int]:
        """Non-deleted rows per entity table."""
        return reads.table_counts(self._db)

    def ids(self, table: str, include_deleted: bool = False) -> set[int]:
        """Ids stored in ``table`` (soft-deleted rows only with ``include_deleted``)."""
        return reads.ids(self._db, table, include_deleted)
