"""DAGSTER_PG_URL in every form people write it: the bare ``postgresql://`` of Dagster's own
documentation (SQLAlchemy 2.1 would read it as psycopg 3, which dagster-postgres cannot use),
``postgres://`` and the explicit ``postgresql+psycopg2://``, each against a real PostgreSQL
server with deploy/dagster.postgres.yaml as the instance config: a run and its events stored,
also by a run worker that rebuilds the instance from its reference."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from testio_pipeline.postgres_storage import psycopg2_url

from .conftest import REPO

pytestmark = pytest.mark.slow


@dg.op
def say_hello(context):
    context.log.info("hello from the run worker")


@dg.job
def hello():
    say_hello()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg2"])
def test_the_postgres_instance_stores_runs_and_events_with_each_url_form(scheme, postgres, tmp_path, monkeypatch):
    database = postgres.create_database(f"dagster_url_{scheme.replace('+', '_')}")
    monkeypatch.setenv("DAGSTER_PG_URL", f"{scheme}://{postgres.user}@127.0.0.1:{postgres.port}/{database}")
    shutil.copy(REPO / "deploy" / "dagster.postgres.yaml", tmp_path / "dagster.yaml")

    monkeypatch.chdir(REPO)  # where the run worker finds this module
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        # a multiprocess run: its worker process rebuilds the instance from the reference
        result = dg.execute_job(dg.reconstructable(hello), instance=instance)
        assert result.success
        messages = [e.message for e in instance.all_logs(result.run_id)]
        assert "hello from the run worker" in messages

    stored = postgres.execute(database, "SELECT count(*) FROM event_logs WHERE run_id = %s" % f"'{result.run_id}'")
    assert stored[0][0] > 5


def test_only_a_url_without_a_driver_gets_psycopg2():
    assert psycopg2_url("postgresql://u:p@h:5432/d") == "postgresql+psycopg2://u:p@h:5432/d"
    assert psycopg2_url("postgres://u@h/d") == "postgresql+psycopg2://u@h/d"
    assert psycopg2_url("postgresql+psycopg2://u@h/d") == "postgresql+psycopg2://u@h/d"
    assert psycopg2_url("postgresql+pg8000://u@h/d") == "postgresql+pg8000://u@h/d"
