"""Analyst views, declared once as data like ``schema.TABLES``: SQL, column docs, KPIs.

How a view is declared is in ``model.py``; the declarations in ``overview.py``,
``summary.py``, ``facts.py`` (the fact views the metrics of ``metrics.py`` are computed over) and
``lifecycle.py`` (how long bugs and tests wait, from the observed history). A test compares each declaration with ``DESCRIBE`` of the view.

Conventions shared by the views:
- deleted rows (``deleted_at`` set) are left out everywhere;
- a bug's readable ``status``: ``accepted`` (by a person), ``auto-accepted``, ``rejected``,
  ``open`` (the API's ``forwarded``); an unknown API status is shown as-is;
- bug counts by status are disjoint (``accepted_bugs`` excludes auto-accepted ones), and the
  acceptance rate is (accepted + auto-accepted) / (accepted + auto-accepted + rejected):
  open bugs are not decided yet, so they do not count either way.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from .. import merge
from .facts import BUG_FACTS, TEST_FACTS, USERS
from .lifecycle import BUG_LIFECYCLE, TEST_LIFECYCLE
from .model import View, describe_type
from .overview import BUG_OVERVIEW, TEST_OVERVIEW
from .summary import FEATURE_QUALITY, PRODUCT_SUMMARY

__all__ = ["VIEWS", "View", "create_views", "create_views_sql", "describe_type", "view_reads"]

_VIEW_LIST = (
    BUG_OVERVIEW, TEST_OVERVIEW, FEATURE_QUALITY, PRODUCT_SUMMARY, BUG_FACTS, TEST_FACTS, USERS, BUG_LIFECYCLE, TEST_LIFECYCLE
)
# In creation order: a view comes after the views it reads.
VIEWS: dict[str, View] = {v.name: v for v in _VIEW_LIST}


def view_reads(view: View) -> tuple[str, ...]:
    """The other views ``view`` selects from."""
    return tuple(r for r in view.reads if r in VIEWS)


def create_views_sql(names: Iterable[str] | None = None, existing: Iterable[str] = ()) -> list[str]:
    """Statements that (re)create ``names`` (default: all), in dependency order.

    A view that a requested view reads is created too unless it is in ``existing``.
    """
    wanted = set(VIEWS if names is None else names)
    unknown = wanted - set(VIEWS)
    if unknown:
        raise KeyError(f"unknown views: {sorted(unknown)}")
    have = set(existing)
    pending = list(wanted)
    while pending:
        for dep in view_reads(VIEWS[pending.pop()]):
            if dep not in wanted and dep not in have:
                wanted.add(dep)
                pending.append(dep)
    return [stmt for v in VIEWS.values() if v.name in wanted for stmt in v.create_sql()]


# The views of the warehouse's own database (not DuckDB's internal ones, not an attached file's).
EXISTING_VIEWS_SQL = "SELECT view_name FROM duckdb_views() WHERE NOT internal AND database_name = current_database()"


def create_views(
    warehouse, names: Sequence[str] | None = None, *, missing: Iterable[str] = ()
) -> list[str]:
    """(Re)create views in the warehouse in one short transaction; returns the views created.

    ``names`` (default: all) are (re)created; ``missing`` are created only if the file does not
    have them yet. ``warehouse`` is a :class:`~testio_pipeline.warehouse.Warehouse`; its schema
    is migrated first if needed. Missing views that a requested view reads are created with it,
    so any one view can be built on a fresh file. DuckLake keeps no comments on a view's
    columns, so on a lake those are left out (the view's own comment and the data dictionary
    still describe them).
    """
    def body(con) -> list[str]:
        existing = {r[0] for r in merge.run(con, EXISTING_VIEWS_SQL)}
        wanted = set(VIEWS if names is None else names) | (set(missing) - existing)
        statements = [
            stmt
            for stmt in create_views_sql(wanted, existing)
            if not (warehouse.is_lake and stmt.startswith("COMMENT ON COLUMN"))
        ]
        if statements:  # one round trip: a view comes with a comment per column
            merge.run(con, ";\n".join(statements))
        return statements

    statements, _ = warehouse._db.write(body)  # noqa: SLF001 — same package; the one write path
    return [s.split()[4] for s in statements if s.startswith("CREATE OR REPLACE VIEW")]
