"""Data checks on the five TestIO assets, as Dagster asset checks.

One ``multi_asset_check`` per asset (one step each, several results). They read DuckDB
read-only through the Warehouse (short connections) right after the asset's write:

- ``primary_key_unique`` (blocking): no duplicate or empty keys in the asset's tables.
- ``references_resolve`` (blocking): every feature, user story and test points at a stored
  product, every bug at a stored test and product, every child row at its parent.
- ``no_credentials_in_raw`` (blocking, tests and bugs): no test-environment ``username``,
  ``password`` or ``access`` and not the API token in any stored JSON.
- ``user_stories_resolve_to_features`` (warn): matched and unmatched stories are counted;
  it fails only for stories pointing at a feature that is not there (dangling).
- ``no_rejected_records_this_run`` (warn): records of this run that could not be typed.
- ``no_unreadable_positions`` (warn, tests and bugs): open problematic_records.

A blocking check that fails stops the run's downstream assets (bugs after tests, the
analyst views after the tables), so bad data does not travel further.
"""

from typing import Any, Iterator

import dagster as dg
import numpy as np

from .domain.credentials import CREDENTIAL_PATTERN
from .resources import WarehouseResource
from .settings import Settings
from .warehouse import TABLES, Warehouse

SAMPLE_ROWS = 10

# Per asset: the tables it writes, and the references its rows must satisfy
# (child table, column, parent table; rows of soft-deleting tables count only while live).
ASSET_TABLES: dict[str, tuple[str, ...]] = {
    "products": ("products", "sections"),
    "features": ("features", "feature_sections"),
    "user_stories": ("user_stories",),
    "tests": ("tests", "test_features"),
    "bugs": ("bugs",),
}
REFERENCES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "products": (("sections", "product_id", "products"),),
    "features": (("features", "product_id", "products"), ("feature_sections", "feature_id", "features")),
    "user_stories": (("user_stories", "product_id", "products"),),
    "tests": (("tests", "product_id", "products"), ("test_features", "test_id", "tests")),
    "bugs": (("bugs", "test_id", "tests"), ("bugs", "product_id", "products")),
}
# Assets whose stored JSON can carry test-environment credentials (tests, and bugs that embed them).
CREDENTIAL_ASSETS = ("tests", "bugs")
# rejected_records.entity / problematic_records.entity of each asset.
REJECT_ENTITY = {name: name for name in ASSET_TABLES}
PROBLEM_ENTITY = {"tests": "exploratory_tests", "bugs": "bugs"}



def _plain(value: Any) -> Any:
    """numpy scalars and arrays (as pandas hands them out) to plain Python values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _one(wh: Warehouse, sql: str, params: Any = None) -> dict[str, Any]:
    frame = wh.query(sql, params)
    return {k: _plain(v) for k, v in frame.iloc[0].to_dict().items()}


def _live(table: str, alias: str) -> str:
    """SQL condition: the row is live (tables without soft deletes: always)."""
    return f"{alias}.deleted_at IS NULL" if TABLES[table].soft_deletes else "TRUE"


def primary_key_unique(wh: Warehouse, asset: str) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = {}
    bad = 0
    for table in ASSET_TABLES[asset]:
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
    return dg.AssetCheckResult(
        check_name="primary_key_unique",
        passed=bad == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=None if bad == 0 else f"{bad} rows with a duplicate or empty primary key",
    )


def references_resolve(wh: Warehouse, asset: str) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = {}
    orphans_total = 0
    for child, column, parent in REFERENCES[asset]:
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
            metadata[f"{name} orphan sample"] = dg.MetadataValue.json([v for v in (row["sample"] or [])])
        orphans_total += int(row["orphans"])
    return dg.AssetCheckResult(
        check_name="references_resolve",
        passed=orphans_total == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=None if orphans_total == 0 else f"{orphans_total} rows point at a row that is not stored",
    )


def no_credentials_in_raw(wh: Warehouse, asset: str) -> dg.AssetCheckResult:
    token = Settings.from_env().token
    metadata: dict[str, Any] = {}
    found = 0
    sources = [(ASSET_TABLES[asset][0], "TRUE"), ("rejected_records", f"entity = '{REJECT_ENTITY[asset]}'")]
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
    return dg.AssetCheckResult(
        check_name="no_credentials_in_raw",
        passed=found == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=None if found == 0 else f"{found} stored JSON objects hold credentials",
    )


def user_stories_resolve_to_features(wh: Warehouse) -> dg.AssetCheckResult:
    row = _one(
        wh,
        """SELECT count(*) FILTER (WHERE s.feature_id IS NOT NULL AND f.id IS NOT NULL AND f.deleted_at IS NULL) AS matched,
                  count(*) FILTER (WHERE s.feature_id IS NULL) AS unmatched,
                  count(*) FILTER (WHERE s.feature_id IS NOT NULL AND (f.id IS NULL OR f.deleted_at IS NOT NULL)) AS dangling
           FROM user_stories s LEFT JOIN features f ON f.id = s.feature_id
           WHERE s.deleted_at IS NULL""",
    )
    matched, unmatched, dangling = (int(row[k]) for k in ("matched", "unmatched", "dangling"))
    return dg.AssetCheckResult(
        check_name="user_stories_resolve_to_features",
        passed=dangling == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"matched": matched, "unmatched": unmatched, "dangling": dangling},
        description=(
            f"{matched} stories matched to a feature, {unmatched} named by no current feature"
            + (f", {dangling} pointing at a missing or deleted feature" if dangling else "")
        ),
    )


def no_rejected_records_this_run(wh: Warehouse, asset: str, run_id: str) -> dg.AssetCheckResult:
    frame = wh.query(
        "SELECT record_id, product_id, reason FROM rejected_records WHERE run_id = ? AND entity = ? ORDER BY id",
        [run_id, REJECT_ENTITY[asset]],
    )
    sample = {
        f"{r.record_id or '(no id)'} (product {r.product_id})": str(r.reason)[:300]
        for r in frame.head(SAMPLE_ROWS).itertuples(index=False)
    }
    return dg.AssetCheckResult(
        check_name="no_rejected_records_this_run",
        passed=frame.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"rejected": len(frame), "sample": dg.MetadataValue.json(sample)},
        description=None if frame.empty else f"{len(frame)} records of this run could not be typed (rejected_records)",
    )


def no_unreadable_positions(wh: Warehouse, asset: str) -> dg.AssetCheckResult:
    frame = wh.query(
        """SELECT product_id, range_start, range_end, neighbour_ids, error, first_seen_at
           FROM problematic_records WHERE resolved_at IS NULL AND entity = ? ORDER BY product_id, range_start""",
        [PROBLEM_ENTITY[asset]],
    )
    sample = {
        f"product {r.product_id} {r.range_start}..{r.range_end}": {
            "neighbour_ids": [int(i) for i in (r.neighbour_ids if r.neighbour_ids is not None else [])],
            "since": str(r.first_seen_at),
            "error": str(r.error)[:300],
        }
        for r in frame.head(SAMPLE_ROWS).itertuples(index=False)
    }
    return dg.AssetCheckResult(
        check_name="no_unreadable_positions",
        passed=frame.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"open_problems": len(frame), "sample": dg.MetadataValue.json(sample)},
        description=None if frame.empty else f"{len(frame)} list positions could not be read (problematic_records)",
    )


def _specs(asset: str) -> list[dg.AssetCheckSpec]:
    specs = [
        dg.AssetCheckSpec(
            "primary_key_unique", asset=asset, blocking=True,
            description=f"No duplicate or empty primary keys in {', '.join(ASSET_TABLES[asset])}.",
        ),
        dg.AssetCheckSpec(
            "references_resolve", asset=asset, blocking=True,
            description="Every row points at a stored parent: " + ", ".join(
                f"{c}.{col} -> {p}" for c, col, p in REFERENCES[asset]
            ) + ".",
        ),
    ]
    if asset in CREDENTIAL_ASSETS:
        specs.append(dg.AssetCheckSpec(
            "no_credentials_in_raw", asset=asset, blocking=True,
            description="No test-environment username/password/access and no API token in stored JSON.",
        ))
    if asset == "user_stories":
        specs.append(dg.AssetCheckSpec(
            "user_stories_resolve_to_features", asset=asset,
            description="Counts stories matched to a feature and unmatched ones; warns on stories pointing at a missing feature.",
        ))
    specs.append(dg.AssetCheckSpec(
        "no_rejected_records_this_run", asset=asset,
        description="Warns when this run met records it could not type (kept in rejected_records).",
    ))
    if asset in PROBLEM_ENTITY:
        specs.append(dg.AssetCheckSpec(
            "no_unreadable_positions", asset=asset,
            description="Warns while list positions stay unreadable (open rows in problematic_records).",
        ))
    return specs


def _build(asset: str) -> dg.AssetChecksDefinition:
    specs = _specs(asset)

    @dg.multi_asset_check(name=f"{asset}_checks", specs=specs, description=f"Data checks on {asset}.")
    def _checks(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> Iterator[dg.AssetCheckResult]:
        wh = warehouse.warehouse()
        names = {spec.name for spec in specs}
        yield primary_key_unique(wh, asset)
        yield references_resolve(wh, asset)
        if "no_credentials_in_raw" in names:
            yield no_credentials_in_raw(wh, asset)
        if "user_stories_resolve_to_features" in names:
            yield user_stories_resolve_to_features(wh)
        yield no_rejected_records_this_run(wh, asset, context.run.run_id)
        if "no_unreadable_positions" in names:
            yield no_unreadable_positions(wh, asset)

    return _checks


TESTIO_CHECKS = [_build(asset) for asset in ASSET_TABLES]
