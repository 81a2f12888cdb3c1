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

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import duckdb

from testio_pipeline.domain.records import Record
from testio_pipeline.entities import COMPLETE, FETCHED, MERGED, WRITTEN, Child, Entity, load

from . import frames, history, merge
from .connection import Connections
from .merge import Scope, WriteStats, utc
from .staging import ProductGroup, Stage

log = logging.getLogger(__name__)


# A staged write of more rows than this is merged in several units (one transaction each, the
# file released between them), by product: ~15 s of file hold at most at the large benchmark
# scale on a 2-core machine (benchmarks/README.md, "Write units"). ``Warehouse.write_unit_rows``.
UNIT_ROWS = 100_000


def write_entity(
    db: Connections,
    entity: Entity,
    rows: Sequence[Record] | Stage,
    synced_at: datetime,
    *,
    complete: Mapping[str, Collection[int]],
    detect_deletions: bool,
    run_id: str | None = None,
    unit_rows: int = UNIT_ROWS,
    **options: Any,
) -> WriteStats:
    """Merge ``rows`` into the entity's table and its children's, record what changed in its
    tracked fields (``history``, by ``run_id``), mark the complete parents synced; ``options``
    go to the entity's ``prepare`` hook.

    A stage of more than ``unit_rows`` rows is written in units, each the same write restricted
    to a group of products (their rows, children, history, deletions and sync marks), committed
    one after the other. A run that dies between two units leaves the products of the finished
    units complete and marked synced, and the others as they were before, so the next run
    (incremental or full) fetches and completes them; nothing outside the products is marked
    until the end.
    """
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
    written = f"_{entity.name}_written" if any(c.replace == WRITTEN for c in entity.children) else None

    def body_for(
        group: ProductGroup | None, unit_options: Mapping[str, Any]
    ) -> Callable[[duckdb.DuckDBPyConnection], WriteStats]:
        scope = _deletion_scope(entity, complete, group) if detect_deletions else None

        def body(con: duckdb.DuckDBPyConnection) -> WriteStats:
            source, derived = framed, {}
            if prepare is not None:
                source, derived = prepare(con, framed, children, ts, **unit_options)
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
                within = None if group is None else group.where(con, f"_synced_group_{parent}", _product_key(parent))
                extra[f"{parent}_marked_synced"] = merge.mark_synced(
                    con, parent, f"{entity.name}_synced_at", ids, ts, within=within
                )
            stats.extra = extra
            return stats

        return body

    names = (framed, *children.values())
    if not isinstance(rows, Stage):
        rows = frames.entity_frames(entity, rows)
    groups = _unit_groups(entity, rows, unit_rows) if isinstance(rows, Stage) else [(None, 0)]
    holds: list[float] = []
    total: WriteStats | None = None
    for number, (group, group_rows) in enumerate(groups):
        part = rows if group is None else rows.part(group, group_rows)
        stats, unit = db.write(body_for(group, options if number == 0 else {}), rows=part, names=names)
        holds.append(unit.held_s)
        total = stats if total is None else total.add(stats)
        if group is not None:
            log.info(
                "%s: unit %d of %d (%d staged rows) committed, file held %.2f s",
                entity.name, number + 1, len(groups), group_rows, unit.held_s,
            )
    assert total is not None
    total.units = len(groups)
    if entity.after:
        holds.extend(load(entity.after)(db, total))
    return total.timed(started, holds)


def _product_key(table: str) -> str:
    """The column of ``table`` naming a row's product."""
    return "id" if table == "products" else "product_id"


def _unit_groups(entity: Entity, stage: Stage, unit_rows: int) -> list[tuple[ProductGroup | None, int]]:
    """The product groups a stage is written in (with their staged rows): one (None) when it is
    small; else groups of whole products, each up to ``unit_rows`` rows (a product with more is a
    group of its own), the last one covering every product the others do not."""
    if stage.records_added <= unit_rows or not _splittable(entity):
        return [(None, stage.records_added)]
    per_product = stage.rows_per_product()
    chunks: list[list[int]] = [[]]
    filled = 0
    for product_id in sorted(per_product):
        if chunks[-1] and filled + per_product[product_id] > unit_rows:
            chunks.append([])
            filled = 0
        chunks[-1].append(product_id)
        filled += per_product[product_id]
    if len(chunks) == 1:
        return [(None, stage.records_added)]
    before_last = frozenset(p for chunk in chunks[:-1] for p in chunk)
    groups = [(ProductGroup(frozenset(chunk)), sum(per_product[p] for p in chunk)) for chunk in chunks[:-1]]
    return [*groups, (ProductGroup(before_last, rest=True), filled)]


def _splittable(entity: Entity) -> bool:
    """Whether the entity's write can be restricted to a group of products: its rows name their
    product in ``product_id`` (what the stage and the deletion scope filter on), and no child is replaced by a scope other than its parents'."""
    names_product = any(
        r.table == entity.name and r.parent == "products" and r.column == "product_id" for r in entity.refers_to
    )
    return names_product and all(c.replace in (FETCHED, WRITTEN) for c in entity.children)


def _deletion_scope(
    entity: Entity, complete: Mapping[str, Collection[int]], group: ProductGroup | None = None
) -> Scope:
    """The rows the caller fetched completely: those of the complete ``deletes_within`` parents
    (of the ``group``'s products only, for one unit)."""
    if entity.deletes_within is None:
        return Scope(None)
    return Scope(entity.scope_column, complete.get(entity.deletes_within, ()), group)


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
