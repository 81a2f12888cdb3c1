"""The code location: `testio_pipeline.definitions:defs`.

dg's defs-folder loader collects everything under `defs/`: one `TestIOMirror` instance per
customer (each builds its own assets, freshness policy, sensors, schedule and resources from
its attributes) and the executor. ``mirrors()`` hands the CLI the same instances.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

from .component.mirror import TestIOMirror

_tree = dg.ComponentTree.for_project(Path(__file__).parent)
# The loader itself uses parts Dagster marks "preview" or "beta" (load_definitions_from_module
# for defs/executor.py, each component's code reference, sensor owners): the documented way to
# load a defs folder, so their warnings are noise in every command that loads the code location.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)
    warnings.simplefilter("ignore", dg.BetaWarning)
    defs = _tree.build_defs()


def mirrors() -> list[TestIOMirror]:
    """The code location's customer instances, in folder order."""
    return _tree.get_all_components(of_type=TestIOMirror)
