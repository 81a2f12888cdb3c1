"""The entity registry is the one declaration: the Dagster definitions, the checks, the view
lineage and the warehouse tables all agree with it, and dg's defs-folder loader finds them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from testio_pipeline.component.analytics.views import view_deps
from testio_pipeline.definitions import defs
from testio_pipeline.entities import COMPLETE, ENTITIES, MERGED, WRITER_OF_TABLE, load
from testio_pipeline.warehouse.schema import ENTITY_TABLES, TABLES
from testio_pipeline.warehouse.views import VIEWS

from .conftest import REPO, dagster_env


def test_every_entity_is_an_asset_with_its_upstream_and_its_checks():
    graph = defs.resolve_asset_graph()
    for entity in ENTITIES:
        node = graph.get(dg.AssetKey(entity.name))
        assert node.description == entity.description
        assert sorted(k.to_user_string() for k in node.parent_keys) == sorted(entity.upstream)
        checks = {key.name for key in graph.get_check_keys_for_assets({node.key})}
        assert checks == set(entity.checks), entity.name


def test_every_mirrored_table_has_exactly_one_writer_and_valid_references():
    assert set(WRITER_OF_TABLE) >= set(ENTITY_TABLES)
    assert len(WRITER_OF_TABLE) == sum(len(e.tables) for e in ENTITIES), "a table declared twice"
    for entity in ENTITIES:
        assert entity.sync_step().__name__ == f"sync_{entity.name}"
        for table in entity.tables:
            assert TABLES[table].primary_key, table
        for ref in entity.references:
            assert ref.column in TABLES[ref.table].column_names
            assert ref.table in entity.tables and ref.parent in TABLES


def test_views_depend_on_the_assets_that_write_what_they_read():
    for view in VIEWS.values():
        tables = [name for name in view.reads if name not in VIEWS]
        assert {WRITER_OF_TABLE[t] for t in tables} <= set(view_deps(view))


def test_the_write_declarations_name_declared_tables_columns_and_hooks():
    from testio_pipeline.warehouse.frames import record_columns

    for entity in ENTITIES:
        columns = TABLES[entity.name].column_names
        assert set(entity.compare) | set(entity.derived) <= set(columns), entity.name
        assert set(entity.derived).isdisjoint(record_columns(entity.name))
        if entity.deletes_within is not None:
            assert entity.scope_column in columns
        for parent in entity.synced_in:
            assert f"{entity.name}_synced_at" in TABLES[parent].column_names
        for hook in (entity.prepare, entity.after):
            assert hook is None or callable(load(hook))
        assert not entity.derived or entity.prepare, "derived columns need the hook that derives them"
        for child in entity.children:
            child_columns = TABLES[child.table].column_names
            assert child.parent_key in child_columns and set(child.compare) <= set(child_columns)
            # Only a soft-deleting table can be merged; the others are replaced.
            assert (child.replace == MERGED) == TABLES[child.table].soft_deletes, child.table
            if child.replace == COMPLETE:
                assert entity.scope_column in child_columns


def test_only_the_staged_entities_stage_their_records(tmp_path):
    from testio_pipeline.warehouse.staging import Stage

    for entity in ENTITIES:
        if entity.staged:
            Stage(entity.name, tmp_path).discard()
        else:
            with pytest.raises(ValueError):
                Stage(entity.name, tmp_path)


@pytest.mark.slow
def test_dg_loads_the_defs_folder_and_its_checks_pass(tmp_path):
    env = dagster_env(tmp_path)
    dg_bin = Path(sys.executable).parent / "dg"
    out = subprocess.run(
        [str(dg_bin), "check", "defs"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All definitions loaded successfully" in out.stdout + out.stderr
