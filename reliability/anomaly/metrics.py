"""Per-partition table metrics: what one scan measures, and which fault class watches each metric.

Pure: `plan_metrics` writes the ONE query that measures a partition of a table (row count, null fraction
per column, distinct count and value shares of low-cardinality columns, min/max/mean/p50/p95 of numeric
columns, latest event and load times) and `read_metrics` turns its single result row into named
metrics. Running the query is the caller's business (`reliability.anomaly.collect`).

Metric names: `row_count`, `null_fraction:<col>`, `distinct_count:<col>`, `share:<col>=<value>` (among non-null values),
`min|max|mean|p50|p95:<col>`, `freshness_gap_hours`, `load_delay_hours`, and `ratio:<a>/<b>` for a
declared relation between two assets' row counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from reliability.incidents.model import FaultClass

NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                 "UBIGINT", "FLOAT", "REAL", "DOUBLE", "DECIMAL", "NUMERIC")  # fmt: skip
TEXT_TYPES = ("VARCHAR", "TEXT", "STRING", "ENUM", "BOOLEAN")
TIME_TYPES = ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ", "DATETIME")
NUMERIC_STATS = ("min", "max", "mean", "p50", "p95")
DEFAULT_LOADED_AT = "_loaded_at"

FAULT_CLASS_BY_KIND: Mapping[str, FaultClass] = {
    "row_count": FaultClass.VOLUME,
    "null_fraction": FaultClass.NULL_RATE,
    "distinct_count": FaultClass.DISTRIBUTION,
    "share": FaultClass.DISTRIBUTION,
    **{stat: FaultClass.DISTRIBUTION for stat in NUMERIC_STATS},
    "freshness_gap_hours": FaultClass.FRESHNESS,
    "load_delay_hours": FaultClass.FRESHNESS,
    "ratio": FaultClass.COMPLETENESS,
}


def metric_kind(metric: str) -> str:
    """`null_fraction:email` -> `null_fraction`."""
    return metric.split(":", 1)[0]


def metric_column(metric: str) -> str | None:
    """The column a metric is about (`share:status=placed` -> `status`), None for table metrics."""
    if ":" not in metric or metric_kind(metric) == "ratio":
        return None
    rest = metric.split(":", 1)[1]
    return rest.split("=", 1)[0] if metric_kind(metric) == "share" else rest


def fault_class_of_metric(metric: str) -> FaultClass:
    return FAULT_CLASS_BY_KIND.get(metric_kind(metric), FaultClass.DATA_QUALITY)


def quote_identifier(name: str) -> str:
    """A DuckDB identifier, whatever characters it holds."""
    return '"' + name.replace('"', '""') + '"'


def _base_type(sql_type: str) -> str:
    return sql_type.upper().split("(", 1)[0].strip()


def is_numeric(sql_type: str) -> bool:
    return _base_type(sql_type) in NUMERIC_TYPES


def is_text(sql_type: str) -> bool:
    return _base_type(sql_type) in TEXT_TYPES


def is_time(sql_type: str) -> bool:
    return _base_type(sql_type) in TIME_TYPES


@dataclass(frozen=True)
class TableShape:
    """What the query needs to know about a table: its columns, the partition column, which text
    columns are low-cardinality, the load-time column, and columns left out (ids, switched off)."""

    table: str
    columns: Sequence[tuple[str, str]]  # (name, DuckDB type)
    partition_column: str | None  # None: the whole table (a snapshot)
    categorical: frozenset[str] = frozenset()
    loaded_at_column: str = DEFAULT_LOADED_AT
    skip_stats: frozenset[str] = frozenset()  # no numeric stats (identifiers), still null fractions
    schema: str = "main"


@dataclass(frozen=True)
class MetricPlan:
    """The query and how to read its row."""

    sql: str
    outputs: Sequence[tuple[str, str]] = field(default_factory=tuple)  # (what, column) per selected value


def is_identifier_column(name: str) -> bool:
    """Ids grow with every row: their min/max/mean are not a distribution worth watching."""
    lowered = name.lower()
    return lowered == "id" or lowered.endswith("_id")


def plan_metrics(shape: TableShape) -> MetricPlan:
    """One aggregate query over the partition `[?, ?)` of the table (the whole table when it has no
    partition column: no parameters, no freshness metrics), measuring every metric at once."""
    q = quote_identifier
    selects = ["count(*)"]
    outputs: list[tuple[str, str]] = [("row_count", "")]
    for name, sql_type in shape.columns:
        selects.append(f"count(*) - count({q(name)})")
        outputs.append(("nulls", name))
        if name == shape.partition_column:
            continue
        if is_numeric(sql_type) and name not in shape.skip_stats and not is_identifier_column(name):
            c = f"{q(name)}::double"
            selects += [f"min({c})", f"max({c})", f"avg({c})", f"quantile_cont({c}, [0.5, 0.95])"]
            outputs += [("min", name), ("max", name), ("mean", name), ("quantiles", name)]
        elif name in shape.categorical:
            selects.append(f"histogram({q(name)}::varchar)")
            outputs.append(("histogram", name))
        elif is_time(sql_type) and shape.partition_column is not None:  # a snapshot has no day end to age
            selects.append(f"max({q(name)})")
            outputs.append(("loaded_at" if name == shape.loaded_at_column else "event_max", name))
    sql = f"select {', '.join(selects)} from {q(shape.schema)}.{q(shape.table)}"
    if shape.partition_column is not None:
        sql += f" where {q(shape.partition_column)} >= ? and {q(shape.partition_column)} < ?"
    return MetricPlan(sql, tuple(outputs))


def _hours(a: datetime, b: datetime) -> float:
    def utc(x: datetime) -> datetime:
        return x.replace(tzinfo=UTC) if x.tzinfo is None else x.astimezone(UTC)

    return (utc(a) - utc(b)).total_seconds() / 3600.0


def _as_datetime(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return None


def read_metrics(plan: MetricPlan, row: Sequence[object], partition_end: datetime, top_values: int = 20) -> dict:
    """The named metrics of one partition from the query's row. An empty partition has a row count of
    0 and nothing else (a null fraction of nothing is no measurement)."""
    rows = int(row[0] or 0)
    metrics: dict[str, float] = {"row_count": float(rows)}
    if rows == 0:
        return metrics
    event_max: datetime | None = None
    for (what, column), value in zip(plan.outputs[1:], row[1:], strict=True):
        if what == "nulls":
            metrics[f"null_fraction:{column}"] = float(value or 0) / rows
        elif what in ("min", "max", "mean") and value is not None:
            metrics[f"{what}:{column}"] = float(value)
        elif what == "quantiles" and value is not None:
            metrics[f"p50:{column}"], metrics[f"p95:{column}"] = float(value[0]), float(value[1])
        elif what == "histogram" and value is not None:
            counts = dict(value)
            metrics[f"distinct_count:{column}"] = float(len(counts))
            non_null = sum(counts.values()) or 1  # shares among values: a null spike is the null monitor's
            for key, count in sorted(counts.items(), key=lambda kv: -kv[1])[:top_values]:
                metrics[f"share:{column}={key}"] = float(count) / non_null
        elif what == "event_max" and (at := _as_datetime(value)) is not None:
            event_max = at if event_max is None or at > event_max else event_max
        elif what == "loaded_at" and (at := _as_datetime(value)) is not None:
            metrics["load_delay_hours"] = _hours(at, partition_end)
    if event_max is not None:
        metrics["freshness_gap_hours"] = _hours(partition_end, event_max)
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


def ratio_metric(numerator: str, denominator: str) -> str:
    return f"ratio:{numerator}/{denominator}"


def relation_ratio(numerator_rows: float | None, denominator_rows: float | None) -> float | None:
    """Rows of one asset per row of the other on the same day; None when the denominator has none."""
    if numerator_rows is None or not denominator_rows:
        return None
    return numerator_rows / denominator_rows
