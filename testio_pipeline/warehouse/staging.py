"""Per-run staging: records are framed while they are fetched and parked outside the warehouse.

A sync step hands every parsed batch to a :class:`Stage`; the stage buffers at most
``batch_rows`` records, turns them into the same Arrow frames a direct write would use
(``frames.*_frame``) and writes those as Parquet files into a temporary directory of its
own, so the Python records can be dropped at once and memory stays bounded however large
the fetch is. At the end of the step the warehouse opens its file once and runs the same
set-based upsert on views over the staged files (``Warehouse.write_*`` accept a stage
wherever they accept a list of records), in one transaction; then the directory is removed.
Parquet rather than a staging DuckDB file: pyarrow writes a batch ~8x faster than a DuckDB
INSERT (measured on 28k bugs: 0.04 s vs 0.32 s), and DuckDB scans it as fast.

The warehouse file is never touched while fetching, so a run that fails or is killed leaves
the previous data as it was. A killed run can leave its stage directory behind: the names
carry the process id, and the next stage created in the same directory removes the
directories of processes that no longer run.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from . import frames

log = logging.getLogger(__name__)

STAGE_PREFIX = ".stage-"
SEQ = "_seq"  # the batch a staged row came in; the last batch wins for a repeated key


def _tests_frames(records: Sequence[Any]) -> tuple[pa.Table, ...]:
    return frames.tests_frame(records)


def _bugs_frames(records: Sequence[Any]) -> tuple[pa.Table, ...]:
    return (frames.bugs_frame(records),)


# entity -> (records -> frames, [(staged table, column naming the entity's id)]); the first
# table is the entity's own, the others are its children (replaced with it).
STAGED: dict[str, tuple[Callable[[Sequence[Any]], tuple[pa.Table, ...]], tuple[tuple[str, str], ...]]] = {
    "tests": (_tests_frames, (("tests", "id"), ("test_features", "test_id"))),
    "bugs": (_bugs_frames, (("bugs", "id"),)),
}


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
        if entity not in STAGED:
            raise ValueError(f"no staging for {entity!r}; staged entities: {sorted(STAGED)}")
        self.entity = entity
        self._frame, tables = STAGED[entity]
        self.tables = [name for name, _ in tables]
        self._id_columns = dict(tables)
        self.batch_rows = batch_rows
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        sweep_stale(directory)
        self.dir = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-{entity}-", dir=directory))
        self._pending: list[Any] = []
        self._batches = 0
        self._open = True
        self.records_added = 0
        self.rows_staged = 0  # rows of the entity's own table written to the stage
        try:
            for name in self.tables:
                (self.dir / name).mkdir()
            # An empty batch 0 fixes every table's columns, so even an empty stage can be read.
            self._write_batch(self._frame([]))
        except BaseException:
            self.discard()
            raise

    # --- filling ---------------------------------------------------------------------------

    def add(self, records: Iterable[Any]) -> None:
        """Take records; every ``batch_rows`` of them are framed and written to the stage."""
        if not self._open:
            raise RuntimeError(f"stage {self.dir} is sealed or discarded")
        self._pending.extend(records)
        if len(self._pending) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        """Frame the pending records and write them out as one Parquet file per table."""
        if not self._pending or not self._open:
            return
        records, self._pending = self._pending, []
        self.records_added += len(records)
        tables = self._frame(records)
        del records
        self._write_batch(tables)

    def _write_batch(self, tables: Sequence[pa.Table]) -> None:
        seq = self._batches
        self._batches += 1
        for name, table in zip(self.tables, tables):
            table = table.append_column(SEQ, pa.array([seq] * table.num_rows, type=pa.int32()))
            pq.write_table(table, self.dir / name / f"{seq:06d}.parquet", compression="snappy")
        self.rows_staged += tables[0].num_rows

    @property
    def pending(self) -> int:
        """Records held in memory, not yet framed."""
        return len(self._pending)

    @property
    def size(self) -> int:
        """Records taken so far (framed or pending; repeats counted)."""
        return self.records_added + len(self._pending)

    # --- handing over ----------------------------------------------------------------------

    def seal(self) -> Path:
        """Write what is pending; no more records are taken. Returns the stage directory."""
        if not self.dir.exists():
            raise RuntimeError(f"stage {self.dir} was discarded")
        self.flush()
        self._open = False
        return self.dir

    def _scan(self, table: str) -> str:
        return f"read_parquet({_sql_literal(self.dir / table / '*.parquet')})"

    def sources(self, con: duckdb.DuckDBPyConnection, names: Sequence[str]) -> list[str]:
        """Temp views ``names`` (in the order of ``self.tables``) over the sealed stage, in ``con``.

        A key staged twice (a record seen in two batches; rare) keeps its last batch's row,
        and its children from that batch only.
        """
        self.seal()
        root, key = self.tables[0], self._id_columns[self.tables[0]]
        repeated = con.execute(f"SELECT count(*) - count(DISTINCT {key}) FROM {self._scan(root)}").fetchall()[0][0]
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
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}").fetchall()
        return list(names)

    def discard(self) -> None:
        """Delete the stage (idempotent)."""
        self._pending = []
        self._open = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Stage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()

    def __repr__(self) -> str:
        return f"Stage({self.entity!r}, {self.dir}, records={self.size})"
