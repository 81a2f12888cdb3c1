"""The registry's data checks as Dagster asset checks, declared on the entities' multi-asset
(``check_specs``) and run inside its step right after each entity's write, with no step (and
events) of their own.

A failing blocking check keeps the entity's downstream entities in the step from running
(``sync.graph``) and fails the step after its materialization is recorded, so the run's
downstream assets do not start either, as with a separate check step.
"""

from typing import Any

import dagster as dg

from ...entities import Entity
from ...quality import BLOCKING, CheckOutcome, describe


def _value(value: Any) -> Any:
    return dg.MetadataValue.json(value) if isinstance(value, (dict, list)) else value


def check_specs(entity: Entity, key: dg.AssetKey | None = None) -> list[dg.AssetCheckSpec]:
    asset = key or dg.AssetKey(entity.name)
    return [
        dg.AssetCheckSpec(name, asset=asset, blocking=name in BLOCKING, description=describe(name, entity))
        for name in entity.checks
    ]


def check_result(outcome: CheckOutcome, asset_key: dg.AssetKey | None = None) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN,
        metadata={key: _value(value) for key, value in outcome.metadata.items()},
        description=outcome.description,
    )
