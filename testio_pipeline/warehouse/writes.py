"""Entity writes: products, features, user stories, tests and bugs, one transaction each.

Each write frames its records into Arrow (tests and bugs may come as a filled
:class:`~.staging.Stage` instead), lets :meth:`Connections.write` name them as relations,
and merges them with the shared set-based SQL of ``merge``: the same statements for a
record list and a stage. Deletions are only detected inside the scope the caller fetched
completely (``complete_product_ids``, ``fetched_test_ids``), so a partial fetch never marks
rows deleted; per-product sync times are set for those products only.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from datetime import datetime

import duckdb

from testio_pipeline.domain.records import Bug, ExploratoryTest, Feature, Product, RejectReason, UserStory
from testio_pipeline.domain.vocabulary import OTHER_REJECTION

from . import frames, merge, search
from .connection import Connections
from .merge import Scope, WriteStats, utc
from .staging import Stage


def write_products(
    db: Connections, products: Sequence[Product], synced_at: datetime, *, detect_deletions: bool
) -> WriteStats:
    started = time.perf_counter()
    ts = utc(synced_at)
    everything = Scope(None) if detect_deletions else None

    def body(con: duckdb.DuckDBPyConnection) -> WriteStats:
        stats = merge.upsert(con, "products", "_products", ts, delete_scope=everything)
        sections = merge.upsert(
            con, "sections", "_sections", ts, compare=("product_id", "name"), delete_scope=everything
        )
        stats.extra = {f"sections_{k}": v for k, v in sections.counts().items()}
        return stats

    stats, unit = db.write(body, rows=frames.products_frame(products), names=("_products", "_sections"))
    return stats.timed(started, unit.held_s)


def write_features(
    db: Connections,
    features: Sequence[Feature],
    synced_at: datetime,
    *,
    complete_product_ids: Collection[int],
    detect_deletions: bool,
) -> WriteStats:
    started = time.perf_counter()
    ts = utc(synced_at)
    complete = set(complete_product_ids)

    def body(con: duckdb.DuckDBPyConnection) -> WriteStats:
        stats = merge.upsert(
            con, "features", "_features", ts,
            delete_scope=Scope("product_id", complete) if detect_deletions else None,
        )
        removed, added = merge.replace_children(
            con, "feature_sections", "_feature_sections",
            "product_id IN (SELECT id FROM _complete)" if complete else None,
        )
        marked = merge.mark_synced(con, "products", "features_synced_at", complete, ts)
        stats.extra = {
            "feature_sections_removed": removed,
            "feature_sections_added": added,
            "products_marked_synced": marked,
        }
        return stats

    feature_frame, link_frame = frames.features_frame(features)
    stats, unit = db.write(
        body,
        rows=(feature_frame, link_frame, frames.ids_frame(complete)),
        names=("_features", "_feature_sections", "_complete"),
    )
    return stats.timed(started, unit.held_s)


def write_user_stories(
    db: Connections,
    stories: Sequence[UserStory],
    synced_at: datetime,
    *,
    complete_product_ids: Collection[int],
    detect_deletions: bool,
) -> WriteStats:
    started = time.perf_counter()
    ts = utc(synced_at)
    complete = set(complete_product_ids)

    def body(con: duckdb.DuckDBPyConnection) -> WriteStats:
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
            SELECT s.*, b.feature_id FROM _stories_in s LEFT JOIN best b ON b.story_id = s.id""",
        )
        stats = merge.upsert(
            con, "user_stories", "_stories", ts,
            compare=("content_hash", "feature_id"),  # a re-resolved feature is a change too
            delete_scope=Scope("product_id", complete) if detect_deletions else None,
        )
        unresolved = merge.run(con, "SELECT count(*) FROM _stories WHERE feature_id IS NULL")[0][0]
        marked = merge.mark_synced(con, "products", "user_stories_synced_at", complete, ts)
        stats.extra = {"feature_unresolved": unresolved, "products_marked_synced": marked}
        return stats

    stats, unit = db.write(body, rows=frames.user_stories_frame(stories), names=("_stories_in",))
    return stats.timed(started, unit.held_s)


def write_tests(
    db: Connections,
    tests: Sequence[ExploratoryTest] | Stage,
    synced_at: datetime,
    *,
    complete_product_ids: Collection[int],
    detect_deletions: bool,
) -> WriteStats:
    started = time.perf_counter()
    ts = utc(synced_at)
    complete = set(complete_product_ids)

    def body(con: duckdb.DuckDBPyConnection) -> WriteStats:
        stats = merge.upsert(
            con, "tests", "_tests", ts,
            delete_scope=Scope("product_id", complete) if detect_deletions else None,
        )
        stats.extra = {}
        for child in ("test_features", "test_platforms"):
            removed, added = merge.replace_children(con, child, f"_{child}", "test_id IN (SELECT id FROM _tests)")
            stats.extra |= {f"{child}_removed": removed, f"{child}_added": added}
        stats.extra["products_marked_synced"] = merge.mark_synced(con, "products", "tests_synced_at", complete, ts)
        return stats

    rows = tests if isinstance(tests, Stage) else frames.tests_frame(tests)
    stats, unit = db.write(body, rows=rows, names=("_tests", "_test_features", "_test_platforms"))
    return stats.timed(started, unit.held_s)


def write_bugs(
    db: Connections,
    bugs: Sequence[Bug] | Stage,
    synced_at: datetime,
    *,
    fetched_test_ids: Collection[int],
    complete_product_ids: Collection[int],
    detect_deletions: bool,
    reject_reasons: Sequence[RejectReason] | None = None,
) -> WriteStats:
    started = time.perf_counter()
    ts = utc(synced_at)
    fetched = set(fetched_test_ids)

    def body(con: duckdb.DuckDBPyConnection) -> WriteStats:
        if reject_reasons is not None:  # else the stored list is matched
            merge.run(con, "DELETE FROM reject_reasons")
            con.register("_reject_reasons", frames.reject_reasons_frame(reject_reasons, ts))
            merge.run(con, "INSERT INTO reject_reasons BY NAME SELECT * FROM _reject_reasons")
        _derive_rejection_reasons(con)
        stats = merge.upsert(
            con, "bugs", "_bugs", ts,
            compare=("content_hash", "rejection_reason"),  # a new reason list is a change too
            delete_scope=Scope("test_id", fetched) if detect_deletions else None,
            written="_bugs_written",
        )
        stats.extra = {}
        for child in CHILDREN_OF_BUGS:
            # A bug's children are in its raw JSON, so an unchanged bug keeps its rows: replacing
            # them too rewrote (and committed) every fetched bug's children each cycle. Children
            # an unchanged bug lacks (e.g. after the migration that added the table) are still added.
            removed, added = merge.replace_children(con, child, f"_{child}", "bug_id IN (SELECT id FROM _bugs_written)")
            stats.extra |= {f"{child}_removed": removed, f"{child}_added": added}
        stats.extra["tests_marked_synced"] = merge.mark_synced(con, "tests", "bugs_synced_at", fetched, ts)
        stats.extra["products_marked_synced"] = merge.mark_synced(
            con, "products", "bugs_synced_at", set(complete_product_ids), ts
        )
        return stats

    rows = bugs if isinstance(bugs, Stage) else frames.bugs_frame(bugs)
    stats, unit = db.write(body, rows=rows, names=("_bugs_in", *(f"_{c}" for c in CHILDREN_OF_BUGS)))
    held_s = unit.held_s + _refresh_search_index(db, stats)
    return stats.timed(started, held_s)


CHILDREN_OF_BUGS = ("bug_devices", "bug_comments", "bug_report_fields")


def _derive_rejection_reasons(con: duckdb.DuckDBPyConnection) -> None:
    """``_bugs``: the written bugs (``_bugs_in``) with their rejection_reason.

    A rejected bug's reason is the key of the reason whose default comment its latest
    matching comment contains (case ignored; the longest comment wins a tie), ``other`` when
    none matches; a bug that is not rejected has none. Only the rejected bugs' comments are
    looked at, so the join stays small.
    """
    merge.run(
        con,
        """CREATE OR REPLACE TEMP TABLE _rejections AS
        SELECT c.bug_id, r.key
        FROM _bug_comments c
        JOIN (SELECT id FROM _bugs_in WHERE status = 'rejected') b ON b.id = c.bug_id
        JOIN reject_reasons r ON contains(lower(c.body), lower(r.default_comment))
        QUALIFY row_number() OVER (
            PARTITION BY c.bug_id
            ORDER BY c.created_at DESC NULLS LAST, c.position DESC, length(r.default_comment) DESC
        ) = 1""",
    )
    merge.run(
        con,
        f"""CREATE OR REPLACE TEMP VIEW _bugs AS
        SELECT s.*, CASE WHEN s.status = 'rejected' THEN coalesce(r.key, '{OTHER_REJECTION}') END AS rejection_reason
        FROM _bugs_in s LEFT JOIN _rejections r ON r.bug_id = s.id""",
    )


def _refresh_search_index(db: Connections, stats: WriteStats) -> float:
    """Bring the bug search index up to date after a write that changed bugs (or build it when
    there is none yet), in its own transaction so the merge's memory cap and retry stay its
    own; only the changed bugs' documents are tokenised again (``search.refresh``). Returns
    the seconds the file was held for it."""
    if not db.backend.full_text_search:
        return 0.0
    changed = stats.inserted + stats.updated + stats.marked_deleted + stats.restored
    if not changed and search.has_index(db):
        return 0.0
    build, held_s = search.refresh(db)
    stats.extra["search_index_documents"] = build.documents
    stats.extra["search_index_tokenised"] = build.tokenised
    stats.extra["search_index_chunks"] = build.chunks
    return held_s
