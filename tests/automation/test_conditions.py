"""The automation policy, evaluated in process on the shop's real definitions: what the automation
sensors would request tick after tick, when every request "runs" and its checks pass (or one fails)."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from reliability.clock import utcnow
from reliability.definitions import build_definitions
from reliability.settings import load_settings

DAYS = 3
DAILY = ("raw_customers", "raw_payments", "stg_customers", "stg_orders", "stg_payments", "fct_orders", "daily_revenue")


@pytest.fixture(scope="module")
def defs(tmp_path_factory) -> dg.Definitions:
    start = utcnow().date() - timedelta(days=DAYS - 1)
    tmp = tmp_path_factory.mktemp("automation")
    env = {"RELIABILITY_WAREHOUSE": str(tmp / "w.duckdb"), "RELIABILITY_PARTITIONS_START_DATE": start.isoformat()}
    return build_definitions(load_settings(environ=env))


def days() -> set[str]:
    return {(utcnow().date() - timedelta(days=i)).isoformat() for i in range(DAYS)}


def requested(result) -> dict[str, set[str | None]]:
    out: dict[str, set[str | None]] = {}
    for r in result.results:
        if r.true_subset.size and isinstance(r.key, dg.AssetKey):
            subset = r.true_subset
            keys = subset.expensively_compute_partition_keys() if subset.is_partitioned else {None}
            out.setdefault(r.key.to_user_string(), set()).update(keys)
    return out


def run(instance: dg.DagsterInstance, defs: dg.Definitions, asset: str, partitions, failing: str = "") -> None:
    """What a run of `asset` records: its materializations, then its checks (all pass but `failing`)."""
    for partition in partitions:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=partition))
    for key in defs.resolve_asset_graph().asset_check_keys:
        if key.asset_key == dg.AssetKey(asset):
            passed = key.name != failing
            instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                asset_key=key.asset_key, check_name=key.name, passed=passed,
                severity=dg.AssetCheckSeverity.ERROR,
            ))  # fmt: skip


class Sensor:
    """The automation sensor's memory between ticks (its cursor)."""

    cursor = None


def drive(instance: dg.DagsterInstance, defs: dg.Definitions, sensor: Sensor, ticks: int = 10) -> list[dict]:
    """Evaluate tick after tick, "running" each tick's requests, until nothing more is requested."""
    history: list[dict] = []
    for _ in range(ticks):
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=sensor.cursor)
        sensor.cursor, wanted = result.cursor, requested(result)
        if not wanted:
            return history
        history.append(wanted)
        for asset, partitions in wanted.items():
            run(instance, defs, asset, partitions)
    raise AssertionError(f"automation never settled: {history}")


def test_a_fresh_deploy_builds_every_day_once_its_inputs_are_in(defs):
    with dg.instance_for_test() as instance:
        run(instance, defs, "raw_orders", [None])  # a Kafka micro-batch (its own sensor)
        sensor = Sensor()
        history = drive(instance, defs, sensor)
        first = history[0]
        # the raw tables the platform loads: every day since the partitions start, today included
        assert first.get("raw_customers") == days() and first.get("raw_payments") == days()
        assert "raw_orders" not in first and "stg_orders" not in first  # no model before its inputs
        built: dict[str, set] = {}
        for wanted in history:
            for asset, partitions in wanted.items():
                assert not (built.get(asset, set()) & partitions), f"{asset} requested twice"
                built.setdefault(asset, set()).update(partitions)
        assert {asset: built.get(asset) for asset in DAILY} == dict.fromkeys(DAILY, days())
        assert built.get("customer_lifetime_value") == {None}

        # the next micro-batch of orders refreshes today's partitions downstream of raw_orders only
        run(instance, defs, "raw_orders", [None])
        refresh = drive(instance, defs, sensor)
        today = {utcnow().date().isoformat()}
        assert {a for wanted in refresh for a in wanted} == {
            "stg_orders", "stg_payments", "fct_orders", "daily_revenue", "customer_lifetime_value"
        }  # fmt: skip
        assert all(p == today or p == {None} for wanted in refresh for p in wanted.values())


def test_a_failed_blocking_check_upstream_holds_the_downstream_build(defs):
    with dg.instance_for_test() as instance:
        run(instance, defs, "raw_orders", [None], failing="soda_order_id_duplicate")
        built = {asset for wanted in drive(instance, defs, Sensor()) for asset in wanted}
        assert {"raw_customers", "raw_payments", "stg_customers"} <= built  # unrelated inputs still build
        assert not built & {"stg_orders", "stg_payments", "fct_orders", "daily_revenue"}, built
