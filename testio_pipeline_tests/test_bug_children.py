"""A bug write replaces the children (devices, comments, report fields) of the bugs it inserted
or rewrote only: an unchanged bug's rows stay as they are, and the ones it lacks are added."""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb

from testio_pipeline.domain.records import Bug
from testio_pipeline.warehouse import Warehouse

from .test_warehouse import bug, product

T0 = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)
T1 = datetime(2026, 11, 3, 12, tzinfo=timezone.utc)


def bug_with_comments(bid: int, *bodies: str) -> Bug:
    return Bug.from_api(
        {
            "id": bid,
            "title": f"Bug {bid}",
            "status": "forwarded",
            "test": {"id": 7, "title": "t"},
            "comments": [{"id": bid * 10 + i, "body": body} for i, body in enumerate(bodies)],
        },
        product_id=1,
    )


def comments(wh: Warehouse) -> list[tuple]:
    with duckdb.connect(str(wh.path), read_only=True) as con:
        return con.execute("SELECT bug_id, position, body FROM bug_comments ORDER BY ALL").fetchall()


def test_only_written_bugs_have_their_children_replaced(tmp_path):
    wh = Warehouse(tmp_path / "t.duckdb")
    wh.write("products", [product(1)], T0)
    wh.write("bugs", [bug_with_comments(1, "a", "b"), bug_with_comments(2, "c")], T0, complete={"tests": {7}})

    stats = wh.write(
        "bugs",
        [bug_with_comments(1, "a", "b"), bug_with_comments(2, "c", "d"), bug_with_comments(3, "e")],
        T1,
        complete={"tests": {7}},
    )

    assert (stats.inserted, stats.updated, stats.unchanged) == (1, 1, 1)
    assert stats.extra["bug_comments_removed"] == 1  # bug 2's one old comment; bug 1's stay
    assert stats.extra["bug_comments_added"] == 3  # bug 2's two, bug 3's one
    assert comments(wh) == [(1, 0, "a"), (1, 1, "b"), (2, 0, "c"), (2, 1, "d"), (3, 0, "e")]


def test_an_unchanged_bug_gets_the_children_it_lacks(tmp_path):
    """As after the migration that added the child tables to a file that had bugs."""
    wh = Warehouse(tmp_path / "t.duckdb")
    wh.write("products", [product(1)], T0)
    wh.write("bugs", [bug_with_comments(1, "a", "b")], T0, complete={"tests": {7}})
    with duckdb.connect(str(wh.path)) as con:
        con.execute("DELETE FROM bug_comments")

    stats = wh.write("bugs", [bug_with_comments(1, "a", "b")], T1, complete={"tests": {7}})

    assert stats.unchanged == 1
    assert (stats.extra["bug_comments_removed"], stats.extra["bug_comments_added"]) == (0, 2)
    assert comments(wh) == [(1, 0, "a"), (1, 1, "b")]


def test_a_new_child_table_is_written_from_its_declaration_reader_and_table_alone(tmp_path, monkeypatch):
    """What adding a child table takes: its ``Child`` in the registry, its reader method on the
    record and its table (+ migration); the framing, the stage and the write follow."""
    from dataclasses import replace

    from testio_pipeline.entities import ENTITY_BY_NAME, WRITTEN, Child
    from testio_pipeline.warehouse import TABLES, Column, Table

    steps = Table(
        "bug_steps",
        "One row per step to reproduce a bug.",
        (
            Column("bug_id", "BIGINT", "The bug.", primary_key=True),
            Column("position", "INTEGER", "Position of the step.", primary_key=True),
            Column("step", "VARCHAR", "The step."),
        ),
    )
    bugs = ENTITY_BY_NAME["bugs"]
    monkeypatch.setitem(TABLES, steps.name, steps)
    monkeypatch.setitem(
        ENTITY_BY_NAME, "bugs", replace(bugs, children=(*bugs.children, Child("bug_steps", "bug_id", "step_rows", WRITTEN)))
    )
    monkeypatch.setattr(Bug, "step_rows", lambda self: [{"step": s} for s in self.steps], raising=False)
    wh = Warehouse(tmp_path / "w.duckdb")  # a new file: its schema has the declared table
    wh.write("products", [product(1)], T0)
    stats = wh.write("bugs", [bug(1, 7)], T0, complete={"tests": {7}})
    assert stats.extra["bug_steps_added"] == 2
    with wh.stage("bugs") as stage:
        stage.add([bug(2, 7)])
        stats = wh.write("bugs", stage, T1, complete={"tests": {7}})
    assert stats.extra["bug_steps_added"] == 2
    rows = wh.query("SELECT bug_id, position, step FROM bug_steps ORDER BY ALL").itertuples(index=False)
    assert [tuple(r) for r in rows] == [(1, 0, "open"), (1, 1, "click"), (2, 0, "open"), (2, 1, "click")]
