"""`make test` runs with `--dist loadgroup`: tests marked with one `xdist_group` (the UI, the
atomicity and the lake tests, which start real processes and share module fixtures) must run
on one worker, one after the other. A pytest / pytest-xdist pair that drops the group would
spread them over every worker at once without a word; this test says so instead."""

from __future__ import annotations

import pytest

GROUP = "xdist_groups"


@pytest.mark.xdist_group(GROUP)
def test_loadgroup_keeps_a_groups_tests_on_one_worker(request):
    if not getattr(request.config.option, "loadgroup", False):  # set on each worker of such a run
        pytest.skip("only meaningful in a `--dist loadgroup` run (make test)")
    # pytest-xdist groups by the suffix it appends to each marked test's node id.
    assert request.node.nodeid.endswith(f"@{GROUP}"), (
        f"{request.node.nodeid}: xdist_group was ignored; pin pytest / pytest-xdist to a pair that honours it"
    )
