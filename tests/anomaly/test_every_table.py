"""A code location whose assets file has no `anomaly:` section still gets anomaly checks on every table
asset: the raw assets and every dbt model, with the day column each one already declares (real dbt
manifest, real Dagster definitions)."""

from __future__ import annotations

import dagster as dg
import yaml

from reliability.definitions import build_definitions
from reliability.settings import REPO_ROOT
from tests.shop_harness import shop_settings

DAY_COLUMNS = {  # table asset -> day column the platform finds without configuration (None: snapshots)
    "raw_orders": "order_date", "raw_customers": "signup_date", "raw_payments": "payment_date",
    "stg_orders": "order_date", "stg_customers": "signup_date", "stg_payments": "payment_date",
    "fct_orders": "order_date", "daily_revenue": "order_date", "customer_lifetime_value": None,
}  # fmt: skip
DAY_CLASSES = {"anomaly_volume", "anomaly_null_rate", "anomaly_distribution", "anomaly_freshness"}


def test_without_an_anomaly_section_every_table_asset_gets_its_monitors(tmp_path) -> None:
    raw = yaml.safe_load((REPO_ROOT / "assets.yaml").read_text())
    raw.pop("anomaly")
    assets_file = tmp_path / "assets.yaml"
    assets_file.write_text(yaml.safe_dump(raw))
    defs = build_definitions(shop_settings(tmp_path, RELIABILITY_ASSETS_FILE=str(assets_file)))
    graph = defs.resolve_asset_graph()
    anomaly_checks: dict[str, set[str]] = {}
    for key in graph.asset_check_keys:
        if key.name.startswith("anomaly_"):
            anomaly_checks.setdefault(key.asset_key.to_user_string(), set()).add(key.name)
            spec = graph.get_check_spec(key)
            assert spec.metadata["day_column"] == (
                DAY_COLUMNS[key.asset_key.to_user_string()] or "(none: whole-table snapshots)"
            )
            assert not spec.blocking  # warn by default
    # not the exposure (revenue_dashboard) nor incident_metrics (a Python asset, no warehouse table)
    assert set(anomaly_checks) == set(DAY_COLUMNS)
    for asset, column in DAY_COLUMNS.items():
        expected = DAY_CLASSES if column else DAY_CLASSES - {"anomaly_freshness"}
        assert anomaly_checks[asset] == expected, asset
    assert graph.get_check_spec(
        dg.AssetCheckKey(dg.AssetKey("fct_orders"), "anomaly_volume")
    ).metadata["day_column_source"] == "dbt unique_key (replace_window)"  # fmt: skip
