"""What a whole Dagster run pays besides fetching and writing stays small (issue #13, fixed cost)."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb

from testio_pipeline.component.event_log import INDEX_SHARD
from testio_pipeline.component.resources import WarehouseResource

from .conftest import dagster_home

REPO = Path(__file__).resolve().parents[1]


def _sqlite_instance(tmp_path: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(dagster_home(tmp_path)))


def test_a_run_keeps_its_sqlite_event_log_open_between_events_and_releases_it(tmp_path):
    seen: dict[str, bool] = {}

    @dg.asset
    def probe(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> None:
        storage = context.instance.event_log_storage
        context.log.info("stored on a connection of its own, closed after the commit")
        for shard in (context.run.run_id, INDEX_SHARD):
            # Closing the last connection would have checkpointed the log and removed it.
            seen[shard] = Path(storage.path_for_shard(shard) + "-wal").exists()

    with _sqlite_instance(tmp_path) as instance:
        result = dg.materialize(
            [probe], resources={"warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb"))}, instance=instance
        )
        assert result.success
        assert seen == {result.run_id: True, INDEX_SHARD: True}
        # Released with the run's resources: the log went into the file, every event is there.
        run_shard = Path(instance.event_log_storage.path_for_shard(result.run_id))
        assert not Path(f"{run_shard}-wal").exists()
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
        assert "stored on a connection of its own, closed after the commit" in messages
        assert instance.get_latest_materialization_event(dg.AssetKey("probe")) is not None
        assert result.get_asset_materialization_events()


def test_holding_the_event_log_open_is_a_no_op_without_a_run_or_on_other_storage(tmp_path):
    from testio_pipeline.component.event_log import hold_open

    with hold_open(None, "some-run") as stack, hold_open(dg.DagsterInstance.ephemeral(), "some-run"):
        assert stack is not None
    with _sqlite_instance(tmp_path) as instance:
        # A run id whose shard does not exist: nothing is created, nothing raised.
        with hold_open(instance, "no-such-run"):
            pass
        assert not Path(instance.event_log_storage.path_for_shard("no-such-run")).exists()


def test_loading_the_definitions_leaves_out_what_a_run_against_the_api_does_not_use():
    probe = (
        "import sys, testio_pipeline.definitions; "
        "print(sorted(m for m in sys.modules if m.split('.')[:2] == ['testio_pipeline', 'simulator'] "
        "or m.split('.')[0] in ('pandas', 'matplotlib', 'sqlalchemy')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_views_step_creates_views_once_and_again_only_when_one_is_missing(tmp_path):
    from testio_pipeline.component.analytics.views import DEFINITION_KEY, VIEW_ASSETS
    from testio_pipeline.warehouse.views import VIEWS

    db = tmp_path / "w.duckdb"
    resources = {"warehouse": WarehouseResource(path=str(db))}

    def run_views(instance) -> list[str]:
        result = dg.materialize(VIEW_ASSETS, resources=resources, instance=instance)
        assert result.success
        assert sorted(e.asset_key.to_user_string() for e in result.get_asset_materialization_events()) == sorted(VIEWS)
        for event in result.get_asset_materialization_events():
            metadata = event.materialization.metadata
            assert DEFINITION_KEY in metadata and "preview" in metadata and "dagster/row_count" in metadata
        return [e.user_message for e in instance.all_logs(result.run_id) if "(re)created view(s)" in e.user_message]

    with _sqlite_instance(tmp_path) as instance:
        assert len(run_views(instance)) == 1  # an empty file: every view created
        assert run_views(instance) == []  # same definitions, all in the file: only read
        con = duckdb.connect(str(db))
        con.execute("DROP VIEW users")
        con.close()
        [note] = run_views(instance)  # the file lost one: it alone is created again
        assert "(re)created view(s) users in" in note
        con = duckdb.connect(str(db), read_only=True)
        names = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        comments = con.execute(
            "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'users' AND comment IS NOT NULL"
        ).fetchone()[0]
        con.close()
        assert set(VIEWS) <= names
        assert comments == len(VIEWS["users"].columns)
