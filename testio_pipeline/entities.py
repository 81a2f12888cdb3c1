"""Each TestIO entity declared once, as data.

The assets, their checks, the refresh sensor's scope, the views' lineage, the metadata
readouts, the run-log counts and the warehouse write (its child tables, deletion scope,
per-parent sync times, compare columns, staging) are all derived from ``ENTITIES``; the
table layout lives in ``warehouse/schema.py`` (keys included), the fetching in the client
and the sync step named here, each record's columns and child rows in its record reader
(``domain/records.py``). Adding an entity means: one declaration, its record reader, its
tables (+ migration), its fetch. A child table: its ``Child`` here, its reader method, its
table (+ migration).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from .domain.vocabulary import FINAL_TEST_STATUSES

# Checks every entity asset carries; the others are switched on by the declaration.
PRIMARY_KEY_UNIQUE = "primary_key_unique"
REFERENCES_RESOLVE = "references_resolve"
NO_CREDENTIALS_IN_RAW = "no_credentials_in_raw"
NO_REJECTED_RECORDS = "no_rejected_records_this_run"
NO_UNREADABLE_POSITIONS = "no_unreadable_positions"
USER_STORIES_RESOLVE = "user_stories_resolve_to_features"


@dataclass(frozen=True)
class Reference:
    """Every live row of ``table`` must point at a stored ``parent`` row through ``column``."""

    table: str
    column: str
    parent: str


# Which stored rows of a child table a write replaces with the ones it brings:
FETCHED = "fetched"  # the rows of every parent the write carries
WRITTEN = "written"  # the rows of the parents it inserted or changed (a child unchanged with its parent)
COMPLETE = "complete"  # the rows of the complete parents of the entity's deletion scope (by its column)
MERGED = "merged"  # none: merged like an entity table (soft deletes, in the entity's deletion scope)


@dataclass(frozen=True)
class Child:
    """A table an entity's write fills from its records: ``rows`` names the record method that
    gives each record's rows as dicts of the table's columns; the write adds ``parent_key`` (the
    record's id) and, when the table has one, ``position`` (the row's index in the record)."""

    table: str
    parent_key: str
    rows: str
    replace: str = FETCHED
    compare: tuple[str, ...] = ()  # MERGED: the columns whose change rewrites a row


@dataclass(frozen=True)
class History:
    """The entity's observed history: each write adds a row to ``table`` for every row whose
    ``fields`` it sees for the first time, sees changed, restored or marked deleted, in the same
    transaction (``warehouse/history.py``); the table's columns follow from these fields."""

    table: str
    key: str  # the history table's column holding the entity's id
    fields: tuple[str, ...]  # entity columns tracked: old_<field> and new_<field> in the table


@dataclass(frozen=True)
class Readout:
    """What the UI shows of an entity after each write: the first rows and one row of KPIs."""

    preview: str  # SELECT of the preview rows (not deleted)
    kpis: str  # one-row SELECT; its numeric columns are plotted per materialization


@dataclass(frozen=True)
class Entity:
    """One mirrored TestIO entity: an asset, its tables, how it is fetched and checked."""

    name: str  # asset key, main table, and the label in rejected/problematic_records
    description: str  # the asset's one-line description
    step: str  # "module:function" of its Dagster-free sync step
    readout: Readout
    upstream: tuple[str, ...] = ()  # entities whose stored rows the step reads first
    children: tuple[Child, ...] = ()  # child tables the same write fills from the records
    also_writes: tuple[str, ...] = ()  # other tables its write fills (in its ``prepare`` hook)
    history: History | None = None  # fields whose observed changes the write records
    refers_to: tuple[Reference, ...] = ()  # the entity table's own references (children's are added)
    # The write. Deletions are detected among the rows whose parent in ``deletes_within`` (through
    # the entity's reference to it) the caller fetched completely; None: the whole table.
    deletes_within: str | None = "products"
    synced_in: tuple[str, ...] = ("products",)  # parents whose ``<name>_synced_at`` marks a complete fetch
    compare: tuple[str, ...] = ("content_hash",)  # a change in one of these rewrites a row
    derived: tuple[str, ...] = ()  # columns the ``prepare`` hook derives in SQL, not read from records
    prepare: str | None = None  # "module:function": derives the rows to merge from the framed ones
    after: str | None = None  # "module:function": runs after the write's transaction, in its own
    staged: bool = False  # large lists: framed into a Parquet stage while fetching
    lists_positions: bool = False  # can leave unreadable list positions (problematic_records)
    carries_credentials: bool = False  # its JSON may embed a test_environment
    extra_checks: tuple[str, ...] = ()

    @property
    def tables(self) -> tuple[str, ...]:
        history = (self.history.table,) if self.history else ()
        return (self.name, *(c.table for c in self.children), *self.also_writes, *history)

    @property
    def references(self) -> tuple[Reference, ...]:
        return (*self.refers_to, *(Reference(c.table, c.parent_key, self.name) for c in self.children))

    @property
    def scope_column(self) -> str | None:
        """The column through which a row belongs to its ``deletes_within`` parent."""
        if self.deletes_within is None:
            return None
        return next(r.column for r in self.refers_to if r.table == self.name and r.parent == self.deletes_within)

    @property
    def checks(self) -> tuple[str, ...]:
        names = [PRIMARY_KEY_UNIQUE, REFERENCES_RESOLVE]
        if self.carries_credentials:
            names.append(NO_CREDENTIALS_IN_RAW)
        names += [*self.extra_checks, NO_REJECTED_RECORDS]
        if self.lists_positions:
            names.append(NO_UNREADABLE_POSITIONS)
        return tuple(names)

    def sync_step(self) -> Callable[..., Any]:
        """The step function, imported on first use (the registry itself imports no I/O code)."""
        return load(self.step)


def load(spec: str) -> Callable[..., Any]:
    """The function a "module:function" declaration names."""
    module, function = spec.split(":")
    return getattr(importlib.import_module(module), function)


def _deleted(table: str) -> str:
    return f"(SELECT count(*) FROM {table} WHERE deleted_at IS NOT NULL) AS {table}_deleted"


_FINALS = ", ".join(f"'{s}'" for s in FINAL_TEST_STATUSES)

ENTITIES: tuple[Entity, ...] = (
    Entity(
        "products",
        "TestIO products in scope, with their sections.",
        "testio_pipeline.sync.products:sync_products",
        Readout(
            """SELECT id, name, type, has_sections, tests_synced_at, bugs_synced_at
               FROM products WHERE deleted_at IS NULL ORDER BY id""",
            f"""SELECT count(*) AS products,
                       count(*) FILTER (WHERE has_sections) AS products_with_sections,
                       (SELECT count(*) FROM sections WHERE deleted_at IS NULL) AS sections,
                       {_deleted("products")}
                FROM products WHERE deleted_at IS NULL""",
        ),
        children=(Child("sections", "product_id", "section_rows", MERGED, compare=("product_id", "name")),),
        deletes_within=None,
        synced_in=(),
    ),
    Entity(
        "features",
        "Features of each product, and the sections they belong to.",
        "testio_pipeline.sync.catalog:sync_features",
        Readout(
            """SELECT id, product_id, title, len(user_story_titles) AS user_stories
               FROM features WHERE deleted_at IS NULL ORDER BY id""",
            f"""SELECT count(*) AS features,
                       count(*) FILTER (WHERE len(coalesce(user_story_titles, [])) = 0)
                           AS features_without_user_stories,
                       round(count(*)::DOUBLE / nullif(count(DISTINCT product_id), 0), 2)
                           AS avg_features_per_product,
                       {_deleted("features")}
                FROM features WHERE deleted_at IS NULL""",
        ),
        upstream=("products",),
        children=(Child("feature_sections", "feature_id", "section_rows", COMPLETE),),
        refers_to=(Reference("features", "product_id", "products"),),
    ),
    Entity(
        "user_stories",
        "User stories of each product, matched to their feature.",
        "testio_pipeline.sync.catalog:sync_user_stories",
        Readout(
            """SELECT id, product_id, feature_id, title, path
               FROM user_stories WHERE deleted_at IS NULL ORDER BY id""",
            f"""SELECT count(*) AS user_stories,
                       count(*) FILTER (WHERE feature_id IS NULL) AS user_stories_without_feature,
                       {_deleted("user_stories")}
                FROM user_stories WHERE deleted_at IS NULL""",
        ),
        upstream=("features",),
        refers_to=(Reference("user_stories", "product_id", "products"),),
        compare=("content_hash", "feature_id"),  # a re-resolved feature is a change too
        derived=("feature_id",),
        prepare="testio_pipeline.warehouse.hooks:match_story_features",
        extra_checks=(USER_STORIES_RESOLVE,),
    ),
    Entity(
        "tests",
        "Exploratory tests of each product, with the features they cover and the platforms they ask for.",
        "testio_pipeline.sync.tests:sync_tests",
        Readout(
            """SELECT id, product_id, title, status, testing_type, start_at, end_at
               FROM tests WHERE deleted_at IS NULL ORDER BY start_at DESC NULLS LAST, id""",
            f"""SELECT count(*) AS tests,
                       count(*) FILTER (WHERE status = 'running') AS tests_running,
                       count(*) FILTER (WHERE status NOT IN ({_FINALS})) AS tests_not_final,
                       count(*) FILTER (WHERE bugs_synced_at IS NULL OR synced_at > bugs_synced_at)
                           AS tests_awaiting_bug_sync,
                       {_deleted("tests")}
                FROM tests WHERE deleted_at IS NULL""",
        ),
        upstream=("products",),
        children=(Child("test_features", "test_id", "feature_rows"), Child("test_platforms", "test_id", "platform_rows")),
        history=History("test_status_changes", "test_id", ("status", "review_status")),
        refers_to=(Reference("tests", "product_id", "products"),),
        staged=True,
        lists_positions=True,
        carries_credentials=True,
    ),
    Entity(
        "bugs",
        "Bugs reported in each product's exploratory tests, with their devices, comments, report fields and rejection reason.",
        "testio_pipeline.sync.bugs:sync_bugs",
        Readout(
            """SELECT id, test_id, severity, status, auto_accepted, title, reported_at
               FROM bugs WHERE deleted_at IS NULL ORDER BY reported_at DESC NULLS LAST, id""",
            f"""SELECT count(*) AS bugs,
                       count(*) FILTER (WHERE status = 'forwarded') AS open_bugs,
                       count(*) FILTER (WHERE severity = 'critical') AS critical_bugs,
                       round(count(*) FILTER (WHERE status = 'accepted')::DOUBLE
                             / nullif(count(*) FILTER (WHERE status IN ('accepted', 'rejected')), 0), 3)
                           AS acceptance_rate,
                       {_deleted("bugs")}
                FROM bugs WHERE deleted_at IS NULL""",
        ),
        upstream=("tests",),
        # A bug's children are in its raw JSON, so an unchanged bug keeps its rows: replacing
        # them too rewrote (and committed) every fetched bug's children each cycle. Children an
        # unchanged bug lacks (e.g. after the migration that added the table) are still added.
        children=(
            Child("bug_devices", "bug_id", "device_rows", WRITTEN),
            Child("bug_comments", "bug_id", "comment_rows", WRITTEN),
            Child("bug_report_fields", "bug_id", "report_rows", WRITTEN),
        ),
        also_writes=("reject_reasons",),
        history=History("bug_status_changes", "bug_id", ("status", "severity", "auto_accepted", "known")),
        refers_to=(Reference("bugs", "test_id", "tests"), Reference("bugs", "product_id", "products")),
        # Deletions only among the bugs of tests whose bugs were fetched completely.
        deletes_within="tests",
        synced_in=("tests", "products"),
        compare=("content_hash", "rejection_reason"),  # a new reason list is a change too
        derived=("rejection_reason",),
        prepare="testio_pipeline.warehouse.hooks:derive_rejection_reasons",
        after="testio_pipeline.warehouse.hooks:refresh_search_index",
        staged=True,
        lists_positions=True,
        carries_credentials=True,
    ),
)

ENTITY_BY_NAME: dict[str, Entity] = {e.name: e for e in ENTITIES}
# Which entity's step writes each table.
WRITER_OF_TABLE: dict[str, str] = {table: e.name for e in ENTITIES for table in e.tables}
