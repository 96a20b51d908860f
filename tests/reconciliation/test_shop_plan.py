"""The plan's inputs extracted from the real shop definitions (dbt manifest, raw assets, exposures)."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from reliability.definitions import build_definitions
from reliability.reconciliation.graph import plan_inputs
from reliability.reconciliation.plan import EdgeMapping, RebuildStep
from reliability.settings import load_settings

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def shop_inputs(tmp_path_factory):
    warehouse = tmp_path_factory.mktemp("shop") / "w.duckdb"
    defs = build_definitions(load_settings(environ={"RELIABILITY_WAREHOUSE": str(warehouse)}))
    dg.Definitions.validate_loadable(defs)  # the reconcile_incident job and sensor load with everything else
    return plan_inputs(defs.resolve_asset_graph(), NOW)


def test_one_bad_day_of_raw_payments_rebuilds_that_day_of_its_daily_descendants_and_the_mart_once(shop_inputs):
    plan = shop_inputs.plan("raw_payments", ["2026-02-10"])
    assert plan.steps == (
        RebuildStep("raw_payments", ("2026-02-10",)),
        RebuildStep("stg_payments", ("2026-02-10",)),
        RebuildStep("fct_orders", ("2026-02-10",)),
        RebuildStep("customer_lifetime_value", ()),
        RebuildStep("daily_revenue", ("2026-02-10",)),
    )
    assert plan.not_rebuilt == ("revenue_dashboard",)


def test_the_shop_edges_map_as_dagster_infers_them(shop_inputs):
    assert shop_inputs.mappings[("raw_payments", "stg_payments")] is EdgeMapping.IDENTITY
    assert shop_inputs.mappings[("fct_orders", "customer_lifetime_value")] is EdgeMapping.ALL_TO_UNPARTITIONED
    assert shop_inputs.mappings[("raw_orders", "stg_orders")] is EdgeMapping.UNPARTITIONED_TO_ALL
    assert shop_inputs.not_materializable == {"revenue_dashboard"}
    # from the start date to the day in progress (the daily partitioning has end_offset=1)
    assert shop_inputs.all_partitions[0] == "2026-01-01" and shop_inputs.all_partitions[-1] == "2026-03-01"
