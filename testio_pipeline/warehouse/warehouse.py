"""The Warehouse: short-lived DuckDB connections, one transaction per write, bulk set-based SQL."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TypeVar

import duckdb
import pandas as pd

from testio_pipeline.domain.vocabulary import FINAL_TEST_STATUSES
from testio_pipeline.domain.records import (
    Bug,
    ExploratoryTest,
    Feature,
    ProblemRange,
    Product,
    RejectedRecord,
    UserStory,
)

from . import frames, merge
from .merge import Scope, WriteStats, utc
from .staging import Stage
from .schema import (
    ENTITY_TABLES,
    LATEST_VERSION,
    MIGRATIONS,
    SYNC_COUNT_COLUMNS,
    SYNC_STATUSES,
    TABLES,
    bootstrap_sql,
    comment_sql,
)

T = TypeVar("T")
log = logging.getLogger(__name__)


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


def _current_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_migrations' AND schema_name = 'main'"
    ).fetchall()[0][0]
    if not exists:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][0]


class _Unit:
    """One open connection; ``held_s`` is filled in when it closes."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        self.held_s = 0.0


class Warehouse:
    """The DuckDB mirror of the TestIO data. Every method opens and closes its own connection."""

    def __init__(self, path: str | Path, lock_timeout: float = 60.0, merge_memory_limit: str = "384MB"):
        self.path = Path(path)
        self.merge_memory_limit = merge_memory_limit
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock_timeout = lock_timeout
        self._ready = False
        self._shared_read: tuple[int, duckdb.DuckDBPyConnection] | None = None

    # --- connections -----------------------------------------------------------------------

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
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
            merge.run(con, "SET TimeZone = 'UTC'")  # TIMESTAMPTZ values come back as UTC datetimes
        except BaseException:
            con.close()
            raise
        return con

    @contextmanager
    def _unit(
        self, read_only: bool, stage: Stage | None = None, memory_limit: str | None = None
    ) -> Iterator[_Unit]:
        if stage is not None:
            stage.seal()  # the last batch is framed before the file is locked
        con = self._connect(read_only)
        unit = _Unit(con)
        opened = time.perf_counter()
        try:
            if stage is not None:
                merge.run(con, "SET preserve_insertion_order = false")
            if memory_limit is not None:
                # A merge can be far larger than memory: DuckDB's default (80% of RAM) would let
                # it buffer the whole stage; under this limit it spills to its temp directory.
                merge.run(con, f"SET memory_limit = '{memory_limit}'")
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
    def _write(self, stage: Stage | None = None, memory_limit: str | None = None) -> Iterator[_Unit]:
        self._ensure_ready()
        with self._unit(read_only=False, stage=stage, memory_limit=memory_limit) as unit:
            yield unit

    def _merge(self, stage: Stage | None, body: Callable[[duckdb.DuckDBPyConnection], T]) -> tuple[T, _Unit]:
        """Run ``body`` in one write transaction. A staged merge runs under the memory cap
        first; some operations (e.g. rewriting rows under a large primary-key index) cannot
        spill, so if DuckDB runs out of memory the transaction (rolled back) runs once more
        without the cap: a finished sync matters more than the memory goal."""
        limits = [self.merge_memory_limit, None] if stage is not None and self.merge_memory_limit else [None]
        for attempt, limit in enumerate(limits, start=1):
            try:
                with self._write(stage, memory_limit=limit) as unit:
                    value = body(unit.con)
                return value, unit
            except duckdb.OutOfMemoryException:
                if attempt == len(limits):
                    raise
                log.warning("merge into %s ran out of memory under %s; retrying without the cap", self.path, limit)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _sources(
        con: duckdb.DuckDBPyConnection,
        data: Sequence[Any] | Stage,
        make_frames: Any,
        names: Sequence[str],
    ) -> list[str]:
        """Name the rows to write as ``names``: Arrow frames of a record list, or views over the
        files of a stage. Everything after this is the same SQL."""
        if isinstance(data, Stage):
            return data.sources(con, names)
        tables = make_frames(data)
        for name, table in zip(names, tables if isinstance(tables, tuple) else (tables,)):
            con.register(name, table)
        return list(names)

    # --- staging ---------------------------------------------------------------------------

    @property
    def staging_dir(self) -> Path:
        """Where stages live: next to the warehouse file (same disk), in a hidden directory."""
        return self.path.parent / f".{self.path.name}.staging"

    @contextmanager
    def stage(self, entity: str, *, batch_rows: int = 5000) -> Iterator[Stage]:
        """A per-run staging store for ``entity`` (tests, bugs), removed on exit.

        Fill it while fetching (``stage.add(records)``), then pass it to ``write_tests`` /
        ``write_bugs`` in place of the record list: the write merges it in one transaction.
        """
        staged = Stage(entity, self.staging_dir, batch_rows=batch_rows)
        try:
            yield staged
        finally:
            staged.discard()

    @contextmanager
    def _read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # Read-only, so analysts' read-only sessions on the same file do not block us (or we them).
        shared = self._shared_read
        if shared is not None and shared[0] == threading.get_ident():
            yield shared[1]
            return
        self._ensure_ready()
        with self._unit(read_only=True) as unit:
            yield unit.con

    @contextmanager
    def reading(self) -> Iterator["Warehouse"]:
        """Let the reads inside the block share one read-only connection (one open, one close).

        Only reads of the calling thread share it; writes open their own connection as always,
        so do not write inside the block (the file would be open in both modes at once).
        """
        if self._shared_read is not None:
            yield self
            return
        with self._read() as con:
            self._shared_read = (threading.get_ident(), con)
            try:
                yield self
            finally:
                self._shared_read = None

    # --- schema ----------------------------------------------------------------------------

    def _ensure_ready(self) -> None:
        """Migrate on first use; a file already at the latest version is only read, not locked."""
        if self._ready:
            return
        if self.path.exists() and self.path.stat().st_size > 0:
            with self._unit(read_only=True) as unit:
                version = _current_version(unit.con)
            if version == LATEST_VERSION:
                self._ready = True
                return
        self.migrate()

    def migrate(self) -> int:
        """Apply missing schema versions in order, in one transaction; returns the current version."""
        with self._unit(read_only=False) as unit:
            con = unit.con
            for stmt in bootstrap_sql():
                merge.run(con, stmt)
            version = _current_version(con)
            if version > LATEST_VERSION:
                raise RuntimeError(
                    f"{self.path} has schema version {version}, newer than this code ({LATEST_VERSION})"
                )
            pending = [m for m in MIGRATIONS if m.version > version]
            for migration in pending:
                for step in migration.steps:
                    merge.run(con, step)
                merge.run(
                    con,
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    [migration.version, datetime.now(timezone.utc), migration.description],
                )
            if pending:  # TABLES describes the latest schema, so comments are rewritten whole
                for stmt in comment_sql():
                    merge.run(con, stmt)
        self._ready = True
        return LATEST_VERSION

    # --- entity writes ---------------------------------------------------------------------

    def write_products(
        self, products: Sequence[Product], synced_at: datetime, *, detect_deletions: bool = False
    ) -> WriteStats:
        """Upsert products and their sections; the list is the token's whole scope."""
        started = time.perf_counter()
        ts = utc(synced_at)
        product_frame, section_frame = frames.products_frame(products)
        everything = Scope(None) if detect_deletions else None
        with self._write() as unit:
            con = unit.con
            con.register("_products", product_frame)
            con.register("_sections", section_frame)
            counts = merge.upsert(con, "products", "_products", ts, delete_scope=everything)
            sec = merge.upsert(
                con, "sections", "_sections", ts, compare=("product_id", "name"), delete_scope=everything
            )
        extra = {f"sections_{k}": v for k, v in sec.counts().items()}
        counts.extra = extra
        return counts.timed(started, unit.held_s)

    def write_features(
        self,
        features: Sequence[Feature],
        synced_at: datetime,
        *,
        complete_product_ids: Collection[int],
        detect_deletions: bool = False,
    ) -> WriteStats:
        """Upsert features; links to sections are replaced for the complete products."""
        started = time.perf_counter()
        ts = utc(synced_at)
        feature_frame, link_frame = frames.features_frame(features)
        complete = set(complete_product_ids)
        with self._write() as unit:
            con = unit.con
            con.register("_features", feature_frame)
            con.register("_feature_sections", link_frame)
            merge.register_ids(con, "_complete", complete)
            counts = merge.upsert(
                con, "features", "_features", ts,
                delete_scope=Scope("product_id", complete) if detect_deletions else None,
            )
            removed, added = merge.replace_children(
                con, "feature_sections", "_feature_sections",
                "product_id IN (SELECT id FROM _complete)" if complete else None,
            )
            marked = merge.mark_synced(con, "products", "features_synced_at", complete, ts)
        extra = {
            "feature_sections_removed": removed,
            "feature_sections_added": added,
            "products_marked_synced": marked,
        }
        counts.extra = extra
        return counts.timed(started, unit.held_s)

    def write_user_stories(
        self,
        stories: Sequence[UserStory],
        synced_at: datetime,
        *,
        complete_product_ids: Collection[int],
        detect_deletions: bool = False,
    ) -> WriteStats:
        """Upsert user stories, resolving feature_id from the stored features' story titles."""
        started = time.perf_counter()
        ts = utc(synced_at)
        story_frame = frames.user_stories_frame(stories)
        complete = set(complete_product_ids)
        with self._write() as unit:
            con = unit.con
            con.register("_stories_in", story_frame)
            # A story names no feature; features name stories by title. Prefer a feature listed
            # in the story's own section, then the lowest id so the choice is stable.
            merge.run(
                con,
                """CREATE TEMP TABLE _stories AS
                WITH titles AS (
                    SELECT id AS feature_id, product_id, unnest(user_story_titles) AS title
                    FROM features WHERE deleted_at IS NULL
                ), candidates AS (
                    SELECT s.id AS story_id, t.feature_id, fs.section_id IS NOT NULL AS same_section
                    FROM _stories_in s
                    JOIN titles t ON t.product_id = s.product_id AND t.title = s.title
                    LEFT JOIN feature_sections fs ON fs.feature_id = t.feature_id AND fs.section_id = s.section_id
                ), best AS (
                    SELECT story_id, feature_id FROM candidates
                    QUALIFY row_number() OVER (PARTITION BY story_id ORDER BY same_section DESC, feature_id) = 1
                )
                SELECT s.*, b.feature_id FROM _stories_in s LEFT JOIN best b ON b.story_id = s.id"""
            )
            counts = merge.upsert(
                con, "user_stories", "_stories", ts,
                compare=("content_hash", "feature_id"),  # a re-resolved feature is a change too
                delete_scope=Scope("product_id", complete) if detect_deletions else None,
            )
            unresolved = merge.run(con, "SELECT count(*) FROM _stories WHERE feature_id IS NULL")[0][0]
            marked = merge.mark_synced(con, "products", "user_stories_synced_at", complete, ts)
        extra = {"feature_unresolved": unresolved, "products_marked_synced": marked}
        counts.extra = extra
        return counts.timed(started, unit.held_s)

    def write_tests(
        self,
        tests: Sequence[ExploratoryTest] | Stage,
        synced_at: datetime,
        *,
        complete_product_ids: Collection[int],
        detect_deletions: bool = False,
    ) -> WriteStats:
        """Upsert tests; each written test's test_features are replaced."""
        started = time.perf_counter()
        ts = utc(synced_at)
        complete = set(complete_product_ids)
        staged = tests if isinstance(tests, Stage) else None

        def body(con: duckdb.DuckDBPyConnection):
            self._sources(con, tests, frames.tests_frame, ("_tests", "_test_features"))
            counts = merge.upsert(
                con, "tests", "_tests", ts,
                delete_scope=Scope("product_id", complete) if detect_deletions else None,
            )
            removed, added = merge.replace_children(
                con, "test_features", "_test_features", "test_id IN (SELECT id FROM _tests)"
            )
            marked = merge.mark_synced(con, "products", "tests_synced_at", complete, ts)
            return counts, removed, added, marked

        (counts, removed, added, marked), unit = self._merge(staged, body)
        extra = {
            "test_features_removed": removed,
            "test_features_added": added,
            "products_marked_synced": marked,
        }
        counts.extra = extra
        return counts.timed(started, unit.held_s)

    def write_bugs(
        self,
        bugs: Sequence[Bug] | Stage,
        synced_at: datetime,
        *,
        fetched_test_ids: Collection[int],
        complete_product_ids: Collection[int] = (),
        detect_deletions: bool = False,
    ) -> WriteStats:
        """Upsert bugs; deletions only among the bugs of tests whose bugs were fetched completely."""
        started = time.perf_counter()
        ts = utc(synced_at)
        fetched = set(fetched_test_ids)
        staged = bugs if isinstance(bugs, Stage) else None

        def body(con: duckdb.DuckDBPyConnection):
            self._sources(con, bugs, frames.bugs_frame, ("_bugs",))
            counts = merge.upsert(
                con, "bugs", "_bugs", ts,
                delete_scope=Scope("test_id", fetched) if detect_deletions else None,
            )
            tests_marked = merge.mark_synced(con, "tests", "bugs_synced_at", fetched, ts)
            products_marked = merge.mark_synced(con, "products", "bugs_synced_at", set(complete_product_ids), ts)
            return counts, tests_marked, products_marked

        (counts, tests_marked, products_marked), unit = self._merge(staged, body)
        extra = {"tests_marked_synced": tests_marked, "products_marked_synced": products_marked}
        counts.extra = extra
        return counts.timed(started, unit.held_s)

    # --- bookkeeping writes ----------------------------------------------------------------

    def write_rejected(self, rejects: Sequence[RejectedRecord], run_id: str | None, seen_at: datetime) -> int:
        """Append records the client could not type; returns how many were stored."""
        if not rejects:
            return 0
        frame = frames.rejected_frame(rejects, run_id, utc(seen_at))
        cols = ", ".join(frame.column_names)
        with self._write() as unit:
            unit.con.register("_rejects", frame)
            sql = f"INSERT INTO rejected_records ({cols}) SELECT {cols} FROM _rejects"
            return merge.run(unit.con, sql)[0][0]

    def write_problematic(
        self,
        problems: Sequence[ProblemRange],
        run_id: str | None,
        seen_at: datetime,
        *,
        entity: str = "exploratory_tests",
        checked_product_ids: Collection[int] = (),
    ) -> WriteStats:
        """Record failing list positions.

        Unresolved problems of ``entity`` for ``checked_product_ids`` that are not reported again
        get ``resolved_at``; first_seen_at survives repeats.
        """
        started = time.perf_counter()
        ts = utc(seen_at)
        frame = frames.problems_frame(problems, entity)
        names = ", ".join(frame.column_names)
        with self._write() as unit:
            con = unit.con
            con.register("_problems", frame)
            merge.register_ids(con, "_checked", checked_product_ids)
            before = con.execute("SELECT count(*) FROM problematic_records").fetchall()[0][0]
            merge.run(
                con,
                f"""INSERT INTO problematic_records ({names}, first_seen_at, last_seen_at, run_id)
                SELECT {names}, $ts, $ts, $run FROM _problems
                ON CONFLICT (product_id, entity, range_start) DO UPDATE SET
                    range_end = excluded.range_end, neighbour_ids = excluded.neighbour_ids,
                    error = excluded.error, last_seen_at = excluded.last_seen_at,
                    run_id = excluded.run_id, resolved_at = NULL""",
                {"ts": ts, "run": run_id},
            )
            inserted = con.execute("SELECT count(*) FROM problematic_records").fetchall()[0][0] - before
            resolved = con.execute(
                """UPDATE problematic_records AS r SET resolved_at = $ts
                WHERE r.resolved_at IS NULL AND r.entity = $entity
                  AND r.product_id IN (SELECT id FROM _checked)
                  AND NOT EXISTS (SELECT 1 FROM _problems p
                                  WHERE p.product_id = r.product_id AND p.range_start = r.range_start)""",
                {"ts": ts, "entity": entity},
            ).fetchall()[0][0]
            open_rows = con.execute(
                "SELECT count(*) FROM problematic_records WHERE resolved_at IS NULL"
            ).fetchall()[0][0]
        counts = WriteStats(
            "problematic_records",
            inserted=inserted, updated=frame.num_rows - inserted, marked_deleted=resolved, total_rows=open_rows
        )
        return counts.timed(started, unit.held_s)

    def start_sync_event(self, run_id: str, trigger: str, mode: str, started_at: datetime) -> None:
        """Open the run's sync_events row (status running); a repeated start resets it."""
        with self._write() as unit:
            merge.run(
                unit.con,
                """INSERT INTO sync_events (run_id, trigger, mode, started_at, status)
                VALUES ($run, $trigger, $mode, $ts, 'running')
                ON CONFLICT (run_id) DO UPDATE SET trigger = excluded.trigger, mode = excluded.mode,
                    started_at = excluded.started_at, status = 'running', finished_at = NULL, error = NULL""",
                {"run": run_id, "trigger": trigger, "mode": mode, "ts": utc(started_at)},
            )

    def finish_sync_event(
        self,
        run_id: str,
        status: str,
        finished_at: datetime,
        counts: Mapping[str, int],
        error: str | None = None,
    ) -> None:
        """Close the run's sync_events row with its outcome and counts (creates it if missing)."""
        if status not in SYNC_STATUSES:
            raise ValueError(f"status must be one of {SYNC_STATUSES}, got {status!r}")
        unknown = set(counts) - set(SYNC_COUNT_COLUMNS)
        if unknown:  # finishing must not fail over a metadata typo; say so instead
            log.warning("finish_sync_event(%s): ignoring unknown counts %s", run_id, sorted(unknown))
        known = {k: int(v) for k, v in counts.items() if k in SYNC_COUNT_COLUMNS}
        cols = ["run_id", "status", "finished_at", "error", *known]
        params = {"run_id": run_id, "status": status, "finished_at": utc(finished_at), "error": error, **known}
        with self._write() as unit:
            merge.run(
                unit.con,
                f"""INSERT INTO sync_events ({", ".join(cols)}) VALUES ({", ".join("$" + c for c in cols)})
                ON CONFLICT (run_id) DO UPDATE SET {", ".join(f"{c} = excluded.{c}" for c in cols[1:])}""",
                params,
            )

    # --- reads -----------------------------------------------------------------------------

    def query(self, sql: str, params: Any = None) -> pd.DataFrame:
        """Run a read-only query and return a DataFrame."""
        with self._read() as con:
            return con.execute(sql, params).df()

    def _rows(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        with self._read() as con:
            cur = con.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def running_sync_events(self) -> list[str]:
        """Run ids whose sync_events row is still open."""
        return [r["run_id"] for r in self._rows("SELECT run_id FROM sync_events WHERE status = 'running'")]

    def product_ids(self, include_deleted: bool = False) -> list[int]:
        where = "" if include_deleted else "WHERE deleted_at IS NULL"
        return [r["id"] for r in self._rows(f"SELECT id FROM products {where} ORDER BY id")]

    def products(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Products with their current section ids and per-product sync times."""
        where = "" if include_deleted else "WHERE p.deleted_at IS NULL"
        return self._rows(
            f"""SELECT p.id, p.name, p.type, p.has_sections, p.default_section_id,
                       coalesce(list(s.id ORDER BY s.id) FILTER (WHERE s.id IS NOT NULL), []) AS section_ids,
                       p.features_synced_at, p.user_stories_synced_at, p.tests_synced_at,
                       p.bugs_synced_at, p.synced_at, p.deleted_at
                FROM products p
                LEFT JOIN sections s ON s.product_id = p.id AND s.deleted_at IS NULL
                {where}
                GROUP BY ALL ORDER BY p.id"""
        )

    def products_in_scope(self, product_ids: Collection[int] | None = None) -> list[dict[str, Any]]:
        """The stored API objects of the non-deleted products in scope (None = all)."""
        sql = "SELECT raw FROM products WHERE deleted_at IS NULL"
        params = None
        if product_ids is not None:
            sql += " AND list_contains($ids, id)"
            params = {"ids": sorted(set(product_ids))}
        with self._read() as con:
            return [json.loads(raw) for (raw,) in con.execute(sql + " ORDER BY id", params).fetchall()]

    def test_states(self, product_ids: Collection[int] | None = None) -> dict[int, tuple[int, str]]:
        """Test id → (product_id, status) for non-deleted tests."""
        sql = "SELECT id, product_id, status FROM tests WHERE deleted_at IS NULL"
        params = None
        if product_ids is not None:
            sql += " AND list_contains($ids, product_id)"
            params = {"ids": sorted(set(product_ids))}
        with self._read() as con:
            return {tid: (pid, status) for tid, pid, status in con.execute(sql, params).fetchall()}

    def tests_needing_bugs(self, product_ids: Collection[int], *, full: bool) -> dict[int, list[int]]:
        """Product id → test ids whose bugs a refresh must read.

        Full: every non-deleted test. Incremental: tests never bug-synced, not final, or
        changed since their bugs were last read — so a test that just became archived or
        cancelled has its bugs read once more, when its review is closed. A final test's bugs
        are settled after that; the nightly full sync catches any late change.
        """
        sql = (
            "SELECT product_id, list(id ORDER BY id) FROM tests t "
            "WHERE deleted_at IS NULL AND list_contains($ids, product_id)"
        )
        if not full:
            finals = ", ".join(f"'{s}'" for s in sorted(FINAL_TEST_STATUSES))
            sql += (
                f" AND (bugs_synced_at IS NULL OR status NOT IN ({finals})"
                " OR synced_at > bugs_synced_at)"
            )
        with self._read() as con:
            rows = con.execute(sql + " GROUP BY product_id", {"ids": sorted(set(product_ids))}).fetchall()
        return {pid: list(ids) for pid, ids in rows}

    def table_counts(self) -> dict[str, int]:
        """Non-deleted rows per entity table."""
        union = " UNION ALL ".join(
            f"SELECT '{t}', count(*) FROM {t} WHERE deleted_at IS NULL" for t in ENTITY_TABLES
        )
        with self._read() as con:
            return dict(con.execute(union).fetchall())

    def ids(self, table: str, include_deleted: bool = False) -> set[int]:
        spec = TABLES.get(table)
        if spec is None or "id" not in spec.column_names:
            raise ValueError(f"unknown table or table without an id column: {table!r}")
        where = "" if include_deleted or not spec.soft_deletes else "WHERE deleted_at IS NULL"
        with self._read() as con:
            return {row[0] for row in con.execute(f"SELECT id FROM {table} {where}").fetchall()}
