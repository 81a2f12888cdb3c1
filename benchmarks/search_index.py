"""The bug search index's build time on the benchmark's synced file.

The bug writes rebuild the BM25 index after every write that changed bugs
(``warehouse/search.py``); this rebuilds it once more on the file the phases left and times
it alone: the documents copied, the index built, how long the file was locked for it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from testio_pipeline.warehouse import Warehouse


def measure(db_path: Path) -> dict[str, Any]:
    warehouse = Warehouse(db_path)
    started = time.perf_counter()
    build = warehouse.rebuild_search_index()
    wall_s = time.perf_counter() - started
    probe_started = time.perf_counter()
    hits = warehouse.search_bugs("checkout crash", limit=10)
    return {
        "documents": build.documents,
        "chunks": build.chunks,
        "build_s": round(build.seconds, 2),
        "wall_s": round(wall_s, 2),
        "search_s": round(time.perf_counter() - probe_started, 3),
        "search_hits": len(hits),
    }
