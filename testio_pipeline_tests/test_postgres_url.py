"""DAGSTER_PG_URL in every form people write it: the bare ``postgresql://`` of Dagster's own
documentation (SQLAlchemy 2.1 reads it as psycopg 3, which pyproject.toml installs) and the
explicit ``postgresql+psycopg2://`` (dagster-postgres's own driver), each against a real
PostgreSQL server with deploy/dagster.postgres.yaml as the instance config."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg2"])
def test_the_postgres_instance_starts_and_stores_a_run_with_each_url_form(scheme, postgres, tmp_path, monkeypatch):
    database = postgres.create_database(f"dagster_url_{scheme.replace('+', '_')}")
    monkeypatch.setenv("DAGSTER_PG_URL", f"{scheme}://{postgres.user}@127.0.0.1:{postgres.port}/{database}")
    shutil.copy(REPO / "deploy" / "dagster.postgres.yaml", tmp_path / "dagster.yaml")

    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        run = instance.create_run_for_job(dg.GraphDefinition(name="noop", node_defs=[]).to_job(), run_id=None)
        assert instance.get_run_by_id(run.run_id).job_name == "noop"

    tables = postgres.execute(database, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'runs'")
    assert tables == [(1,)]
