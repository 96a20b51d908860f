"""Resources and shared constants every area uses."""

from __future__ import annotations

from functools import lru_cache

from dagster import DailyPartitionsDefinition
from dagster_duckdb import DuckDBResource

from reliability.settings import Settings

# Every asset or check that writes (or opens read-write) the DuckDB warehouse runs in this pool;
# dagster.yaml limits every pool to one slot, because DuckDB allows one writer at a time.
DUCKDB_POOL = "duckdb"


def daily_partitions(settings: Settings) -> DailyPartitionsDefinition:
    """The one daily partitioning of the warehouse: raw tables and daily dbt models share it.

    It starts where the data starts (`partitions_start_date`; `scripts/start.sh` sets it to the first
    generated day) and ends with today."""
    # end_offset=1: today has a partition too, so the data arriving today can be built and checked
    return DailyPartitionsDefinition(start_date=settings.partitions_start_date.isoformat(), end_offset=1)


@lru_cache(maxsize=8)
def warehouse_resource(settings: Settings) -> DuckDBResource:
    """The one `warehouse` resource per settings: areas share the object, so merging them agrees."""
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    return DuckDBResource(database=str(settings.warehouse_path))
