"""The DuckDB warehouse: declarative schema, migrations, bulk writes and small reads."""

from .locks import WarehouseLockedError
from .merge import WriteStats
from .schema import TABLES, Column, Table
from .schema_versions import LATEST_VERSION
from .facade import Warehouse

__all__ = ["LATEST_VERSION", "TABLES", "Column", "Table", "Warehouse", "WarehouseLockedError", "WriteStats"]
