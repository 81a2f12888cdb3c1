"""Entity writes: one generic write, driven by the entity's registry declaration, one transaction each.

The write frames the records into Arrow (a staged entity may come as a filled
:class:`~.staging.Stage` instead), lets :meth:`Connections.write` name them as relations,
and merges them with the shared set-based SQL of ``merge``: the same statements for every
entity, and for a record list and a stage. Deletions are only detected inside the scope the
caller fetched completely (``complete``: parent table → ids, e.g. the products whose list
was read whole), so a partial fetch never marks rows deleted; per-parent sync times are set
for those parents only. Where an entity really differs, its declaration names a hook
(``hooks.py``).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import duckdb

from testio_pipeline.domain.records import Record
from testio_pipeline.entities import COMPLETE, MERGED, WRITTEN, Child, Entity, load

from . import frames, history, merge
from .connection import Connections
from .merge import Scope, WriteStats, utc
from .staging import Stage


def write_entity(
    db: Connections,
    entity: Entity,
    rows: Sequence[Record] | Stage,
    synced_at: datetime,
    *,
    complete: Mapping[str, Collection[int]],
    detect_deletions: bool,
    run_id: str | None = None,
    **options: Any,
) -> WriteStats:
    """Merge ``rows`` into the entity's table and its children's, record what changed in its
    tracked fields (``history``, by ``run_id``), mark the complete parents synced; ``options``
    go to the entity's ``prepare`` hook."""
    started = time.perf_counter()
    ts = utc(synced_at)
    complete = {parent: set(ids) for parent, ids in complete.items()}
    parents = {p for p in (entity.deletes_within, *entity.synced_in) if p}
    if set(complete) - parents:  # a misspelt parent would silently skip deletions and sync times
        raise ValueError(f"{entity.name} is complete per {sorted(parents)}, not {sorted(set(complete) - parents)}")
    prepare = load(entity.prepare) if entity.prepare else None
    if options and prepare is None:
        raise TypeError(f"{entity.name} takes no write options, got {sorted(options)}")
    if isinstance(rows, Stage) and rows.entity != entity.name:
        raise ValueError(f"a stage of {rows.entity} cannot be written as {entity.name}")
    framed = f"_{entity.name}_in"
    children = {c.table: f"_{c.table}_in" for c in entity.children}
    scope = _deletion_scope(entity, complete) if detect_deletions else None
    written = f"_{entity.name}_written" if any(c.replace == WRITTEN for c in entity.children) else None

    def body(con: duckdb.DuckDBPyConnection) -> WriteStats:
        source, derived = framed, {}
        if prepare is not None:
            source, derived = prepare(con, framed, children, ts, **options)
        seen = history.record_seen(con, entity, source, ts, run_id) if entity.history else 0
        stats = merge.upsert(con, entity.name, source, ts, compare=entity.compare, delete_scope=scope, written=written)
        extra: dict[str, int] = {}
        if entity.history:
            deleted = history.record_deleted(con, entity, source, ts, run_id) if stats.marked_deleted else 0
            extra["history_rows"] = seen + deleted
        for child in entity.children:
            if child.replace == MERGED:
                merged = merge.upsert(con, child.table, children[child.table], ts, compare=child.compare, delete_scope=scope)
                extra |= {f"{child.table}_{k}": v for k, v in merged.counts().items()}
            else:
                where = _replaced(con, entity, child, framed, written, complete)
                removed, added = merge.replace_children(con, child.table, children[child.table], where)
                extra |= {f"{child.table}_removed": removed, f"{child.table}_added": added}
        extra |= derived
        for parent in entity.synced_in:
            ids = complete.get(parent, ())
            extra[f"{parent}_marked_synced"] = merge.mark_synced(con, parent, f"{entity.name}_synced_at", ids, ts)
        stats.extra = extra
        return stats

    if not isinstance(rows, Stage):
        rows = frames.entity_frames(entity, rows)
    stats, unit = db.write(body, rows=rows, names=(framed, *children.values()))
    held_s = unit.held_s + (load(entity.after)(db, stats) if entity.after else 0.0)
    return stats.timed(started, held_s)


def _deletion_scope(entity: Entity, complete: Mapping[str, Collection[int]]) -> Scope:
    """The rows the caller fetched completely: those of the complete ``deletes_within`` parents."""
    if entity.deletes_within is None:
        return Scope(None)
    return Scope(entity.scope_column, complete.get(entity.deletes_within, ()))


def _replaced(
    con: duckdb.DuckDBPyConnection,
    entity: Entity,
    child: Child,
    framed: str,
    written: str | None,
    complete: Mapping[str, Collection[int]],
) -> str | None:
    """Which stored rows of ``child`` the write replaces (None: it only adds rows)."""
    if child.replace == WRITTEN:
        return f"{child.parent_key} IN (SELECT id FROM {written})"
    if child.replace == COMPLETE:
        ids = complete.get(entity.deletes_within or "", ())
        if not ids:
            return None
        return f"{entity.scope_column} IN (SELECT id FROM {merge.register_ids(con, f'_complete_{child.table}', ids)})"
    return f"{child.parent_key} IN (SELECT id FROM {framed})"
