"""Observed history: what each write saw change in an entity's tracked fields (its registry
declaration's ``History``), written in the write's own transaction.

The API keeps no history, so a change is only known to have happened between two syncs: each
row carries the sync that saw it (``observed_at``) and the last one known to have seen the old
values (``previous_observed_at``). ``record_seen`` runs before the merge (it needs the stored
values), ``record_deleted`` after it (it needs the rows the merge marked deleted), both before
the parents' sync times move on.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from testio_pipeline.entities import Entity, History



def _counts(history: History) -> str:
    """Each id's number of history rows so far."""
    return f"(SELECT {history.key} AS id, count(*) AS n FROM {history.table} GROUP BY {history.key})"


def _parent(entity: Entity) -> tuple[str, str, str]:
    """(parent table, the entity's column pointing at it, the parent's sync time of the entity):
    the complete looks at a row's parent that saw the row as stored."""
    parent = entity.synced_in[0]
    column = next(r.column for r in entity.refers_to if r.table == entity.name and r.parent == parent)
    return parent, column, f"{entity.name}_synced_at"


def record_seen(con: duckdb.DuckDBPyConnection, entity: Entity, source: str, observed_at: datetime, run_id: str | None) -> int:
    """Write the history rows the rows of ``source`` make against the stored ones (so before
    the merge): a first sighting for a row without history, a change for a row whose tracked
    fields differ or that was marked deleted. Returns how many."""
    history = entity.history
    assert history is not None
    parent, column, synced = _parent(entity)
    fields = history.fields
    first = "h.id IS NULL"
    pairs = ", ".join(f"CASE WHEN {first} THEN NULL ELSE t.{f} END AS old_{f}, s.{f} AS new_{f}" for f in fields)
    differs = " OR ".join(f"t.{f} IS DISTINCT FROM s.{f}" for f in fields)
    return con.execute(
        f"""INSERT INTO {history.table} BY NAME
        SELECT s.id AS {history.key}, coalesce(h.n, 0) + 1 AS change_number, s.product_id,
               CASE WHEN {first} THEN 'first_seen' WHEN t.deleted_at IS NOT NULL THEN 'restored' ELSE 'changed' END AS change,
               {pairs},
               $ts AS observed_at,
               CASE WHEN t.id IS NULL THEN p.{synced}              -- new: the last look that did not find it
                    WHEN {first} THEN NULL                          -- stored before the history began
                    ELSE greatest(t.synced_at, p.{synced}) END AS previous_observed_at,
               $run AS run_id
        FROM {source} s
        LEFT JOIN {entity.name} t ON t.id = s.id
        LEFT JOIN {_counts(history)} h ON h.id = s.id
        LEFT JOIN {parent} p ON p.id = s.{column}
        WHERE {first} OR t.deleted_at IS NOT NULL OR {differs}""",
        {"ts": observed_at, "run": run_id},
    ).fetchall()[0][0]


def record_deleted(con: duckdb.DuckDBPyConnection, entity: Entity, source: str, observed_at: datetime, run_id: str | None) -> int:
    """Write a ``deleted`` row for each row the merge just marked deleted (so after it);
    returns how many."""
    history = entity.history
    assert history is not None
    parent, column, synced = _parent(entity)
    fields = history.fields
    olds = ", ".join(f"t.{f} AS old_{f}" for f in fields)
    deleted = con.execute(
        f"""INSERT INTO {history.table} BY NAME
        SELECT t.id AS {history.key}, coalesce(h.n, 0) + 1 AS change_number, t.product_id, 'deleted' AS change,
               {olds}, $ts AS observed_at, greatest(t.synced_at, p.{synced}) AS previous_observed_at, $run AS run_id
        FROM {entity.name} t LEFT JOIN {parent} p ON p.id = t.{column} LEFT JOIN {_counts(history)} h ON h.id = t.id
        WHERE t.deleted_at = $ts AND NOT EXISTS (SELECT 1 FROM {source} s WHERE s.id = t.id)
          -- a write in units: an earlier unit of this sync recorded its own deletions already
          AND NOT EXISTS (SELECT 1 FROM {history.table} x
                          WHERE x.{history.key} = t.id AND x.observed_at = $ts AND x.change = 'deleted')""",
        {"ts": observed_at, "run": run_id},
    ).fetchall()[0][0]
    return deleted
