"""Measure a table's day, remember it, and judge it against its history (DuckDB I/O, no Dagster).

Called by the asset checks after each materialization (`reliability.anomaly.defs`); tests and scripts
can call it directly on a warehouse connection. Three ways to pick the days: a partitioned run's days
(`judge_asset_day`), the complete days an unpartitioned run added or changed (`judge_new_days`), and
for a table without a day column one whole-table snapshot per day the check runs (`judge_asset_day`
on that day: the table is measured whole).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import duckdb

from reliability.anomaly.collect import (
    collect_partition,
    ensure_history,
    judged_row_counts,
    load_history,
    rows_by_day,
    store_metrics,
    table_shape,
)
from reliability.anomaly.config import AnomalyConfig, AssetMonitors
from reliability.anomaly.detector import Verdict
from reliability.anomaly.metrics import ratio_metric, relation_ratio
from reliability.anomaly.monitors import days_to_judge, judge_day

HISTORY_LOOKBACK_DAYS = 180  # calendar days of history read: room for the window plus excluded days
NEW_DAYS_LOOKBACK = 28  # an unpartitioned run judges new or changed complete days this far back at most


def day_window(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day)
    return start, start + timedelta(days=1)


def measure_day(
    con: duckdb.DuckDBPyConnection, monitors: AssetMonitors, day: date, now: datetime, store: bool = True
) -> dict[str, float]:
    """Every metric of the asset's day (of the whole table when it has no day column), from one scan
    (stored in the metric history unless `store` is False)."""
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
    return _judge(con, config, asset, day, metrics, excluded_days)


def _judge(
    con: duckdb.DuckDBPyConnection,
    config: AnomalyConfig,
    asset: str,
    day: date,
    metrics: dict[str, float],
    excluded_days: Collection[date],
) -> dict[str, Verdict]:
    history = load_history(con, asset, day, HISTORY_LOOKBACK_DAYS)
    return judge_day(metrics, history, day, excluded_days, lambda metric: config.settings_for(asset, metric))


@dataclass(frozen=True)
class NewDays:
    """What an unpartitioned run judged: the new or changed complete days, or (none of them) the last
    judged day again from its stored metrics, so a flagged day stays flagged until a newer day passes."""

    verdicts: dict[date, dict[str, Verdict]] = field(default_factory=dict)
    judged: tuple[date, ...] = ()  # measured now
    repeated: date | None = None  # no new day: this day's stored metrics judged again


def judge_new_days(
    con: duckdb.DuckDBPyConnection,
    config: AnomalyConfig,
    asset: str,
    now: datetime,
    excluded_days: Collection[date] = (),
    lookback_days: int = NEW_DAYS_LOOKBACK,
) -> NewDays:
    """Judge the complete days (before `now`'s day, which is in progress) that are new or changed since
    the last judgement (`reliability.anomaly.monitors.days_to_judge`): one grouped count to find them,
    then one scan per day."""
    monitors = config.assets[asset]
    assert monitors.partition_column is not None, "a table without a day column is judged as snapshots"
    ensure_history(con)
    today = now.date()
    since = today - timedelta(days=lookback_days)
    counts = rows_by_day(con, monitors.table, monitors.partition_column, since, today, monitors.schema)
    judged, first, last = judged_row_counts(con, asset, since, today)
    days = days_to_judge(today, counts, judged, first, lookback_days)
    if days:
        verdicts = {day: judge_asset_day(con, config, asset, day, now, excluded_days) for day in days}
        return NewDays(verdicts, tuple(days))
    if last is None:
        return NewDays()
    stored = load_history(con, asset, last + timedelta(days=1), 1)
    metrics = {metric: points[-1][1] for metric, points in stored.items() if points and points[-1][0] == last}
    return NewDays({last: _judge(con, config, asset, last, metrics, excluded_days)}, repeated=last)
