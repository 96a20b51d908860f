"""The lag sensor on a real Dagster instance: checks land on raw_orders; a broker outage is ERR, then heals.

Runs last among the Kafka tests (file order): it stops and restarts the session's broker.
"""

from __future__ import annotations

import json
import os
import time

import dagster as dg
import pytest

from reliability.kafka import broker, clients
from reliability.kafka import defs as kafka_defs
from reliability.kafka.ingest import ingest
from reliability.kafka.producer import produce_orders

pytestmark = [pytest.mark.kafka, pytest.mark.serial]
CHECK_KEY = dg.AssetCheckKey(kafka_defs.RAW_ORDERS, kafka_defs.LAG_CHECK)


def run_tick(sensor, instance, cursor):
    """Evaluate the sensor like the daemon does and store its check evaluations in the instance."""
    started = time.monotonic()
    result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    elapsed = time.monotonic() - started
    assert isinstance(result, dg.SensorResult)
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return result, elapsed


def evaluations_of(result) -> list[dg.AssetCheckEvaluation]:
    return [e for e in result.asset_events if isinstance(e, dg.AssetCheckEvaluation)]


@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="an external cluster is not ours to stop")
def test_lag_sensor_reports_checks_and_survives_a_broker_restart(kafka_broker, topic_name, tmp_path):
    clients.ensure_topic(topic_name, 2, kafka_broker)
    group = f"g.{topic_name}"
    produce_orders(topic_name, 500, bootstrap=kafka_broker)
    ingest(tmp_path / "wh.duckdb", topic=topic_name, group_id=group, bootstrap=kafka_broker)
    sensor = kafka_defs.build_lag_sensor({group: kafka_defs.RAW_ORDERS})

    with dg.DagsterInstance.ephemeral() as instance:
        result, _ = run_tick(sensor, instance, None)
        (ok,) = evaluations_of(result)
        assert ok.passed and ok.metadata["consumer_group"].value == group
        assert ok.metadata["total_lag"].value == 0 and ok.metadata["status"].value == "OK"
        cursor = result.cursor
        assert group in json.loads(cursor)["w"]

        broker.down()
        try:
            result, elapsed = run_tick(sensor, instance, cursor)
            (down,) = evaluations_of(result)
            assert not down.passed and down.severity == dg.AssetCheckSeverity.ERROR
            assert "unreachable" in down.description.lower() or "no kafka cluster" in down.description.lower()
            assert elapsed < 30, f"the outage took {elapsed:.0f}s to report"
            assert json.loads(result.cursor)["w"][group], "the window survives the outage"
            cursor = result.cursor
        finally:
            broker.up(timeout_s=120)

        for _ in range(20):  # the coordinator may need a moment to load the group offsets again
            result, _ = run_tick(sensor, instance, cursor)
            cursor = result.cursor
            (back,) = evaluations_of(result)
            if back.passed and "not found" not in back.description:
                break
            time.sleep(1)
        assert back.passed and back.metadata["consumer_group"].value == group, back.description
        assert "not found" not in back.description

        history = instance.event_log_storage.get_asset_check_execution_history(CHECK_KEY, limit=50)
        statuses = [record.status.value for record in reversed(history)]
        assert statuses[0] == "SUCCEEDED" and "FAILED" in statuses and statuses[-1] == "SUCCEEDED", statuses


def test_sensor_tick_without_any_cluster_reports_err(monkeypatch, tmp_path):
    """No broker configured at all: the fed asset still gets an ERR evaluation saying so, no crash."""
    monkeypatch.setenv("RELIABILITY_KAFKA_STATE_DIR", str(tmp_path / "nothing-here"))
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    sensor = kafka_defs.build_lag_sensor({"reliability.raw_orders": kafka_defs.RAW_ORDERS})
    with dg.DagsterInstance.ephemeral() as instance:
        result, _ = run_tick(sensor, instance, None)
    (ev,) = evaluations_of(result)
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR
    assert "reliability kafka up" in ev.description


def test_lag_check_reported_by_the_sensor_shows_in_the_ui(kafka_broker, topic_name, tmp_path):
    """The webserver's GraphQL (what the UI reads) lists the sensor's evaluation under raw_orders."""
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    clients.ensure_topic(topic_name, 1, kafka_broker)
    group = f"g.{topic_name}"
    produce_orders(topic_name, 50, bootstrap=kafka_broker)
    ingest(tmp_path / "wh.duckdb", topic=topic_name, group_id=group, bootstrap=kafka_broker)
    location = tmp_path / "location.py"
    location.write_text("from reliability.kafka.defs import defs as kafka_defs\n\ndefs = kafka_defs()\n")
    query = """query($key: AssetKeyInput!, $name: String!) {
      assetCheckExecutions(assetKey: $key, checkName: $name, limit: 5) {
        status evaluation { description metadataEntries { label } }
      }
      assetNodes(assetKeys: [$key]) { assetChecksOrError { ... on AssetChecks { checks { name } } } }
    }"""
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        sensor = kafka_defs.build_lag_sensor({group: kafka_defs.RAW_ORDERS})
        run_tick(sensor, instance, None)
        with define_out_of_process_context(str(location), "defs", instance) as context:
            result = execute_dagster_graphql(
                context, query, {"key": {"path": ["raw_orders"]}, "name": kafka_defs.LAG_CHECK}
            )
    assert result.errors is None
    (execution,) = result.data["assetCheckExecutions"]
    assert execution["status"] == "SUCCEEDED" and group in execution["evaluation"]["description"]
    labels = {entry["label"] for entry in execution["evaluation"]["metadataEntries"]}
    assert {"total_lag", "time_lag_s", "worst_partition", "status"} <= labels
    (node,) = result.data["assetNodes"]
    assert {c["name"] for c in node["assetChecksOrError"]["checks"]} == {kafka_defs.LAG_CHECK, kafka_defs.DLQ_CHECK}


def test_a_fed_group_that_never_consumed_is_not_started_not_an_alarm(kafka_broker, topic_name, tmp_path):
    """First deploy: the lag sensor ticks before the first micro-batch. The group has no commit yet, so the
    check passes saying NOT_STARTED instead of opening an incident (Burrow does not judge unknown groups)."""
    clients.ensure_topic(topic_name, 1, kafka_broker)
    produce_orders(topic_name, 20, bootstrap=kafka_broker)
    group = f"g.{topic_name}"
    sensor = kafka_defs.build_lag_sensor({group: kafka_defs.RAW_ORDERS})
    with dg.DagsterInstance.ephemeral() as instance:
        result, _ = run_tick(sensor, instance, None)
        (first,) = evaluations_of(result)
        assert first.passed and first.metadata["status"].value == "NOT_STARTED", first.description
        assert "not started yet" in first.description
        ingest(tmp_path / "wh.duckdb", topic=topic_name, group_id=group, bootstrap=kafka_broker)
        result, _ = run_tick(sensor, instance, result.cursor)
        (after,) = evaluations_of(result)
        assert after.passed and after.metadata["status"].value == "OK", after.description
