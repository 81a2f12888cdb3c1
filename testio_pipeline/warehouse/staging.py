"""Per-run staging: records are framed while they are fetched and parked outside the warehouse.

A sync step hands every parsed batch to a :class:`Stage`, which frames it at once into the
same Arrow columns a direct write would use (``frames.entity_frames``), so the Python records can
be dropped right away and the framing CPU is spread evenly over the fetch. Every
``batch_rows`` framed rows become one Parquet file per table in a temporary directory of the
stage's own, written by the stage's writer thread (the Parquet encoding does not hold the
GIL, so the fetch's event loop keeps sending requests meanwhile). Memory stays bounded
however large the fetch is. At the end of the step the warehouse opens its file once and
runs the same set-based upsert on views over the staged files (``Warehouse.write`` accepts
a stage wherever it accepts a list of records), in one transaction, or for a large stage in
one per group of products (:class:`StagePart`: the views hold that group's rows only); then
the directory is removed. ``seal`` waits for the writer and raises what it raised.
Parquet rather than a staging DuckDB file: pyarrow writes a batch far faster than a DuckDB
INSERT does (see benchmarks/README.md), and DuckDB scans it as fast.

The warehouse file is never touched while fetching, so a run that fails or is killed leaves
the previous data as it was. A killed run can leave its stage directory behind: the names
carry the process id, and the next stage created in the same directory removes the
directories of processes that no longer run.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from testio_pipeline.entities import ENTITY_BY_NAME

from . import frames

log = logging.getLogger(__name__)

STAGE_PREFIX = ".stage-"
SEQ = "_seq"  # the batch a staged row came in; the last batch wins for a repeated key


def release_freed_memory() -> None:
    """Give the memory a fetch freed back to the operating system before its merge.

    The merge's own peak comes on top of what the process still holds, and after a large
    fetch that is mostly freed memory kept for reuse: Python objects in unreachable cycles,
    pyarrow's allocator's blocks, glibc's heap (measured in benchmarks/README.md, "Bug search
    index build").
    """
    gc.collect()
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


_LIBC = _glibc()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(directory: Path) -> list[Path]:
    """Remove stage directories left by processes that no longer run (killed runs)."""
    removed = []
    for path in directory.glob(f"{STAGE_PREFIX}*"):
        try:
            pid = int(path.name[len(STAGE_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if path.is_dir() and pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("removed %d stale staging directories in %s", len(removed), directory)
    return removed


def _sql_literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


class Stage:
    """Parquet files collecting one entity's frames during a fetch (see module doc)."""

    def __init__(self, entity: str, directory: str | Path, *, batch_rows: int = 5000):
        declared = ENTITY_BY_NAME.get(entity)
        if declared is None or not declared.staged:
            staged = sorted(e.name for e in ENTITY_BY_NAME.values() if e.staged)
            raise ValueError(f"no staging for {entity!r}; staged entities: {staged}")
        self.entity = entity
        self._declared = declared
        # The entity's own table first, then its children (replaced with it), each with the
        # column naming the entity's id.
        self.tables = [entity, *(c.table for c in declared.children)]
        self._id_columns = {entity: "id", **{c.table: c.parent_key for c in declared.children}}
        self.batch_rows = batch_rows
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        sweep_stale(directory)
        self.dir = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-{entity}-", dir=directory))
        self._framed: list[tuple[pa.Table, ...]] = []  # framed, not yet handed to the writer
        self._framed_rows = 0
        self._seq = 0  # one per add(): the later sighting of a repeated key wins
        self._files = 0
        self._open = True
        self.records_added = 0
        self.rows_staged = 0  # rows of the entity's own table written to the stage
        self._writer: ThreadPoolExecutor | None = None
        self._writing: list[Future[int]] = []
        try:
            for name in self.tables:
                (self.dir / name).mkdir()
            # An empty file 0 fixes every table's columns, so even an empty stage can be read.
            self.rows_staged += self._write_file([self._with_seq(self._frame([]))], self._next_file())
        except BaseException:
            self.discard()
            raise

    # --- filling ---------------------------------------------------------------------------

    def _frame(self, records: Sequence[Any]) -> tuple[pa.Table, ...]:
        return frames.entity_frames(self._declared, records)

    def add(self, records: Iterable[Any]) -> None:
        """Frame the records now (a little CPU per call, spread over the fetch); every
        ``batch_rows`` framed rows are written to the stage as one Parquet file per table."""
        if not self._open:
            raise RuntimeError(f"stage {self.dir} is sealed or discarded")
        records = list(records)
        if not records:
            return
        self.records_added += len(records)
        tables = self._with_seq(self._frame(records))
        del records
        self._framed.append(tables)
        self._framed_rows += tables[0].num_rows
        if self._framed_rows >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        """Hand the framed rows to the writer thread (one Parquet file per table).

        At most one earlier file may still be in the writer, so memory stays bounded; waiting
        for it is rare (fetching a batch takes far longer than writing one).
        """
        if not self._framed or not self._open:
            return
        parts, self._framed, self._framed_rows = self._framed, [], 0
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"stage-{self.entity}")
        self._writing.append(self._writer.submit(self._write_file, parts, self._next_file()))
        self._collect(keep=1)

    def _with_seq(self, tables: Sequence[pa.Table]) -> tuple[pa.Table, ...]:
        seq = self._seq
        self._seq += 1
        return tuple(t.append_column(SEQ, pa.array([seq] * t.num_rows, type=pa.int32())) for t in tables)

    def _next_file(self) -> int:
        number = self._files
        self._files += 1
        return number

    def _write_file(self, parts: list[tuple[pa.Table, ...]], number: int) -> int:
        """Write one file per table (the Parquet encoding does not hold the GIL)."""
        for i, name in enumerate(self.tables):
            table = pa.concat_tables([part[i] for part in parts])
            pq.write_table(table, self.dir / name / f"{number:06d}.parquet", compression="snappy")
        return sum(part[0].num_rows for part in parts)

    def _collect(self, keep: int = 0) -> None:
        """Wait until at most ``keep`` files are still being written; re-raise a writer error."""
        while len(self._writing) > keep:
            self.rows_staged += self._writing.pop(0).result()

    def wait_written(self) -> int:
        """Wait for the writer; returns how many files each table has on disk."""
        self._collect()
        return self._files

    @property
    def pending(self) -> int:
        """Framed rows held in memory, not yet handed to the writer (fewer than ``batch_rows``)."""
        return self._framed_rows

    @property
    def size(self) -> int:
        """Records taken so far (repeats counted)."""
        return self.records_added

    # --- handing over ----------------------------------------------------------------------

    def seal(self) -> Path:
        """Write what is pending; no more records are taken. Returns the stage directory."""
        if not self.dir.exists():
            raise RuntimeError(f"stage {self.dir} was discarded")
        was_open = self._open
        self.flush()
        self._collect()
        self._stop_writer()
        self._open = False
        if was_open:
            release_freed_memory()
        return self.dir

    def _stop_writer(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True, cancel_futures=True)
            self._writer = None

    def _scan(self, table: str) -> str:
        return f"read_parquet({_sql_literal(self.dir / table / '*.parquet')})"

    def sources(
        self, con: duckdb.DuckDBPyConnection, names: Sequence[str], products: ProductGroup | None = None
    ) -> list[str]:
        """Temp views ``names`` (in the order of ``self.tables``) over the sealed stage, in ``con``;
        with ``products``, only that group's rows (children through their parent's product).

        A key staged twice (a record seen in two batches; rare) keeps its last batch's row,
        and its children from that batch only.
        """
        self.seal()
        root, key = self.tables[0], self._id_columns[self.tables[0]]
        repeated = con.execute(f"SELECT count(*) - count(DISTINCT {key}) FROM {self._scan(root)}").fetchall()[0][0]
        in_group = "" if products is None else products.where(con, f"_{self.entity}_group", "product_id")
        root_name = names[0]
        for name, table in zip(names, self.tables):
            scan = self._scan(table)
            if not repeated:
                sql = f"SELECT * EXCLUDE ({SEQ}) FROM {scan}"
            else:
                col = self._id_columns[table]
                sql = (
                    f"SELECT s.* EXCLUDE ({SEQ}) FROM {scan} s JOIN "
                    f"(SELECT {key} AS _id, max({SEQ}) AS _last FROM {self._scan(root)} GROUP BY {key}) l "
                    f"ON s.{col} = l._id AND s.{SEQ} = l._last"
                )
                if table == root:  # one batch may not repeat a key (frames dedupe), but be sure
                    sql += f" QUALIFY row_number() OVER (PARTITION BY s.{key}) = 1"
            if in_group:
                column = self._id_columns[table]
                condition = in_group if table == root else f"{column} IN (SELECT {key} FROM {root_name})"
                sql = f"SELECT * FROM ({sql}) WHERE {condition}"
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}").fetchall()
        return list(names)

    def rows_per_product(self) -> dict[int, int]:
        """Staged rows of the entity's own table per product (repeats counted; read from the
        files alone, without the warehouse)."""
        self.seal()
        con = duckdb.connect()
        try:
            rows = con.execute(
                f"SELECT product_id, count(*) FROM {self._scan(self.tables[0])} GROUP BY product_id"
            ).fetchall()
        finally:
            con.close()
        return {int(product): count for product, count in rows if product is not None}

    def part(self, products: ProductGroup, rows: int) -> StagePart:
        """The rows of one group of products (``rows`` of them), written as one unit."""
        return StagePart(self, products, rows)

    def discard(self) -> None:
        """Delete the stage (idempotent); a file still being written is waited for first."""
        self._framed, self._framed_rows = [], 0
        self._open = False
        self._stop_writer()
        self._writing = []
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Stage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()

    def __repr__(self) -> str:
        return f"Stage({self.entity!r}, {self.dir}, records={self.size})"


@dataclass(frozen=True)
class ProductGroup:
    """The products one write unit covers: ``ids``, or (``rest``) every product but ``ids``,
    so the last unit of a write also covers the products it holds no staged rows of."""

    ids: frozenset[int]
    rest: bool = False

    def covers(self, product_id: int) -> bool:
        return (product_id in self.ids) != self.rest

    def where(self, con: duckdb.DuckDBPyConnection, name: str, column: str) -> str:
        """SQL: ``column`` (a product id) is in the group; registers the ids as ``name`` in ``con``."""
        con.register(name, frames.ids_frame(self.ids))
        if self.rest:
            return f"({column} IS NULL OR {column} NOT IN (SELECT id FROM {name}))"
        if not self.ids:
            return "false"
        # The constant range lets a scan of the stage's files skip the row groups of other
        # products (their min/max); the subquery alone would read every file for every unit.
        span = f"{column} BETWEEN {min(self.ids)} AND {max(self.ids)}"
        return f"{span} AND {column} IN (SELECT id FROM {name})"


class StagePart:
    """One unit of a stage: the rows of a :class:`ProductGroup` (see ``Stage.part``)."""

    def __init__(self, stage: Stage, products: ProductGroup, rows: int):
        self.stage = stage
        self.products = products
        self.records_added = rows  # what the unit's merge settings go by

    @property
    def entity(self) -> str:
        return self.stage.entity

    def seal(self) -> Path:
        return self.stage.seal()

    def sources(self, con: duckdb.DuckDBPyConnection, names: Sequence[str]) -> list[str]:
        return self.stage.sources(con, names, self.products)


# A stage or one unit of it.
Staged = Stage | StagePart
# What a write names as its sources: a stage (or a part), or one Arrow frame or several (in name order).
Rows = Staged | pa.Table | Sequence[pa.Table]


def name_sources(con: duckdb.DuckDBPyConnection, rows: Rows, names: Sequence[str]) -> None:
    """Name the rows to write as ``names`` in ``con``: views over the files of a stage, or
    the Arrow frames of a record list. Everything after this is the same SQL."""
    if isinstance(rows, (Stage, StagePart)):
        rows.sources(con, names)
        return
    tables = (rows,) if isinstance(rows, pa.Table) else tuple(rows)
    for name, table in zip(names, tables, strict=True):
        con.register(name, table)
