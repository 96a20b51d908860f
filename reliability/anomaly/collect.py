"""Measuring a partition and keeping the measurements: the I/O around the pure metric plan.

The metric history lives in the warehouse itself, table `reliability.metric_history` (one row per asset,
partition day and metric; re-measuring a day replaces it), so it is backed up with the data it
describes and any SQL client can chart it. Identifiers are always quoted; values are parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta

import duckdb

from reliability.anomaly.metrics import (
    DEFAULT_LOADED_AT,
    TableShape,
    is_text,
    plan_metrics,
    quote_identifier,
    read_metrics,
)

HISTORY_SCHEMA = "reliability"
HISTORY_TABLE = "metric_history"
CATEGORICAL_MAX_DISTINCT = 20  # a text column with at most this many values gets value shares
CATEGORICAL_SAMPLE_ROWS = 10_000


def describe_table(con: duckdb.DuckDBPyConnection, table: str, schema: str = "main") -> list[tuple[str, str]]:
    rows = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, table],
    ).fetchall()
    return [(str(name), str(sql_type)) for name, sql_type in rows]


def _bounds(column_type: str | None, start: datetime, end: datetime) -> list[object]:
    """Window bounds typed like the partition column, so DuckDB can prune by it (none: no window)."""
    if column_type is None:
        return []
    return [start.date(), end.date()] if column_type.upper() == "DATE" else [start, end]


def _where(shape: TableShape) -> str:
    column = shape.partition_column
    return "" if column is None else f" where {quote_identifier(column)} >= ? and {quote_identifier(column)} < ?"


def _column_type(shape: TableShape) -> str | None:
    return None if shape.partition_column is None else dict(shape.columns)[shape.partition_column]


def categorical_columns(
    con: duckdb.DuckDBPyConnection, shape: TableShape, start: datetime, end: datetime
) -> frozenset[str]:
    """Text columns with few distinct values in (the first rows of) the partition: a LIMIT-ed read,
    not a second scan of the table."""
    q = quote_identifier
    text = [n for n, t in shape.columns if is_text(t) and n != shape.partition_column]
    if not text:
        return frozenset()
    inner = (
        f"select {', '.join(q(n) for n in text)} from {q(shape.schema)}.{q(shape.table)}{_where(shape)} "
        f"limit {CATEGORICAL_SAMPLE_ROWS}"
    )
    counts = con.execute(
        f"select {', '.join(f'count(distinct {q(n)})' for n in text)} from ({inner})",
        _bounds(_column_type(shape), start, end),
    ).fetchone()
    return frozenset(
        n for n, c in zip(text, counts or (), strict=False) if c is not None and c <= CATEGORICAL_MAX_DISTINCT
    )


def table_shape(
    con: duckdb.DuckDBPyConnection,
    table: str,
    partition_column: str | None,
    start: datetime,
    end: datetime,
    schema: str = "main",
    loaded_at_column: str = DEFAULT_LOADED_AT,
    skip_columns: Iterable[str] = (),
) -> TableShape:
    skip = set(skip_columns)
    columns = [(n, t) for n, t in describe_table(con, table, schema) if n not in skip]
    if not columns:
        raise ValueError(f"table {schema}.{table} does not exist (or has no columns)")
    if partition_column is not None and partition_column not in dict(columns):
        raise ValueError(f"table {schema}.{table} has no partition column {partition_column!r}")
    shape = TableShape(table, tuple(columns), partition_column, loaded_at_column=loaded_at_column, schema=schema)
    return TableShape(
        table, shape.columns, partition_column, categorical_columns(con, shape, start, end), loaded_at_column,
        schema=schema,
    )  # fmt: skip


def collect_partition(
    con: duckdb.DuckDBPyConnection, shape: TableShape, start: datetime, end: datetime
) -> dict[str, float]:
    """Every metric of the partition `[start, end)` (of the whole table without a partition column),
    from one query."""
    plan = plan_metrics(shape)
    row = con.execute(plan.sql, _bounds(_column_type(shape), start, end)).fetchone()
    return read_metrics(plan, row or (0,), end)


def rows_by_day(
    con: duckdb.DuckDBPyConnection, table: str, day_column: str, start: date, end: date, schema: str = "main"
) -> dict[date, int]:
    """Rows per day in `[start, end)`: one cheap grouped count, to find the days that changed."""
    q = quote_identifier
    types = dict(describe_table(con, table, schema))
    if day_column not in types:
        raise ValueError(f"table {schema}.{table} has no partition column {day_column!r}")
    low, high = datetime(start.year, start.month, start.day), datetime(end.year, end.month, end.day)
    rows = con.execute(
        f"select cast({q(day_column)} as date), count(*) from {q(schema)}.{q(table)} "
        f"where {q(day_column)} >= ? and {q(day_column)} < ? group by 1",
        _bounds(types[day_column], low, high),
    ).fetchall()
    return {day: int(n) for day, n in rows}


def judged_row_counts(
    con: duckdb.DuckDBPyConnection, asset: str, since: date, before: date
) -> tuple[dict[date, float], date | None, date | None]:
    """The row counts stored for the asset's days in `[since, before)`, its first judged day ever and
    its last judged day before `before`. The history table must exist (`ensure_history`)."""
    counts = con.execute(
        f"select partition_date, value from {HISTORY_SCHEMA}.{HISTORY_TABLE} "
        "where asset = ? and metric = 'row_count' and partition_date >= ? and partition_date < ?",
        [asset, since, before],
    ).fetchall()
    first, last = con.execute(
        f"select min(partition_date), max(partition_date) filter (where partition_date < ?) "
        f"from {HISTORY_SCHEMA}.{HISTORY_TABLE} where asset = ?",
        [before, asset],
    ).fetchone()
    return {day: float(value) for day, value in counts}, first, last


def ensure_history(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"create schema if not exists {HISTORY_SCHEMA}")
    con.execute(
        f"""create table if not exists {HISTORY_SCHEMA}.{HISTORY_TABLE} (
            asset varchar not null, partition_date date not null, metric varchar not null,
            value double not null, collected_at timestamp not null,
            primary key (asset, partition_date, metric))"""
    )


def store_metrics(
    con: duckdb.DuckDBPyConnection, asset: str, day: date, metrics: Mapping[str, float], collected_at: datetime
) -> None:
    """Replace the day's measurements of the asset (a re-run of the partition measures it anew), in
    one statement. The history table must exist (`ensure_history`)."""
    names = list(metrics)
    con.execute(
        f"""insert or replace into {HISTORY_SCHEMA}.{HISTORY_TABLE}
            select ?, ?::date, unnest(?::varchar[]), unnest(?::double[]), ?::timestamp""",
        [asset, day, names, [float(metrics[n]) for n in names], collected_at.replace(tzinfo=None)],
    )
    # a metric measured before but not now (a value that vanished) must not survive the re-measure
    con.execute(
        f"delete from {HISTORY_SCHEMA}.{HISTORY_TABLE} where asset = ? and partition_date = ? "
        "and not list_contains(?::varchar[], metric)",
        [asset, day, names],
    )


def load_history(
    con: duckdb.DuckDBPyConnection, asset: str, before: date, days: int, metrics: Sequence[str] | None = None
) -> dict[str, list[tuple[date, float]]]:
    """The asset's measurements of the `days` days before `before`, per metric, oldest first."""
    sql = (
        f"select metric, partition_date, value from {HISTORY_SCHEMA}.{HISTORY_TABLE} "
        "where asset = ? and partition_date < ? and partition_date >= ?"
    )
    params: list[object] = [asset, before, before - timedelta(days=days)]
    if metrics is not None:
        sql += " and list_contains(?, metric)"
        params.append(list(metrics))
    out: dict[str, list[tuple[date, float]]] = {}
    for metric, day, value in con.execute(sql + " order by partition_date", params).fetchall():
        out.setdefault(metric, []).append((day, float(value)))
    return out
