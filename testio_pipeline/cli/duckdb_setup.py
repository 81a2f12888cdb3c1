"""Make the warehouse's DuckDB extensions available to an analyst's own DuckDB session.

    python -m testio_pipeline.cli.duckdb_setup

Fills ``.venv/duckdb_extensions`` from the pip packages (``make install`` runs this) and
prints the one line a DuckDB CLI, notebook or BI session runs first so DuckDB loads the
extensions (the search index's ``fts``, DuckLake's) from there instead of downloading them.
"""

from __future__ import annotations

import sys

from ..warehouse.extensions import install, setup_line


def main() -> int:
    install()
    print(setup_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
