"""Full-text search over bugs: a BM25 index (DuckDB ``fts``) and the ``search_bugs`` table macro.

The index covers one document per non-deleted bug: its title, and a body made of its steps,
actual and expected result and the text of its comments (``bug_comments``, when the file has
that table). ``create_fts_index`` indexes a table, not a view, so the documents are copied
into ``search.bug_documents``; the index lives in the schema ``fts_search_bug_documents``.
Neither is in ``main``, which holds exactly the declared tables and views.

The index is a snapshot: :func:`rebuild` replaces it, and the bug writes call it right after
each write that changed a bug (``writes.write_bugs``). Analysts query it with

    SELECT * FROM search_bugs('checkout crash');                          -- best first
    SELECT * FROM search_bugs('checkout crash', product := 12, status := 'rejected');

(after ``LOAD fts`` in their own session; see the README's search section).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

from . import extensions
from .connection import Connections
from .merge import run

if TYPE_CHECKING:  # pandas is imported by DuckDB on the first .df(), not by every run
    import pandas as pd

SCHEMA = "search"
DOCUMENTS = f"{SCHEMA}.bug_documents"
INDEX_SCHEMA = "fts_search_bug_documents"
MACRO = "search_bugs"

# A bug's readable status, as in the analyst views (bug_overview.status).
_STATUS = """CASE
        WHEN b.status = 'accepted' AND b.auto_accepted THEN 'auto-accepted'
        WHEN b.status = 'accepted' THEN 'accepted'
        WHEN b.status = 'forwarded' THEN 'open'
        ELSE b.status
    END"""

MACRO_SQL = f"""
CREATE OR REPLACE MACRO {MACRO}(query, product := NULL, status := NULL, max_results := 50) AS TABLE
SELECT
    hit.bug_id,
    round(hit.score, 4) AS score,
    b.product_id,
    p.name AS product,
    {_STATUS} AS status,
    b.severity,
    b.title
FROM (
    SELECT d.bug_id, {INDEX_SCHEMA}.match_bm25(d.bug_id, query) AS score FROM {DOCUMENTS} d
) hit
JOIN bugs b ON b.id = hit.bug_id AND b.deleted_at IS NULL
LEFT JOIN products p ON p.id = b.product_id
WHERE hit.score IS NOT NULL
  AND (product IS NULL OR b.product_id = product)
  AND (status IS NULL OR {_STATUS} = status)
ORDER BY hit.score DESC, hit.bug_id
LIMIT max_results
"""


class SearchIndexMissingError(RuntimeError):
    """The file has no search index yet: no bugs were written since search was added."""


@dataclass(frozen=True)
class IndexBuild:
    """One rebuild: how many bugs it indexed and how long it took."""

    documents: int
    seconds: float


def _documents_sql(with_comments: bool) -> str:
    comments = (
        """
    LEFT JOIN (
        SELECT bug_id, string_agg(body, ' ') AS text  -- word order does not matter to BM25
        FROM bug_comments GROUP BY bug_id
    ) c ON c.bug_id = b.id"""
        if with_comments
        else ""
    )
    comment_text = "c.text" if with_comments else "NULL"
    return f"""
CREATE OR REPLACE TABLE {DOCUMENTS} AS
SELECT
    b.id AS bug_id,
    coalesce(b.title, '') AS title,
    concat_ws(' ', array_to_string(b.steps, ' '), b.actual_result, b.expected_result, {comment_text}) AS body
FROM bugs b{comments}
WHERE b.deleted_at IS NULL
"""


def rebuild_in(con: duckdb.DuckDBPyConnection) -> IndexBuild:
    """Rebuild the documents, the index and the macro inside ``con``'s transaction."""
    started = time.perf_counter()
    extensions.load(con, "fts")
    has_comments = bool(
        run(con, "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = 'bug_comments'")[0][0]
    )
    run(con, f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    run(con, _documents_sql(has_comments))
    run(con, f"PRAGMA create_fts_index('{DOCUMENTS}', 'bug_id', 'title', 'body', overwrite = 1)")
    run(con, MACRO_SQL)
    documents = run(con, f"SELECT count(*) FROM {DOCUMENTS}")[0][0]
    return IndexBuild(documents, time.perf_counter() - started)


def rebuild(db: Connections) -> tuple[IndexBuild, float]:
    """Rebuild the index in its own write transaction; also returns the seconds the file was held."""
    build, unit = db.write(rebuild_in)
    return build, unit.held_s


def index_exists(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(run(con, "SELECT count(*) FROM duckdb_schemas() WHERE schema_name = ?", [INDEX_SCHEMA])[0][0])


def has_index(db: Connections) -> bool:
    """Whether the file has a search index."""
    with db.read() as con:
        return index_exists(con)


def search(
    db: Connections,
    query: str,
    *,
    product_id: int | None = None,
    status: str | None = None,
    limit: int = 50,
) -> pd.DataFrame:
    """Bugs matching ``query``, best BM25 score first (columns of ``search_bugs``)."""
    if not query.strip():
        raise ValueError("the search query is empty")
    with db.read() as con:
        extensions.load(con, "fts")
        if not index_exists(con):
            raise SearchIndexMissingError(
                f"{db.path} has no search index yet: it is built by the next bugs write (run a sync)"
            )
        return con.execute(
            f"SELECT * FROM {MACRO}(?, product := ?, status := ?, max_results := ?)",
            [query, product_id, status, limit],
        ).df()
