"""Typed records → Arrow tables shaped like the warehouse tables (one column list per field).

An entity's frames follow its registry declaration: its table's columns are read from the
records by name, its child tables' from the record methods the declaration names.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any, TypeVar

import pyarrow as pa

from testio_pipeline.domain.credentials import raw_text, scrub_text
from testio_pipeline.domain.records import ProblemRange, Record, RejectedRecord, RejectReason
from testio_pipeline.entities import ENTITIES, ENTITY_BY_NAME, Child, Entity

from .schema import TABLES

R = TypeVar("R")

def content_hash(raw_text: bytes, derived: str = "") -> str:
    """MD5 of the raw JSON plus the derived fields that count as content (e.g. section ids)."""
    return hashlib.md5(raw_text + b"\x1f" + derived.encode()).hexdigest()


def dedupe(records: Iterable[R], key: Callable[[R], Any] = lambda r: r.id) -> list[R]:
    """Last record per key wins, so a list with repeats cannot violate the primary key."""
    return list({key(r): r for r in records}.values())


def _last_per_id(records: Iterable[Record]) -> list[Record]:
    """One record per id: a repeat is merged with the earlier one (``Record.merged_with``)."""
    kept: dict[int, Record] = {}
    for record in records:
        earlier = kept.get(record.id)
        kept[record.id] = record if earlier is None else record.merged_with(earlier)
    return list(kept.values())


def _frame(table: str, columns: dict[str, Sequence[Any]]) -> pa.Table:
    return pa.table(columns, schema=TABLES[table].arrow_schema(list(columns)))


# Filled by the merge, not by the records.
_TRACKING = frozenset({"synced_at", "deleted_at"})


@functools.cache
def record_columns(entity_name: str) -> tuple[str, ...]:
    """The columns of an entity's table read from its records: all but the tracking ones, the
    ones its ``prepare`` hook derives and the sync times its child entities set."""
    entity = ENTITY_BY_NAME[entity_name]
    skipped = _TRACKING | set(entity.derived) | {"raw", "content_hash"}
    skipped |= {f"{e.name}_synced_at" for e in ENTITIES if entity_name in e.synced_in}
    return tuple(c for c in TABLES[entity_name].column_names if c not in skipped)


def entity_frames(entity: Entity, records: Sequence[Record]) -> tuple[pa.Table, ...]:
    """The entity's frame, then one per child table (in declaration order)."""
    records = _last_per_id(records)
    columns = {name: list(map(attrgetter(name), records)) for name in record_columns(entity.name)}
    raws = [scrub_text(r.raw_json) for r in records]  # serialised once, while parsing
    columns["raw"] = raws
    columns["content_hash"] = [content_hash(t, r.derived_content) for t, r in zip(raws, records)]
    return (_frame(entity.name, columns), *(_child_frame(child, records) for child in entity.children))


def _child_frame(child: Child, records: Sequence[Record]) -> pa.Table:
    """Every record's ``child.rows``, with the parent's id (and the row's position) added."""
    spec = TABLES[child.table]
    positioned = "position" in spec.column_names
    read = attrgetter(child.rows)
    parents: list[int] = []
    positions: list[int] = []
    rows: list[dict[str, Any]] = []
    for record in records:
        found = read(record)()
        if found:
            parents += [record.id] * len(found)
            if positioned:
                positions += range(len(found))
            rows += found
    columns: dict[str, list[Any]] = {child.parent_key: parents}
    if positioned:
        columns["position"] = positions
    for name in spec.column_names:
        if name not in columns and name not in _TRACKING:
            columns[name] = [row[name] for row in rows]
    if spec.primary_key != (child.parent_key, "position"):  # unique by construction otherwise
        columns = _last_per_key(columns, spec.primary_key)
    return _frame(child.table, {name: columns[name] for name in spec.column_names if name in columns})


def _last_per_key(columns: dict[str, list[Any]], key: Sequence[str]) -> dict[str, list[Any]]:
    """The rows of ``columns`` with the last of each repeated key (at the first one's place)."""
    keys = list(zip(*(columns[k] for k in key)))
    last = {k: i for i, k in enumerate(keys)}
    if len(last) == len(keys):
        return columns
    kept = list(last.values())
    return {name: [values[i] for i in kept] for name, values in columns.items()}


def reject_reasons_frame(reasons: Sequence[RejectReason], synced_at: datetime) -> pa.Table:
    reasons = dedupe(reasons, key=lambda r: r.key)
    cols = {
        "key": [r.key for r in reasons],
        "name": [r.name for r in reasons],
        "default_comment": [r.default_comment for r in reasons],
        "source": [r.source for r in reasons],
        "synced_at": [synced_at] * len(reasons),
    }
    return _frame("reject_reasons", cols)


def rejected_frame(rejects: Sequence[RejectedRecord]) -> pa.Table:
    """Records that could not be typed; the content hash is taken in SQL, of the stored text."""
    cols = {
        "entity": [r.entity for r in rejects],
        "product_id": [r.product_id for r in rejects],
        "record_id": [r.record_id for r in rejects],
        "reason": [r.reason for r in rejects],
        "raw": [None if r.raw is None else raw_text(r.raw) for r in rejects],
    }
    return _frame("rejected_records", cols)


def problems_frame(problems: Sequence[ProblemRange], entity: str) -> pa.Table:
    """Failing list spots; one row per (product_id, spot)."""
    rows = list({(p.product_id, p.spot or _positions(p)): p for p in problems}.values())
    cols = {
        "product_id": [p.product_id for p in rows],
        "entity": [entity] * len(rows),
        "spot": [p.spot or _positions(p) for p in rows],
        "range_start": [p.range_start for p in rows],
        "range_end": [p.range_end for p in rows],
        "neighbour_ids": [list(p.neighbour_ids) for p in rows],
        "error": [p.error for p in rows],
    }
    return _frame("problematic_records", cols)


def _positions(problem: ProblemRange) -> str:
    """The spot of a problem that names none: its positions (they do not follow a moving record)."""
    return f"positions {problem.range_start}..{problem.range_end}"


def ids_frame(ids: Iterable[int]) -> pa.Table:
    """A one-column table of ids, for scope filters in SQL."""
    return pa.table({"id": pa.array(sorted(set(ids)), type=pa.int64())})
