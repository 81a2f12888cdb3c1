"""The registry's data checks as Dagster asset checks, declared on and run inside each entity's
asset step (``check_specs``): right after the write, with no step (and events) of their own.

A failing blocking check fails the asset's step after its materialization is recorded, so the
run's downstream assets do not start, as with a separate check step.
"""

from typing import Any

import dagster as dg

from ...entities import Entity
from ...quality import BLOCKING, CheckOutcome, describe, run_checks
from ...warehouse import Warehouse


def _value(value: Any) -> Any:
    return dg.MetadataValue.json(value) if isinstance(value, (dict, list)) else value


def check_specs(entity: Entity) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(name, asset=entity.name, blocking=name in BLOCKING, description=describe(name, entity))
        for name in entity.checks
    ]


def check_result(outcome: CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=outcome.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN,
        metadata={key: _value(value) for key, value in outcome.metadata.items()},
        description=outcome.description,
    )


def check_results(wh: Warehouse, entity: Entity, run_id: str) -> list[dg.AssetCheckResult]:
    return [check_result(outcome) for outcome in run_checks(wh, entity, run_id)]
