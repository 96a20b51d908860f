"""End to end on the shop pipeline: duplicate orders -> one incident, triaged, visible, notified.

Real generator, real DuckDB file, real dbt and Soda checks, real Dagster instance (SQLite storage in
a temp DAGSTER_HOME), the real detection sensor, and local receivers validating the notification
payloads.
"""

from __future__ import annotations

import logging
import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from reliability.incidents.defs import build_incident_sensor
from reliability.incidents.detection import RUN_TAG
from reliability.incidents.store import IncidentStore
from reliability.shop.generator import ShopScale, generate
from tests.incidents.receivers import Receiver
from tests.shop_harness import DAY, build, daily_selection, failed_checks, materialized, run, shop_settings

pytestmark = pytest.mark.slow

RAW = dg.AssetSelection.assets("raw_orders", "raw_customers", "raw_payments")
GENERATED = dg.AssetSelection.assets("raw_customers", "raw_payments")
DUPLICATE_ORDERS = (
    "insert into raw_orders select * from raw_orders where order_id in "
    "(select order_id from raw_orders order by order_id limit 3)"
)
ROUTING_KEY = "e2e-routing-key-0000000000000000"


@pytest.fixture(scope="module")
def clean_warehouse(tmp_path_factory) -> Path:
    """One clean day: customers and payments through Dagster, orders bulk-loaded by the generator
    (the Kafka path to raw_orders is tested by the shop and kafka tests)."""
    tmp = tmp_path_factory.mktemp("clean")
    defs = build(shop_settings(tmp))
    result = run(defs, GENERATED, dg.DagsterInstance.ephemeral(), partition_key=DAY)
    assert result.success
    generate(str(tmp / "warehouse.duckdb"), [date.fromisoformat(DAY)], ShopScale(), tables=("raw_orders",))
    return tmp / "warehouse.duckdb"


def soda_checks_of(defs: dg.Definitions, asset: str) -> dg.AssetSelection:
    """The Soda contract checks of one table (not its Kafka checks, which need the broker)."""
    keys = [
        k
        for k in defs.resolve_asset_graph().asset_check_keys
        if k.asset_key == dg.AssetKey(asset) and k.name.startswith("soda_")
    ]
    assert keys, f"no Soda checks on {asset}"
    return dg.AssetSelection.checks(*keys)


def test_duplicate_orders_open_one_grouped_triaged_notified_incident(clean_warehouse, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    shutil.copy(clean_warehouse, tmp_path / "warehouse.duckdb")
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute(DUPLICATE_ORDERS)
    receiver = Receiver(ROUTING_KEY)
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", url)
    monkeypatch.setenv("RELIABILITY_SLACK_WEBHOOK_URL", f"{receiver.base}/slack/T0/B0/e2esecret")
    monkeypatch.setenv("RELIABILITY_PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
    monkeypatch.setenv("RELIABILITY_PAGERDUTY_URL", f"{receiver.base}/v2/enqueue")
    monkeypatch.setenv("RELIABILITY_ALERTMANAGER_URL", receiver.base)
    defs = build(shop_settings(tmp_path))
    sensor = build_incident_sensor(store_url=url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    try:
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            # 1. the raw contracts (Soda) run against the loaded day: the duplicate check fails upstream
            soda = run(defs, soda_checks_of(defs, "raw_orders"), instance)
            assert "raw_orders:soda_order_id_duplicate" in failed_checks(soda)
            first = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
            with IncidentStore(url) as store:
                incidents = store.list_incidents()
                assert len(incidents) == 1, [(i.title, i.root_asset) for i in incidents]
                (incident,) = incidents
                assert incident.root_asset == "raw_orders"

            # 2. the dbt models run: dbt tests fail downstream, blocking checks stop the marts (run fails)
            dbt = run(defs, daily_selection(defs) - RAW, instance, partition_key=DAY)
            assert "stg_orders:unique_stg_orders_order_id" in failed_checks(dbt)
            assert "fct_orders" not in materialized(dbt)
            # the dbt test says what it tests: its type and how many rows failed, in its own metadata
            unique = next(e for e in dbt.get_asset_check_evaluations() if e.check_name == "unique_stg_orders_order_id")
            assert unique.metadata["dbt_test"].value == "unique" and unique.metadata["rows_failed"].value == 3
            second = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs))
            assert "opened 0 incident(s)" in second.skip_reason.skip_message, second.skip_reason.skip_message

            with IncidentStore(url) as store:
                assert store.count() == 1, [i.title for i in store.list_incidents()]
                inc = store.get(incident.id)
            # right root, severity and blast radius (including the revenue exposure)
            assert inc.root_asset == "raw_orders" and inc.fault_class == "duplicates"
            # 3 duplicate orders of a day reach the revenue dashboard: serious, but narrow (not SEV1)
            assert inc.severity == "SEV2", inc.severity_reason
            assert inc.severity_reason == "a narrow ERROR-level fault reaches an exposure"
            assert "revenue_dashboard" in inc.blast_radius["exposures"]
            roles = {a.asset_key: a.role for a in inc.assets}
            assert roles["raw_orders"] == "root" and roles["stg_orders"] == "failing"
            assert {"fct_orders", "daily_revenue", "revenue_dashboard"} <= set(roles)
            # the marts were not built because stg_orders' blocking test failed: blocked, not failing
            assert roles["fct_orders"] == "blocked" and roles["daily_revenue"] == "blocked", roles
            depth = {a.asset_key: a.depth for a in inc.assets}
            assert depth["stg_orders"] == 1 and depth["revenue_dashboard"] == 4
            assert "most upstream failing asset: raw_orders" in inc.root_cause["text"]
            signals = {e.data.get("signal") for e in inc.timeline if e.kind == "detection"}
            assert {"soda_order_id_duplicate", "unique_stg_orders_order_id"} <= signals
            classes = {e.data.get("signal"): e.data.get("fault_class") for e in inc.timeline if e.kind == "detection"}
            assert classes["unique_stg_orders_order_id"] == "duplicates"  # from dbt's test_metadata.name
            assert any(e.data.get("blocked_by") == ["stg_orders"] for e in inc.timeline if e.kind == "detection")

            # visible where engineers look: observations on the asset pages, run tags
            for key in ("raw_orders", "stg_orders", "revenue_dashboard"):
                records = instance.fetch_observations(dg.AssetKey(key), limit=1).records
                assert records, key
                md = records[0].asset_observation.metadata
                assert md["incident_id"].value == inc.display_id and md["incident_severity"].value == "SEV2"
            assert instance.get_run_by_id(dbt.run_id).tags[RUN_TAG] == inc.display_id
            assert instance.get_run_by_id(soda.run_id).tags[RUN_TAG] == inc.display_id

        # notified once per receiver, payloads valid
        assert receiver.errors == []
        pd = receiver.of("pagerduty")
        assert [b["event_action"] for b in pd] == ["trigger"]
        assert pd[0]["payload"]["severity"] == "error" and pd[0]["payload"]["component"] == "raw_orders"
        assert len(receiver.of("slack")) == 1
        # Alertmanager gets the firing alert, and again each minute while it fires (a slow run between the
        # two ticks can cross that minute): always the same alert, never resolved
        alerts = [batch[0] for batch in receiver.of("alertmanager")]
        assert alerts and all(a["labels"] == alerts[0]["labels"] and "endsAt" not in a for a in alerts)
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "e2esecret" not in logged and ROUTING_KEY not in logged
    finally:
        receiver.stop()


def _tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, defs: dg.Definitions, cursor: str | None):
    return sensor(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)).cursor


def test_a_column_changing_type_is_one_schema_change_incident(clean_warehouse, tmp_path, monkeypatch):
    """raw_orders.amount arrives as text: one schema-change failure with old and new types; the amount
    checks Soda cannot evaluate belong to it, not alarms of their own. Restored, the incident mitigates."""
    shutil.copy(clean_warehouse, tmp_path / "warehouse.duckdb")
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("alter table raw_orders alter amount type varchar")
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", url)
    defs = build(shop_settings(tmp_path))
    sensor = build_incident_sensor(store_url=url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        soda = run(defs, soda_checks_of(defs, "raw_orders"), instance)
        failed = failed_checks(soda)
        assert {"raw_orders:soda_schema", "raw_orders:soda_amount_invalid"} <= failed, failed
        evaluations = {e.check_name: e for e in soda.get_asset_check_evaluations()}
        invalid = evaluations["soda_amount_invalid"].metadata
        assert invalid["not_evaluated_due_to"].value == "soda_schema"
        cursor = _tick(sensor, instance, defs, None)
        with IncidentStore(url) as store:
            incidents = store.list_incidents()
            assert len(incidents) == 1, [i.title for i in incidents]
            inc = store.get(incidents[0].id)
        assert inc.root_asset == "raw_orders" and inc.fault_class == "schema_change"
        assert inc.title == "schema change on raw_orders: soda_schema"
        # the whole table is unusable and it feeds the revenue dashboard: the one SEV1 kind of fault here
        assert inc.severity == "SEV1", inc.severity_reason
        detections = [e.data for e in inc.timeline if e.kind == "detection"]
        assert len(detections) == 1, detections  # one fault, one detection
        metadata = detections[0]["metadata"]
        assert {"column": "amount", "old_type": "decimal", "new_type": "VARCHAR"} in metadata["schema_changes"]
        not_evaluated = set(metadata["not_evaluated"])
        assert {"soda_amount_invalid", "soda_amount_missing"} <= not_evaluated, not_evaluated
        assert inc.durations()["to_detect"] is None or inc.durations()["to_detect"] > 0

        # the producer fixes the type; the checks run again and pass: the incident mitigates by itself
        with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
            con.execute("alter table raw_orders alter amount type decimal(12, 2)")
        again = run(defs, soda_checks_of(defs, "raw_orders"), instance)
        assert not {c for c in failed_checks(again) if c.startswith("raw_orders:soda_")}, failed_checks(again)
        _tick(sensor, instance, defs, cursor)
        with IncidentStore(url) as store:
            assert store.count() == 1 and store.get(inc.id).status == "mitigated"


def test_a_fixed_fault_once_rebuilt_moves_its_incident_to_mitigated(clean_warehouse, tmp_path, monkeypatch):
    """Duplicate orders: Soda fails on raw_orders, dbt's unique test on stg_orders blocks the marts.
    Deduplicated and rebuilt, every signal clears and the incident moves to mitigated on its own."""
    shutil.copy(clean_warehouse, tmp_path / "warehouse.duckdb")
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute(DUPLICATE_ORDERS)
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", url)
    defs = build(shop_settings(tmp_path))
    sensor = build_incident_sensor(store_url=url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        run(defs, soda_checks_of(defs, "raw_orders"), instance)
        dbt = run(defs, daily_selection(defs) - RAW, instance, partition_key=DAY)
        assert not dbt.success and "fct_orders" not in materialized(dbt)
        cursor = _tick(sensor, instance, defs, None)
        with IncidentStore(url) as store:
            (inc,) = store.list_incidents()
            assert inc.status == "open"

        with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
            con.execute("create or replace table raw_orders as select distinct * from raw_orders")
        soda = run(defs, soda_checks_of(defs, "raw_orders"), instance)
        assert "raw_orders:soda_order_id_duplicate" not in failed_checks(soda)
        rebuilt = run(defs, daily_selection(defs) - RAW, instance, partition_key=DAY)
        assert rebuilt.success and "fct_orders" in materialized(rebuilt)
        _tick(sensor, instance, defs, cursor)
        with IncidentStore(url) as store:
            assert store.count() == 1
            done = store.get(inc.id)
        assert done.status == "mitigated", [e.message for e in done.timeline]
        assert any("mitigated" in e.message for e in done.timeline if e.kind == "status_change")
