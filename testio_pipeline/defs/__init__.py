"""Dagster definitions, loaded by dg's defs-folder loader (`definitions.py`): thin glue over the core."""
