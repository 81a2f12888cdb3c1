"""Data checks on the mirrored entities: plain SQL over the warehouse, no Dagster.

Which entity gets which check is declared in the registry (``Entity.checks``); the Dagster
layer (``defs/testio/checks.py``) runs them right after each asset's write and turns each
``CheckOutcome`` into an asset check result. They read DuckDB read-only (short connections):

- ``primary_key_unique`` (blocking): no duplicate or empty keys in the asset's tables.
- ``references_resolve`` (blocking): every feature, user story and test points at a stored
  product, every bug at a stored test and product, every child row at its parent.
- ``no_credentials_in_raw`` (blocking, tests and bugs): no test-environment ``username``,
  ``password`` or ``access`` and not the API token in any stored JSON.
- ``USER_STORIES_RESOLVE`` (warn, on the entity that declares it: the user stories): rows
  matched and not matched to a feature are counted; it fails only for rows pointing at a
  feature that is not there (dangling).
- ``no_rejected_records_this_run`` (warn): records of this run that could not be typed.
- ``no_unreadable_positions`` (warn, tests and bugs): open problematic_records.

A blocking check that fails stops the run's downstream assets (bugs after tests, the
analyst views after the tables), so bad data does not travel further.
"""

from dataclasses import dataclass, field
from typing import Any, Callable

from .domain.credentials import CREDENTIAL_PATTERN
from .entities import (
    NO_CREDENTIALS_IN_RAW,
    NO_REJECTED_RECORDS,
    NO_UNREADABLE_POSITIONS,
    PRIMARY_KEY_UNIQUE,
    REFERENCES_RESOLVE,
    USER_STORIES_RESOLVE,
    Entity,
)
from .warehouse import TABLES, Warehouse

SAMPLE_ROWS = 10
# A failing blocking check stops the downstream assets; the others warn.
BLOCKING = frozenset({PRIMARY_KEY_UNIQUE, REFERENCES_RESOLVE, NO_CREDENTIALS_IN_RAW})


@dataclass(frozen=True)
class CheckOutcome:
    """One check's verdict; ``metadata`` holds plain values (dicts and lists are samples)."""

    name: str
    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    description: str | None = None

    @property
    def blocking(self) -> bool:
        return self.name in BLOCKING

def _one(wh: Warehouse, sql: str, params: Any = None) -> dict[str, Any]:
    return wh.records(sql, params)[0]


def _live(table: str, alias: str) -> str:
    """SQL condition: the row is live (tables without soft deletes: always)."""
    return f"{alias}.deleted_at IS NULL" if TABLES[table].soft_deletes else "TRUE"


def primary_key_unique(wh: Warehouse, entity: Entity, run_id: str | None = None) -> CheckOutcome:
    metadata: dict[str, Any] = {}
    bad = 0
    for table in entity.tables:
        key = ", ".join(TABLES[table].primary_key)
        nulls = " OR ".join(f"{c} IS NULL" for c in TABLES[table].primary_key)
        row = _one(
            wh,
            f"""SELECT (SELECT count(*) FROM {table}) AS rows,
                       (SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {table} GROUP BY {key} HAVING n > 1)) AS duplicates,
                       (SELECT count(*) FROM {table} WHERE {nulls}) AS null_keys""",
        )
        metadata[f"{table}_rows"] = int(row["rows"])
        metadata[f"{table}_duplicate_keys"] = int(row["duplicates"])
        metadata[f"{table}_null_keys"] = int(row["null_keys"])
        bad += int(row["duplicates"]) + int(row["null_keys"])
    return CheckOutcome(
        name=PRIMARY_KEY_UNIQUE,
        passed=bad == 0,
        metadata=metadata,
        description=None if bad == 0 else f"{bad} rows with a duplicate or empty primary key",
    )


def references_resolve(wh: Warehouse, entity: Entity, run_id: str | None = None) -> CheckOutcome:
    metadata: dict[str, Any] = {}
    orphans_total = 0
    for ref in entity.references:
        child, column, parent = ref.table, ref.column, ref.parent
        row = _one(
            wh,
            f"""SELECT count(*) FILTER (WHERE p.id IS NULL) AS orphans,
                       count(*) FILTER (WHERE p.id IS NOT NULL AND NOT ({_live(parent, 'p')})) AS to_deleted,
                       (list(c.{column}) FILTER (WHERE p.id IS NULL))[1:{SAMPLE_ROWS}] AS sample
                FROM {child} c LEFT JOIN {parent} p ON p.id = c.{column}
                WHERE {_live(child, 'c')}""",
        )
        name = f"{child}.{column}"
        metadata[f"{name} orphans"] = int(row["orphans"])
        # Live rows whose parent was deleted upstream: expected after deletions, shown only.
        metadata[f"{name} pointing at deleted {parent}"] = int(row["to_deleted"])
        if row["orphans"]:
            metadata[f"{name} orphan sample"] = list(row["sample"] or [])
        orphans_total += int(row["orphans"])
    return CheckOutcome(
        name=REFERENCES_RESOLVE,
        passed=orphans_total == 0,
        metadata=metadata,
        description=None if orphans_total == 0 else f"{orphans_total} rows point at a row that is not stored",
    )


def no_credentials_in_raw(
    wh: Warehouse, entity: Entity, run_id: str | None = None, token: str | None = None
) -> CheckOutcome:
    metadata: dict[str, Any] = {}
    found = 0
    sources = [(entity.name, "TRUE"), ("rejected_records", f"entity = '{entity.name}'")]
    for table, where in sources:
        row = _one(
            wh,
            f"""SELECT count(*) FILTER (WHERE regexp_matches(raw::VARCHAR, $pattern)) AS credentials,
                       count(*) FILTER (WHERE $token IS NOT NULL AND contains(raw::VARCHAR, $token)) AS token
                FROM {table} WHERE raw IS NOT NULL AND {where}""",
            {"pattern": CREDENTIAL_PATTERN, "token": token},
        )
        metadata[f"{table} rows with test-environment credentials"] = int(row["credentials"])
        metadata[f"{table} rows with the API token"] = int(row["token"])  # the count, never the token
        found += int(row["credentials"]) + int(row["token"])
    return CheckOutcome(
        name=NO_CREDENTIALS_IN_RAW,
        passed=found == 0,
        metadata=metadata,
        description=None if found == 0 else f"{found} stored JSON objects hold credentials",
    )


def resolves_to_features(wh: Warehouse, entity: Entity, run_id: str | None = None) -> CheckOutcome:
    row = _one(
        wh,
        f"""SELECT count(*) FILTER (WHERE s.feature_id IS NOT NULL AND f.id IS NOT NULL AND f.deleted_at IS NULL) AS matched,
                  count(*) FILTER (WHERE s.feature_id IS NULL) AS unmatched,
                  count(*) FILTER (WHERE s.feature_id IS NOT NULL AND (f.id IS NULL OR f.deleted_at IS NOT NULL)) AS dangling
           FROM {entity.name} s LEFT JOIN features f ON f.id = s.feature_id
           WHERE s.deleted_at IS NULL""",
    )
    matched, unmatched, dangling = (int(row[k]) for k in ("matched", "unmatched", "dangling"))
    return CheckOutcome(
        name=USER_STORIES_RESOLVE,
        passed=dangling == 0,
        metadata={"matched": matched, "unmatched": unmatched, "dangling": dangling},
        description=(
            f"{matched} stories matched to a feature, {unmatched} named by no current feature"
            + (f", {dangling} pointing at a missing or deleted feature" if dangling else "")
        ),
    )


def no_rejected_records_this_run(wh: Warehouse, entity: Entity, run_id: str | None = None) -> CheckOutcome:
    rows = wh.records(
        "SELECT record_id, product_id, reason FROM rejected_records WHERE run_id = ? AND entity = ? ORDER BY id",
        [run_id, entity.name],
    )
    sample = {
        f"{r['record_id'] or '(no id)'} (product {r['product_id']})": str(r["reason"])[:300]
        for r in rows[:SAMPLE_ROWS]
    }
    return CheckOutcome(
        name=NO_REJECTED_RECORDS,
        passed=not rows,
        metadata={"rejected": len(rows), "sample": sample},
        description=f"{len(rows)} records of this run could not be typed (rejected_records)" if rows else None,
    )


def no_unreadable_positions(wh: Warehouse, entity: Entity, run_id: str | None = None) -> CheckOutcome:
    rows = wh.records(
        """SELECT product_id, range_start, range_end, neighbour_ids, error, first_seen_at
           FROM problematic_records WHERE resolved_at IS NULL AND entity = ? ORDER BY product_id, range_start""",
        [entity.name],
    )
    sample = {
        f"product {r['product_id']} {r['range_start']}..{r['range_end']}": {
            "neighbour_ids": [int(i) for i in (r["neighbour_ids"] or [])],
            "since": str(r["first_seen_at"]),
            "error": str(r["error"])[:300],
        }
        for r in rows[:SAMPLE_ROWS]
    }
    return CheckOutcome(
        name=NO_UNREADABLE_POSITIONS,
        passed=not rows,
        metadata={"open_problems": len(rows), "sample": sample},
        description=f"{len(rows)} list positions could not be read (problematic_records)" if rows else None,
    )


CHECKS: dict[str, Callable[[Warehouse, Entity, str | None], CheckOutcome]] = {
    PRIMARY_KEY_UNIQUE: primary_key_unique,
    REFERENCES_RESOLVE: references_resolve,
    NO_CREDENTIALS_IN_RAW: no_credentials_in_raw,
    USER_STORIES_RESOLVE: resolves_to_features,
    NO_REJECTED_RECORDS: no_rejected_records_this_run,
    NO_UNREADABLE_POSITIONS: no_unreadable_positions,
}


def describe(check: str, entity: Entity) -> str:
    """What a check verifies on ``entity``, for the UI."""
    if check == PRIMARY_KEY_UNIQUE:
        return f"No duplicate or empty primary keys in {', '.join(entity.tables)}."
    if check == REFERENCES_RESOLVE:
        refs = ", ".join(f"{r.table}.{r.column} -> {r.parent}" for r in entity.references)
        return f"Every row points at a stored parent: {refs}."
    return {
        NO_CREDENTIALS_IN_RAW: "No test-environment username/password/access and no API token in stored JSON.",
        USER_STORIES_RESOLVE: "Counts stories matched to a feature and unmatched ones; warns on stories pointing at a missing feature.",
        NO_REJECTED_RECORDS: "Warns when this run met records it could not type (kept in rejected_records).",
        NO_UNREADABLE_POSITIONS: "Warns while list positions stay unreadable (open rows in problematic_records).",
    }[check]


def run_checks(wh: Warehouse, entity: Entity, run_id: str | None, token: str | None = None) -> list[CheckOutcome]:
    """Every check the registry declares for ``entity``, in declaration order; ``token`` is
    the run's API token, which no stored JSON may hold."""
    return [
        no_credentials_in_raw(wh, entity, run_id, token) if name == NO_CREDENTIALS_IN_RAW else CHECKS[name](wh, entity, run_id)
        for name in entity.checks
    ]
