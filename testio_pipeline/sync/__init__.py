"""The Dagster-free sync core: one refresh step per entity, shared by the assets, the CLI and
the benchmark, so they all run the same code path.

Each step fetches everything for the products in scope (async, concurrent across products,
one in-flight cap shared by every client of the source), then writes once: one short warehouse transaction, so
the DuckDB file is locked only briefly. Which step serves which entity is declared in
``testio_pipeline.entities``.
"""

from __future__ import annotations

from ..entities import ENTITIES
from ..source import ApiSource
from ..warehouse import Warehouse
from .common import EntityResult, Mode, SyncOptions
from .graph import run_in_dependency_order

__all__ = ["EntityResult", "Mode", "SyncOptions", "run_cycle"]


def run_cycle(source: ApiSource, warehouse: Warehouse, options: SyncOptions) -> dict[str, EntityResult]:
    """One whole refresh cycle outside Dagster, as the assets' step runs it: each entity after
    its upstream, independent ones at the same time (used by the benchmark). The first error
    is raised once every step that could run has run."""
    results: dict[str, EntityResult] = {}
    errors: list[BaseException] = []
    for outcome in run_in_dependency_order(ENTITIES, lambda entity: entity.sync_step()(source, warehouse, options)):
        if outcome.error is not None:
            errors.append(outcome.error)
        elif outcome.value is not None:
            results[outcome.entity.name] = outcome.value
    if errors:
        raise errors[0]
    return results
