"""The DuckDB warehouse: declarative schema, migrations, bulk writes and small reads."""

from .schema import LATEST_VERSION, TABLES, Column, Table
from .warehouse import Warehouse, WarehouseLockedError, WriteStats

__all__ = ["LATEST_VERSION", "TABLES", "Column", "Table", "Warehouse", "WarehouseLockedError", "WriteStats"]
