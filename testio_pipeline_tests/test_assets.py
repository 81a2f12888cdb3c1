"""The five assets through Dagster (`dg.materialize` on a test instance) into a real DuckDB file."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from testio_pipeline.component.testio.assets import TESTIO_ASSETS
from testio_pipeline.component.resources import CustomerApiResource, RefreshResource, WarehouseResource
from testio_pipeline.warehouse import Warehouse

from .conftest import make_simulator

# Everything but the sync bookkeeping (which records *when* rows were last confirmed).
CONTENT_SQL = "SELECT COLUMNS(lambda c: c NOT LIKE '%synced_at') FROM {table} ORDER BY id"
ENTITY_TABLES = ["products", "features", "user_stories", "tests", "bugs"]


def materialize(
    sim, db_path, *, mode="full", instance=None, selection=None, product_ids=None, api=None, raise_on_error=True
):
    """Run the assets on ``instance``; by default against an in-process copy of ``sim``'s world."""
    resources = {
        "testio_api": api or CustomerApiResource.for_simulator(sim),
        "warehouse": WarehouseResource(path=str(db_path)),
        "refresh": RefreshResource(mode=mode, product_ids=product_ids),
    }
    return dg.materialize(
        TESTIO_ASSETS, resources=resources, instance=instance, selection=selection, raise_on_error=raise_on_error
    )


def truth_ids(sim) -> dict[str, set[int]]:
    products = sim.truth_products()
    pids = [p["id"] for p in products]
    return {
        "products": set(pids),
        "features": {f["id"] for pid in pids for f in sim.truth_features(pid)},
        "user_stories": {s["id"] for pid in pids for s in sim.truth_user_stories(pid)},
        "tests": {t["id"] for pid in pids for t in sim.truth_tests(pid)},
        "bugs": {b["id"] for pid in pids for b in sim.truth_bugs(pid)},
    }


def metadata_of(result, asset: str) -> dict:
    [mat] = [m for m in result.get_asset_materialization_events() if m.asset_key.to_user_string() == asset]
    return {k: getattr(v, "value", v) for k, v in mat.materialization.metadata.items()}


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def test_a_full_sync_mirrors_exactly_what_the_simulator_serves(tmp_path, instance):
    sim = make_simulator("tiny")
    db = tmp_path / "testio.duckdb"
    result = materialize(sim, db, instance=instance)
    assert result.success
    warehouse = Warehouse(db)
    truth = truth_ids(sim)
    for table in ENTITY_TABLES:
        assert warehouse.ids(table) == truth[table], table
        assert truth[table], f"the tiny world has {table}"
    meta = metadata_of(result, "bugs")
    assert meta["dagster/row_count"] == len(truth["bugs"])
    assert meta["source_is_simulator"] is True
    assert meta["rows_inserted"] == len(truth["bugs"])
    assert meta["api_requests"] > 0


def test_running_the_full_sync_twice_changes_nothing_and_inserts_nothing(tmp_path, instance):
    sim = make_simulator("tiny")
    db = tmp_path / "testio.duckdb"
    materialize(sim, db, instance=instance)
    before = {t: Warehouse(db).query(CONTENT_SQL.format(table=t)) for t in ENTITY_TABLES}
    second = materialize(sim, db, instance=instance)
    for table in ENTITY_TABLES:
        meta = metadata_of(second, table)
        assert meta["rows_inserted"] == 0, table
        assert meta["rows_updated"] == 0, table
        after = Warehouse(db).query(CONTENT_SQL.format(table=table))
        assert after.equals(before[table]), table
        counts = Warehouse(db).query(f"SELECT count(*) AS n, count(DISTINCT id) AS d FROM {table}")
        assert counts.n[0] == counts.d[0], f"duplicates in {table}"


def test_no_credential_reaches_the_duckdb_file(tmp_path, instance):
    sim = make_simulator("tiny")
    secrets = {
        value
        for p in sim.truth_products()
        for t in sim.truth_tests(p["id"])
        for key, value in t["test_environment"].items()
        if key in {"username", "password", "access"} and value
    }
    assert secrets
    db = tmp_path / "testio.duckdb"
    materialize(sim, db, instance=instance)
    blob = db.read_bytes()
    wal = db.with_suffix(".duckdb.wal")
    if wal.exists():
        blob += wal.read_bytes()
    for secret in secrets:
        assert secret.encode() not in blob, "a credential is stored in the DuckDB file"
    # And through SQL, in case the file is compressed: scan every text column.
    con = duckdb.connect(str(db), read_only=True)
    try:
        columns = con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE NOT internal AND schema_name = 'main' AND ("
            "data_type IN ('VARCHAR', 'JSON') OR data_type LIKE '%[]')"
        ).fetchall()
        for table, column in columns:
            text = " ".join(str(r[0]) for r in con.execute(f'SELECT "{column}"::VARCHAR FROM "{table}"').fetchall())
            for secret in secrets:
                assert secret not in text, f"{table}.{column} holds a credential"
    finally:
        con.close()


def test_the_simulator_is_announced_loudly_in_the_run_log(tmp_path, instance):
    sim = make_simulator("tiny")
    result = materialize(sim, tmp_path / "t.duckdb", instance=instance, selection=["products"])
    logs = [
        e.user_message for e in instance.all_logs(result.run_id) if e.user_message
    ]
    assert any("BUILT-IN TESTIO SIMULATOR" in m for m in logs)


def test_user_stories_are_matched_to_features_or_left_null(tmp_path, instance):
    sim = make_simulator("tiny")
    db = tmp_path / "t.duckdb"
    materialize(sim, db, instance=instance)
    rows = Warehouse(db).query(
        "SELECT s.id, s.title, s.feature_id, f.user_story_titles FROM user_stories s "
        "LEFT JOIN features f ON f.id = s.feature_id"
    )
    matched = rows[rows.feature_id.notna()]
    assert len(matched) > 0
    assert all(title in list(titles) for title, titles in zip(matched.title, matched.user_story_titles))
    listed = {
        title for p in sim.truth_products() for f in sim.truth_features(p["id"]) for title in f["user_stories"]
    }
    unmatched = rows[rows.feature_id.isna()]
    assert all(title not in listed for title in unmatched.title)


def test_timestamps_are_typed(tmp_path, instance):
    sim = make_simulator("tiny")
    db = tmp_path / "t.duckdb"
    materialize(sim, db, instance=instance)
    types = dict(
        Warehouse(db).query(
            "SELECT table_name || '.' || column_name AS c, data_type FROM duckdb_columns() "
            "WHERE column_name IN ('end_at', 'start_at', 'reported_at', 'synced_at')"
        ).itertuples(index=False)
    )
    assert types["tests.end_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["bugs.reported_at"] == "TIMESTAMP WITH TIME ZONE"
