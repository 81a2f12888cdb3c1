"""Bookkeeping writes: what a sync could not store and how each run went.

``rejected_records`` keeps the API objects the client could not type, one row per entity,
record id and content (a record that stays malformed is counted, not stored again);
``problematic_records`` the list spots the API failed to serve, one row per spot with its
history (resolved once a later run reads it again, reopened if it fails again), and
``sync_events`` one row per run. They go through the same write path as the entities: one
short transaction each, and the same SQL on both backends: a DuckLake has no keys to hang
``ON CONFLICT`` on, so repeats are merged by key (``MERGE INTO``, or update then insert) and
rejection numbers are counted on from the stored maximum (it has no sequences either).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

import duckdb

from testio_pipeline.domain.records import ProblemRange, RejectedRecord

from . import frames, merge
from .connection import Connections
from .merge import WriteStats, utc
from .schema import SYNC_COUNT_COLUMNS, SYNC_STATUSES

log = logging.getLogger(__name__)


def write_rejected(db: Connections, rejects: Sequence[RejectedRecord], run_id: str | None, seen_at: datetime) -> int:
    """Note this run's rejects; returns how many distinct (entity, record id, content) it saw."""
    if not rejects:
        return 0
    # One row per key of this write, hashed as the stored JSON text will read back.
    sql_seen = """SELECT entity, record_id, md5(coalesce(raw::JSON::VARCHAR, '')) AS content_hash,
            any_value(product_id) AS product_id, any_value(reason) AS reason, any_value(raw) AS raw
        FROM _rejects GROUP BY ALL"""
    params = {"ts": utc(seen_at), "run": run_id}

    def body(con: duckdb.DuckDBPyConnection) -> int:
        merge.run(
            con,
            f"""UPDATE rejected_records AS r SET last_seen_at = $ts, times_seen = r.times_seen + 1,
                run_id = $run, reason = s.reason, product_id = coalesce(s.product_id, r.product_id)
            FROM ({sql_seen}) s
            WHERE r.entity = s.entity AND r.record_id IS NOT DISTINCT FROM s.record_id
              AND r.content_hash = s.content_hash""",
            params,
        )
        # The write path lets one writer commit at a time, so the maximum cannot move under us.
        merge.run(
            con,
            f"""INSERT INTO rejected_records (id, run_id, entity, product_id, record_id, content_hash, reason, raw,
                first_seen_at, last_seen_at, times_seen)
            SELECT (SELECT coalesce(max(id), 0) FROM rejected_records)
                       + row_number() OVER (ORDER BY entity, record_id NULLS LAST, content_hash),
                   $run, entity, product_id, record_id, content_hash, reason, raw, $ts, $ts, 1
            FROM ({sql_seen}) s
            WHERE NOT EXISTS (SELECT 1 FROM rejected_records r
                              WHERE r.entity = s.entity AND r.record_id IS NOT DISTINCT FROM s.record_id
                                AND r.content_hash = s.content_hash)""",
            params,
        )
        return merge.run(con, f"SELECT count(*) FROM ({sql_seen})")[0][0]

    stored, _ = db.write(body, rows=frames.rejected_frame(rejects), names=("_rejects",))
    return stored


def write_problematic(
    db: Connections,
    problems: Sequence[ProblemRange],
    run_id: str | None,
    seen_at: datetime,
    *,
    entity: str,
    checked_product_ids: Collection[int],
) -> WriteStats:
    """Note the spots that failed; open spots of the checked products not seen again are resolved."""
    started = time.perf_counter()
    ts = utc(seen_at)
    frame = frames.problems_frame(problems, entity)
    names = ", ".join(frame.column_names)

    def body(con: duckdb.DuckDBPyConnection) -> WriteStats:
        before = con.execute("SELECT count(*) FROM problematic_records").fetchall()[0][0]
        merge.run(
            con,
            f"""MERGE INTO problematic_records r USING _problems p
            ON r.product_id = p.product_id AND r.entity = p.entity AND r.spot = p.spot
            WHEN MATCHED THEN UPDATE SET
                range_start = p.range_start, range_end = p.range_end,
                neighbour_ids = p.neighbour_ids, error = p.error,
                last_seen_at = $ts, run_id = $run, times_seen = r.times_seen + 1,
                times_reopened = r.times_reopened + CASE WHEN r.resolved_at IS NULL THEN 0 ELSE 1 END,
                resolved_at = NULL
            WHEN NOT MATCHED THEN INSERT ({names}, first_seen_at, last_seen_at, run_id, times_seen, times_reopened)
                VALUES ({", ".join(f"p.{c}" for c in frame.column_names)}, $ts, $ts, $run, 1, 0)""",
            {"ts": ts, "run": run_id},
        )
        inserted = con.execute("SELECT count(*) FROM problematic_records").fetchall()[0][0] - before
        resolved = con.execute(
            """UPDATE problematic_records AS r SET resolved_at = $ts
            WHERE r.resolved_at IS NULL AND r.entity = $entity
              AND r.product_id IN (SELECT id FROM _checked)
              AND NOT EXISTS (SELECT 1 FROM _problems p WHERE p.product_id = r.product_id AND p.spot = r.spot)""",
            {"ts": ts, "entity": entity},
        ).fetchall()[0][0]
        open_rows = con.execute(
            "SELECT count(*) FROM problematic_records WHERE resolved_at IS NULL"
        ).fetchall()[0][0]
        return WriteStats(
            "problematic_records",
            inserted=inserted,
            updated=frame.num_rows - inserted,
            marked_deleted=resolved,
            total_rows=open_rows,
        )

    stats, unit = db.write(
        body, rows=(frame, frames.ids_frame(checked_product_ids)), names=("_problems", "_checked")
    )
    return stats.timed(started, unit.held_s)


def start_sync_event(db: Connections, run_id: str, trigger: str, mode: str, started_at: datetime) -> None:
    params = {"run": run_id, "trigger": trigger, "mode": mode, "ts": utc(started_at)}
    sql = """MERGE INTO sync_events e
        USING (SELECT $run AS run_id, $trigger AS trigger, $mode AS mode, $ts AS started_at) s
        ON e.run_id = s.run_id
        WHEN MATCHED THEN UPDATE SET trigger = s.trigger, mode = s.mode, started_at = s.started_at,
            status = 'running', finished_at = NULL, error = NULL
        WHEN NOT MATCHED THEN INSERT (run_id, trigger, mode, started_at, status)
            VALUES (s.run_id, s.trigger, s.mode, s.started_at, 'running')"""
    db.write(lambda con: merge.run(con, sql, params))


def finish_sync_event(
    db: Connections,
    run_id: str,
    status: str,
    finished_at: datetime,
    counts: Mapping[str, int],
    error: str | None,
) -> None:
    if status not in SYNC_STATUSES:
        raise ValueError(f"status must be one of {SYNC_STATUSES}, got {status!r}")
    unknown = set(counts) - set(SYNC_COUNT_COLUMNS)
    if unknown:  # finishing must not fail over a metadata typo; say so instead
        log.warning("finish_sync_event(%s): ignoring unknown counts %s", run_id, sorted(unknown))
    known = {k: int(v) for k, v in counts.items() if k in SYNC_COUNT_COLUMNS}
    cols = ["run_id", "status", "finished_at", "error", *known]
    params = {"run_id": run_id, "status": status, "finished_at": utc(finished_at), "error": error, **known}
    sql = f"""MERGE INTO sync_events e
        USING (SELECT {", ".join(f"${c} AS {c}" for c in cols)}) s ON e.run_id = s.run_id
        WHEN MATCHED THEN UPDATE SET {", ".join(f"{c} = s.{c}" for c in cols[1:])}
        WHEN NOT MATCHED THEN INSERT ({", ".join(cols)}) VALUES ({", ".join(f"s.{c}" for c in cols)})"""
    db.write(lambda con: merge.run(con, sql, params))
