"""Dagster's PostgreSQL storage, taking DAGSTER_PG_URL as Dagster's documentation writes it.

SQLAlchemy 2.1 reads a bare ``postgresql://`` URL as the psycopg 3 driver, and
dagster-postgres, built on psycopg2, then fails at every stored event (psycopg 3 binds
``NOTIFY run_events, %(id)s`` server-side: a syntax error) or, without psycopg 3 installed,
at start with ``No module named 'psycopg'``. This storage pins the driver dagster-postgres is
built for: a URL without a driver (``postgresql://``, ``postgres://``, or the ``postgres_db``
parts) gets ``postgresql+psycopg2://``; a URL naming its driver is kept.

deploy/dagster.postgres.yaml names it as the instance's ``storage: custom``; every process that
rebuilds the instance (webserver, daemon, run workers) rebuilds it through this class.
"""

from __future__ import annotations

from typing import Any, Mapping

from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

_DRIVERLESS = ("postgresql://", "postgres://")


def psycopg2_url(url: str) -> str:
    """``url`` with the psycopg2 driver named, unless it names a driver already."""
    for prefix in _DRIVERLESS:
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


class PostgresStorage(DagsterPostgresStorage):
    """``DagsterPostgresStorage`` with the psycopg2 driver pinned in its URL."""

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]) -> "PostgresStorage":
        return cls(
            inst_data=inst_data,
            postgres_url=psycopg2_url(pg_url_from_config(config_value)),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
