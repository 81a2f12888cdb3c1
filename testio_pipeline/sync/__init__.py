"""The Dagster-free sync core: one refresh step per entity, shared by the assets, the CLI and
the benchmark, so they all run the same code path.

Each step fetches everything for the products in scope (async, concurrent across products,
one in-flight cap in the client), then writes once: one short warehouse transaction, so
the DuckDB file is locked only briefly. Which step serves which entity is declared in
``testio_pipeline.entities``.
"""

from __future__ import annotations

from ..entities import ENTITIES
from ..source import ApiSource
from ..warehouse import Warehouse
from .common import EntityResult, Mode, SyncOptions

__all__ = ["EntityResult", "Mode", "SyncOptions", "run_cycle"]


def run_cycle(source: ApiSource, warehouse: Warehouse, options: SyncOptions) -> dict[str, EntityResult]:
    """One whole refresh cycle outside Dagster, in dependency order (used by the benchmark)."""
    return {entity.name: entity.sync_step()(source, warehouse, options) for entity in ENTITIES}
