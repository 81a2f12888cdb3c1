"""testio-pipeline: a Dagster + DuckDB mirror of the TestIO Customer API v2.

``TestIOMirror`` (the Dagster Component a customer's ``defs.yaml`` names) loads on first use,
so the Dagster-free tools (the query CLI, the simulator) do not import Dagster.
"""

__all__ = ["TestIOMirror"]


def __getattr__(name: str):
    if name == "TestIOMirror":
        from .component.mirror import TestIOMirror

        return TestIOMirror
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
