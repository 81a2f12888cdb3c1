"""Metadata people can read: column schema, a small Markdown preview and numeric KPIs.

Every materialization (the entity assets and the analyst views) carries
- ``dagster/column_schema``: the columns with their types and analyst descriptions, from the
  same declarations that create the DuckDB comments and docs/data-dictionary.md;
- ``preview``: the first rows as a Markdown table;
- numeric KPIs (open bugs, acceptance rate, tests running, …) as int/float metadata, which
  the Dagster UI plots over the asset's materializations.

Reads go through one short read-only connection after the asset's write.
"""

from datetime import date, datetime
from typing import Any, Mapping, Sequence

import dagster as dg

from .entities import Entity
from .warehouse import TABLES, Warehouse
from .warehouse.schema import Column
from .warehouse.views import View, describe_type

PREVIEW_ROWS = 5
PREVIEW_CELL_CHARS = 40

def column_schema(columns: Sequence[Column]) -> dg.TableSchema:
    """A Dagster table schema from declared columns (type as DESCRIBE prints it + analyst description)."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name=c.name, type=describe_type(c.type), description=c.description) for c in columns]
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M")
    elif isinstance(value, date):
        text = value.isoformat()
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(_cell(v) for v in value)
    else:
        text = str(value)
    text = " ".join(text.split())  # no newlines inside a table cell
    if len(text) > PREVIEW_CELL_CHARS:
        text = text[: PREVIEW_CELL_CHARS - 1] + "…"
    return text.replace("|", "\\|")


def markdown_table(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; long cells are shortened, pipes escaped."""
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _numeric(values: Mapping[str, Any]) -> dict[str, dg.MetadataValue]:
    """Int/float metadata (plotted by the UI); empty values (e.g. no rate yet) are left out."""
    out: dict[str, dg.MetadataValue] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = dg.MetadataValue.bool(value)
        elif isinstance(value, int):
            out[key] = dg.MetadataValue.int(int(value))
        else:
            out[key] = dg.MetadataValue.float(float(value))
    return out


def _read(warehouse: Warehouse, preview_sql: str, kpi_sql: str, total_sql: str | None = None):
    with warehouse.read() as con:  # one read-only connection for all three
        cur = con.execute(f"SELECT * FROM ({preview_sql}) LIMIT {PREVIEW_ROWS}")
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
        cur = con.execute(kpi_sql)
        kpis = dict(zip([d[0] for d in cur.description], cur.fetchone()))
        total = con.execute(total_sql).fetchone()[0] if total_sql else None
    return names, rows, kpis, total


def _preview_md(title: str, names, rows, total: int | None) -> dg.MetadataValue:
    shown = f"first {len(rows)} of {total}" if total is not None else f"first {len(rows)}"
    return dg.MetadataValue.md(f"**{title}** ({shown} rows)\n\n" + markdown_table(names, rows))


def entity_metadata(warehouse: Warehouse, entity: Entity) -> dict[str, Any]:
    """Column schema, preview and KPIs of an entity asset's main table."""
    table = TABLES[entity.name]
    names, rows, kpis, _ = _read(warehouse, entity.readout.preview, entity.readout.kpis)
    total = kpis.get(entity.name)
    return {
        "dagster/column_schema": column_schema(table.columns),
        "preview": _preview_md(f"{table.name} (not deleted)", names, rows, total),
        **_numeric(kpis),
    }


def view_metadata(warehouse: Warehouse, view: View) -> dict[str, Any]:
    """Column schema, preview, row count and KPIs of an analyst view."""
    shown = ", ".join(view.preview) if view.preview else "*"
    preview_sql = f"SELECT {shown} FROM {view.name} ORDER BY {view.order_by}"
    names, rows, kpis, total = _read(
        warehouse, preview_sql, view.kpis, f"SELECT count(*) FROM {view.name}"
    )
    return {
        "dagster/column_schema": column_schema(view.columns),
        "dagster/row_count": dg.MetadataValue.int(int(total)),
        "preview": _preview_md(view.name, names, rows, total),
        **_numeric(kpis),
    }
