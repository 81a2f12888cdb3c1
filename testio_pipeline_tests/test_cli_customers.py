"""Issue 22, item 5: `cli run --all` syncs every customer and names the ones that failed;
`cli status` judges each customer's assets in a block of its own."""

from __future__ import annotations

import re

import dagster as dg
import pytest

import testio_pipeline.definitions as definitions
from testio_pipeline.cli import main as cli
from testio_pipeline.component.mirror import TestIOMirror
from testio_pipeline.domain.vocabulary import utcnow
from testio_pipeline.warehouse import Warehouse

from .conftest import dagster_home, create_storage, make_simulator
from .test_assets import ENTITY_TABLES, truth_ids

pytestmark = pytest.mark.slow


@pytest.fixture
def three_customers(tmp_path, monkeypatch):
    """acme and globex, each served its own world over HTTP with its own token; initech points
    at acme's server with a token that server refuses. The CLI sees these three instances."""
    sims = {
        "acme": make_simulator("tiny", token="acme-token-7c1d", seed=42),
        "globex": make_simulator("tiny", token="globex-token-90ab", seed=7, bugs_per_test=5),
    }
    with sims["acme"].serve() as acme_server, sims["globex"].serve() as globex_server:
        urls = {"acme": acme_server.base_url, "globex": globex_server.base_url, "initech": acme_server.base_url}
        tokens = {"acme": "acme-token-7c1d", "globex": "globex-token-90ab", "initech": "not-acmes-token"}
        mirrors = []
        for name, url in urls.items():
            monkeypatch.setenv(f"{name.upper()}_TESTIO_TOKEN", tokens[name])
            mirrors.append(TestIOMirror(
                name=name, base_url=url, token=dg.EnvVar(f"{name.upper()}_TESTIO_TOKEN"),
                warehouse=str(tmp_path / "data" / f"{name}.duckdb"),
            ))
        context = dg.ComponentTree.for_test().load_context
        defs = dg.Definitions.merge(*(m.build_defs(context) for m in mirrors))
        monkeypatch.setattr(definitions, "mirrors", lambda: mirrors)
        monkeypatch.setattr(definitions, "defs", defs)
        home = dagster_home(tmp_path)
        create_storage(home)
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        yield sims, {m.name: tmp_path / "data" / f"{m.name}.duckdb" for m in mirrors}


def test_run_all_syncs_every_customer_and_names_the_one_that_failed(three_customers, capsys):
    sims, warehouses = three_customers
    assert cli.main(["run", "--all"]) == 1, "one customer failed: the command fails"
    out, err = capsys.readouterr()
    summary = out.split("Summary of 3 customers", 1)[1]
    for name in ("acme", "globex"):
        assert re.search(rf"^  {name}: ok \(run \w{{8}}\): \d+ products, \d+ tests, \d+ bugs$", summary, re.M), summary
        warehouse = Warehouse(warehouses[name])
        truth = truth_ids(sims[name])
        for table in ENTITY_TABLES:
            assert warehouse.ids(table) == truth[table], (name, table)
        bugs = len(truth["bugs"])
        assert f"{bugs} bugs" in summary.split(f"  {name}: ok", 1)[1].splitlines()[0]
    assert re.search(r"^  initech: FAILED \(run \w{8}\): .*refused the token", summary, re.M), summary
    assert "1 of 3 customers failed: initech" in err
    assert "INITECH_TESTIO_TOKEN" in err, "the failure names the instance's own token variable"
    assert not warehouses["initech"].exists() or Warehouse(warehouses["initech"]).table_counts()["bugs"] == 0
    for token in ("acme-token-7c1d", "globex-token-90ab", "not-acmes-token"):
        assert token not in out + err

    # Each customer judged on its own: the two synced are fresh, initech never materialized.
    with dg.DagsterInstance.get() as instance:
        statuses = {s.customer: s for s in cli.customer_statuses(instance, definitions.mirrors(), utcnow())}
    assert statuses["acme"].due == [] and statuses["globex"].due == []
    assert statuses["initech"].stale == [f"initech/{t}" for t in sorted(ENTITY_TABLES)]
    assert set(statuses["acme"].judged) == {f"acme/{t}" for t in ENTITY_TABLES}

    assert cli.main(["status", "--all"]) == 0
    shown = capsys.readouterr().out
    blocks = dict(re.findall(r"^Customer (\w+) \(warehouse [^)]*\)\n((?:  .*\n?)*)", shown, re.M))
    assert set(blocks) == {"acme", "globex", "initech"}, shown
    for name in ("acme", "globex"):
        assert all(f"{name}/{t}: fresh" in blocks[name] for t in ENTITY_TABLES), blocks[name]
        assert "Nothing is due" in blocks[name]
    assert all(f"initech/{t}: never materialized" in blocks["initech"] for t in ENTITY_TABLES)
    assert "requests one run for: initech/" in blocks["initech"]
    assert cli.main(["status"]) == 0
    assert capsys.readouterr().out.count("\nCustomer ") == 3, "several customers and no flag: all of them"

    assert cli.main(["status", "--customer", "globex"]) == 0
    one = capsys.readouterr().out
    assert "Customer globex" in one and "acme" not in one and "initech" not in one


def test_run_without_a_customer_among_several_says_how_to_choose(three_customers, capsys):
    assert cli.main(["run"]) == 2
    assert "--customer or run them all with --all (instances: acme, globex, initech)" in capsys.readouterr().err
    assert cli.main(["status", "--customer", "nobody"]) == 2
