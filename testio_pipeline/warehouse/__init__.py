"""The DuckDB warehouse: declarative schema, migrations, bulk writes and small reads."""

from .connection import WarehouseLockedError
from .merge import WriteStats
from .schema import LATEST_VERSION, TABLES, Column, Table
from .facade import Warehouse

__all__ = ["LATEST_VERSION", "TABLES", "Column", "Table", "Warehouse", "WarehouseLockedError", "WriteStats"]
