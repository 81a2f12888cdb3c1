"""The `sync_events` row of a run: opened when its first step starts, closed when the run ends.

Plain Python: the Dagster resource calls it; it only knows the warehouse and the
per-entity results of the sync steps.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Mapping

from .domain.vocabulary import utcnow
from .sync import EntityResult
from .warehouse import Warehouse
from .warehouse.schema import SYNC_COUNT_COLUMNS


# The run tag saying who started a run.
TRIGGER_TAG = "testio/trigger"
# The run tag naming the customer instance a run is for: dagster.yaml's run queue lets one
# such run per customer start at a time, and each refresh sensor waits for its own customer's.
CUSTOMER_TAG = "testio/customer"


def trigger_of(tags: Mapping[str, str]) -> str:
    """Who started a run: the sensor, the schedule, or a person (CLI or UI)."""
    if "dagster/sensor_name" in tags:
        return "sensor"
    if "dagster/schedule_name" in tags:
        return "schedule"
    return tags.get(TRIGGER_TAG, "cli/ui")


def counts_of(result: EntityResult) -> Counter:
    counts = Counter(
        {
            "rows_marked_deleted": result.write.marked_deleted,
            "api_requests": result.api_requests,
            "retries": result.retries,
        }
    )
    for key in SYNC_COUNT_COLUMNS:
        if key in result.counts:
            counts[key] += result.counts[key]
    return counts


@dataclass
class RunLog:
    """Accumulates one run's story and keeps its sync_events row up to date."""

    run_id: str
    trigger: str
    mode: str
    clock: Callable[[], datetime] = utcnow
    warehouse: Warehouse | None = None
    counts: Counter = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    degraded: dict[str, str] = field(default_factory=dict)

    def begin(self, warehouse: Warehouse) -> None:
        """Open the row (once per run), from inside the first step that writes DuckDB."""
        if self.warehouse is None:
            self.warehouse = warehouse
            warehouse.start_sync_event(self.run_id, self.trigger, self.mode, self.clock())

    def record(self, result: EntityResult) -> None:
        self.counts.update(counts_of(result))
        problems = []
        if result.product_errors:
            problems.append(f"{len(result.product_errors)} products not refreshed")
        if result.rejected:
            problems.append(f"{len(result.rejected)} records rejected")
        if problems:
            self.degraded[result.entity] = ", ".join(problems)

    def fail(self, entity: str, error: BaseException) -> None:
        self.failures[entity] = f"{type(error).__name__}: {error}"

    @property
    def status(self) -> str:
        if self.failures:
            return "failed"
        return "partial" if self.degraded else "success"

    @property
    def error(self) -> str | None:
        parts = [f"{entity}: {text}" for entity, text in {**self.degraded, **self.failures}.items()]
        return "; ".join(parts)[:4000] or None

    def finish(self) -> None:
        if self.warehouse is None:
            return  # no step got far enough to open the row
        self.warehouse.finish_sync_event(
            self.run_id, self.status, self.clock(), dict(self.counts), error=self.error
        )
