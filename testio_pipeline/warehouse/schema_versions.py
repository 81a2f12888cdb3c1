"""The schema's versions: what each migration does to reach it, declared as data.

``schema.TABLES`` describes the latest schema; every table and column carries the version that
introduced it (``since``), so a migration creates tables and adds columns from the same
declaration (``create_tables_sql``, ``add_columns_sql``) instead of repeating them. Steps that
depend on the backend (keys and sequences exist in a DuckDB file, not in a DuckLake) are
objects that produce their SQL for it. ``migrations.py`` applies them.
"""

from __future__ import annotations

from dataclasses import dataclass

from testio_pipeline.domain.vocabulary import STANDARD_REJECT_REASONS

from .schema import TABLES, sql_literal


@dataclass(frozen=True)
class CreateTables:
    """A migration step: create the tables introduced in ``version``, as they were then. A step
    rather than SQL text, because the DDL depends on the backend (keys, sequences)."""

    version: int

    def statements(self, constraints: bool = True) -> list[str]:
        return [
            stmt
            for t in TABLES.values()
            if t.since == self.version
            for stmt in t.create_sql(version=self.version, constraints=constraints)
        ]


@dataclass(frozen=True)
class CreateTable:
    """A migration step: create one table as it is declared now (a rebuild under a new key);
    its sequence, if any, already exists."""

    name: str

    def statements(self, constraints: bool = True) -> list[str]:
        return TABLES[self.name].create_sql(constraints=constraints)[-1:]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    steps: tuple[str | CreateTables | CreateTable, ...]

    def statements(self, constraints: bool = True) -> list[str]:
        """The SQL of every step, for a backend with or without keys and sequences."""
        return [
            stmt
            for step in self.steps
            for stmt in ((step,) if isinstance(step, str) else step.statements(constraints))
        ]


def create_tables_sql(version: int) -> tuple[CreateTables, ...]:
    """The step creating the tables introduced in ``version``, as they were at that version."""
    return (CreateTables(version),)


def add_columns_sql(version: int) -> tuple[str, ...]:
    """ALTER TABLE … ADD COLUMN for columns introduced in ``version`` on older tables."""
    return tuple(
        f"ALTER TABLE {t.name} ADD COLUMN {c.ddl()}"
        for t in TABLES.values()
        if t.since < version
        for c in t.columns
        if c.since == version
    )


def _rebuild(name: str, copy: str) -> tuple[str | CreateTable, ...]:
    """Replace a table by its current declaration (a new key needs a new table), keeping its
    rows through ``copy``, an INSERT … SELECT from ``{name}_old``."""
    return (f"ALTER TABLE {name} RENAME TO {name}_old", CreateTable(name), copy, f"DROP TABLE {name}_old")


def _rebuild_rejected_records() -> tuple[str | CreateTable, ...]:
    """Rows of one entity, record id and content become one, counted by the runs that saw them."""
    content = "md5(coalesce(raw::VARCHAR, ''))"
    return (
        # A file created at version 1 by this code never had seen_at (it is no longer declared).
        "ALTER TABLE rejected_records ADD COLUMN IF NOT EXISTS seen_at TIMESTAMPTZ",
        *_rebuild("rejected_records", f"""INSERT INTO rejected_records
            (run_id, entity, product_id, record_id, content_hash, reason, raw, first_seen_at, last_seen_at, times_seen)
            SELECT arg_max(run_id, seen_at), entity, arg_max(product_id, seen_at), record_id, {content},
                   arg_max(reason, seen_at), arg_max(raw, seen_at), min(seen_at), max(seen_at),
                   count(DISTINCT coalesce(run_id, seen_at::VARCHAR))
            FROM rejected_records_old GROUP BY entity, record_id, {content}"""),
    )


# The spot of a test-list problem from its neighbour ids [before, after] as version 2 stored
# them (a missing neighbour was left out): the same words as ``ProblemRange.spot``.
_LEGACY_SPOT = """CASE
    WHEN entity = 'bugs' THEN 'test ' || range_start
    WHEN range_start = 0 AND coalesce(len(neighbour_ids), 0) >= 1 THEN 'before test ' || neighbour_ids[1]
    WHEN coalesce(len(neighbour_ids), 0) = 2 THEN 'before test ' || neighbour_ids[2]
    ELSE 'at the end of the list' END"""


def _rebuild_problematic_records() -> tuple[str | CreateTable, ...]:
    """Rows of one spot (a poison record that churned down its list) become one, open if any was."""
    return _rebuild("problematic_records", f"""INSERT INTO problematic_records
        (product_id, entity, spot, range_start, range_end, neighbour_ids, error,
         first_seen_at, last_seen_at, times_seen, times_reopened, run_id, resolved_at)
        SELECT product_id, entity, spot, arg_max(range_start, last_seen_at), arg_max(range_end, last_seen_at),
               arg_max(neighbour_ids, last_seen_at), arg_max(error, last_seen_at),
               min(first_seen_at), max(last_seen_at), count(*), count(*) - 1, arg_max(run_id, last_seen_at),
               CASE WHEN bool_or(resolved_at IS NULL) THEN NULL ELSE max(resolved_at) END
        FROM (SELECT *, {_LEGACY_SPOT} AS spot FROM problematic_records_old)
        GROUP BY product_id, entity, spot""")


# Append-only: a new version adds an entry (e.g. create_tables_sql(2) + add_columns_sql(2) +
# hand-written steps); comments are regenerated from TABLES after any migration.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", create_tables_sql(1)),
    # Every table, asset and record label now calls tests "tests".
    Migration(2, "problematic_records: entity 'exploratory_tests' is now 'tests'", (
        "UPDATE problematic_records SET entity = 'tests' WHERE entity = 'exploratory_tests'",
    )),
    Migration(3, "rejected_records: one row per entity, record id and content; problematic_records keyed by spot", (
        *_rebuild_rejected_records(),
        *_rebuild_problematic_records(),
    )),
    # Existing tests and bugs get their child rows and rejection_reason when they are next
    # fetched (the nightly full sync fetches every one); reject_reasons starts as the
    # standard list, so a rejected bug written before the next bug sync is matched too.
    Migration(4, "bug_devices, bug_comments, bug_report_fields, test_platforms, reject_reasons; bugs.rejection_reason", (
        *create_tables_sql(4),
        *add_columns_sql(4),
        "INSERT INTO reject_reasons (key, name, default_comment, source, synced_at) VALUES "
        + ", ".join(
            f"({sql_literal(key)}, {sql_literal(name)}, {sql_literal(comment)}, 'standard', NULL)"
            for key, name, comment in STANDARD_REJECT_REASONS
        ),
    )),
    # History cannot be recovered from the API: it starts at the first sync after this
    # version, with a first sighting of every row that sync sees.
    Migration(5, "bug_status_changes, test_status_changes: the observed history of bugs and tests", create_tables_sql(5)),
)
LATEST_VERSION = MIGRATIONS[-1].version


def bootstrap_sql(constraints: bool = True) -> list[str]:
    """Create the migrations table itself (idempotent)."""
    return TABLES["schema_migrations"].create_sql(if_not_exists=True, constraints=constraints)


def comment_sql() -> list[str]:
    return [stmt for t in TABLES.values() for stmt in t.comment_sql()]
