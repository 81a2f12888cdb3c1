"""`testio_nightly_full_sync`: a full refresh (every page, every bug, deletion detection) once a day."""

from __future__ import annotations

from typing import Sequence

import dagster as dg

from ...run_log import CUSTOMER_TAG, TRIGGER_TAG
from ...settings import DEFAULT_NIGHTLY_CRON
from ..naming import UNPREFIXED, Names

SCHEDULE_NAME = "testio_nightly_full_sync"
JOB_NAME = "testio_full_sync"


def build_nightly_full_sync(
    assets: Sequence[dg.AssetsDefinition],
    cron: str = DEFAULT_NIGHTLY_CRON,
    running: bool = False,
    names: Names = UNPREFIXED,
    customer: str = "testio",
) -> tuple[dg.UnresolvedAssetJobDefinition, dg.ScheduleDefinition]:
    job = dg.define_asset_job(
        names.of(JOB_NAME),
        selection=dg.AssetSelection.assets(*assets),
        description="Full refresh of every TestIO asset: all test pages, all bugs, deletion detection.",
        config={"resources": {names.refresh: {"config": {"mode": "full"}}}},
        tags={TRIGGER_TAG: "schedule", CUSTOMER_TAG: customer},
    )
    schedule = dg.ScheduleDefinition(
        name=names.of(SCHEDULE_NAME),
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        # Stopped unless the instance says otherwise: turn it on in the UI (Automation) once
        # the mirror is in use.
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description=f"Runs the full sync (with deletion detection) on the cron schedule {cron} (UTC).",
    )
    return job, schedule
