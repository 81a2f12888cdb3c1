"""One asset that does nothing: what `dagster asset materialize` costs before any project code.

The benchmark times ``dagster asset materialize --select noop -m benchmarks.trivial_defs``
on a fresh instance configured by the project's ``dagster.yaml``: the CLI's start-up, the
Dagster import, the instance and one step's events. That is the fixed cost the speed target
allows a whole run on top of its latency bound.
"""

import dagster as dg


@dg.asset
def noop() -> None:
    """Does nothing."""


defs = dg.Definitions(assets=[noop])
