"""deploy/'s instance configs: valid for Dagster, and with the same single-writer rules as
dagster.yaml. Docker and Kubernetes cannot run here, so their files are checked against
Dagster's instance schema and their run launcher's own config schema; dagster.postgres.yaml
itself is also run for real (test_daemon.py)."""

from __future__ import annotations

import importlib
import shutil

import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.instance.config import dagster_instance_config

from .conftest import REPO

DEPLOY = REPO / "deploy"
FILES = ["dagster.postgres.yaml", "dagster.postgres-docker.yaml", "dagster.postgres-k8s.yaml"]


@pytest.mark.parametrize("name", FILES)
def test_deploy_instance_config_is_valid_and_keeps_the_single_writer_rules(name, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql://dagster@db.internal:5432/dagster")
    shutil.copy(DEPLOY / name, tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    storage = config["storage"]["custom"]
    assert (storage["module"], storage["class"]) == ("testio_pipeline.postgres_storage", "PostgresStorage")
    assert "postgres_url" in storage["config"]
    local = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert config["concurrency"] == local["concurrency"]
    assert config["run_monitoring"] == local["run_monitoring"]
    assert config["sensors"] == local["sensors"]

    launcher = config.get("run_launcher")
    if launcher is None:
        assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
        return
    cls = getattr(importlib.import_module(launcher["module"]), launcher["class"])
    result = process_config(resolve_to_config_type(cls.config_type()), launcher["config"])
    assert result.success, [e.message for e in result.errors]
    if name.endswith("docker.yaml"):  # what a run container needs to reach the lake and Dagster
        assert {"TESTIO_DUCKDB_PATH", "TESTIO_LAKE_DATA_PATH", "DAGSTER_PG_URL"} <= set(launcher["config"]["env_vars"])


def test_a_launcher_config_schema_check_catches_a_wrong_key():
    from dagster_docker import DockerRunLauncher

    result = process_config(resolve_to_config_type(DockerRunLauncher.config_type()), {"env_varz": ["X"]})
    assert not result.success
