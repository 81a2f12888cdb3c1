"""Full-text search over bugs: a synced world, searched through the CLI, the facade and the
``search_bugs`` SQL macro, against the bug texts the simulator sent."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone

import dagster as dg
import duckdb
import pytest

from testio_pipeline.cli import query
from testio_pipeline.component.testio.assets import TESTIO_ASSETS
from testio_pipeline.domain.records import Bug
from testio_pipeline.warehouse import Warehouse, extensions, search
from testio_pipeline.warehouse.search import SearchIndexMissingError
from testio_pipeline.warehouse.views.model import BUG_STATUS_LABELS

from .conftest import make_simulator, full_refresh_resources
from .test_warehouse import bug, exploratory_test, product

QUERY = "spinner never stops"


def _text(b: dict) -> str:
    parts = [b["title"], *(b.get("steps") or []), b.get("actual_result") or "", b.get("expected_result") or ""]
    parts += [c["body"] for c in b.get("comments") or []]
    return " ".join(parts).lower()


def _readable(b: dict) -> str:
    if b["status"] == "accepted":
        return "auto-accepted" if b.get("auto_accepted") else "accepted"
    return "open" if b["status"] == "forwarded" else b["status"]


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    """(truth bugs by id, DuckDB path) after one full sync of a small world."""
    sim = make_simulator("tiny", bugs_per_test=6)
    db = tmp_path_factory.mktemp("search") / "testio.duckdb"
    resources = full_refresh_resources(sim, db)
    with dg.instance_for_test() as instance:
        assert dg.materialize(TESTIO_ASSETS, resources=resources, instance=instance).success
    truth = {b["id"]: {**b, "product_id": p["id"]} for p in sim.truth_products() for b in sim.truth_bugs(p["id"])}
    return truth, db


def test_search_puts_the_bugs_that_match_every_word_first(synced):
    truth, db = synced
    hits = Warehouse(db).search_bugs(QUERY, limit=1000)
    full = {i for i, b in truth.items() if "spinner never stops" in _text(b)}
    assert len(full) >= 2, "the world should have a few spinner bugs to rank"
    assert set(hits.bug_id[: len(full)]) == full, "bugs naming the whole phrase come first"
    assert list(hits.score) == sorted(hits.score, reverse=True)
    # Every hit names at least one of the words (stemmed: 'stops' also matches 'stop');
    # every bug that names one of them is found.
    words = re.compile(r"\b(spinner|never|stop)")
    assert all(words.search(_text(truth[i])) for i in hits.bug_id)
    assert set(hits.bug_id) == {i for i, b in truth.items() if words.search(_text(b))}
    top = truth[int(hits.bug_id[0])]
    assert hits.title[0] == top["title"] and hits.severity[0] == top["severity"]


def test_search_filters_by_product_and_status(synced):
    truth, db = synced
    wh = Warehouse(db)
    everything = wh.search_bugs(QUERY, limit=1000)
    some_product = int(everything.product_id[0])
    only = wh.search_bugs(QUERY, product_id=some_product, limit=1000)
    assert len(only) and set(only.product_id) == {some_product}
    assert set(only.bug_id) == {i for i in everything.bug_id if truth[i]["product_id"] == some_product}
    for status in ("rejected", "open", "accepted", "auto-accepted"):
        hits = wh.search_bugs(QUERY, status=status, limit=1000)
        assert set(hits.bug_id) == {i for i in everything.bug_id if _readable(truth[i]) == status}, status
    assert set().union(*(wh.search_bugs(QUERY, status=s, limit=1000).bug_id for s in BUG_STATUS_LABELS)) == set(
        everything.bug_id
    )


def test_the_search_bugs_macro_answers_in_plain_sql(synced):
    _, db = synced
    con = duckdb.connect(str(db), read_only=True)
    try:
        extensions.load(con, "fts")
        rows = con.execute("SELECT bug_id, score FROM search_bugs('spinner', max_results := 3)").fetchall()
    finally:
        con.close()
    expected = Warehouse(db).search_bugs("spinner", limit=3)
    assert [r[0] for r in rows] == list(expected.bug_id) and len(rows) == 3


def test_query_cli_prints_a_ranked_table(synced, capsys):
    truth, db = synced
    assert query.main(["--db", str(db), "--search", QUERY, "--status", "rejected"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["bug_id", "score", "product_id", "product", "status", "severity", "title"]
    ranked = [int(line.split()[0]) for line in lines[1:]]
    assert ranked == list(Warehouse(db).search_bugs(QUERY, status="rejected").bug_id)
    assert ranked and all(_readable(truth[i]) == "rejected" for i in ranked)
    with pytest.raises(SystemExit):
        query.main(["--db", str(db), "--product", "1"])  # a filter without a search


def test_the_index_follows_every_bugs_write(synced, tmp_path):
    _, original = synced
    db = tmp_path / "copy.duckdb"
    shutil.copy(original, db)
    wh = Warehouse(db)
    t1, t2 = datetime(2026, 11, 2, tzinfo=timezone.utc), datetime(2026, 11, 3, tzinfo=timezone.utc)
    wh.write("products", [product(1)], t1)
    wh.write("tests", [exploratory_test(7, 1)], t1, complete={"products": {1}})
    assert wh.search_bugs("zeppelin").empty
    wh.write("bugs", [bug(1, 7, title="Zeppelin banner hides the basket")], t1, complete={"tests": {7}})
    assert list(wh.search_bugs("zeppelin").bug_id) == [1]
    wh.write("bugs", [bug(1, 7, title="Banner hides the basket")], t2, complete={"tests": {7}})
    assert wh.search_bugs("zeppelin").empty and list(wh.search_bugs("banner").bug_id) == [1]
    wh.write("bugs", [], t2, complete={"tests": {7}}, detect_deletions=True)  # bug 1 vanished
    assert wh.search_bugs("banner").empty


def test_a_file_without_an_index_says_so(tmp_path, capsys):
    db = tmp_path / "empty.duckdb"
    Warehouse(db).migrate()
    with pytest.raises(SearchIndexMissingError, match="no search index yet"):
        Warehouse(db).search_bugs("crash")
    assert query.main(["--db", str(db), "--search", "crash"]) == 2
    assert "no search index yet" in capsys.readouterr().err
    with pytest.raises(ValueError, match="empty"):
        Warehouse(db).search_bugs("  ")


@pytest.mark.parametrize("chunk", [None, 2], ids=["one_chunk", "chunks_of_2"])
def test_a_bugs_write_retokenises_only_the_changed_bugs_and_scores_as_a_rebuild(synced, tmp_path, monkeypatch, chunk):
    _, original = synced
    db = tmp_path / "copy.duckdb"
    shutil.copy(original, db)
    wh = Warehouse(db)
    test_id, product_id = wh.records("SELECT test_id, product_id FROM bugs ORDER BY test_id LIMIT 1")[0].values()
    stored = [json.loads(r["raw"]) for r in wh.records("SELECT raw FROM bugs WHERE test_id = ? ORDER BY id", [test_id])]
    assert len(stored) >= 3
    renamed, _dropped, *kept = stored
    renamed = {**renamed, "title": "Zeppelin quokka banner hides the spinner"}
    added = {**kept[0], "id": max(b["id"] for b in stored) + 1000, "steps": ["Tap the quokka", "spinner never stops"]}
    queries = (QUERY, "zeppelin", "quokka spinner", "page blank", "checkout crash")

    def ranked() -> dict[str, list[tuple[int, float]]]:
        return {q: list(wh.search_bugs(q, limit=10_000)[["bug_id", "score"]].itertuples(index=False)) for q in queries}

    if chunk is not None:
        monkeypatch.setattr(search, "CHUNK_DOCUMENTS", chunk)
    stats = wh.write(
        "bugs",
        [Bug.from_api(b, product_id=product_id) for b in (renamed, *kept, added)],
        datetime(2026, 11, 3, tzinfo=timezone.utc),
        complete={"tests": {test_id}},
        detect_deletions=True,
    )
    assert (stats.inserted, stats.updated, stats.marked_deleted) == (1, 1, 1)
    live = wh.records("SELECT count(*) AS n FROM bugs WHERE deleted_at IS NULL")[0]["n"]
    assert stats.extra["search_index_documents"] == live
    assert stats.extra["search_index_tokenised"] == 3  # renamed, dropped, added: not every bug
    # One write unit per chunk of bug ids, the dropped bug's id among them.
    assert stats.extra["search_index_chunks"] == (1 if chunk is None else -(-(live + 1) // chunk))
    refreshed = ranked()
    assert [b for b, _ in refreshed["zeppelin"]] == [renamed["id"]]
    assert added["id"] in [b for b, _ in refreshed["quokka spinner"]]
    assert _dropped["id"] not in {b for hits in refreshed.values() for b, _ in hits}
    assert wh.rebuild_search_index().documents == live
    assert ranked() == refreshed  # the same bugs with the same BM25 scores as a whole rebuild


def test_an_index_left_behind_the_bugs_is_finished_by_the_next_bugs_write(synced, tmp_path, monkeypatch):
    """A run that dies between two index units (or after the merge, before the index) leaves
    the index behind the bugs; the next bugs write brings it up to date though it changes none."""
    _, original = synced
    db = tmp_path / "copy.duckdb"
    shutil.copy(original, db)
    wh = Warehouse(db)
    assert search.is_current(wh._db)
    bug_id = wh.records("SELECT min(id) AS id FROM bugs")[0]["id"]
    with duckdb.connect(str(db)) as con:  # a merge that committed, its index refresh never ran
        con.execute(
            "UPDATE bugs SET title = 'Zeppelin quokka banner', synced_at = synced_at + INTERVAL 1 DAY WHERE id = ?",
            [bug_id],
        )
    assert not search.is_current(wh._db)
    assert wh.search_bugs("zeppelin").empty
    monkeypatch.setattr(search, "CHUNK_DOCUMENTS", 5)  # several units
    stats = wh.write("bugs", [], datetime(2026, 11, 3, tzinfo=timezone.utc))
    assert (stats.inserted, stats.updated, stats.marked_deleted) == (0, 0, 0)
    assert stats.extra["search_index_tokenised"] == 1 and stats.extra["search_index_chunks"] > 1
    assert list(wh.search_bugs("zeppelin")["bug_id"]) == [bug_id]
    assert search.is_current(wh._db)
    assert "search_index_tokenised" not in wh.write("bugs", [], datetime(2026, 11, 3, tzinfo=timezone.utc)).extra


def _index_tables(db) -> dict[str, list[tuple]]:
    """The index's content independent of its internal ids: per bug its length and terms."""
    ix = search.INDEX_SCHEMA
    with duckdb.connect(str(db), read_only=True) as con:
        extensions.load(con, "fts")
        return {
            "stats": con.execute(f"SELECT num_docs, avgdl FROM {ix}.stats").fetchall(),
            "dict": con.execute(f"SELECT term, df FROM {ix}.dict ORDER BY term").fetchall(),
            "docs": con.execute(f"SELECT name, len FROM {ix}.docs ORDER BY name").fetchall(),
            "terms": con.execute(
                f"""SELECT d.name, t.fieldid, w.term, count(*) FROM {ix}.terms t
                JOIN {ix}.docs d USING (docid) JOIN {ix}.dict w USING (termid) GROUP BY ALL ORDER BY ALL"""
            ).fetchall(),
            "documents": con.execute(f"SELECT * FROM {search.DOCUMENTS} ORDER BY bug_id").fetchall(),
        }


def test_a_large_index_is_built_in_chunks_and_scores_as_one_built_whole(synced, tmp_path, monkeypatch):
    _, original = synced
    db = tmp_path / "copy.duckdb"
    shutil.copy(original, db)
    wh = Warehouse(db)
    queries = (QUERY, "page blank", "checkout crash", "login button")

    def ranked() -> dict[str, list[tuple[int, float]]]:
        return {q: list(wh.search_bugs(q, limit=10_000)[["bug_id", "score"]].itertuples(index=False)) for q in queries}

    whole = wh.rebuild_search_index()
    assert whole.chunks == 1
    whole_ranked, whole_tables = ranked(), _index_tables(db)
    assert any(whole_ranked.values())
    monkeypatch.setattr(search, "CHUNK_DOCUMENTS", 7)
    chunked = wh.rebuild_search_index()
    assert chunked.documents == whole.documents > 3 * 7
    assert chunked.chunks == -(-whole.documents // 7)
    assert _index_tables(db) == whole_tables
    assert ranked() == whole_ranked  # the same bugs with the same BM25 scores


def test_chunks_of_a_larger_index_are_added_with_one_thread_too(tmp_path):
    """With one thread, DuckDB 1.5 fails appending 30k documents' terms to the tables
    ``create_fts_index`` altered in the same transaction (an internal error): the chunked build
    appends to copies of them."""
    db = tmp_path / "many.duckdb"
    wh = Warehouse(db)
    wh.migrate()
    with duckdb.connect(str(db)) as con:
        con.execute(
            """INSERT INTO bugs (id, product_id, title, steps, actual_result, expected_result, content_hash, synced_at)
            SELECT 1000 + i, 1, 'Checkout button ' || (i % 97) || ' crash on page ' || (i % 13),
                   ['Open the page ' || (i % 31), 'Tap the basket'], 'The spinner never stops ' || (i % 1000),
                   'The page loads', 'h', TIMESTAMPTZ '2026-11-02 00:00:00+00'
            FROM range(30000) t(i)"""
        )
    whole = wh.rebuild_search_index()
    whole_tables = _index_tables(db)
    with duckdb.connect(str(db)) as con:
        con.execute("SET threads = 1")
        con.begin()
        assert search.rebuild_in(con, chunk=15_000).chunks == 2
        con.commit()
    assert _index_tables(db) == whole_tables
    assert whole.documents == 30_000


def test_an_analysts_own_duckdb_session_on_a_new_machine_needs_one_line_to_search(synced, tmp_path):
    """A plain DuckDB session (no project code), a home folder DuckDB has never seen, no
    network: the documented `SET extension_directory` line makes the search macro work."""
    _, db = synced
    folder = tmp_path / "ext"
    extensions.install(folder)
    home = tmp_path / "home"
    home.mkdir()
    session = (
        "import sys, duckdb; con = duckdb.connect(sys.argv[1], read_only=True); "
        "con.execute(sys.argv[2]); "
        "print(con.execute(\"SELECT count(*) FROM search_bugs('spinner', max_results := 3)\").fetchone()[0])"
    )
    done = subprocess.run(
        [sys.executable, "-c", session, str(db), extensions.setup_line(folder)],
        env={**os.environ, "HOME": str(home)}, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["3"]
