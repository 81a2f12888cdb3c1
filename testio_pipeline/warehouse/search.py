"""Full-text search over bugs: a BM25 index (DuckDB ``fts``) and the ``search_bugs`` table macro.

The index covers one document per non-deleted bug: its title, and a body made of its steps,
actual and expected result and the text of its comments (``bug_comments``, when the file has
that table). ``create_fts_index`` indexes a table, not a view, so the documents are copied
into ``search.bug_documents``; the index lives in the schema ``fts_search_bug_documents``.
Neither is in ``main``, which holds exactly the declared tables and views.

The bug writes bring it up to date right after each write that changed a bug (the bugs'
``after`` hook, ``hooks.refresh_search_index`` → :func:`refresh`): the documents are computed
again and compared with the stored ones, and only the documents that changed are tokenised
again, their rows in the index's own tables (``docs``, ``terms``, ``dict``, ``stats``, laid out
by the extension's ``create_fts_index``) replaced and the term and collection statistics
recounted, so the index scores exactly as a full rebuild would (``test_search.py`` compares
both). Tokenising every bug was most of a bugs write in an incremental cycle
(``benchmarks/README.md``). With no index yet, :func:`rebuild` creates it with
``create_fts_index`` from up to :data:`CHUNK_DOCUMENTS` bugs, and past that adds the rest chunk by
chunk the same way, so memory stays bounded at any size. Both work in write units of one chunk of
bug ids each, committed one after the other with the file released in between (a reader waits
out one chunk at most, and meanwhile searches the bugs indexed so far); a run that dies between
two units (or after the merge, before the index) leaves :data:`INDEXED` behind the bugs, and the
next bugs write finishes the index. They run under
the warehouse's memory cap (``merge_memory_limit``), so DuckDB spills the documents and the
chunk's tables to disk rather than holding a million bugs' text. Analysts query it with

    SELECT * FROM search_bugs('checkout crash');                          -- best first
    SELECT * FROM search_bugs('checkout crash', product := 12, status := 'rejected');

(after ``LOAD fts`` in their own session; see docs/analytics.md, "Full-text search over bugs").
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb

from . import extensions
from .connection import Connections
from .merge import run
from .views.model import READABLE_BUG_STATUS

if TYPE_CHECKING:  # pandas is imported by DuckDB on the first .df(), not by every run
    import pandas as pd

SCHEMA = "search"
DOCUMENTS = f"{SCHEMA}.bug_documents"
INDEX_SCHEMA = "fts_search_bug_documents"
MACRO = "search_bugs"

log = logging.getLogger(__name__)

MACRO_SQL = f"""
CREATE OR REPLACE MACRO {MACRO}(query, product := NULL, status := NULL, max_results := 50) AS TABLE
SELECT
    hit.bug_id,
    round(hit.score, 4) AS score,
    b.product_id,
    p.name AS product,
    {READABLE_BUG_STATUS} AS status,
    b.severity,
    b.title
FROM (
    SELECT d.bug_id, {INDEX_SCHEMA}.match_bm25(d.bug_id, query) AS score FROM {DOCUMENTS} d
) hit
JOIN bugs b ON b.id = hit.bug_id AND b.deleted_at IS NULL
LEFT JOIN products p ON p.id = b.product_id
WHERE hit.score IS NOT NULL
  AND (product IS NULL OR b.product_id = product)
  AND (status IS NULL OR {READABLE_BUG_STATUS} = status)
ORDER BY hit.score DESC, hit.bug_id
LIMIT max_results
"""


class SearchIndexMissingError(RuntimeError):
    """The file has no search index yet: no bugs were written since search was added."""


@dataclass(frozen=True)
class IndexBuild:
    """One rebuild or refresh: the bugs indexed, the documents (re)tokenised, how long it took,
    in how many chunks (see :data:`CHUNK_DOCUMENTS`)."""

    documents: int
    seconds: float
    tokenised: int = 0
    chunks: int = 1


def _documents_sql(
    with_comments: bool, target: str = f"TABLE {DOCUMENTS}", ids: tuple[int, int] | None = None
) -> str:
    """The documents of the live bugs, or of those with ``lo < id <= hi`` for ``ids=(lo, hi)``."""
    in_range = "" if ids is None else f" AND b.id > {int(ids[0])} AND b.id <= {int(ids[1])}"
    comments_in_range = "" if ids is None else f"WHERE bug_id > {int(ids[0])} AND bug_id <= {int(ids[1])}"
    comments = (
        f"""
    LEFT JOIN (
        SELECT bug_id, string_agg(body, ' ') AS text  -- word order does not matter to BM25
        FROM bug_comments {comments_in_range} GROUP BY bug_id
    ) c ON c.bug_id = b.id"""
        if with_comments
        else ""
    )
    comment_text = "c.text" if with_comments else "NULL"
    return f"""
CREATE OR REPLACE {target} AS
SELECT
    b.id AS bug_id,
    coalesce(b.title, '') AS title,
    concat_ws(' ', array_to_string(b.steps, ' '), b.actual_result, b.expected_result, {comment_text}) AS body
FROM bugs b{comments}
WHERE b.deleted_at IS NULL{in_range}
"""


def _has_comments(con: duckdb.DuckDBPyConnection) -> bool:
    sql = "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = 'bug_comments'"
    return bool(run(con, sql)[0][0])


# ``create_fts_index`` holds the tokens of every document in memory at once (it rewrites its
# terms table with UPDATEs, which DuckDB cannot spill), so past this many documents the index is
# created from the first CHUNK_DOCUMENTS bugs and the rest are added that many at a time, as a
# refresh adds new bugs (``_replace_documents``): the same index, in memory bounded by the cap.
# Up to it the whole build is kept: it is faster, and peaks lower than the chunked build's cap.
# (benchmarks/README.md, "Bug search index build", has the measurements.)
CHUNK_DOCUMENTS = 100_000


def rebuild_in(con: duckdb.DuckDBPyConnection, chunk: int | None = None) -> IndexBuild:
    """Rebuild the documents, the index and the macro inside ``con``'s transaction, in chunks
    of ``chunk`` documents (default :data:`CHUNK_DOCUMENTS`) when there are more
    (:func:`rebuild` runs the chunks as units of their own instead)."""
    started = time.perf_counter()
    _, bounds = _rebuild_first_chunk(con, chunk or CHUNK_DOCUMENTS)
    if len(bounds) > 2:
        with_comments = _has_comments(con)
        for ids in zip(bounds[1:-1], bounds[2:]):
            run(con, _documents_sql(with_comments, target="TEMP TABLE _documents_now", ids=ids))
            run(con, "CREATE OR REPLACE TEMP TABLE _documents_changed AS SELECT bug_id FROM _documents_now")
            _replace_documents(con)
    documents = run(con, f"SELECT count(*) FROM {DOCUMENTS}")[0][0]
    return IndexBuild(documents, time.perf_counter() - started, tokenised=documents, chunks=max(1, len(bounds) - 1))


def _rebuild_first_chunk(con: duckdb.DuckDBPyConnection, chunk: int) -> tuple[IndexBuild, list[int]]:
    """Create the index (and the macro) from the first ``chunk`` live bugs, or all of them when
    there are no more; returns it and the chunk bounds (``_chunk_bounds``) of all of them."""
    started = time.perf_counter()
    extensions.load(con, "fts")
    run(con, f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    with_comments = _has_comments(con)
    bounds = _chunk_bounds(con, chunk, "SELECT id FROM bugs WHERE deleted_at IS NULL")
    first = None if len(bounds) < 3 else (bounds[0], bounds[1])
    run(con, _documents_sql(with_comments, ids=first))
    with _one_thread(con) if first is None else contextlib.nullcontext():
        run(con, f"PRAGMA create_fts_index('{DOCUMENTS}', 'bug_id', 'title', 'body', overwrite = 1)")
    if first is not None:
        # DuckDB 1.5 fails an append to a table altered earlier in the same transaction
        # ("Row group prev allocated size is larger…", with one thread), as create_fts_index
        # alters these: the chunks are added to copies.
        for table in ("docs", "terms", "dict"):
            run(con, f"CREATE OR REPLACE TABLE {_IX}.{table} AS FROM {_IX}.{table}")
    run(con, MACRO_SQL)
    documents = run(con, f"SELECT count(*) FROM {DOCUMENTS}")[0][0]
    return IndexBuild(documents, time.perf_counter() - started, tokenised=documents), bounds


@contextlib.contextmanager
def _one_thread(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Run the block on one DuckDB thread, then put the connection's setting back.

    ``create_fts_index`` is mostly serial (it rewrites its terms table with UPDATEs): on this
    machine's two cores a second thread cost ~20 % more CPU for no speed (28,508 bugs, median
    of 5: 1.37 -> 1.12 s of CPU, 1.19 -> 1.15 s wall). Only the unchunked build runs so; the
    chunked one keeps DuckDB's default (see the workaround in :func:`rebuild_in`).
    """
    threads = int(run(con, "SELECT current_setting('threads')")[0][0])
    run(con, "SET threads = 1")
    try:
        yield
    finally:
        try:
            run(con, f"SET threads = {threads}")
        except duckdb.Error:  # an aborted transaction refuses it; the error that aborted it matters more
            log.debug("could not put threads back to %s", threads)


def _chunk_bounds(con: duckdb.DuckDBPyConnection, chunk: int, ids_sql: str) -> list[int]:
    """Ids ``b0 < b1 < … < bn`` of ``ids_sql``'s (distinct) ids: chunk i holds those with
    ``b(i) < id <= b(i+1)``, ``chunk`` of them (the last one fewer)."""
    rows = run(
        con,
        f"""SELECT min(id), max(id) FROM (
            SELECT id, (row_number() OVER (ORDER BY id) - 1) // {int(chunk)} AS chunk FROM ({ids_sql}) i(id)
        ) GROUP BY chunk ORDER BY 1""",
    )
    return [rows[0][0] - 1, *(high for _, high in rows)] if rows else []


_IX = INDEX_SCHEMA


def _replace_documents(con: duckdb.DuckDBPyConnection) -> None:
    """Replace the changed documents (``_documents_changed``) in the documents table and in the
    index's tables, as ``create_fts_index`` lays them out: a document's terms are its tokens
    (the index's ``tokenize``, stopwords dropped, Porter-stemmed) per field, ``docs.len`` their
    number, ``dict.df`` the number of documents holding a term (moved by the documents removed
    and added, so the terms of unchanged documents are not counted again), ``stats`` the
    document count and mean length. New documents and terms get ids above the highest ones."""
    for sql in (
        f"DELETE FROM {DOCUMENTS} WHERE bug_id IN (SELECT bug_id FROM _documents_changed)",
        f"INSERT INTO {DOCUMENTS} SELECT n.* FROM _documents_now n SEMI JOIN _documents_changed c ON c.bug_id = n.bug_id",
        f"""CREATE OR REPLACE TEMP TABLE _df_change AS
        SELECT t.termid, -count(DISTINCT t.docid) AS change FROM {_IX}.terms t
        SEMI JOIN {_IX}.docs d ON d.docid = t.docid AND d.name IN (SELECT bug_id FROM _documents_changed)
        GROUP BY t.termid""",
        f"""DELETE FROM {_IX}.terms WHERE docid IN (
            SELECT docid FROM {_IX}.docs WHERE name IN (SELECT bug_id FROM _documents_changed))""",
        f"DELETE FROM {_IX}.docs WHERE name IN (SELECT bug_id FROM _documents_changed)",
        f"""CREATE OR REPLACE TEMP TABLE _new_docs AS
        SELECT n.bug_id, (SELECT coalesce(max(docid), -1) FROM {_IX}.docs) + row_number() OVER (ORDER BY n.bug_id) AS docid,
               n.title, n.body
        FROM _documents_now n SEMI JOIN _documents_changed c ON c.bug_id = n.bug_id""",
        f"""CREATE OR REPLACE TEMP TABLE _new_terms AS
        WITH tokens AS (
            SELECT docid, fieldid, unnest({_IX}.tokenize(text)) AS token
            FROM (SELECT docid, title AS text, 0 AS fieldid FROM _new_docs
                  UNION ALL SELECT docid, body, 1 FROM _new_docs)
        )
        SELECT docid, fieldid, stem(token, 'porter') AS term FROM tokens
        WHERE token <> '' AND token NOT IN (SELECT sw FROM {_IX}.stopwords)""",
        f"""INSERT INTO {_IX}.dict
        SELECT (SELECT coalesce(max(termid), -1) FROM {_IX}.dict) + row_number() OVER (ORDER BY term), term, 0
        FROM (SELECT DISTINCT term FROM _new_terms WHERE term NOT IN (SELECT term FROM {_IX}.dict))""",
        f"""INSERT INTO {_IX}.terms
        SELECT t.docid, t.fieldid, d.termid FROM _new_terms t JOIN {_IX}.dict d ON d.term = t.term""",
        f"""INSERT INTO {_IX}.docs
        SELECT n.docid, n.bug_id, count(t.docid) FROM _new_docs n LEFT JOIN _new_terms t ON t.docid = n.docid
        GROUP BY n.docid, n.bug_id""",
        f"""INSERT INTO _df_change
        SELECT d.termid, count(DISTINCT t.docid) FROM _new_terms t JOIN {_IX}.dict d ON d.term = t.term GROUP BY d.termid""",
        f"""UPDATE {_IX}.dict SET df = {_IX}.dict.df + c.change
        FROM (SELECT termid, sum(change) AS change FROM _df_change GROUP BY termid) c WHERE {_IX}.dict.termid = c.termid""",
        f"DELETE FROM {_IX}.dict WHERE df = 0",
        f"UPDATE {_IX}.stats SET num_docs = (SELECT count(*) FROM {_IX}.docs), avgdl = (SELECT avg(len) FROM {_IX}.docs)",
    ):
        run(con, sql)


# The bugs' state the index was last brought up to (the latest ``synced_at`` or ``deleted_at``),
# noted by the last unit of a refresh or rebuild and removed by its first: an index left half
# done by a run that died between two units, or not refreshed at all after a merge that
# committed, is brought up to date by the next bugs write, even one that changed no bug.
INDEXED = f"{SCHEMA}.indexed_as_of"
_BUGS_AS_OF = "SELECT greatest(max(synced_at), max(deleted_at)) FROM bugs"


def rebuild(db: Connections) -> tuple[IndexBuild, list[float]]:
    """Rebuild the index in write units of :data:`CHUNK_DOCUMENTS` bugs each, the file released
    between them (readers meanwhile search the bugs indexed so far); also returns the seconds
    each unit held the file."""
    started = time.perf_counter()

    def first(con: duckdb.DuckDBPyConnection) -> tuple[IndexBuild, list[int], Any]:
        as_of = _forget_indexed(con)
        build, bounds = _rebuild_first_chunk(con, CHUNK_DOCUMENTS)
        if len(bounds) <= 2:
            _note_indexed(con, as_of)
        return build, bounds, as_of

    (build, bounds, as_of), unit = db.write(first, capped=True)
    holds = [unit.held_s]
    if len(bounds) <= 2:
        return build, holds
    documents, tokenised, more_holds = _refresh_ranges(db, bounds[1:], as_of)
    build = IndexBuild(
        build.documents + documents, time.perf_counter() - started, tokenised=build.tokenised + tokenised,
        chunks=len(bounds) - 1,
    )
    return build, holds + more_holds


def refresh(db: Connections) -> tuple[IndexBuild, list[float]]:
    """Bring the index up to date in write units of :data:`CHUNK_DOCUMENTS` bug ids each, the
    file released between them: each computes its bugs' documents again, compares them with the
    stored ones and re-tokenises only those that changed (:func:`_refresh_range`); a rebuild
    (:func:`rebuild`) when there is no index yet. Also returns the seconds each unit held the file."""
    started = time.perf_counter()
    if not has_index(db):
        return rebuild(db)

    def first(con: duckdb.DuckDBPyConnection) -> tuple[list[int], Any]:
        as_of = _forget_indexed(con)
        ids = f"SELECT id FROM bugs WHERE deleted_at IS NULL UNION SELECT bug_id FROM {DOCUMENTS}"
        return _chunk_bounds(con, CHUNK_DOCUMENTS, ids), as_of

    (bounds, as_of), unit = db.write(first)
    documents, tokenised, holds = _refresh_ranges(db, bounds, as_of)
    chunks = max(1, len(bounds) - 1)
    return IndexBuild(documents, time.perf_counter() - started, tokenised=tokenised, chunks=chunks), [unit.held_s, *holds]


def _refresh_ranges(db: Connections, bounds: list[int], as_of: Any) -> tuple[int, int, list[float]]:
    """Refresh the documents of each id range ``bounds[i] < id <= bounds[i+1]`` in a unit of its
    own; the last one notes the index is up to date with the bugs ``as_of``. Returns the
    documents, those tokenised, the holds."""
    documents = tokenised = 0
    holds: list[float] = []
    ranges = list(zip(bounds, bounds[1:]))
    for number, (lo, hi) in enumerate(ranges):
        last = number == len(ranges) - 1

        def body(con: duckdb.DuckDBPyConnection, lo: int = lo, hi: int = hi, last: bool = last) -> tuple[int, int]:
            counts = _refresh_range(con, lo, hi)
            if last:
                _note_indexed(con, as_of)
            return counts

        (in_range, changed), unit = db.write(body, capped=True)
        documents, tokenised = documents + in_range, tokenised + changed
        holds.append(unit.held_s)
    if not ranges:
        _, unit = db.write(lambda con: _note_indexed(con, as_of))
        holds.append(unit.held_s)
    return documents, tokenised, holds


def _refresh_range(con: duckdb.DuckDBPyConnection, lo: int, hi: int) -> tuple[int, int]:
    """Re-tokenise the changed documents of the bugs with ``lo < id <= hi``; returns the
    documents in the range and how many changed."""
    extensions.load(con, "fts")
    run(con, _documents_sql(_has_comments(con), target="TEMP TABLE _documents_now", ids=(lo, hi)))
    run(
        con,
        f"""CREATE OR REPLACE TEMP TABLE _documents_changed AS
        SELECT coalesce(n.bug_id, o.bug_id) AS bug_id
        FROM _documents_now n FULL JOIN (FROM {DOCUMENTS} WHERE bug_id > {int(lo)} AND bug_id <= {int(hi)}) o ON o.bug_id = n.bug_id
        WHERE n.bug_id IS NULL OR o.bug_id IS NULL OR n.title IS DISTINCT FROM o.title OR n.body IS DISTINCT FROM o.body""",
    )
    changed = run(con, "SELECT count(*) FROM _documents_changed")[0][0]
    if changed:
        _replace_documents(con)
    return run(con, "SELECT count(*) FROM _documents_now")[0][0], changed


def _forget_indexed(con: duckdb.DuckDBPyConnection) -> Any:
    """Note that the index is being changed; returns the bugs' state it is brought up to."""
    run(con, f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    run(con, f"CREATE TABLE IF NOT EXISTS {INDEXED} (bugs_as_of TIMESTAMPTZ)")
    run(con, f"DELETE FROM {INDEXED}")
    return run(con, _BUGS_AS_OF)[0][0]


def _note_indexed(con: duckdb.DuckDBPyConnection, as_of: Any) -> None:
    run(con, f"DELETE FROM {INDEXED}")
    run(con, f"INSERT INTO {INDEXED} VALUES ($as_of)", {"as_of": as_of})


def is_current(db: Connections) -> bool:
    """Whether the file has a search index brought up to date with the bugs as they are (no
    unfinished refresh, no bug written since)."""
    with db.read() as con:
        if not index_exists(con):
            return False
        sql = "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = 'indexed_as_of'"
        if not run(con, sql, [SCHEMA])[0][0]:
            return False
        noted = run(con, f"SELECT bugs_as_of FROM {INDEXED}")
        return bool(noted) and noted[0][0] == run(con, _BUGS_AS_OF)[0][0]


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
