"""`testio_nightly_full_sync`: a full refresh (every page, every bug, deletion detection) once a day."""

from __future__ import annotations

from typing import Sequence

import dagster as dg

from ...run_log import TRIGGER_TAG
from ..testio.assets import TESTIO_ASSETS

SCHEDULE_NAME = "testio_nightly_full_sync"
JOB_NAME = "testio_full_sync"


def build_nightly_full_sync(assets: Sequence[dg.AssetsDefinition], cron: str = "0 3 * * *") -> tuple[dg.UnresolvedAssetJobDefinition, dg.ScheduleDefinition]:
    job = dg.define_asset_job(
        JOB_NAME,
        selection=dg.AssetSelection.assets(*assets),
        description="Full refresh of every TestIO asset: all test pages, all bugs, deletion detection.",
        config={"resources": {"refresh": {"config": {"mode": "full"}}}},
        tags={TRIGGER_TAG: "schedule"},
    )
    schedule = dg.ScheduleDefinition(
        name=SCHEDULE_NAME,
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        # Stopped by default: turn it on in the UI (Automation) once the mirror is in use.
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Runs the full sync (with deletion detection) once a day at 03:00 UTC.",
    )
    return job, schedule


full_sync_job, nightly_full_sync = build_nightly_full_sync(TESTIO_ASSETS)
defs = dg.Definitions(jobs=[full_sync_job], schedules=[nightly_full_sync])
