"""Which assets get anomaly monitors, their day column, and which days an unpartitioned run judges (pure)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from reliability.anomaly.config import parse_anomaly_config
from reliability.anomaly.discovery import TableAsset, dbt_day_column, dbt_table_asset, monitored_assets
from reliability.anomaly.monitors import days_to_judge
from reliability.errors import ConfigError


def _model(name: str, materialized: str = "table", **config) -> dict:
    return {"resource_type": "model", "name": name, "config": {"materialized": materialized, **config}}


DAILY = _model("fct_orders", "incremental", incremental_strategy="replace_window", unique_key="order_date")


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (DAILY, ("order_date", "dbt unique_key (replace_window)")),
        (  # meta wins over the unique key
            {**DAILY, "config": {**DAILY["config"], "meta": {"anomaly": {"day_column": "shipped_on"}}}},
            ("shipped_on", "dbt meta anomaly.day_column"),
        ),
        ({**_model("events"), "meta": {"anomaly": {"day_column": "at"}}}, ("at", "dbt meta anomaly.day_column")),
        (_model("sessions", event_time="started_at"), ("started_at", "dbt event_time")),
        # a unique key of another strategy is a row key, not a day
        (_model("orders", "incremental", incremental_strategy="delete+insert", unique_key="order_id"), (None, None)),
        (_model("clv"), (None, None)),
    ],
)
def test_day_column_of_a_dbt_model(node, expected) -> None:
    assert dbt_day_column(node) == expected


def test_bad_dbt_meta_names_the_model_and_field() -> None:
    node = {**_model("fct_orders"), "meta": {"anomaly": {"day_column": 3}}}
    with pytest.raises(ConfigError, match=r"dbt model 'fct_orders': meta.anomaly.day_column: expected a column"):
        dbt_day_column(node)
    with pytest.raises(ConfigError, match=r"meta.anomaly: unknown field\(s\) \['day'\]"):
        dbt_day_column({**_model("x"), "meta": {"anomaly": {"day": "d"}}})


def test_dbt_table_asset_reads_the_relation_and_materialization() -> None:
    asset = dbt_table_asset("fct_orders", DAILY, "warehouse.marts.fct_orders_v2", is_table=True)
    assert (asset.table, asset.schema, asset.day_column, asset.materialization) == (
        "fct_orders_v2", "marts", "order_date", "incremental",
    )  # fmt: skip
    seed = dbt_table_asset("raw_events", {"resource_type": "seed", "name": "raw_events", "config": {}}, None, True)
    assert (seed.table, seed.schema, seed.materialization, seed.day_column) == ("raw_events", "main", "seed", None)
    off = dbt_table_asset("tmp", {**_model("tmp"), "meta": {"anomaly": {"enabled": False}}}, None, True)
    assert not off.enabled


TABLES = [
    TableAsset("raw_orders", "raw_orders", day_column="order_date", day_column_source="asset metadata"),
    TableAsset("raw_events", "raw_events", materialization="seed"),
    TableAsset("fct_orders", "fct_orders", "marts", materialization="incremental", day_column="order_date",
               day_column_source="dbt unique_key (replace_window)"),
    TableAsset("stg_orders", "stg_orders", materialization="view"),
    TableAsset("int_orders", "int_orders", materialization="ephemeral"),
    TableAsset("revenue_dashboard", "revenue_dashboard", is_table=False),  # a dbt exposure
    TableAsset("incident_metrics", "incident_metrics", is_table=False),  # a Python asset, no table
    TableAsset("scratch", "scratch", enabled=False),  # opted out in its dbt meta
]  # fmt: skip


def test_every_table_is_monitored_without_configuration() -> None:
    config = monitored_assets(parse_anomaly_config(None, "assets.yaml"), TABLES)
    assert set(config.assets) == {"raw_orders", "raw_events", "fct_orders", "stg_orders"}
    fct = config.assets["fct_orders"]
    assert (fct.table, fct.schema, fct.partition_column, fct.day_column_source) == (
        "fct_orders", "marts", "order_date", "dbt unique_key (replace_window)",
    )  # fmt: skip
    assert config.assets["raw_events"].partition_column is None  # no day column: whole-table snapshots
    assert config.settings_for("raw_orders", "row_count").sensitivity == 4.5  # built-in defaults


def test_the_section_overrides_opts_out_and_opts_in() -> None:
    section = parse_anomaly_config(
        {
            "defaults": {"sensitivity": 5},
            "assets": {
                "raw_orders": {"blocking": True, "disabled_columns": ["email"]},  # day column still discovered
                "raw_events": {"partition_column": "at"},  # a day column the platform could not know
                "fct_orders": {"enabled": False},
                "incident_metrics": {"partition_column": "day"},  # listed: monitored though not found as a table
                "gone": {"partition_column": "day"},  # not in this code location
            },
            "relations": [
                {"numerator": "raw_events", "denominator": "raw_orders"},
                {"numerator": "raw_orders", "denominator": "gone"},
            ],
        },
        "assets.yaml",
    )
    config = monitored_assets(section, TABLES)
    assert set(config.assets) == {"raw_orders", "raw_events", "stg_orders", "incident_metrics"}
    orders = config.assets["raw_orders"]
    assert orders.blocking and orders.partition_column == "order_date" and orders.disabled_columns == {"email"}
    events = config.assets["raw_events"]
    assert (events.partition_column, events.day_column_source) == ("at", "anomaly.assets")
    assert [(r.numerator, r.denominator) for r in config.relations] == [("raw_events", "raw_orders")]
    assert config.settings_for("stg_orders", "row_count").sensitivity == 5

    only_listed = monitored_assets(parse_anomaly_config({"all_tables": False, **{"assets": {"stg_orders": {}}}},
                                                        "assets.yaml"), TABLES)  # fmt: skip
    assert set(only_listed.assets) == {"stg_orders"}
    assert monitored_assets(parse_anomaly_config({"enabled": False}, "assets.yaml"), TABLES).assets == {}


TODAY = date(2026, 10, 10)


def _days(first: int, last: int) -> list[date]:
    """TODAY-first .. TODAY-last, oldest first."""
    return [TODAY - timedelta(days=n) for n in range(first, last - 1, -1)]


def test_first_run_judges_the_complete_days_from_the_first_day_with_rows_never_today() -> None:
    rows = {day: 100 for day in _days(40, 0)}  # today already has rows: in progress, never judged
    assert days_to_judge(TODAY, rows, {}, None, lookback_days=28) == _days(28, 1)  # bounded by the lookback
    young = {day: 100 for day in _days(3, 0)}
    assert days_to_judge(TODAY, young, {}, None, lookback_days=28) == _days(3, 1)  # no empty days before it
    assert days_to_judge(TODAY, {TODAY: 5}, {}, None, lookback_days=28) == []  # nothing complete yet


def test_later_runs_judge_new_days_missing_days_and_days_with_late_rows() -> None:
    judged = {day: 100.0 for day in _days(10, 3)}
    rows = {**{day: 100 for day in _days(10, 3)}, _days(1, 1)[0]: 100}  # day -2 has no rows: a missing day
    assert days_to_judge(TODAY, rows, judged, _days(10, 10)[0], lookback_days=28) == _days(2, 1)
    rows[_days(5, 5)[0]] = 130  # late rows for an already judged day
    assert days_to_judge(TODAY, rows, judged, _days(10, 10)[0], 28) == [_days(5, 5)[0], *_days(2, 1)]
    # the table stopped long ago: every complete day in the lookback is a missing day, judged and flagged
    assert days_to_judge(TODAY, {}, {}, TODAY - timedelta(days=100), lookback_days=7) == _days(7, 1)
    # judged and unchanged: nothing to judge
    unchanged = {d: 100 for d in _days(3, 1)}
    assert days_to_judge(TODAY, unchanged, {d: float(n) for d, n in unchanged.items()}, _days(3, 3)[0], 28) == []
