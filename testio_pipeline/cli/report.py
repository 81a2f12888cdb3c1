"""One page comparing customers: `python -m testio_pipeline.cli.report --all-customers`.

    python -m testio_pipeline.cli.report --all-customers [--days 30] [--as-of ISO] [--out FILE]
    python -m testio_pipeline.cli.report --all-customers --customer acme=data/acme.duckdb --customer globex=…

Reads every customer's warehouse in one session (docs/customers.md, "Querying across
customers") and writes the headline numbers of each side by side: an HTML page
(default data/reports/customer_comparison.html) and the same page as Markdown beside it,
which it also prints. The customers are the code location's instances unless --customer
names them. Each customer's own report stays its `quality_report` asset.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from ..report.compare import FILE_NAME, compare
from ..warehouse.backends import is_lake
from ..warehouse.customers import CrossCustomerError
from .query import _customers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testio_pipeline.cli.report", description=__doc__.splitlines()[0])
    parser.add_argument("--all-customers", action="store_true", required=True, help="compare every customer (the only mode)")
    parser.add_argument(
        "--customer", action="append", metavar="NAME=FILE", default=[],
        help="this customer and warehouse instead of the code location's (repeatable)",
    )
    parser.add_argument("--days", type=int, default=30, help="the window: the days before --as-of (default 30)")
    parser.add_argument("--as-of", help="ISO 8601 end of the window (UTC when no offset; default: now)")
    parser.add_argument("--out", type=Path, default=Path("data") / "reports" / FILE_NAME, help="the HTML file to write")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    as_of = None
    if args.as_of:
        try:
            as_of = datetime.fromisoformat(args.as_of)
        except ValueError:
            parser.error(f"--as-of: not an ISO 8601 time: {args.as_of!r}")
        if as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=timezone.utc)
    customers = _customers(args.customer, parser)
    missing = [name for name, path in customers.items() if not is_lake(path) and not Path(path).exists()]
    if missing:
        print(f"no warehouse yet for {', '.join(missing)}: run a sync of each first.", file=sys.stderr)
        return 2
    try:
        comparison = compare(customers, days=args.days, as_of=as_of, out=args.out)
    except CrossCustomerError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    sys.stdout.write(comparison.markdown())
    print(f"\nWritten: {comparison.html_path} and {comparison.html_path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
