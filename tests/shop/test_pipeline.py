"""The real shop pipeline on a temp DuckDB file: clean data passes, each injected fault fails its check."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from reliability.kafka.defs import KafkaSource
from reliability.kafka.producer import produce_shop_days
from reliability.shop.generator import ShopScale, generate
from tests.shop_harness import (
    DAY,
    build,
    check_name,
    daily_selection,
    failed_checks,
    materialized,
    passed_checks,
    run,
    shop_settings,
    unpartitioned_selection,
)

RAW = dg.AssetSelection.assets("raw_orders", "raw_customers", "raw_payments")
GENERATED = dg.AssetSelection.assets("raw_customers", "raw_payments")


@pytest.fixture(scope="module")
def clean_warehouse(tmp_path_factory) -> Path:
    """One clean day of raw data: customers and payments materialized through Dagster, orders bulk-loaded
    by the generator (the Kafka path is exercised by the full materialization test)."""
    tmp = tmp_path_factory.mktemp("clean")
    defs = build(shop_settings(tmp))
    result = run(defs, GENERATED, dg.DagsterInstance.ephemeral(), partition_key=DAY)
    assert result.success
    assert materialized(result) == {"raw_customers", "raw_payments"}
    generate(str(tmp / "warehouse.duckdb"), [date.fromisoformat(DAY)], ShopScale(), tables=("raw_orders",))
    return tmp / "warehouse.duckdb"


def _copy(clean: Path, tmp_path: Path) -> Path:
    target = tmp_path / "warehouse.duckdb"
    shutil.copy(clean, target)
    return target


@pytest.mark.kafka
def test_full_materialization_passes_every_check(kafka_broker, topic_name, tmp_path):
    """Orders through the real broker into raw_orders, the rest generated, then every dbt model."""
    produce_shop_days(topic_name, [date.fromisoformat(DAY)], ShopScale(), bootstrap=kafka_broker)
    defs = build(shop_settings(tmp_path))
    resources = {**defs.resources, "kafka": KafkaSource(bootstrap_servers=kafka_broker, topic=topic_name)}
    instance = dg.DagsterInstance.ephemeral()
    ingested = run(defs, dg.AssetSelection.assets("raw_orders"), instance, resources=resources)
    assert ingested.success and materialized(ingested) == {"raw_orders"}
    daily = run(defs, daily_selection(defs), instance, partition_key=DAY)
    assert daily.success, failed_checks(daily)
    rest = unpartitioned_selection(defs) - dg.AssetSelection.assets("raw_orders")
    whole = run(defs, rest, instance, resources=resources)
    assert whole.success
    results = [ingested, daily, whole]
    assert set().union(*map(failed_checks, results)) == set()
    checks = set().union(*map(passed_checks, results))
    graph = defs.resolve_asset_graph()
    # every pipeline check ran and passed (open_incident reports the incident store, not the data)
    assert checks == {check_name(key) for key in graph.asset_check_keys if key.name != "open_incident"}
    assert {"fct_orders", "daily_revenue", "customer_lifetime_value", "stg_orders"} <= set().union(
        *map(materialized, results)
    )
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        revenue_days = con.execute("select count(*) from daily_revenue").fetchone()[0]
        orders = con.execute("select count(*) from fct_orders").fetchone()[0]
    assert revenue_days == 1
    assert orders == 1000


DBT_FAULTS = {
    "duplicate_ids": (
        "insert into raw_orders select * from raw_orders where order_id = (select min(order_id) from raw_orders)",
        {"stg_orders:unique_stg_orders_order_id"},
    ),
    "null_customer": (
        "update raw_orders set customer_id = null where order_id = (select min(order_id) from raw_orders)",
        {"stg_orders:not_null_stg_orders_customer_id"},
    ),
    "invalid_status": (
        "update raw_orders set status = 'lost' where order_id = (select max(order_id) from raw_orders)",
        {"stg_orders:accepted_values_stg_orders_status__placed__shipped__completed__returned__cancelled"},
    ),
    "broken_foreign_key": (
        "update raw_payments set order_id = 999999999 where payment_id = (select min(payment_id) from raw_payments)",
        {"stg_payments:relationships_stg_payments_order_id__order_id__ref_stg_orders_"},
    ),
    "overpaid_order": (
        "update raw_payments set amount = amount + 1000 where payment_id = (select max(payment_id) from raw_payments)",
        {"fct_orders:assert_paid_not_above_order_amount"},
    ),
}


@pytest.mark.parametrize("fault", sorted(DBT_FAULTS))
def test_injected_fault_fails_exactly_its_dbt_check(fault, clean_warehouse, tmp_path):
    statement, expected = DBT_FAULTS[fault]
    warehouse = _copy(clean_warehouse, tmp_path)
    with duckdb.connect(str(warehouse)) as con:
        con.execute(statement)
    defs = build(shop_settings(tmp_path))
    dbt_daily = daily_selection(defs) - RAW
    result = run(defs, dbt_daily, dg.DagsterInstance.ephemeral(), partition_key=DAY)
    assert failed_checks(result) == expected


def test_failing_blocking_check_stops_downstream_in_the_same_run(clean_warehouse, tmp_path):
    warehouse = _copy(clean_warehouse, tmp_path)
    with duckdb.connect(str(warehouse)) as con:
        con.execute(DBT_FAULTS["duplicate_ids"][0])
    defs = build(shop_settings(tmp_path))
    graph = defs.resolve_asset_graph()
    blocking = {check_name(k) for k in graph.asset_check_keys if graph.get_check_spec(k).blocking}
    assert "stg_orders:unique_stg_orders_order_id" in blocking
    result = run(defs, daily_selection(defs) - RAW, dg.DagsterInstance.ephemeral(), partition_key=DAY)
    assert "stg_orders:unique_stg_orders_order_id" in failed_checks(result)
    done = materialized(result)
    assert "stg_orders" in done
    assert not done & {"fct_orders", "daily_revenue"}, done
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
    assert "fct_orders" not in tables


def test_partition_by_partition_subset_runs_never_trip_relationships_tests(clean_warehouse, tmp_path):
    """A backfill runs models as their parents land: stg_customers alone first, then stg_orders. The
    relationships test of stg_orders must not run (and fail) before stg_orders exists."""
    _copy(clean_warehouse, tmp_path)
    defs = build(shop_settings(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    customers = run(defs, dg.AssetSelection.assets("stg_customers"), instance, partition_key=DAY)
    assert customers.success and failed_checks(customers) == set()
    orders = run(defs, dg.AssetSelection.assets("stg_orders"), instance, partition_key=DAY)
    assert orders.success and failed_checks(orders) == set()
    assert "stg_orders:relationships_stg_orders_customer_id__customer_id__ref_stg_customers_" in passed_checks(orders)
