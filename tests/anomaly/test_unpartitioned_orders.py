"""raw_orders fed by Kafka is materialized by unpartitioned runs: its anomaly checks judge the complete
days that are new or changed since the last judgement, never the day in progress, and fail on a day
with a tenth of the usual orders (real broker, real ingest through Dagster, real DuckDB and instance)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import time_machine

from reliability.anomaly import DAY_COLUMN_METADATA
from reliability.anomaly import defs as anomaly_area
from reliability.kafka import defs as kafka_area
from reliability.kafka.defs import KafkaSource
from reliability.kafka.events import encode, event_from_row
from reliability.kafka.producer import produce
from reliability.shop.generator import order_rows
from tests.anomaly.shop_history import FIRST_DAY, SCALE, write_days
from tests.shop_harness import shop_settings

pytestmark = pytest.mark.kafka
HISTORY_DAYS = 28
FAULT_DAY = FIRST_DAY + timedelta(days=HISTORY_DAYS)
TODAY = FAULT_DAY + timedelta(days=1)  # in progress: its first orders already arrived


def _send(topic: str, bootstrap: str, rows: list[tuple]) -> None:
    assert produce(topic, ((str(r[0]).encode(), encode(event_from_row(r))) for r in rows), bootstrap=bootstrap) == []


def _ingest(defs: dg.Definitions, instance: dg.DagsterInstance, resources: dict) -> dict[str, dg.AssetCheckEvaluation]:
    """One unpartitioned micro-batch of raw_orders with its anomaly checks, at noon of TODAY."""
    with time_machine.travel(datetime(TODAY.year, TODAY.month, TODAY.day, 12, tzinfo=UTC), tick=True):
        result = dg.materialize(
            [*(defs.assets or []), *(defs.asset_checks or [])], instance=instance, resources=resources,
            selection=dg.AssetSelection.assets("raw_orders"),
        )  # fmt: skip
    assert result.success
    return {e.check_name: e for e in result.get_asset_check_evaluations() if e.check_name.startswith("anomaly_")}


def test_a_day_with_a_tenth_of_the_orders_fails_volume_after_an_unpartitioned_ingest(
    kafka_broker, topic_name, tmp_path
) -> None:
    settings = shop_settings(tmp_path)
    write_days(settings.warehouse_path, HISTORY_DAYS, ("raw_orders",))  # a clean history, never judged yet
    fault_orders = order_rows(SCALE, FAULT_DAY)
    _send(topic_name, kafka_broker, fault_orders[: len(fault_orders) // 10])  # ~10% of the day's volume
    _send(topic_name, kafka_broker, order_rows(SCALE, TODAY)[:20])  # today so far: a "drop" if it were judged
    kafka = kafka_area.defs(settings)
    assert kafka_area.raw_orders.specs_by_key[kafka_area.RAW_ORDERS].metadata[DAY_COLUMN_METADATA] == "order_date"
    defs = dg.Definitions.merge(kafka, anomaly_area.defs(settings, kafka.assets))
    resources = {**kafka.resources, "kafka": KafkaSource(bootstrap_servers=kafka_broker, topic=topic_name)}
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        first = _ingest(defs, instance, resources)
        volume = first["anomaly_volume"]
        assert not volume.passed and volume.severity == dg.AssetCheckSeverity.WARN
        assert volume.metadata["partition_keys"].value == [FAULT_DAY.isoformat()]
        assert volume.metadata["mode"].value == "new_days" and volume.metadata["monitor"].value == "row_count"
        judged = volume.metadata["judged_days"].value  # the first run learns the lookback's complete days
        assert judged[-1] == FAULT_DAY.isoformat() and TODAY.isoformat() not in judged and len(judged) == 28
        assert volume.metadata["value"].value < volume.metadata["band_low"].value

        # the next micro-batch brings nothing for a complete day: the fault day's verdict holds
        again = _ingest(defs, instance, resources)["anomaly_volume"]
        assert not again.passed and again.metadata["judged_days"].value == []
        assert again.metadata["partition_keys"].value == [FAULT_DAY.isoformat()]
        assert f"no new or changed complete day since {FAULT_DAY}" in again.description

        # the fault day's late orders arrive: only that day is judged again, and now passes
        _send(topic_name, kafka_broker, fault_orders[len(fault_orders) // 10 :])
        late = _ingest(defs, instance, resources)["anomaly_volume"]
        assert late.passed and late.metadata["judged_days"].value == [FAULT_DAY.isoformat()]
