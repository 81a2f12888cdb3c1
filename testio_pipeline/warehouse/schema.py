"""The warehouse schema, declared once as data; DDL, comments and migrations are generated from it.

``TABLES`` describes the *current* schema. Every table and column carries the schema version
that introduced it (``since``), so a later migration can be generated from the same data
(``schema_versions.add_columns_sql``) instead of repeating column definitions by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from testio_pipeline.entities import ENTITIES, Entity



@dataclass(frozen=True)
class Column:
    """One column: DuckDB type, a sentence for analysts, and whether it is part of the key."""

    name: str
    type: str
    description: str
    primary_key: bool = False
    not_null: bool = False
    default: str | None = None  # SQL expression
    since: int = 1

    def ddl(self, constraints: bool = True) -> str:
        """The column definition as used in CREATE TABLE / ADD COLUMN.

        Without ``constraints`` (DuckLake: no keys, no sequences) a key column is plain NOT
        NULL and a default drawn from a sequence is left out (writes then give the value).
        """
        parts = [self.name, self.type]
        if self.default is not None and (constraints or "nextval(" not in self.default):
            parts.append(f"DEFAULT {self.default}")
        # A PRIMARY KEY clause already makes its columns NOT NULL; without one, say it here.
        if (self.not_null or self.primary_key) and not (self.primary_key and constraints):
            parts.append("NOT NULL")
        return " ".join(parts)


@dataclass(frozen=True)
class Table:
    """One table: its columns, a description for analysts, and the version that created it."""

    name: str
    description: str
    columns: tuple[Column, ...]
    since: int = 1
    sequences: tuple[str, ...] = field(default=())  # created just before the table
    # An append-only log keeps its key unindexed: an index would cost every write time and
    # memory for a key only its own writes make (the primary_key_unique check still checks it).
    indexed: bool = True

    @property
    def primary_key(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.primary_key)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def soft_deletes(self) -> bool:
        """Entity tables keep vanished rows and mark them with ``deleted_at``."""
        return "deleted_at" in self.column_names

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name}.{name}")

    def create_sql(
        self, *, version: int | None = None, if_not_exists: bool = False, constraints: bool = True
    ) -> list[str]:
        """CREATE statements for this table with the columns that existed at ``version``;
        without ``constraints``, no primary key and no sequences (see ``Column.ddl``)."""
        cols = [c for c in self.columns if version is None or c.since <= version]
        constraints = constraints and self.indexed
        body = [c.ddl(constraints) for c in cols]
        key = [c.name for c in cols if c.primary_key]
        if key and constraints:
            body.append(f"PRIMARY KEY ({', '.join(key)})")
        exists = "IF NOT EXISTS " if if_not_exists else ""
        seqs = [f"CREATE SEQUENCE {exists}{s}" for s in self.sequences] if constraints else []
        return seqs + [f"CREATE TABLE {exists}{self.name} (\n  " + ",\n  ".join(body) + "\n)"]

    def comment_sql(self) -> list[str]:
        """COMMENT ON statements for the table and every column."""
        stmts = [f"COMMENT ON TABLE {self.name} IS {sql_literal(self.description)}"]
        stmts += [
            f"COMMENT ON COLUMN {self.name}.{c.name} IS {sql_literal(c.description)}"
            for c in self.columns
        ]
        return stmts

    def arrow_schema(self, names: list[str] | tuple[str, ...]) -> pa.Schema:
        """The Arrow schema for a frame holding ``names`` of this table's columns."""
        return pa.schema([(n, arrow_type(self.column(n).type)) for n in names])


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_ARROW_TYPES = {
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "VARCHAR": pa.string(),
    "JSON": pa.string(),  # DuckDB casts the text to JSON on insert
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
}


def arrow_type(duck_type: str) -> pa.DataType:
    if duck_type.endswith("[]"):
        return pa.list_(arrow_type(duck_type[:-2]))
    return _ARROW_TYPES[duck_type]


# --- the declaration ----------------------------------------------------------------------


def _id(what: str) -> Column:
    return Column("id", "BIGINT", f"TestIO id of the {what}, as in the API.", primary_key=True)


def _tracking(what: str, hashed: bool = True) -> tuple[Column, ...]:
    """Columns every mirrored entity table ends with."""
    cols = []
    if hashed:
        cols += [
            Column("raw", "JSON", f"The complete {what} object as the API returned it (test-environment credentials removed)."),
            Column("content_hash", "VARCHAR", f"MD5 of the {what}'s content; used to notice when the API changed it.", not_null=True),
        ]
    cols += [
        Column("synced_at", "TIMESTAMPTZ", f"When this {what} was first stored or last changed by a sync (UTC).", not_null=True),
        Column("deleted_at", "TIMESTAMPTZ", f"When a complete sync no longer found this {what} in the API (UTC); empty while it still exists."),
    ]
    return tuple(cols)


_SYNC_COUNTS = (
    ("products_synced", "Products written in this run."),
    ("features_refreshed", "Features written in this run."),
    ("user_stories_refreshed", "User stories written in this run."),
    ("tests_discovered", "Tests seen for the first time in this run."),
    ("tests_updated", "Known tests whose content changed in this run."),
    ("bugs_refreshed", "Bugs written in this run."),
    ("rows_marked_deleted", "Rows across all tables marked deleted because the API no longer lists them."),
    ("api_requests", "HTTP requests made to the TestIO API in this run."),
    ("retries", "Requests that had to be retried (rate limits, timeouts, server errors)."),
)

_TABLE_LIST = (
    Table(
        "schema_migrations",
        "Schema versions applied to this warehouse file (bookkeeping for upgrades).",
        (
            Column("version", "INTEGER", "Schema version number.", primary_key=True),
            Column("applied_at", "TIMESTAMPTZ", "When this version was applied (UTC).", not_null=True),
            Column("description", "VARCHAR", "What this version changed."),
        ),
        since=0,  # created by the migration runner itself, before version 1
    ),
    Table(
        "products",
        "TestIO products (apps or websites under test) visible to the API token.",
        (
            _id("product"),
            Column("name", "VARCHAR", "Product name."),
            Column("type", "VARCHAR", "Kind of product: website, mobile_app_ios, mobile_app_android, mobile_app_windows, streaming_app or gaming."),
            Column("description", "VARCHAR", "Product description entered in TestIO."),
            Column("default_section_id", "BIGINT", "Id of the product's default section."),
            Column("has_sections", "BOOLEAN", "True when the product is split into sections (features and user stories are then listed per section)."),
            *_tracking("product"),
            Column("features_synced_at", "TIMESTAMPTZ", "When all of this product's features were last fetched completely (UTC)."),
            Column("user_stories_synced_at", "TIMESTAMPTZ", "When all of this product's user stories were last fetched completely (UTC)."),
            Column("tests_synced_at", "TIMESTAMPTZ", "When this product's whole test list was last fetched completely (UTC)."),
            Column("bugs_synced_at", "TIMESTAMPTZ", "When the bugs of all this product's tests were last fetched completely (UTC)."),
        ),
    ),
    Table(
        "sections",
        "Sections (parts) of sectioned products; features and user stories are organised by section.",
        (
            Column("id", "BIGINT", "TestIO id of the section (unique across products).", primary_key=True),
            Column("product_id", "BIGINT", "Product the section belongs to (products.id)."),
            Column("name", "VARCHAR", "Section name."),
            *_tracking("section", hashed=False),
        ),
    ),
    Table(
        "features",
        "Features of a product: the areas testers are asked to test.",
        (
            _id("feature"),
            Column("product_id", "BIGINT", "Product the feature belongs to (products.id)."),
            Column("title", "VARCHAR", "Feature title."),
            Column("description", "VARCHAR", "Feature description."),
            Column("howtofind", "VARCHAR", "Instructions for testers on how to reach the feature."),
            Column("user_story_titles", "VARCHAR[]", "Titles of the feature's user stories, as the API lists them on the feature."),
            *_tracking("feature"),
        ),
    ),
    Table(
        "feature_sections",
        "Which sections list which features; a feature can appear in several sections.",
        (
            Column("feature_id", "BIGINT", "The feature (features.id).", primary_key=True),
            Column("section_id", "BIGINT", "A section that lists the feature (sections.id).", primary_key=True),
            Column("product_id", "BIGINT", "Product of the feature (products.id)."),
        ),
    ),
    Table(
        "user_stories",
        "User stories: concrete things a user does with a feature, which testers check.",
        (
            _id("user story"),
            Column("product_id", "BIGINT", "Product the user story belongs to (products.id)."),
            Column("section_id", "BIGINT", "Section the story was listed under (sections.id); empty for products without sections."),
            Column("feature_id", "BIGINT", "Feature whose story list names this story's title (features.id); empty when no current feature names it."),
            Column("title", "VARCHAR", "User story text."),
            Column("path", "VARCHAR", "Where in the product the story applies (URL path or screen), as entered in TestIO."),
            *_tracking("user story"),
        ),
    ),
    Table(
        "tests",
        "Exploratory tests (test cycles) run on a product.",
        (
            _id("test"),
            Column("product_id", "BIGINT", "Product under test (products.id)."),
            Column("section_id", "BIGINT", "Section the test covers (sections.id); empty for products without sections."),
            Column("section_name", "VARCHAR", "Name of the section the test covers."),
            Column("title", "VARCHAR", "Test title."),
            Column("status", "VARCHAR", "Test status as the API reports it: initialized, customer_finalized, waiting, running, locked (can still change), archived or cancelled (final); unknown values are kept as-is."),
            Column("review_status", "VARCHAR", "TestIO's review status of the test."),
            Column("testing_type", "VARCHAR", "Kind of test: coverage, focused, rapid, usability or external; empty for a test-case test."),
            Column("goal", "VARCHAR", "What the test is meant to find out."),
            Column("instructions", "VARCHAR", "Instructions given to testers."),
            Column("out_of_scope", "VARCHAR", "What testers were told not to test."),
            Column("enable_low", "BOOLEAN", "Whether low-severity bugs could be reported."),
            Column("enable_high", "BOOLEAN", "Whether high-severity bugs could be reported."),
            Column("enable_critical", "BOOLEAN", "Whether critical bugs could be reported."),
            Column("start_at", "TIMESTAMPTZ", "When testing started (UTC)."),
            Column("end_at", "TIMESTAMPTZ", "When testing ended or is planned to end (UTC)."),
            Column("created_by", "VARCHAR", "Username of the person who created the test."),
            Column("submitted_by", "VARCHAR", "Username of the person who submitted the test."),
            Column("test_environment_id", "BIGINT", "Id of the test environment used (login details are never stored)."),
            Column("test_environment_title", "VARCHAR", "Name of the test environment used."),
            Column("test_environment_url", "VARCHAR", "URL of the test environment used."),
            *_tracking("test")[:3],
            Column("bugs_synced_at", "TIMESTAMPTZ", "When all bugs of this test were last fetched completely (UTC)."),
            _tracking("test")[3],
        ),
    ),
    Table(
        "test_features",
        "Features included in a test, with the kinds of bugs allowed for each.",
        (
            Column("id", "BIGINT", "TestIO id of the feature-in-this-test (bugs refer to it as test_feature_id).", primary_key=True),
            Column("test_id", "BIGINT", "The test (tests.id).", primary_key=True),
            Column("feature_id", "BIGINT", "The product feature (features.id)."),
            Column("title", "VARCHAR", "Feature title as shown on the test."),
            Column("enable_default", "BOOLEAN", "Whether functional bugs could be reported on this feature."),
            Column("enable_content", "BOOLEAN", "Whether content bugs could be reported on this feature."),
            Column("enable_visual", "BOOLEAN", "Whether visual bugs could be reported on this feature."),
        ),
    ),
    Table(
        "test_platforms",
        "Platforms a test asks for: one row per requirement (an operating system of a device category, with a version range and browsers). Rows of a deleted test stay; join tests (deleted_at IS NULL) to leave them out.",
        (
            Column("test_id", "BIGINT", "The test (tests.id).", primary_key=True),
            Column("position", "INTEGER", "0-based position of the requirement in the test's list, in the API's order.", primary_key=True),
            Column("category", "VARCHAR", "Device category, e.g. Computers, Smartphones."),
            Column("operating_system", "VARCHAR", "Operating system asked for, e.g. Windows, iOS."),
            Column("min_os_version", "VARCHAR", "Lowest version of that operating system asked for."),
            Column("max_os_version", "VARCHAR", "Highest version asked for; empty when any newer one will do."),
            Column("browsers", "VARCHAR[]", "Browsers asked for on that platform (empty for apps)."),
        ),
        since=4,
    ),
    Table(
        "bugs",
        "Bugs reported by testers in tests.",
        (
            _id("bug"),
            Column("product_id", "BIGINT", "Product the bug was found in (products.id)."),
            Column("test_id", "BIGINT", "Test the bug was reported in (tests.id)."),
            Column("test_feature_id", "BIGINT", "Feature-in-test the bug was reported on (test_features.id)."),
            Column("feature_id", "BIGINT", "Product feature the bug was reported on (features.id)."),
            Column("title", "VARCHAR", "Bug title."),
            Column("severity", "VARCHAR", "Severity: critical, high, low, visual, content or custom; unknown values are kept as-is."),
            Column("status", "VARCHAR", "Bug status: accepted, rejected or forwarded (forwarded is shown as 'open' in TestIO)."),
            Column("auto_accepted", "BOOLEAN", "True when an accepted bug was accepted automatically rather than by a person."),
            Column("known", "BOOLEAN", "True when the bug was marked as already known."),
            Column("steps", "VARCHAR[]", "Steps to reproduce, one entry per step."),
            Column("actual_result", "VARCHAR", "What happened."),
            Column("expected_result", "VARCHAR", "What should have happened."),
            Column("reported_at", "TIMESTAMPTZ", "When the bug was reported (UTC)."),
            Column("exported_at", "TIMESTAMPTZ", "When the bug was exported to the customer's bug tracker (UTC); empty if never."),
            Column("author_name", "VARCHAR", "Name of the tester who reported the bug."),
            Column("language", "VARCHAR", "Language the bug report is written in."),
            Column("location", "VARCHAR", "Where in the product the bug occurs (URL or screen)."),
            *_tracking("bug"),
            Column("rejection_reason", "VARCHAR", "For a rejected bug: the key of the standard rejection comment it carries (known_bug, not_reproducible, intended_behavior, irrelevant, device_not_relevant, ignored_instructions, request_timeout, ...; see reject_reasons), or other when its comments carry none; empty when the bug is not rejected.", since=4),
        ),
    ),
    Table(
        "bug_devices",
        "Devices a bug was found on: one row per device the bug names and per browser of that device. Rows of a deleted bug stay; join bugs (deleted_at IS NULL) or use bug_facts to leave them out.",
        (
            Column("bug_id", "BIGINT", "The bug (bugs.id).", primary_key=True),
            Column("position", "INTEGER", "0-based position of the row among the bug's device rows, in the API's order.", primary_key=True),
            Column("category", "VARCHAR", "Device category, e.g. Smartphones, Computers, Tablets."),
            Column("operating_system", "VARCHAR", "Operating system of the device, e.g. Android, iOS, Windows."),
            Column("os_version", "VARCHAR", "Version of that operating system; empty when the API does not say."),
            Column("device", "VARCHAR", "Device model, e.g. Google Pixel 7."),
            Column("vendor", "VARCHAR", "Maker of the device."),
            Column("browser", "VARCHAR", "A browser used on that device; empty when the device lists none (apps)."),
        ),
        since=4,
    ),
    Table(
        "bug_comments",
        "Comments on bugs by testers, customers and TestIO (a rejection posts the reason's default comment). Rows of a deleted bug stay; join bugs to leave them out.",
        (
            Column("bug_id", "BIGINT", "The bug (bugs.id).", primary_key=True),
            Column("position", "INTEGER", "0-based position of the comment in the bug's list, in the API's order.", primary_key=True),
            Column("comment_id", "BIGINT", "TestIO id of the comment."),
            Column("author_name", "VARCHAR", "Who wrote it (a tester, a customer's username, or TestIO)."),
            Column("body", "VARCHAR", "The comment text."),
            Column("created_at", "TIMESTAMPTZ", "When it was written (UTC); empty when the API does not say."),
        ),
        since=4,
    ),
    Table(
        "bug_report_fields",
        "Custom report fields a bug carries (the key/value pairs of report.content.data, configured per customer). Rows of a deleted bug stay; join bugs to leave them out.",
        (
            Column("bug_id", "BIGINT", "The bug (bugs.id).", primary_key=True),
            Column("position", "INTEGER", "0-based position of the field in the bug's report, in the API's order.", primary_key=True),
            Column("configuration_id", "BIGINT", "Id of the custom report configuration the fields come from."),
            Column("key", "VARCHAR", "Field name, as configured."),
            Column("value", "VARCHAR", "Field value as text (a number or list is kept as its JSON text)."),
        ),
        since=4,
    ),
    Table(
        "reject_reasons",
        "The rejection reasons bug comments are matched against to derive bugs.rejection_reason: the customer's list from the API, completed with TestIO's standard list; replaced with every bugs write.",
        (
            Column("key", "VARCHAR", "Reason key, e.g. known_bug; the value of bugs.rejection_reason.", primary_key=True),
            Column("name", "VARCHAR", "Readable name of the reason."),
            Column("default_comment", "VARCHAR", "The comment TestIO posts on a bug rejected for this reason; a comment containing it (case ignored) gives the reason.", not_null=True),
            Column("source", "VARCHAR", "api (listed by bugs/reject_reasons) or standard (TestIO's standard list: the API did not list it, or answered 404)."),
            Column("synced_at", "TIMESTAMPTZ", "When a sync last wrote the list (UTC); empty for the standard list the schema starts with."),
        ),
        since=4,
    ),
    Table(
        "sync_events",
        "One row per pipeline run that synced data from TestIO: when, how, and what it changed.",
        (
            Column("run_id", "VARCHAR", "Id of the pipeline run.", primary_key=True),
            Column("trigger", "VARCHAR", "What started the run (e.g. sensor, schedule, manual)."),
            Column("mode", "VARCHAR", "Kind of sync (e.g. full or incremental)."),
            Column("started_at", "TIMESTAMPTZ", "When the run started (UTC)."),
            Column("finished_at", "TIMESTAMPTZ", "When the run finished (UTC); empty while running."),
            Column("status", "VARCHAR", "running, success, partial (some data could not be fetched) or failed."),
            *(Column(name, "BIGINT", text) for name, text in _SYNC_COUNTS),
            Column("error", "VARCHAR", "Error message when the run failed or was partial."),
        ),
    ),
    Table(
        "rejected_records",
        "API objects that could not be read (e.g. missing required fields); kept for inspection instead of being dropped. One row per entity, record id and content: a record that stays malformed is counted, not appended again.",
        (
            Column("id", "BIGINT", "Running number of the rejection.", primary_key=True, default="nextval('rejected_records_id_seq')"),
            Column("run_id", "VARCHAR", "Pipeline run that last saw the object (sync_events.run_id)."),
            Column("entity", "VARCHAR", "Entity the object belongs to (products, features, user_stories, tests, bugs)."),
            Column("product_id", "BIGINT", "Product the object was fetched for, if known."),
            Column("record_id", "VARCHAR", "The object's id as sent by the API, if any."),
            Column("content_hash", "VARCHAR", "MD5 of the object as stored in raw: a changed object is a new row.", since=3),
            Column("reason", "VARCHAR", "Why the object could not be read (as last seen)."),
            Column("raw", "JSON", "The object as the API sent it (test-environment credentials removed)."),
            Column("first_seen_at", "TIMESTAMPTZ", "When this content was first seen (UTC).", not_null=True, since=3),
            Column("last_seen_at", "TIMESTAMPTZ", "When this content was last seen (UTC).", not_null=True, since=3),
            Column("times_seen", "BIGINT", "How many writes (runs) met this content.", not_null=True, default="1", since=3),
        ),
        sequences=("rejected_records_id_seq",),
    ),
    Table(
        "problematic_records",
        "Spots in API lists that fail every time (e.g. one broken test on a page, or one test's bug list); the records there could not be read. One row per spot, kept with its history.",
        (
            Column("product_id", "BIGINT", "Product whose list has the problem (products.id).", primary_key=True),
            Column("entity", "VARCHAR", "Which list: tests (positions in a product's test list) or bugs (a test's bug list).", primary_key=True),
            Column("spot", "VARCHAR", "What identifies the spot across runs: 'before test <id>' (the test just after the failing positions; new tests arrive at the top, so it stays while offsets shift), 'at the end of the list', or 'test <id>' for a bug list.", primary_key=True, since=3),
            Column("range_start", "BIGINT", "First failing position in the list as last seen (0-based offset, newest first); the test id for a bug list."),
            Column("range_end", "BIGINT", "Last failing position in the list (inclusive), as last seen."),
            Column("neighbour_ids", "BIGINT[]", "Ids of the records just before and after the failing positions, to help find the broken record."),
            Column("error", "VARCHAR", "The error the API returned for these positions (as last seen)."),
            Column("first_seen_at", "TIMESTAMPTZ", "When the problem was first seen (UTC).", not_null=True),
            Column("last_seen_at", "TIMESTAMPTZ", "When the problem was last seen (UTC).", not_null=True),
            Column("times_seen", "BIGINT", "How many runs met the problem.", not_null=True, default="1", since=3),
            Column("times_reopened", "BIGINT", "How often the problem came back after being resolved.", not_null=True, default="0", since=3),
            Column("run_id", "VARCHAR", "Pipeline run that last saw the problem (sync_events.run_id)."),
            Column("resolved_at", "TIMESTAMPTZ", "When a complete fetch of the list no longer hit the problem (UTC); empty while unresolved."),
        ),
    ),
)

HISTORY_VERSION = 5
CHANGE_KINDS = ("first_seen", "changed", "restored", "deleted")


def _history_table(entity: Entity, tables: dict[str, Table]) -> Table:
    """The observed-history table of an entity with a ``History`` declaration: one row per row
    of the entity and sync that saw it first, or saw one of its tracked fields changed, or saw it
    vanish or come back. Each tracked field is an old_/new_ pair of its entity column's type."""
    history = entity.history
    assert history is not None
    what = entity.name[:-1]
    source = tables[entity.name]
    parent = entity.synced_in[0]
    pairs = tuple(
        col
        for f in history.fields
        for col in (
            Column(f"old_{f}", source.column(f).type, f"{f} as the sync before saw it; empty on a first sighting (change first_seen)."),
            Column(f"new_{f}", source.column(f).type, f"{f} as this sync saw it; empty when the {what} was deleted upstream (change deleted)."),
        )
    )
    return Table(
        history.table,
        f"Observed history of {entity.name}: one row each time a sync saw a {what} for the first time, saw one of "
        f"{', '.join(history.fields)} change, or saw the {what} deleted upstream or back again; a sync that sees nothing "
        f"new writes no row. The change happened somewhere between previous_observed_at and observed_at (the API keeps "
        f"no history; a mirror only knows what its syncs saw). An existing mirror's history starts at its first sync "
        f"after schema version {HISTORY_VERSION}, with first sightings.",
        (
            Column(history.key, "BIGINT", f"The {what} ({entity.name}.id).", primary_key=True),
            Column("change_number", "BIGINT", f"The row's number among the {what}'s history rows, in the order they were observed (1: its first sighting).", primary_key=True),
            Column("product_id", "BIGINT", f"Product of the {what} (products.id)."),
            Column("change", "VARCHAR", f"first_seen (old_ columns empty), changed, restored (back after a deletion) or deleted (new_ columns empty)."),
            *pairs,
            Column("observed_at", "TIMESTAMPTZ", "When the sync that saw this ran (UTC): the change happened at or before it.", not_null=True),
            Column(
                "previous_observed_at",
                "TIMESTAMPTZ",
                f"The last sync time before this one known to have seen the {what} as the old_ columns say (the later of its "
                f"row's last write and {parent}.{entity.name}_synced_at; for a new {what}, the last complete look at its "
                f"{parent[:-1]} that did not find it): the change happened after it. Empty when unknown (a first sighting of a "
                f"{what} stored before the history began, or the first look).",
            ),
            Column("run_id", "VARCHAR", "Pipeline run that saw it (sync_events.run_id); empty for a write outside a run."),
        ),
        since=HISTORY_VERSION,
        indexed=False,
    )


TABLES: dict[str, Table] = {t.name: t for t in _TABLE_LIST}
TABLES |= {e.history.table: _history_table(e, TABLES) for e in ENTITIES if e.history is not None}
ENTITY_TABLES = tuple(name for name, t in TABLES.items() if t.soft_deletes)
SYNC_COUNT_COLUMNS = tuple(name for name, _ in _SYNC_COUNTS)
SYNC_STATUSES = ("running", "success", "partial", "failed")
