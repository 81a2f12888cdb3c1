"""How a merge is kept inside its memory budget: DuckDB settings for the unit, and after it.

A merge can be far larger than memory. DuckDB's default limit (80 % of RAM) would let it
buffer a whole stage; under ``merge_memory_limit`` it spills to its temp directory instead.
Settings are global to a DuckDB instance, so each one a unit sets is reset afterwards where
the instance is shared (a DuckLake's connections all share one in-memory instance).
"""

from __future__ import annotations

import logging
import re

import duckdb

from .merge import run

log = logging.getLogger(__name__)

# Past this many staged records a merge runs on one thread: each of DuckDB's threads holds its
# own buffers outside the memory limit.
ONE_THREAD_ROWS = 100_000
# After a capped merge commits, DuckDB's buffer pool is emptied by lowering its limit to this for
# a moment: what the merge read and wrote stays cached up to the cap, and the checkpoint (when the
# file is closed) rewrites the row groups the merge changed, which would come on top of it.
EVICT_TO = "16MB"
# A commit that ran out of memory under the cap fails as a TransactionException.
_COMMIT_OUT_OF_MEMORY = re.compile(r"failed to pin block|out of memory", re.IGNORECASE)


def out_of_memory(exc: duckdb.Error) -> bool:
    """Whether DuckDB gave up for want of memory (during the work or at its commit)."""
    return isinstance(exc, duckdb.OutOfMemoryException) or (
        isinstance(exc, duckdb.TransactionException) and bool(_COMMIT_OUT_OF_MEMORY.search(str(exc)))
    )


class UnitSettings:
    """The settings one unit of work changes, so they can be put back when it ends."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        self.changed: list[str] = []

    def set(self, name: str, value: str) -> None:
        run(self.con, f"SET {name} = {value}")
        self.changed.append(name)

    def for_merge(self, staged_rows: int | None, memory_limit: str | None, writing: bool) -> bool:
        """Settings for a merge of ``staged_rows`` (None: not a stage) under ``memory_limit``;
        True when the buffer pool is to be emptied after the commit (:func:`empty_buffer_pool`)."""
        if staged_rows is not None:
            self.set("preserve_insertion_order", "false")
            if staged_rows > ONE_THREAD_ROWS:
                self.set("threads", "1")
        if memory_limit is not None:
            self.set("memory_limit", f"'{memory_limit}'")
        evict = staged_rows is not None and memory_limit is not None and writing
        if evict:
            self.set("checkpoint_threshold", "'1TB'")  # the checkpoint comes after the eviction
        return evict

    def reset(self) -> None:
        """Put the changed settings back to DuckDB's defaults, for the instance's next users."""
        for name in self.changed:
            try:
                run(self.con, f"RESET {name}")
            except duckdb.Error as exc:  # best effort: the write itself is done
                log.warning("could not reset %s on %s: %s", name, self.con, exc)


def empty_buffer_pool(con: duckdb.DuckDBPyConnection, memory_limit: str) -> None:
    """Evict what DuckDB keeps cached (see :data:`EVICT_TO`); best effort, after the commit."""
    try:
        run(con, f"SET memory_limit = '{EVICT_TO}'")
    except duckdb.Error as exc:  # something could not be evicted: the checkpoint runs as before
        log.debug("could not empty the buffer pool: %s", exc)
    run(con, f"SET memory_limit = '{memory_limit}'")
