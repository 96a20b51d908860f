"""A clean week of shop data, faults injected into one day, and the daily run of one day.

Reusable by any test that injects a fault into a week (missing day, re-sent duplicates, and more
can be added to `FAULTS`): real generator, DuckDB file, Dagster instance, dbt and Soda.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb

from reliability.shop.generator import PARTITION_COLUMN, RAW_TABLES, ShopScale, generate
from tests.shop_harness import daily_selection, failed_checks, run

WEEK = tuple(date(2026, 11, 16) + timedelta(days=i) for i in range(7))
RAW = dg.AssetSelection.assets(*RAW_TABLES)
SCALE = ShopScale(orders_per_day=200)


def clean_week(warehouse: Path, days: tuple[date, ...] = WEEK, scale: ShopScale = SCALE) -> Path:
    """Every raw table loaded for every day (the generator; loads are stamped by the one clock)."""
    generate(str(warehouse), list(days), scale)
    return warehouse


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def missing_day(con: duckdb.DuckDBPyConnection, table: str, day: date) -> None:
    """The whole day of `table` never arrived."""
    con.execute(f"delete from {_quoted(table)} where {_quoted(PARTITION_COLUMN[table])} = ?", [day])


def resent_next_day(con: duckdb.DuckDBPyConnection, table: str, day: date) -> None:
    """The rows of `day` arrive again in the next day's batch (dated like that batch)."""
    column = _quoted(PARTITION_COLUMN[table])
    columns = [r[0] for r in con.execute(f"describe {_quoted(table)}").fetchall()]
    select = ", ".join(f"?::date as {column}" if _quoted(c) == column else _quoted(c) for c in columns)
    con.execute(f"insert into {_quoted(table)} select {select} from {_quoted(table)} where {column} = ?",
                [day + timedelta(days=1), day])  # fmt: skip


FAULTS: dict[str, Callable[[duckdb.DuckDBPyConnection, str, date], None]] = {
    "missing_day": missing_day,
    "resent_next_day": resent_next_day,
}


def inject(warehouse: Path, fault: str, table: str, day: date) -> None:
    with duckdb.connect(str(warehouse)) as con:
        FAULTS[fault](con, table, day)


def raw_contract_checks(defs: dg.Definitions) -> dg.AssetSelection:
    """The Soda contract checks of the raw tables (not the Kafka checks, which need a broker)."""
    keys = [
        k
        for k in defs.resolve_asset_graph().asset_check_keys
        if k.asset_key.to_user_string() in RAW_TABLES and k.name.startswith("soda_")
    ]
    return dg.AssetSelection.checks(*keys)


@dataclass
class DayRun:
    day: date
    raw_checks: dg.ExecuteInProcessResult
    models: dg.ExecuteInProcessResult | None  # None: a raw check failed, the day was not built

    @property
    def failed(self) -> set[str]:
        return failed_checks(self.raw_checks) | (failed_checks(self.models) if self.models else set())

    @property
    def green(self) -> bool:
        return self.raw_checks.success and self.models is not None and self.models.success and not self.failed


def run_day(defs: dg.Definitions, instance: dg.DagsterInstance, day: date) -> DayRun:
    """The daily run of one partition: the raw contracts on that day's window, then, only if they
    pass (they are blocking), the daily dbt models with their tests and contracts."""
    key = day.isoformat()
    # a check-only run has no asset to take a partitions definition from: the tag names the day
    raw = dg.materialize(
        [*(defs.assets or []), *(defs.asset_checks or [])],
        selection=raw_contract_checks(defs),
        tags={"dagster/partition": key},
        instance=instance,
        resources=defs.resources,
        raise_on_error=False,
    )
    if not raw.success:
        return DayRun(day, raw, None)
    return DayRun(day, raw, run(defs, daily_selection(defs) - RAW, instance, partition_key=key))
