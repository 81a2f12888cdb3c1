"""The code location loads, and its shape is what the docs and the UI promise."""

from __future__ import annotations

import importlib

import dagster as dg
import pytest

from testio_pipeline.settings import Settings, SettingsError

ASSETS = ["products", "features", "user_stories", "tests", "bugs"]


def load_defs(monkeypatch=None, **env):
    if monkeypatch is not None:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
    import testio_pipeline.definitions as module

    return importlib.reload(module).defs


def test_defs_load_with_the_five_assets_in_the_testio_group():
    defs = load_defs()
    graph = defs.resolve_asset_graph()
    in_group = sorted(k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).group_name == "testio")
    assert in_group == sorted(ASSETS)
    deps = {k: sorted(p.to_user_string() for p in graph.get(dg.AssetKey(k)).parent_keys) for k in ASSETS}
    assert deps == {
        "products": [],
        "features": ["products"],
        "user_stories": ["features"],
        "tests": ["products"],
        "bugs": ["tests"],
    }
    for key in ASSETS:
        node = graph.get(dg.AssetKey(key))
        assert node.group_name == "testio"
        assert {"duckdb", "python"} <= set(node.kinds)
        assert node.description and "\n" not in node.description


def test_every_asset_carries_the_one_ttl_as_its_freshness_policy(monkeypatch):
    defs = load_defs(monkeypatch, TESTIO_CACHE_TTL_SECONDS="600")
    graph = defs.resolve_asset_graph()
    for key in ASSETS:
        policy = graph.get(dg.AssetKey(key)).freshness_policy
        assert policy.fail_window.to_timedelta().total_seconds() == 600
        assert policy.warn_window.to_timedelta().total_seconds() == 540


def test_settings_default_to_the_simulator_and_reject_half_configurations():
    assert Settings.from_env({}).uses_simulator
    real = Settings.from_env({"TESTIO_CUSTOMER_API_TOKEN": "t"})
    assert not real.uses_simulator and real.effective_base_url == "https://api.test.io/customer/v2"
    assert "s3cret" not in repr(Settings(token="s3cret"))
    with pytest.raises(SettingsError, match="TESTIO_CUSTOMER_API_TOKEN"):
        Settings.from_env({"TESTIO_CUSTOMER_API_BASE_URL": "http://x"})
    with pytest.raises(SettingsError, match="TESTIO_CACHE_TTL_SECONDS"):
        Settings.from_env({"TESTIO_CACHE_TTL_SECONDS": "30"})
    assert Settings.from_env({"TESTIO_PRODUCT_IDS": "3, 1,2"}).product_ids == (1, 2, 3)
    with pytest.raises(SettingsError, match="TESTIO_PRODUCT_IDS"):
        Settings.from_env({"TESTIO_PRODUCT_IDS": "a,b"})


def test_a_dotenv_file_is_read_but_never_overrides_the_environment(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("TESTIO_DUCKDB_PATH=from-dotenv.duckdb\nTESTIO_MAX_CONCURRENT_REQUESTS=3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TESTIO_MAX_CONCURRENT_REQUESTS", "7")
    settings = Settings.from_env()
    assert settings.duckdb_path == "from-dotenv.duckdb"
    assert settings.max_concurrent_requests == 7
