"""The Dagster code location: `testio_pipeline.definitions:defs`."""

from __future__ import annotations

import warnings

import dagster as dg

from .assets import TESTIO_ASSETS
from .checks import TESTIO_CHECKS
from .freshness import ttl_policy
from .resources import CustomerApiResource, RefreshResource, WarehouseResource
from .schedules import build_nightly_full_sync
from .sensors import build_refresh_sensor
from .settings import Settings
from .views_assets import VIEW_ASSETS, views_sensor

TTL_POLICY = ttl_policy(Settings.from_env().cache_ttl_seconds)
full_sync_job, nightly_full_sync = build_nightly_full_sync(TESTIO_ASSETS)

# map_resolved_asset_specs is marked "preview"; it is the documented way to give many
# assets one policy, and the tests pin its behaviour, so its warning is noise here.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)
    defs = dg.Definitions(
        assets=[*TESTIO_ASSETS, *VIEW_ASSETS],
        asset_checks=TESTIO_CHECKS,
        jobs=[full_sync_job],
        schedules=[nightly_full_sync],
        sensors=[build_refresh_sensor(TESTIO_ASSETS), views_sensor],
        resources={
            "testio_api": CustomerApiResource(),
            "warehouse": WarehouseResource(),
            "refresh": RefreshResource(),
        },
        # One process per run: a trivial run takes ~4 s instead of ~8 s with multiprocess.
        executor=dg.in_process_executor,
    ).map_resolved_asset_specs(
        # One TTL for every asset: TESTIO_CACHE_TTL_SECONDS becomes its freshness policy, and
        # the sensor reads the policy (not the setting) through the staleness helper.
        func=lambda spec: spec.replace_attributes(freshness_policy=TTL_POLICY),
        # The analyst views get none: they are as fresh as the tables they read (see views_assets).
        selection=TESTIO_ASSETS,
    )
