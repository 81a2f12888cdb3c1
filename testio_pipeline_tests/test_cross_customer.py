"""Issue 22, item 4: one documented step puts every customer's warehouse in one SQL session
(docs/customers.md, "Querying across customers")."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from testio_pipeline.cli import query
from testio_pipeline.component.testio.assets import TESTIO_ASSETS
from testio_pipeline.warehouse import Warehouse
from testio_pipeline.warehouse.customers import (
    CROSS_CUSTOMER_RELATIONS,
    CrossCustomerError,
    cross_customer_sql,
    open_session,
    search_all_customers,
)
from testio_pipeline.warehouse.views import create_views
from testio_pipeline.warehouse.views.metrics import METRICS, dimensions_of, metric_sql

from .conftest import NOW, full_refresh_resources, make_simulator

DOCS = Path(__file__).resolve().parents[1] / "docs" / "customers.md"


def _documented_query() -> str:
    """The example query of docs/customers.md's cross-customer section."""
    section = DOCS.read_text(encoding="utf-8").split("## Querying across customers", 1)[1]
    return re.search(r"```sql\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def two_customers(tmp_path_factory) -> dict[str, Path]:
    """Two customers' warehouses, each a full sync of its own simulator world, with views."""
    folder = tmp_path_factory.mktemp("customers")
    worlds = {"acme": make_simulator("tiny", seed=42), "globex": make_simulator("tiny", seed=7, bugs_per_test=5)}
    files = {}
    for name, sim in worlds.items():
        files[name] = folder / f"{name}.duckdb"
        with dg.instance_for_test() as instance:
            assert dg.materialize(TESTIO_ASSETS, resources=full_refresh_resources(sim, files[name]), instance=instance).success
        create_views(Warehouse(files[name]))
    return files


def _bugs_by_status(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return dict(con.execute("SELECT status, count(*) FROM bug_facts GROUP BY ALL").fetchall())
    finally:
        con.close()


def test_the_documented_query_returns_both_customers_rows_each_with_its_customer(two_customers, tmp_path):
    script = tmp_path / "all_customers.sql"
    script.write_text(cross_customer_sql(two_customers), encoding="utf-8")
    con = duckdb.connect()
    con.execute(script.read_text(encoding="utf-8"))  # the documented step, as in Python
    rows = con.execute(_documented_query()).fetchall()
    assert {row[0] for row in rows} == {"acme", "globex"}
    for name, db in two_customers.items():
        got = {status: bugs for tenant, status, bugs in rows if tenant == name}
        assert got == _bugs_by_status(db), f"{name}'s rows are its own file's"
    acme_ids, globex_ids = (
        {r[0] for r in con.execute(f"SELECT id FROM all_bugs WHERE tenant = '{n}'").fetchall()} for n in two_customers
    )
    assert acme_ids == Warehouse(two_customers["acme"]).ids("bugs")
    assert globex_ids == Warehouse(two_customers["globex"]).ids("bugs")
    assert acme_ids != globex_ids, "two different worlds, so a crossed customer would show"
    for relation in CROSS_CUSTOMER_RELATIONS:  # every all_ view exists and carries both customers
        tenants = {r[0] for r in con.execute(f"SELECT DISTINCT tenant FROM all_{relation}").fetchall()}
        assert tenants <= {"acme", "globex"}, relation
    assert {r[0] for r in con.execute("SELECT DISTINCT tenant FROM all_users").fetchall()} == {"acme", "globex"}
    # read-only: the session cannot change a customer's file
    with pytest.raises(duckdb.Error, match="read-only"):
        con.execute("DELETE FROM acme.main.bugs")
    con.close()


def test_the_cli_runs_a_query_over_every_customer(two_customers, capsys):
    customers = [f"{name}={db}" for name, db in two_customers.items()]
    args = [arg for c in customers for arg in ("--customer", c)]
    assert query.main(["--all-customers", *args, "SELECT tenant, count(*) AS bugs FROM all_bugs GROUP BY ALL ORDER BY 1"]) == 0
    out = capsys.readouterr().out
    assert "acme" in out and "globex" in out
    assert query.main(["--all-customers-sql", *args]) == 0
    printed = capsys.readouterr().out
    assert printed == cross_customer_sql(two_customers)
    gone = ["--customer", f"initech={two_customers['acme'].parent / 'initech.duckdb'}"]
    assert query.main(["--all-customers", *args, *gone, "SELECT 1"]) == 2
    assert "no warehouse yet for initech" in capsys.readouterr().err


def test_a_name_that_is_not_an_identifier_is_quoted(two_customers):
    odd = {'we"ird; DROP TABLE bugs; --': two_customers["acme"], "o'brien co": two_customers["globex"]}
    con = duckdb.connect()
    con.execute(cross_customer_sql(odd))
    rows = dict(con.execute("SELECT tenant, count(*) FROM all_bugs GROUP BY ALL").fetchall())
    assert set(rows) == set(odd)
    assert rows['we"ird; DROP TABLE bugs; --'] == len(Warehouse(two_customers["acme"]).ids("bugs"))
    con.close()


def test_a_lake_with_a_password_stays_out_of_the_printed_script(two_customers):
    lake = "ducklake:postgres:dbname=lake host=db user=u password=s3cret-pw"
    script = cross_customer_sql({"acme": two_customers["acme"], "lakeco": lake})
    assert "s3cret" not in script and "lakeco: a DuckLake whose ATTACH string holds a password" in script
    assert '"lakeco"' not in script.split("-- lakeco", 1)[1]
    with pytest.raises(CrossCustomerError, match="no customer"):
        cross_customer_sql({"lakeco": lake})
    without = lake.replace(" password=s3cret-pw", "")  # e.g. PGPASSWORD or ~/.pgpass gives it
    assert f"ATTACH IF NOT EXISTS '{without}' AS \"lakeco\" (READ_ONLY);" in cross_customer_sql({"lakeco": without})
    session = cross_customer_sql({"acme": two_customers["acme"], "lakeco": lake}, include_passwords=True)
    assert f"ATTACH IF NOT EXISTS '{lake}' AS \"lakeco\" (READ_ONLY);" in session
    with pytest.raises(CrossCustomerError, match="reserves"):
        cross_customer_sql({"main": two_customers["acme"]})


def test_the_cli_waits_while_a_sync_holds_a_customers_file(two_customers, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(1.5)",
         str(two_customers["globex"])],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        args = [arg for name, db in two_customers.items() for arg in ("--customer", f"{name}={db}")]
        assert query.main(["--all-customers", *args, "SELECT DISTINCT tenant FROM all_bugs ORDER BY 1"]) == 0
    finally:
        holder.wait(timeout=30)
    assert "globex" in capsys.readouterr().out


def test_every_metric_across_customers_is_each_customers_own(two_customers):
    con = duckdb.connect()
    con.execute(cross_customer_sql(two_customers))
    own = {name: duckdb.connect(str(db), read_only=True) for name, db in two_customers.items()}
    try:
        for metric in METRICS:
            for dimension in (None, *dimensions_of(metric)):
                across = con.execute(metric_sql(metric, dimension, across_customers=True)).fetchall()
                for name, file in own.items():
                    mine = [row[1:] for row in across if row[0] == name]
                    assert mine == file.execute(metric_sql(metric, dimension)).fetchall(), (metric.name, dimension, name)
    finally:
        for file in own.values():
            file.close()
        con.close()


def test_the_search_across_customers_is_each_customers_own(two_customers, capsys):
    words = "crash"
    hits = search_all_customers(two_customers, words, limit=1000)
    assert list(hits.columns)[0] == "tenant"
    for name, db in two_customers.items():
        mine = hits[hits.tenant == name].drop(columns="tenant").reset_index(drop=True)
        own = Warehouse(db).search_bugs(words, limit=1000)
        assert len(own) > 0, f"{name}'s world should have a crash bug"
        assert mine.equals(own), name
    args = [arg for name, db in two_customers.items() for arg in ("--customer", f"{name}={db}")]
    assert query.main(["--all-customers", *args, "--search", words, "--max-rows", "3"]) == 0
    out = capsys.readouterr().out
    assert "acme" in out and "globex" in out


@pytest.mark.slow
@pytest.mark.xdist_group("lake")  # the lake tests' worker, with its PostgreSQL server
def test_a_ducklake_customer_joins_the_session_beside_a_file_customer(two_customers, lake, capsys):
    """One customer in a DuckDB file, one in a DuckLake (catalog in PostgreSQL, Parquet data):
    the session of --all-customers has both customers' rows, each with its own tenant."""
    from .test_lake import sync  # noqa: PLC0415

    attach, data = lake
    lake_warehouse = sync(attach, data, NOW)
    create_views(lake_warehouse)
    # libpq sends a password only when the server asks (this one trusts): the string holds one
    # the way a real deployment's would, and nothing may print it
    with_password = attach + " password=lake-s3cret"
    customers = {"acme": str(two_customers["acme"]), "lakeco": with_password}
    args = [arg for name, location in customers.items() for arg in ("--customer", f"{name}={location}")]
    assert query.main(["--all-customers", *args, "SELECT tenant, id FROM all_bugs ORDER BY ALL", "--max-rows", "100000"]) == 0
    out = capsys.readouterr().out
    assert "lake-s3cret" not in out
    shown = {}
    for line in out.splitlines()[1:]:
        tenant, bug = line.split()
        shown.setdefault(tenant, set()).add(int(bug))
    assert shown["acme"] == Warehouse(two_customers["acme"]).ids("bugs")
    assert shown["lakeco"] == lake_warehouse.ids("bugs")
    assert shown["acme"] != shown["lakeco"]

    con = duckdb.connect()
    try:
        con.execute(cross_customer_sql(customers, include_passwords=True))
        rows = con.execute(_documented_query()).fetchall()
        with lake_warehouse.read() as lake_con:
            lake_by_status = dict(lake_con.execute("SELECT status, count(*) FROM bug_facts GROUP BY ALL").fetchall())
        assert {s: n for t, s, n in rows if t == "lakeco"} == lake_by_status
        assert {s: n for t, s, n in rows if t == "acme"} == _bugs_by_status(two_customers["acme"])
        for relation in CROSS_CUSTOMER_RELATIONS:
            tenants = {r[0] for r in con.execute(f"SELECT DISTINCT tenant FROM all_{relation}").fetchall()}
            assert tenants <= {"acme", "lakeco"}, relation
        with pytest.raises(duckdb.Error, match="read-only|read only"):
            con.execute("DELETE FROM lakeco.main.bugs")
    finally:
        con.close()

    assert query.main(["--all-customers-sql", *args]) == 0
    printed = capsys.readouterr().out
    assert "lake-s3cret" not in printed and '"lakeco"' not in printed.split("-- lakeco", 1)[1]


def test_a_customer_not_synced_yet_does_not_keep_the_others_from_the_session(two_customers, tmp_path, capsys):
    """A new customer's warehouse has its tables (empty) but no views until its first sync:
    the session still opens, each all_ view over the customers that have it."""
    new = tmp_path / "initech.duckdb"
    Warehouse(new).table_counts()  # what a first, failed sync leaves: the schema, no rows, no views
    customers = {**{name: str(db) for name, db in two_customers.items()}, "initech": str(new)}
    args = [arg for name, db in customers.items() for arg in ("--customer", f"{name}={db}")]
    assert query.main(["--all-customers", *args, "SELECT tenant, count(*) AS n FROM all_bug_facts GROUP BY ALL ORDER BY 1"]) == 0
    out = capsys.readouterr().out
    assert "acme" in out and "globex" in out and "initech" not in out
    con = open_session(customers)
    try:
        assert con.execute("SELECT count(*) FROM all_bugs WHERE tenant = 'initech'").fetchone()[0] == 0
        tenants = {r[0] for r in con.execute("SELECT DISTINCT tenant FROM all_bugs").fetchall()}
        assert tenants == {"acme", "globex"}
    finally:
        con.close()
