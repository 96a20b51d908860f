"""The demo shop's customers and payments as daily-partitioned assets, written by the generator.

Orders reach `raw_orders` through Kafka (reliability.kafka); the generator still makes them for bulk
loads and benchmarks (`reliability shop generate`).
"""

from datetime import date

import dagster as dg
from dagster_duckdb import DuckDBResource

from reliability.anomaly import DAY_COLUMN_METADATA
from reliability.resources import DUCKDB_POOL, daily_partitions, warehouse_resource
from reliability.settings import Settings
from reliability.shop.generator import PARTITION_COLUMN, ShopScale, write_partition

GENERATED_TABLES = ("raw_customers", "raw_payments")


class ShopGenerator(dg.ConfigurableResource):
    """Scale of the generated shop; the same seed always gives the same rows."""

    seed: int = 42
    orders_per_day: int = 1_000

    def scale(self) -> ShopScale:
        return ShopScale(seed=self.seed, orders_per_day=self.orders_per_day)


def _raw_table_asset(table: str, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name=table,
        partitions_def=partitions_def,
        pool=DUCKDB_POOL,
        kinds={"duckdb"},
        group_name="raw",
        code_version="1",
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={DAY_COLUMN_METADATA: PARTITION_COLUMN[table]},  # the anomaly monitors' day column
    )
    def raw_table(
        context: dg.AssetExecutionContext, warehouse: DuckDBResource, shop_generator: ShopGenerator
    ) -> dg.MaterializeResult:
        # one run writes every day of a backfill (each day still replaced in its own transaction)
        days = [date.fromisoformat(key) for key in context.partition_keys]
        with warehouse.get_connection() as con:
            rows = {day.isoformat(): write_partition(con, table, day, shop_generator.scale()) for day in days}
        # the same metadata lands on every partition of the run: a row count only when it is one day's
        metadata: dict = {"rows_by_day": dg.MetadataValue.json(rows)}
        if len(rows) == 1:
            metadata["dagster/row_count"] = next(iter(rows.values()))
        return dg.MaterializeResult(metadata=metadata)

    return raw_table


def defs(settings: Settings) -> dg.Definitions:
    partitions_def = daily_partitions(settings)
    return dg.Definitions(
        assets=[_raw_table_asset(table, partitions_def) for table in GENERATED_TABLES],
        resources={"warehouse": warehouse_resource(settings), "shop_generator": ShopGenerator()},
    )
