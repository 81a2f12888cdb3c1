"""Where an entity's write really differs from the generic one: the hooks its registry
declaration names (``prepare``, ``after``).

A ``prepare`` hook runs first in the write's transaction: it gets the name of the entity's
framed relation and those of its children's (by table), and returns the relation to merge
(with the columns the declaration says it ``derived``) and counts for ``WriteStats.extra``.
It must keep no state between calls: a transaction that meets another writer's commit
(DuckLake) is run again. An ``after`` hook runs once the write has committed, and returns
the seconds each of its units held the warehouse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import duckdb

from testio_pipeline.domain.records import RejectReason
from testio_pipeline.domain.vocabulary import OTHER_REJECTION

from . import frames, merge, search
from .connection import Connections
from .merge import WriteStats


def match_story_features(
    con: duckdb.DuckDBPyConnection, stories: str, children: Mapping[str, str], synced_at: datetime
) -> tuple[str, dict[str, int]]:
    """The stories with their ``feature_id``, and how many match no feature.

    A story names no feature; features name stories by title. Prefer a feature listed in the
    story's own section, then the lowest id so the choice is stable.
    """
    merge.run(
        con,
        f"""CREATE OR REPLACE TEMP TABLE _matched_stories AS
        WITH titles AS (
            SELECT id AS feature_id, product_id, unnest(user_story_titles) AS title
            FROM features WHERE deleted_at IS NULL
        ), candidates AS (
            SELECT s.id AS story_id, t.feature_id, fs.section_id IS NOT NULL AS same_section
            FROM {stories} s
            JOIN titles t ON t.product_id = s.product_id AND t.title = s.title
            LEFT JOIN feature_sections fs ON fs.feature_id = t.feature_id AND fs.section_id = s.section_id
        ), best AS (
            SELECT story_id, feature_id FROM candidates
            QUALIFY row_number() OVER (PARTITION BY story_id ORDER BY same_section DESC, feature_id) = 1
        )
        SELECT s.*, b.feature_id FROM {stories} s LEFT JOIN best b ON b.story_id = s.id""",
    )
    unresolved = merge.run(con, "SELECT count(*) FROM _matched_stories WHERE feature_id IS NULL")[0][0]
    return "_matched_stories", {"feature_unresolved": unresolved}


def derive_rejection_reasons(
    con: duckdb.DuckDBPyConnection,
    bugs: str,
    children: Mapping[str, str],
    synced_at: datetime,
    *,
    reject_reasons: Sequence[RejectReason] | None = None,
) -> tuple[str, dict[str, int]]:
    """The bugs with their ``rejection_reason``; ``reject_reasons`` first replaces the stored
    list the comments are matched against (None: the stored list is matched).

    A rejected bug's reason is the key of the reason whose default comment its latest
    matching comment contains (case ignored; the longest comment wins a tie), ``other`` when
    none matches; a bug that is not rejected has none. Only the rejected bugs' comments are
    looked at, so the join stays small.
    """
    if reject_reasons is not None:
        merge.run(con, "DELETE FROM reject_reasons")
        con.register("_reject_reasons", frames.reject_reasons_frame(reject_reasons, synced_at))
        merge.run(con, "INSERT INTO reject_reasons BY NAME SELECT * FROM _reject_reasons")
    comments = children["bug_comments"]
    merge.run(
        con,
        f"""CREATE OR REPLACE TEMP TABLE _rejections AS
        SELECT c.bug_id, r.key
        FROM {comments} c
        JOIN (SELECT id FROM {bugs} WHERE status = 'rejected') b ON b.id = c.bug_id
        JOIN reject_reasons r ON contains(lower(c.body), lower(r.default_comment))
        QUALIFY row_number() OVER (
            PARTITION BY c.bug_id
            ORDER BY c.created_at DESC NULLS LAST, c.position DESC, length(r.default_comment) DESC
        ) = 1""",
    )
    merge.run(
        con,
        f"""CREATE OR REPLACE TEMP VIEW _bugs_with_reasons AS
        SELECT s.*, CASE WHEN s.status = 'rejected' THEN coalesce(r.key, '{OTHER_REJECTION}') END AS rejection_reason
        FROM {bugs} s LEFT JOIN _rejections r ON r.bug_id = s.id""",
    )
    return "_bugs_with_reasons", {}


def refresh_search_index(db: Connections, stats: WriteStats) -> list[float]:
    """Bring the bug search index up to date after a write that changed bugs (or build it when
    there is none yet, or finish one a dead run left half done), in write units of its own so
    the merge's memory cap and retry stay its own; only the changed bugs' documents are
    tokenised again (``search.refresh``). Returns the seconds each unit held the file."""
    if not db.backend.full_text_search:
        return []
    changed = stats.inserted + stats.updated + stats.marked_deleted + stats.restored
    if not changed and search.is_current(db):
        return []
    build, holds = search.refresh(db)
    stats.extra["search_index_documents"] = build.documents
    stats.extra["search_index_tokenised"] = build.tokenised
    stats.extra["search_index_chunks"] = build.chunks
    return holds
