"""Keeps a run's SQLite event-log files open while its steps run, so each event costs one commit.

Dagster's SQLite event storage (the default instance, ``dagster.yaml``) opens a new connection
for every event it stores and closes it after the commit. When that connection is the last
one on the file, SQLite checkpoints the write-ahead log into the database and deletes it on
close: two more syncs to disk per event, about two thirds of an event's cost on this
machine. Holding one idle connection to the run's shard and to the cross-run index for the
run's duration keeps the log in place, so a commit only appends to it; SQLite still
checkpoints it as it grows, and for good when the last connection closes. Nothing is read or
written through these connections. On any other storage (PostgreSQL) this does nothing.
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import ExitStack, closing
from pathlib import Path

import dagster as dg

log = logging.getLogger(__name__)
INDEX_SHARD = "index"  # SqliteEventLogStorage's cross-run shard (asset and check events)


def hold_open(instance: dg.DagsterInstance | None, run_id: str | None) -> ExitStack:
    """Open the run's event-log files (SQLite storage only); closing the stack releases them."""
    # Imported here: by now the instance has loaded it (SQLAlchemy); importing the
    # definitions need not.
    from dagster._core.storage.event_log import SqliteEventLogStorage

    stack = ExitStack()
    storage = instance.event_log_storage if instance is not None else None
    if run_id is None or not isinstance(storage, SqliteEventLogStorage):
        return stack
    for shard in (run_id, INDEX_SHARD):
        path = Path(storage.path_for_shard(shard))
        try:
            # mode=rw: never creates a file Dagster has not made. The read attaches the
            # connection to the write-ahead log, which is what keeps it from being removed.
            con = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, check_same_thread=False)
            stack.enter_context(closing(con))
            con.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.Error as exc:  # only a speed-up: the run goes on without it
            log.debug("not holding %s open: %s", path, exc)
    return stack
