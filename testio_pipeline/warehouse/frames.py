"""Typed records → Arrow tables shaped like the warehouse tables (one column list per field)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import pyarrow as pa

from testio_pipeline.domain.credentials import raw_text, scrub_text
from testio_pipeline.domain.records import (
    Bug,
    ExploratoryTest,
    Feature,
    ProblemRange,
    Product,
    RejectedRecord,
    RejectReason,
    UserStory,
)

from .schema import TABLES

R = TypeVar("R")

def content_hash(raw_text: bytes, derived: str = "") -> str:
    """MD5 of the raw JSON plus the derived fields that count as content (e.g. section ids)."""
    return hashlib.md5(raw_text + b"\x1f" + derived.encode()).hexdigest()


def dedupe(records: Iterable[R], key: Callable[[R], Any] = lambda r: r.id) -> list[R]:
    """Last record per key wins, so a list with repeats cannot violate the primary key."""
    return list({key(r): r for r in records}.values())


def _frame(table: str, columns: dict[str, Sequence[Any]]) -> pa.Table:
    return pa.table(columns, schema=TABLES[table].arrow_schema(list(columns)))


def _raw_and_hash(records: Sequence[Any], derived: Sequence[str] | None = None) -> dict[str, list[Any]]:
    raws = [scrub_text(r.raw_json) for r in records]  # serialised once, while parsing
    if derived is None:
        hashes = [content_hash(t) for t in raws]
    else:
        hashes = [content_hash(t, d) for t, d in zip(raws, derived)]
    return {"raw": raws, "content_hash": hashes}


def products_frame(products: Sequence[Product]) -> tuple[pa.Table, pa.Table]:
    """(products, sections) frames."""
    products = dedupe(products)
    product_cols = {
        "id": [p.id for p in products],
        "name": [p.name for p in products],
        "type": [p.type for p in products],
        "description": [p.description for p in products],
        "default_section_id": [p.default_section_id for p in products],
        "has_sections": [p.has_sections for p in products],
        **_raw_and_hash(products),
    }
    sections = dedupe(((p.id, s) for p in products for s in p.section_list), key=lambda ps: ps[1].id)
    section_cols = {
        "id": [s.id for _, s in sections],
        "product_id": [pid for pid, _ in sections],
        "name": [s.name for _, s in sections],
    }
    return _frame("products", product_cols), _frame("sections", section_cols)


def _merge_feature_sections(features: Iterable[Feature]) -> list[Feature]:
    """One record per feature id; a feature listed under several sections keeps all of them."""
    merged: dict[int, Feature] = {}
    for f in features:
        prev = merged.get(f.id)
        if prev is not None and set(prev.section_ids) - set(f.section_ids):
            f = f.model_copy(update={"section_ids": sorted(set(prev.section_ids) | set(f.section_ids))})
        merged[f.id] = f
    return list(merged.values())


def features_frame(features: Sequence[Feature]) -> tuple[pa.Table, pa.Table]:
    """(features, feature_sections) frames."""
    features = _merge_feature_sections(features)
    # Section membership and product are not in raw but a change to them is a change.
    derived = [f"{f.product_id}|{sorted(set(f.section_ids))}" for f in features]
    feature_cols = {
        "id": [f.id for f in features],
        "product_id": [f.product_id for f in features],
        "title": [f.title for f in features],
        "description": [f.description for f in features],
        "howtofind": [f.howtofind for f in features],
        "user_story_titles": [f.user_stories for f in features],
        **_raw_and_hash(features, derived),
    }
    links = [(f.id, sid, f.product_id) for f in features for sid in sorted(set(f.section_ids))]
    link_cols = {
        "feature_id": [l[0] for l in links],
        "section_id": [l[1] for l in links],
        "product_id": [l[2] for l in links],
    }
    return _frame("features", feature_cols), _frame("feature_sections", link_cols)


def user_stories_frame(stories: Sequence[UserStory]) -> pa.Table:
    """User stories without feature_id (resolved in SQL against the stored features)."""
    stories = dedupe(stories)
    derived = [f"{s.product_id}|{s.section_id}" for s in stories]
    cols = {
        "id": [s.id for s in stories],
        "product_id": [s.product_id for s in stories],
        "section_id": [s.section_id for s in stories],
        "title": [s.title for s in stories],
        "path": [s.path for s in stories],
        **_raw_and_hash(stories, derived),
    }
    return _frame("user_stories", cols)


def tests_frame(tests: Sequence[ExploratoryTest]) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(tests, test_features, test_platforms) frames."""
    tests = dedupe(tests)
    envs = [t.test_environment for t in tests]
    cols = {
        "id": [t.id for t in tests],
        "product_id": [t.product_id for t in tests],
        "section_id": [t.section_id for t in tests],
        "section_name": [t.section_name for t in tests],
        "title": [t.title for t in tests],
        "status": [t.status for t in tests],
        "review_status": [t.review_status for t in tests],
        "testing_type": [t.testing_type for t in tests],
        "goal": [t.goal for t in tests],
        "instructions": [t.instructions for t in tests],
        "out_of_scope": [t.out_of_scope for t in tests],
        "enable_low": [t.enable_low for t in tests],
        "enable_high": [t.enable_high for t in tests],
        "enable_critical": [t.enable_critical for t in tests],
        "start_at": [t.start_at for t in tests],
        "end_at": [t.end_at for t in tests],
        "created_by": [t.created_by for t in tests],
        "submitted_by": [t.submitted_by for t in tests],
        "test_environment_id": [e.id if e else None for e in envs],
        "test_environment_title": [e.title if e else None for e in envs],
        "test_environment_url": [e.url if e else None for e in envs],
        **_raw_and_hash(tests, [str(t.product_id) for t in tests]),
    }
    tfs = dedupe(((t.id, tf) for t in tests for tf in t.features), key=lambda p: (p[0], p[1].id))
    tf_cols = {
        "id": [tf.id for _, tf in tfs],
        "test_id": [tid for tid, _ in tfs],
        "feature_id": [tf.feature_id for _, tf in tfs],
        "title": [tf.title for _, tf in tfs],
        "enable_default": [tf.enable_default for _, tf in tfs],
        "enable_content": [tf.enable_content for _, tf in tfs],
        "enable_visual": [tf.enable_visual for _, tf in tfs],
    }
    platforms = [(t.id, i, *row) for t in tests for i, row in enumerate(t.platform_rows())]
    return _frame("tests", cols), _frame("test_features", tf_cols), _rows_frame("test_platforms", platforms)


def _rows_frame(table: str, rows: list[tuple]) -> pa.Table:
    """A frame of ``table`` from row tuples in the order of its columns."""
    names = TABLES[table].column_names
    return _frame(table, {n: [r[i] for r in rows] for i, n in enumerate(names)})


def _text(value: Any) -> str | None:
    """A report field's value as text: strings as they are, anything else as its JSON."""
    if value is None or isinstance(value, str):
        return value
    return raw_text(value).decode()


def bugs_frame(bugs: Sequence[Bug]) -> tuple[pa.Table, pa.Table, pa.Table, pa.Table]:
    """(bugs, bug_devices, bug_comments, bug_report_fields) frames; bugs without
    rejection_reason (derived in SQL from the comments when they are written)."""
    bugs = dedupe(bugs)
    cols = {
        "id": [b.id for b in bugs],
        "product_id": [b.product_id for b in bugs],
        "test_id": [b.test_id for b in bugs],
        "test_feature_id": [b.test_feature_id for b in bugs],
        "feature_id": [b.feature_id for b in bugs],
        "title": [b.title for b in bugs],
        "severity": [b.severity for b in bugs],
        "status": [b.status for b in bugs],
        "auto_accepted": [b.auto_accepted for b in bugs],
        "known": [b.known for b in bugs],
        "steps": [b.steps for b in bugs],
        "actual_result": [b.actual_result for b in bugs],
        "expected_result": [b.expected_result for b in bugs],
        "reported_at": [b.reported_at for b in bugs],
        "exported_at": [b.exported_at for b in bugs],
        "author_name": [b.author_name for b in bugs],
        "language": [b.language for b in bugs],
        "location": [b.location for b in bugs],
        **_raw_and_hash(bugs, [str(b.product_id) for b in bugs]),
    }
    return _frame("bugs", cols), _devices_frame(bugs), _comments_frame(bugs), _report_fields_frame(bugs)


def _devices_frame(bugs: Sequence[Bug]) -> pa.Table:
    rows = [(b.id, i, *row) for b in bugs for i, row in enumerate(b.device_rows())]
    return _rows_frame("bug_devices", rows)


def _comments_frame(bugs: Sequence[Bug]) -> pa.Table:
    rows = [(b.id, i, *row) for b in bugs if b.comments for i, row in enumerate(b.comment_rows())]
    return _rows_frame("bug_comments", rows)


def _report_fields_frame(bugs: Sequence[Bug]) -> pa.Table:
    rows = [
        (b.id, i, config, key, _text(value))
        for b in bugs
        if b.report is not None
        for i, (config, key, value) in enumerate(b.report_rows())
    ]
    return _rows_frame("bug_report_fields", rows)


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
