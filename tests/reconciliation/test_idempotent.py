"""Reconciling is idempotent: rebuilding a plan's (asset, partition) set twice leaves identical contents
in every affected table and partition, and equal to the clean data before the fault. Real DuckDB, real
generator and dbt; the plan comes from the real shop definitions. Checksums exclude `_loaded_at`, the
load time stamped on raw rows (it records when, not what)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg
import duckdb
import pytest

from reliability.reconciliation.graph import plan_inputs
from reliability.reconciliation.plan import ReconcilePlan
from reliability.shop.generator import ShopScale, generate
from tests.shop_harness import build, daily_selection, run, shop_settings

pytestmark = pytest.mark.slow

DAY = "2026-01-05"
NOW = datetime(2026, 2, 1, tzinfo=UTC)
DATE_COLUMNS = {"raw_payments": "payment_date", "stg_payments": "payment_date", "fct_orders": "order_date",
                "daily_revenue": "order_date"}  # fmt: skip
CORRUPT = [
    f"update raw_payments set amount = amount * 3 where payment_date = date '{DAY}'",
    f"delete from fct_orders where order_date = date '{DAY}' and order_id % 2 = 0",
    "update customer_lifetime_value set lifetime_value = -1",
]


def rebuild(defs: dg.Definitions, plan: ReconcilePlan, instance: dg.DagsterInstance) -> None:
    """Run the plan's steps in process, in its order: each partition of the partitioned assets, then the
    unpartitioned ones (what the backfill does, without the daemon)."""
    partitioned = [s for s in plan.steps if s.partitions]
    for key in sorted({p for s in partitioned for p in s.partitions}):
        assets = [s.asset for s in partitioned if key in s.partitions]
        assert run(defs, dg.AssetSelection.assets(*assets), instance, partition_key=key).success
    once = [s.asset for s in plan.steps if not s.partitions]
    if once:
        assert run(defs, dg.AssetSelection.assets(*once), instance).success


def checksums(warehouse, plan: ReconcilePlan) -> dict[str, tuple]:  # noqa: ANN001
    """Per rebuilt table: row count and an order-independent digest of the affected partition's rows."""
    out = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for step in plan.steps:
            table = step.asset
            columns = [r[0] for r in con.execute(
                "select column_name from information_schema.columns where table_name = ? order by ordinal_position",
                [table]).fetchall() if r[0] != "_loaded_at"]  # fmt: skip
            where = (
                f"where {DATE_COLUMNS[table]} in ({', '.join(repr(p) for p in step.partitions)})"
                if step.partitions
                else ""
            )
            cols = ", ".join(f'"{c}"' for c in columns)
            out[table] = con.execute(
                f"select count(*), md5(string_agg(r, '|' order by r)) from "
                f'(select cast(row({cols}) as varchar) as r from "{table}" {where})'
            ).fetchone()
    return out


def test_reconciling_twice_leaves_identical_contents_equal_to_the_clean_data(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    defs = build(shop_settings(tmp_path))
    plan = plan_inputs(defs.resolve_asset_graph(), NOW).plan("raw_payments", [DAY])
    assert [s.asset for s in plan.steps] == ["raw_payments", "stg_payments", "fct_orders", "customer_lifetime_value",
                                             "daily_revenue"]  # fmt: skip
    with dg.instance_for_test() as instance:
        generate(str(warehouse), [date.fromisoformat(DAY)], ShopScale(), tables=("raw_orders",))
        assert run(defs, daily_selection(defs), instance, partition_key=DAY).success
        assert run(defs, dg.AssetSelection.assets("customer_lifetime_value"), instance).success
        clean = checksums(warehouse, plan)
        assert all(count > 0 for count, _ in clean.values()), clean
        with duckdb.connect(str(warehouse)) as con:
            for statement in CORRUPT:
                con.execute(statement)
        assert checksums(warehouse, plan) != clean

        rebuild(defs, plan, instance)
        first = checksums(warehouse, plan)
        rebuild(defs, plan, instance)
        second = checksums(warehouse, plan)
    assert first == second == clean
