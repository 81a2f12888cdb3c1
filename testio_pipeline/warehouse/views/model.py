"""How an analyst view is declared (``View``), and the SQL pieces the views share.

Each :class:`View` carries its SELECT, a description and one :class:`~..schema.Column` per
output column (type as DESCRIBE reports it, and a sentence for analysts). From that come
the ``CREATE OR REPLACE VIEW`` statement, ``COMMENT ON VIEW`` / ``COMMENT ON COLUMN`` for
every column (``CREATE OR REPLACE`` drops them, so they are re-applied after every creation),
the data dictionary (docs/data-dictionary.md) and the column schema shown in Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass

from testio_pipeline.domain.vocabulary import BUG_SEVERITIES, TEST_STATUSES

from ..schema import Column, sql_literal

# The readable bug statuses, in the order they are counted.
BUG_STATUS_LABELS = ("open", "accepted", "auto-accepted", "rejected")
# A bug's readable status, from the API's status of bug ``b`` (bug_overview.status, the
# search macro's filter, the quality report).
READABLE_BUG_STATUS = """CASE
        WHEN b.status = 'accepted' AND b.auto_accepted THEN 'auto-accepted'
        WHEN b.status = 'accepted' THEN 'accepted'
        WHEN b.status = 'forwarded' THEN 'open'
        ELSE b.status
    END"""
# Test statuses as the API reports them (tests.status), counted per product.
# In lifecycle order: initialized → customer_finalized (set up by the customer) → waiting →
# running → locked (testing over, bugs still reviewed) → archived; or cancelled.
TEST_STATUS_COLUMNS = TEST_STATUSES
# A feature counts as "tested" by a test that has started.
STARTED_TEST_STATUSES = ("running", "locked", "archived")


# Declared type → the spelling DESCRIBE uses (views declare theirs in that spelling already).
_TYPE_SPELLING = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}


def describe_type(declared: str) -> str:
    """A declared column type as DuckDB's DESCRIBE prints it (lists keep their ``[]``)."""
    if declared.endswith("[]"):
        return describe_type(declared[:-2]) + "[]"
    return _TYPE_SPELLING.get(declared, declared)


@dataclass(frozen=True)
class View:
    """One analyst view: its SELECT, what it is for, its columns, and what it reads."""

    name: str
    description: str
    select: str
    columns: tuple[Column, ...]
    reads: tuple[str, ...]  # tables and views it selects from (lineage in Dagster)
    order_by: str  # how its preview is sorted
    kpis: str  # one-row SELECT over the view: numeric KPIs for Dagster metadata
    preview: tuple[str, ...] = ()  # columns shown in the Markdown preview (default: all)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def create_sql(self) -> list[str]:
        """CREATE OR REPLACE VIEW, then the comments (which the replace just dropped)."""
        return [f"CREATE OR REPLACE VIEW {self.name} AS\n{self.select.strip()}", *self.comment_sql()]

    def comment_sql(self) -> list[str]:
        stmts = [f"COMMENT ON VIEW {self.name} IS {sql_literal(self.description)}"]
        stmts += [
            f"COMMENT ON COLUMN {self.name}.{c.name} IS {sql_literal(c.description)}"
            for c in self.columns
        ]
        return stmts

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name}.{name}")


def col(name: str, type_: str, description: str) -> Column:
    return Column(name, type_, description)


def count_filters(prefix: str = "") -> str:
    """Bug counts by severity and by readable status over bug_overview rows."""
    sev = [f"count(*) FILTER (WHERE {prefix}severity = '{s}') AS {s}_bugs" for s in BUG_SEVERITIES]
    status = [
        f"count(*) FILTER (WHERE {prefix}status = '{s}') AS {s.replace('-', '_')}_bugs"
        for s in BUG_STATUS_LABELS
    ]
    return ",\n        ".join(["count(*) AS bugs", *sev, *status])


def bug_count_columns(per: str) -> tuple[Column, ...]:
    cols = [col("bugs", "BIGINT", f"Bugs reported {per} (deleted bugs excluded).")]
    cols += [col(f"{s}_bugs", "BIGINT", f"Bugs of severity {s} {per}.") for s in BUG_SEVERITIES]
    cols += [
        col("open_bugs", "BIGINT", f"Bugs {per} still open (forwarded to the customer, not yet decided)."),
        col("accepted_bugs", "BIGINT", f"Bugs {per} accepted by a person (auto-accepted ones not included)."),
        col("auto_accepted_bugs", "BIGINT", f"Bugs {per} accepted automatically."),
        col("rejected_bugs", "BIGINT", f"Bugs {per} rejected."),
    ]
    return tuple(cols)


def bug_count_select(alias: str) -> str:
    """coalesce(alias.x, 0) for every bug count column (LEFT JOINed counts)."""
    names = [c.name for c in bug_count_columns("")]
    return ",\n    ".join(f"coalesce({alias}.{n}, 0) AS {n}" for n in names)


ACCEPTANCE = (
    "round((accepted_bugs + auto_accepted_bugs)::DOUBLE"
    " / nullif(accepted_bugs + auto_accepted_bugs + rejected_bugs, 0), 3)"
)
ACCEPTANCE_DOC = (
    "Share of decided bugs that were accepted: (accepted + auto-accepted) / (accepted + "
    "auto-accepted + rejected), 0 to 1; empty when no bug was decided yet."
)


# --- the declaration ----------------------------------------------------------------------

