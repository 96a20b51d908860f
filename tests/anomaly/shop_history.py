"""A clean shop history measured day by day, for the anomaly tests (real generator, real DuckDB)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from reliability.anomaly.config import AnomalyConfig, parse_anomaly_config
from reliability.anomaly.detector import Verdict
from reliability.anomaly.service import judge_asset_day
from reliability.shop.generator import ShopScale, write_partition

FIRST_DAY = date(2026, 9, 1)
SCALE = ShopScale(orders_per_day=500)
TABLES = ("raw_orders", "raw_payments", "raw_customers")
CONFIG: AnomalyConfig = parse_anomaly_config(
    {
        "assets": {
            "raw_orders": {"partition_column": "order_date"},
            "raw_payments": {"partition_column": "payment_date"},
            "raw_customers": {"partition_column": "signup_date", "disabled_columns": ["name", "email"]},
        },
        "relations": [{"numerator": "raw_payments", "denominator": "raw_orders"}],
    },
    "test",
)


def loaded_at(day: date) -> datetime:
    """Loads land one hour after the day ends (the one clock is never asked)."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1, hours=1)


def write_days(warehouse: Path, days: int, tables: tuple[str, ...] = TABLES) -> list[date]:
    dates = [FIRST_DAY + timedelta(days=i) for i in range(days)]
    with duckdb.connect(str(warehouse)) as con:
        for day in dates:
            for table in tables:
                write_partition(con, table, day, SCALE, loaded_at=loaded_at(day))
    return dates


def judge_days(
    warehouse: Path, dates: list[date], tables: tuple[str, ...] = TABLES, excluded: set[date] = frozenset()
) -> dict[tuple[str, date], dict[str, Verdict]]:
    """Each day measured and judged as the daily checks would (orders before payments)."""
    out = {}
    with duckdb.connect(str(warehouse)) as con:
        for day in dates:
            for table in tables:
                out[(table, day)] = judge_asset_day(con, CONFIG, table, day, loaded_at(day), excluded)
    return out
