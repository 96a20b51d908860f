"""Measure a table's day, remember it, and judge it against its history (DuckDB I/O, no Dagster).

Called by the asset checks after each partition materialization (`reliability.anomaly.defs`); tests
and scripts can call it directly on a warehouse connection.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, timedelta

import duckdb

from reliability.anomaly.collect import collect_partition, ensure_history, load_history, store_metrics, table_shape
from reliability.anomaly.config import AnomalyConfig, AssetMonitors
from reliability.anomaly.detector import Verdict
from reliability.anomaly.metrics import ratio_metric, relation_ratio
from reliability.anomaly.monitors import judge_day

HISTORY_LOOKBACK_DAYS = 180  # calendar days of history read: room for the window plus excluded days


def day_window(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day)
    return start, start + timedelta(days=1)


def measure_day(
    con: duckdb.DuckDBPyConnection, monitors: AssetMonitors, day: date, now: datetime, store: bool = True
) -> dict[str, float]:
    """Every metric of the asset's day, from one scan (stored in the metric history unless `store`
    is False)."""
    start, end = day_window(day)
    shape = table_shape(
        con, monitors.table, monitors.partition_column, start, end, schema=monitors.schema,
        loaded_at_column=monitors.loaded_at_column,
    )  # fmt: skip
    metrics = collect_partition(con, shape, start, end)
    if store:
        ensure_history(con)
        store_metrics(con, monitors.asset, day, metrics, now)
    return metrics


def _row_count(con: duckdb.DuckDBPyConnection, config: AnomalyConfig, asset: str, day: date, now: datetime) -> float:
    """The asset's row count of the day: from the history, else measured now."""
    history = load_history(con, asset, day + timedelta(days=1), 1, metrics=["row_count"])
    if history.get("row_count"):
        return history["row_count"][-1][1]
    return measure_day(con, config.assets[asset], day, now).get("row_count", 0.0)


def judge_asset_day(
    con: duckdb.DuckDBPyConnection,
    config: AnomalyConfig,
    asset: str,
    day: date,
    now: datetime,
    excluded_days: Collection[date] = (),
) -> dict[str, Verdict]:
    """Measure the day (plus the asset's declared relations), store it, and judge every metric against
    the history before it, without the excluded days (quarantined or covered by an incident)."""
    ensure_history(con)
    metrics = measure_day(con, config.assets[asset], day, now, store=False)
    for relation in config.relations_of(asset):
        ratio = relation_ratio(metrics.get("row_count"), _row_count(con, config, relation.denominator, day, now))
        if ratio is not None:
            metrics[ratio_metric(relation.numerator, relation.denominator)] = ratio
    store_metrics(con, asset, day, metrics, now)
    history = load_history(con, asset, day, HISTORY_LOOKBACK_DAYS)
    return judge_day(metrics, history, day, excluded_days, lambda metric: config.settings_for(asset, metric))
