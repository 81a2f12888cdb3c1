"""The registry's data checks as Dagster asset checks: one multi-check step per entity asset."""

from typing import Any, Iterator

import dagster as dg

from ...entities import ENTITIES, Entity
from ...quality import BLOCKING, CheckOutcome, describe, run_checks
from ..resources import WarehouseResource


def _value(value: Any) -> Any:
    return dg.MetadataValue.json(value) if isinstance(value, (dict, list)) else value


def check_result(outcome: CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=outcome.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN,
        metadata={key: _value(value) for key, value in outcome.metadata.items()},
        description=outcome.description,
    )


def _checks(entity: Entity) -> dg.AssetChecksDefinition:
    specs = [
        dg.AssetCheckSpec(name, asset=entity.name, blocking=name in BLOCKING, description=describe(name, entity))
        for name in entity.checks
    ]

    @dg.multi_asset_check(name=f"{entity.name}_checks", specs=specs, description=f"Data checks on {entity.name}.")
    def _run(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> Iterator[dg.AssetCheckResult]:
        for outcome in run_checks(warehouse.warehouse(), entity, context.run.run_id):
            yield check_result(outcome)

    return _run


TESTIO_CHECKS = [_checks(entity) for entity in ENTITIES]

defs = dg.Definitions(asset_checks=TESTIO_CHECKS)
