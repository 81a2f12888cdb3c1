"""The Dagster code location: `testio_pipeline.definitions:defs`.

dg's defs-folder loader collects everything under `defs/`; this module adds only the one
policy map: `TESTIO_CACHE_TTL_SECONDS` becomes the freshness policy of every TestIO entity
asset, and the refresh sensor reads the policy (never the setting) through the staleness
helper. The analyst views get none: they are as fresh as the tables they read.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

from .defs.testio.assets import GROUP as TESTIO_GROUP
from .freshness import ttl_policy
from .settings import Settings

TTL_POLICY = ttl_policy(Settings.from_env().cache_ttl_seconds)
# Asset group -> its freshness policy.
FRESHNESS_POLICIES = {TESTIO_GROUP: TTL_POLICY}


def _with_policies(defs: dg.Definitions) -> dg.Definitions:
    for group, policy in FRESHNESS_POLICIES.items():
        defs = defs.map_resolved_asset_specs(
            func=lambda spec, policy=policy: spec.replace_attributes(freshness_policy=policy),
            selection=dg.AssetSelection.groups(group),
        )
    return defs


# map_resolved_asset_specs is marked "preview"; it is the documented way to give many
# assets one policy, and the tests pin its behaviour, so its warning is noise here.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)
    defs = _with_policies(dg.load_from_defs_folder(path_within_project=Path(__file__).parent))
