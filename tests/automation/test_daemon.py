"""The platform runs by itself: a real `dagster-daemon` on a temporary instance, nothing launched by hand.

Orders for three days go to a real Kafka topic; from there the daemon's sensors do everything: the
orders sensor ingests them (with raw_orders' Soda contract after the batch), the automation sensors
load the other raw tables and build every daily dbt partition, the freshness daemon notices the asset
that stopped updating, and the incident sensor opens an incident for it. No event is built by hand.
"""

from __future__ import annotations

import shutil
from datetime import timedelta

import dagster as dg
import pytest

from reliability.clock import utcnow
from reliability.incidents.store import IncidentStore
from reliability.kafka.producer import produce_shop_days
from reliability.shop.generator import ShopScale
from tests.daemon_harness import REPO, running_daemon, wait_for, write_workspace

DAILY = ["raw_customers", "raw_payments", "stg_orders", "stg_customers", "stg_payments", "fct_orders", "daily_revenue"]
DEADLINE_S = 900  # generous: a loaded 2-core machine runs each Dagster run slowly

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_daemon_builds_every_partition_and_a_stale_asset_opens_an_incident(
    kafka_broker, topic_name, tmp_path, monkeypatch
):
    today = utcnow().date()
    days = [today - timedelta(days=2), today - timedelta(days=1), today]
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    (tmp_path / "assets.yaml").write_text(
        "assets:\n"
        "  raw_orders: {owner: orders-team@shop.example, tier: tier1, freshness: {fail_after: 26h}}\n"
        # loaded once a day; here it must be fresh within a minute, so it goes stale during the test
        "  raw_customers: {owner: crm-team@shop.example, tier: tier2, freshness: {fail_after: 1m}}\n"
        "  raw_payments: {owner: payments-team@shop.example, tier: tier1, freshness: {fail_after: 26h}}\n"
    )
    store_url = f"sqlite:///{tmp_path / 'incidents.db'}"
    env = {
        "DAGSTER_HOME": str(home),
        "RELIABILITY_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "RELIABILITY_ASSETS_FILE": str(tmp_path / "assets.yaml"),
        "RELIABILITY_INCIDENT_STORE_URL": store_url,
        "RELIABILITY_PARTITIONS_START_DATE": days[0].isoformat(),
        "RELIABILITY_AUTOMATION_INTERVAL_SECONDS": "5",
        "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
        "RELIABILITY_TEST_KAFKA_TOPIC": topic_name,
        "RELIABILITY_TEST_KAFKA_GROUP": f"g.{topic_name}",
        "SODA_CORE_TELEMETRY_ENABLED": "false",
    }
    workspace = write_workspace(tmp_path / "workspace.yaml", "tests.automation.location")
    # the same scale as the platform's ShopGenerator resource: orders reference the customers it loads
    produced = produce_shop_days(topic_name, days, ShopScale(), bootstrap=kafka_broker)
    assert produced > 0

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.get()  # creates the storage before the daemon's processes open it
    log = tmp_path / "daemon.log"
    with running_daemon(workspace, env, log):
        keys = [k.isoformat() for k in days]

        def built_everything() -> bool:
            return (
                all(set(keys) <= instance.get_materialized_partitions(dg.AssetKey(asset)) for asset in DAILY)
                and instance.get_latest_materialization_event(dg.AssetKey("customer_lifetime_value")) is not None
            )

        wait_for(
            "every daily partition and customer_lifetime_value built by the daemon",
            built_everything,
            log,
            timeout_s=DEADLINE_S,
        )

        # raw_orders came from Kafka, and its Soda contract ran after the micro-batch, in the same run
        orders = instance.get_latest_materialization_event(dg.AssetKey("raw_orders"))
        assert orders is not None and orders.asset_materialization.metadata["rows_ingested"].value == produced
        soda_on_orders = [
            record
            for record in instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey("raw_orders"), "soda_row_count"), limit=5
            )
        ]
        assert soda_on_orders and soda_on_orders[0].run_id == orders.run_id

        # nothing was launched by hand: every run came from a sensor or a backfill the automation made
        runs = instance.get_run_records()
        assert runs and all(
            r.dagster_run.tags.get("dagster/sensor_name") or r.dagster_run.tags.get("dagster/backfill") for r in runs
        ), [r.dagster_run.tags for r in runs]
        # backfills of daily assets ran as single runs, not one run per day
        assert len(runs) <= 10, [r.dagster_run.job_name for r in runs]

        def freshness_incident():
            with IncidentStore(store_url) as store:
                return [i for i in store.list_incidents() if i.root_asset == "raw_customers"]

        (incident,) = wait_for("the freshness incident on raw_customers", freshness_incident, log, timeout_s=300)
        with IncidentStore(store_url) as store:
            full = store.get(incident.id)
            assert full.fault_class == "freshness"
            # the clean data opened no other incident
            assert [i.root_asset for i in store.list_incidents()] == ["raw_customers"]
