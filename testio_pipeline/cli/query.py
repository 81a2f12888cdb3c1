"""Ask the warehouse a question without installing anything else.

    python -m testio_pipeline.cli.query "SELECT * FROM product_summary"
    python -m testio_pipeline.cli.query --file question.sql
    python -m testio_pipeline.cli.query --list          # tables and views, with what they hold
    python -m testio_pipeline.cli.query --search "checkout crash" [--product ID] [--status S]
    python -m testio_pipeline.cli.query --all-customers-sql > data/all_customers.sql
    python -m testio_pipeline.cli.query --all-customers "SELECT tenant, count(*) FROM all_bugs GROUP BY ALL"
    python -m testio_pipeline.cli.query --all-customers --search "checkout crash"

Read-only: it never blocks a running sync for longer than the query, and waits (bounded) while
a sync holds the file for its short write. The file is TESTIO_DUCKDB_PATH (default
data/testio.duckdb) unless --db is given. --all-customers runs the question in a session of
every customer's warehouse (the script of --all-customers-sql, docs/customers.md); the
customers are the code location's instances unless --customer names them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from ..settings import Settings, SettingsError
from ..warehouse import Warehouse, extensions
from ..warehouse.backends import is_lake
from ..warehouse.customers import CrossCustomerError, cross_customer_sql, open_session, search_all_customers
from ..warehouse.search import SearchIndexMissingError
from ..warehouse.views.model import BUG_STATUS_LABELS

LIST_SQL = """
SELECT 'view' AS kind, view_name AS name, comment AS description
FROM duckdb_views() WHERE NOT internal AND schema_name = 'main' AND database_name = current_database()
UNION ALL
SELECT 'table', table_name, comment FROM duckdb_tables()
WHERE schema_name = 'main' AND database_name = current_database()
ORDER BY kind DESC, name
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testio_pipeline.cli.query", description=__doc__.splitlines()[0])
    parser.add_argument("sql", nargs="?", help="the query to run")
    parser.add_argument("--file", type=Path, help="read the query from this file")
    parser.add_argument("--list", action="store_true", help="list the tables and views")
    parser.add_argument("--search", metavar="WORDS", help="full-text search over bugs, best match first (BM25)")
    parser.add_argument("--product", type=int, metavar="ID", help="with --search: only bugs of this product")
    parser.add_argument(
        "--status", choices=BUG_STATUS_LABELS, help="with --search: only bugs in this status"
    )
    parser.add_argument("--db", help="the DuckDB file (default: TESTIO_DUCKDB_PATH or data/testio.duckdb)")
    parser.add_argument(
        "--all-customers-sql", action="store_true", help="print the script that puts every customer's warehouse in one session"
    )
    parser.add_argument("--all-customers", action="store_true", help="run the query (all_<view>) or --search over every customer's warehouse")
    parser.add_argument(
        "--customer", action="append", metavar="NAME=FILE", default=[],
        help="with --all-customers(-sql): this customer and warehouse instead of the code location's (repeatable)",
    )
    parser.add_argument("--max-rows", type=int, default=50, help="rows to print (default 50)")
    args = parser.parse_args(argv)
    if (args.product is not None or args.status) and args.search is None:
        parser.error("--product and --status filter a --search")
    if args.all_customers_sql or args.all_customers:
        customers = _customers(args.customer, parser)
        missing = [name for name, path in customers.items() if not is_lake(path) and not Path(path).exists()]
        if args.all_customers and missing:
            print(f"no warehouse yet for {', '.join(missing)}: run a sync of each first.", file=sys.stderr)
            return 2
        try:
            # printed, the script is a file an analyst keeps: no lake password in it
            script = cross_customer_sql(customers, include_passwords=not args.all_customers_sql)
        except CrossCustomerError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        if args.all_customers_sql:
            sys.stdout.write(script)
            return 0
    if args.search is not None:
        if not args.search.strip():
            parser.error("--search needs words to look for")
        if args.all_customers:
            try:
                frame = search_all_customers(customers, args.search, product_id=args.product, status=args.status, limit=args.max_rows)
            except (SearchIndexMissingError, CrossCustomerError) as exc:
                print(str(exc), file=sys.stderr)
                return 2
            _print(frame, args.max_rows * len(customers))
            return 0
        sql = None
    elif args.list:
        sql = LIST_SQL
    elif args.file:
        sql = args.file.read_text(encoding="utf-8")
    elif args.sql:
        sql = args.sql
    else:
        parser.error("give a query, --file or --list")
    if args.all_customers:
        if args.list:
            parser.error("--list describes one customer's warehouse (--db)")
        return _query_all_customers(customers, sql, args.max_rows)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    path = args.db or settings.duckdb_path
    if not is_lake(path) and not Path(path).exists():
        print(f"{path} does not exist yet: run `make run` (or a sync) first.", file=sys.stderr)
        return 2
    warehouse = Warehouse(path, lake_data_path=settings.lake_data_path)
    if sql is None:
        try:
            frame = warehouse.search_bugs(args.search, product_id=args.product, status=args.status, limit=args.max_rows)
        except SearchIndexMissingError as exc:
            print(str(exc), file=sys.stderr)
            return 2
    else:
        with warehouse.read() as con:
            if not warehouse.is_lake:
                # so a question may call the search_bugs macro; DuckDB would otherwise try to
                # download fts on first use (extensions.py)
                extensions.load(con, "fts")
            frame = con.execute(sql.strip().rstrip(";")).df()
    _print(frame, args.max_rows)
    return 0


def _customers(given: list[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    """{name: warehouse} from ``--customer NAME=FILE``, else from the code location's instances."""
    if given:
        pairs = [item.partition("=") for item in given]
        if any(not name or not sep or not path for name, sep, path in pairs):
            parser.error("--customer takes NAME=FILE")
        return {name: path for name, _, path in pairs}
    from ..definitions import mirrors  # noqa: PLC0415  (loads Dagster: only this option needs it)

    return {mirror.name: mirror.settings().duckdb_path for mirror in mirrors()}


def _query_all_customers(customers: dict[str, str], sql: str, max_rows: int) -> int:
    try:
        con = open_session(customers)
    except CrossCustomerError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    try:
        frame = con.execute(sql.strip().rstrip(";")).df()
    finally:
        con.close()  # at once: an open session keeps every customer's sync from writing
    _print(frame, max_rows)
    return 0


def _print(frame: pd.DataFrame, max_rows: int) -> None:
    with pd.option_context("display.max_rows", max_rows, "display.max_columns", None,
                           "display.width", 200, "display.max_colwidth", 60):
        print(frame.to_string(index=False, max_rows=max_rows) if len(frame) else "(no rows)")


if __name__ == "__main__":
    sys.exit(main())
