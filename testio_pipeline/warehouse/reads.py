"""Reads: the queries the sync steps, checks and command line ask of the warehouse.

Each read takes a read-only connection from :meth:`Connections.read`, so it neither waits
for nor blocks analysts' read-only sessions on the same file; inside
``Warehouse.reading()`` the reads of one thread share a single connection. Values from
callers are bound as parameters; only names and constants from the declared schema and
vocabulary are written into the SQL text.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported by DuckDB on the first .df(), not by every run
    import pandas as pd

from testio_pipeline.domain.vocabulary import FINAL_TEST_STATUSES
from testio_pipeline.entities import ENTITIES

from .connection import Connections
from .schema import ENTITY_TABLES, TABLES


def query(db: Connections, sql: str, params: Any = None) -> pd.DataFrame:
    with db.read() as con:
        return con.execute(sql, params).df()


def rows(db: Connections, sql: str, params: Any = None) -> list[dict[str, Any]]:
    with db.read() as con:
        cur = con.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def running_sync_events(db: Connections) -> list[str]:
    return [r["run_id"] for r in rows(db, "SELECT run_id FROM sync_events WHERE status = 'running'")]


def product_ids(db: Connections, include_deleted: bool) -> list[int]:
    where = "" if include_deleted else "WHERE deleted_at IS NULL"
    return [r["id"] for r in rows(db, f"SELECT id FROM products {where} ORDER BY id")]


# products.<entity>_synced_at, one per entity that marks its complete products.
_PRODUCT_SYNC_TIMES = ", ".join(f"p.{e.name}_synced_at" for e in ENTITIES if "products" in e.synced_in)


def products(db: Connections, include_deleted: bool) -> list[dict[str, Any]]:
    where = "" if include_deleted else "WHERE p.deleted_at IS NULL"
    return rows(
        db,
        f"""SELECT p.id, p.name, p.type, p.has_sections, p.default_section_id,
                   coalesce(list(s.id ORDER BY s.id) FILTER (WHERE s.id IS NOT NULL), []) AS section_ids,
                   {_PRODUCT_SYNC_TIMES}, p.synced_at, p.deleted_at
            FROM products p
            LEFT JOIN sections s ON s.product_id = p.id AND s.deleted_at IS NULL
            {where}
            GROUP BY ALL ORDER BY p.id""",
    )


def products_in_scope(db: Connections, product_ids: Collection[int] | None) -> list[dict[str, Any]]:
    sql = "SELECT raw FROM products WHERE deleted_at IS NULL"
    params = None
    if product_ids is not None:
        sql += " AND list_contains($ids, id)"
        params = {"ids": sorted(set(product_ids))}
    with db.read() as con:
        return [json.loads(raw) for (raw,) in con.execute(sql + " ORDER BY id", params).fetchall()]


def test_states(db: Connections, product_ids: Collection[int] | None) -> dict[int, tuple[int, str]]:
    sql = "SELECT id, product_id, status FROM tests WHERE deleted_at IS NULL"
    params = None
    if product_ids is not None:
        sql += " AND list_contains($ids, product_id)"
        params = {"ids": sorted(set(product_ids))}
    sql += " ORDER BY end_at DESC NULLS FIRST, id DESC"  # the API's list order, newest first
    with db.read() as con:
        return {tid: (pid, status) for tid, pid, status in con.execute(sql, params).fetchall()}


def tests_needing_bugs(db: Connections, product_ids: Collection[int], *, full: bool) -> dict[int, list[int]]:
    sql = (
        "SELECT product_id, list(id ORDER BY id) FROM tests t "
        "WHERE deleted_at IS NULL AND list_contains($ids, product_id)"
    )
    if not full:
        # A test changed since its bugs were read (e.g. just archived) is read once more, so
        # the bugs of a closed review are read after it closed; then a final test is settled.
        finals = ", ".join(f"'{s}'" for s in sorted(FINAL_TEST_STATUSES))
        sql += (
            f" AND (bugs_synced_at IS NULL OR status NOT IN ({finals})"
            " OR synced_at > bugs_synced_at)"
        )
    with db.read() as con:
        rows = con.execute(sql + " GROUP BY product_id", {"ids": sorted(set(product_ids))}).fetchall()
    return {pid: list(ids) for pid, ids in rows}


def reject_reasons_synced(db: Connections) -> bool:
    with db.read() as con:
        return con.execute("SELECT count(*) > 0 FROM reject_reasons WHERE synced_at IS NOT NULL").fetchall()[0][0]


def table_counts(db: Connections) -> dict[str, int]:
    union = " UNION ALL ".join(
        f"SELECT '{t}', count(*) FROM {t} WHERE deleted_at IS NULL" for t in ENTITY_TABLES
    )
    with db.read() as con:
        return dict(con.execute(union).fetchall())


def ids(db: Connections, table: str, include_deleted: bool) -> set[int]:
    spec = TABLES.get(table)
    if spec is None or "id" not in spec.column_names:
        raise ValueError(f"unknown table or table without an id column: {table!r}")
    where = "" if include_deleted or not spec.soft_deletes else "WHERE deleted_at IS NULL"
    with db.read() as con:
        return {row[0] for row in con.execute(f"SELECT id FROM {table} {where}").fetchall()}
