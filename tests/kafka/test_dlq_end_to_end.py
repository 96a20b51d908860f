"""Bad messages in the Kafka feed, end to end (real broker, real DuckDB, real Dagster instance, real
incident store): poison -> `kafka_dlq_depth` fails -> incident -> the breaker pauses ingestion -> more
orders wait in Kafka -> the fix is deployed -> `reconcile --replay-kafka` replays the bad day from the
offsets `offsets_for_times` gives -> `dlq archive` handles what cannot be fixed -> resume -> the next
micro-batch passes the check, no order is duplicated, and the incident resolves without reopening.

The fix: producers started sending orders with status `refunded` before the consumer knew it; the
fixed consumer accepts it (the same validation rules with one more status).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pytest
from dagster_duckdb import DuckDBResource

from reliability.cli import main as reliability_main
from reliability.incidents.detection import read_detections
from reliability.incidents.eventlog import Cursor
from reliability.incidents.lineage import graph_from_asset_graph
from reliability.incidents.model import Status
from reliability.incidents.store import IncidentStore
from reliability.kafka import clients, validation
from reliability.kafka import defs as kafka_defs
from reliability.kafka.dlq_ops import kafka_replayer
from reliability.kafka.events import ORDER_STATUSES, encode, order_event
from reliability.kafka.warehouse import OUTBOX_TABLE, unhandled_dlq_depth
from reliability.mitigation.policy import MitigationPolicy, Mode
from reliability.mitigation.service import policy_tick, resume_incident
from reliability.reconciliation.service import KAFKA_REPLAY_ACTION, reconcile
from tests.incidents.conftest import SteppingClock

pytestmark = pytest.mark.kafka

DAY = "2026-02-03"  # the bad day: the incident's window
DAY_START = datetime(2026, 2, 3, tzinfo=UTC)
DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01")


@dg.asset(deps=[kafka_defs.RAW_ORDERS], partitions_def=DAILY, group_name="marts")
def orders_daily() -> None:
    """A daily child, so the incident's day is a partition key of the code location."""


def _produce(bootstrap: str, topic: str, orders: list[tuple[int, bytes]], start: datetime) -> None:
    """Each order to partition order_id % 2, one minute apart from `start` (the message timestamp)."""
    prod = clients.producer(bootstrap)
    for i, (order_id, value) in enumerate(orders):
        at = int((start + timedelta(minutes=i)).timestamp() * 1000)
        prod.produce(topic, key=str(order_id).encode(), value=value, partition=order_id % 2, timestamp=at)
    assert prod.flush(30) == 0


def _good(order_id: int) -> bytes:
    return encode(order_event(3, order_id))


def _refunded(order_id: int) -> bytes:
    return encode({**order_event(3, order_id), "status": "refunded"})


def test_bad_messages_incident_pause_fix_replay_archive_resolve(kafka_broker, topic_name, tmp_path, monkeypatch):
    store_url = f"sqlite:///{tmp_path / 'incidents.db'}"
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", store_url)  # what the Kafka sensor reads
    warehouse = tmp_path / "wh.duckdb"
    group = f"g.{topic_name}"
    # the messages carry their event time, months back: the broker's 7-day time retention would delete
    # them mid-test, so this topic keeps everything
    clients.ensure_topic(topic_name, 2, kafka_broker, config={"retention.ms": "-1"})
    # the bad day: 20 orders, one `refunded` (fixable) and one cut-off JSON (not fixable) among them
    day = [(i, _good(i)) for i in range(1, 21)] + [(21, _refunded(21)), (22, _good(22)[:-6])]
    _produce(kafka_broker, topic_name, day, DAY_START + timedelta(hours=9))

    kafka = kafka_defs.KafkaSource(bootstrap_servers=kafka_broker, topic=topic_name, group_id=group)
    resources = {"warehouse": DuckDBResource(database=str(warehouse)), "kafka": kafka}
    defs = dg.Definitions(assets=[kafka_defs.raw_orders, orders_daily], asset_checks=[kafka_defs.kafka_consumer_lag],
                          jobs=[kafka_defs.ingest_job],
                          sensors=[kafka_defs.kafka_orders_sensor], resources=resources)  # fmt: skip
    repo = defs.get_repository_def()
    selection = dg.AssetSelection.assets(kafka_defs.RAW_ORDERS)

    def micro_batch(instance) -> dg.AssetCheckEvaluation:
        result = dg.materialize([kafka_defs.raw_orders], instance=instance, resources=resources, selection=selection)
        (check,) = result.get_asset_check_evaluations()
        return check

    from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteRepositoryOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    origin = RemoteRepositoryOrigin(
        InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="tests.kafka.test_dlq_end_to_end")), repo.name
    )
    with dg.instance_for_test() as instance, IncidentStore(store_url, clock=SteppingClock()) as store:
        # 1. detection: the micro-batch dead-letters the two bad messages, the DLQ check fails
        check = micro_batch(instance)
        assert not check.passed and check.metadata["dlq_depth"].value == 2
        detections, cursor = read_detections(instance, Cursor())
        (inc_id,) = store.ingest(detections, graph_from_asset_graph(repo.asset_graph)).opened
        assert store.get(inc_id).root_asset == "raw_orders"

        # 2. mitigation: the breaker pauses the Kafka feed; new orders wait in the topic
        policy_tick(instance, store, repo, origin, MitigationPolicy(default=Mode.AUTO), lambda _: None)
        assert store.get(inc_id).status == Status.MITIGATED
        sensor_context = dg.build_sensor_context(instance=instance)
        skip = kafka_defs.kafka_orders_sensor(sensor_context, kafka=kafka)
        assert isinstance(skip, dg.SkipReason) and skip.skip_message.startswith(f"paused by INC-{inc_id}")
        later = [(i, _good(i)) for i in range(23, 33)] + [(33, _refunded(33))]
        _produce(kafka_broker, topic_name, later, DAY_START + timedelta(days=1, hours=9))

        # 3. the fix is deployed; reconcile replays the bad day from Kafka (dry run first: the offsets)
        monkeypatch.setattr(validation, "ORDER_STATUSES", (*ORDER_STATUSES, "refunded"))
        monkeypatch.setattr(validation, "PER_MESSAGE_SQL", "create or replace temp table _checked as\n"
                            + validation.rules_sql(validation._PER_MESSAGE_SOURCE))  # fmt: skip
        now = DAY_START + timedelta(days=2)
        replayer = kafka_replayer(warehouse, kafka_broker, topic_name, group, now=now, actor="ann",
                                  incident=f"INC-{inc_id}")  # fmt: skip
        graph = defs.resolve_asset_graph()
        dry = reconcile(store, None, graph, inc_id, now=now, partitions=[DAY], dry_run=True, replay_kafka=replayer)
        per_partition = {p.partition: (p.start, p.end, p.rows, p.dead_letters, p.not_ingested)
                         for p in dry.kafka_replay.partitions}  # fmt: skip
        # partition 1 holds the odd orders 1..21 (11, order 21 refunded at offset 10); partition 0 the even
        # ones 2..22 (order 22 cut off at offset 10); the next day's orders start after them
        assert per_partition == {0: (0, 11, 10, (10,), 0), 1: (0, 11, 10, (10,), 0)}
        assert not [e for e in store.timeline(inc_id) if e.data.get("action") == KAFKA_REPLAY_ACTION]

        done = reconcile(store, instance, graph, inc_id, now=now, partitions=[DAY], replay_kafka=replayer)
        outcome = done.kafka_replay.outcome
        assert outcome.replayed == [(1, 10)] and [(p, o, e) for p, o, e, _ in outcome.still_invalid] == [
            (0, 10, "invalid_json")]  # fmt: skip
        assert done.backfill_id and instance.get_backfill(done.backfill_id) is not None
        (recorded,) = [e for e in store.timeline(inc_id) if e.data.get("action") == KAFKA_REPLAY_ACTION]
        assert recorded.data["partitions"][0]["start"] == 0 and recorded.data["outcome"]["replayed"] == ["1:10"]
        # the timeline says it in one line; the offsets per partition stay in the entry's data
        assert recorded.message.startswith(f"replay {topic_name} for {DAY}: 22 message(s) in 2 partition(s); "
                                           "replayed 1 dead letter(s) into rows; 1 still fail validation")  # fmt: skip
        assert "\n" not in recorded.message and "offsets" not in recorded.message
        again = reconcile(store, instance, graph, inc_id, now=now, partitions=[DAY], replay_kafka=replayer)
        # idempotent: nothing replayed twice; what still fails stays one dead letter
        assert again.kafka_replay.outcome.replayed == [] and len(again.kafka_replay.outcome.still_invalid) == 1

        # 4. what cannot be fixed is archived with a reason, on the incident's timeline
        code = reliability_main(["kafka", "dlq", "archive", "--topic", topic_name, "--warehouse", str(warehouse),
                                 "--reason", "cut off by the old proxy; order 22 re-sent", "--incident",
                                 f"INC-{inc_id}", "--actor", "ann"])  # fmt: skip
        assert code == 0
        (archived,) = [e for e in store.timeline(inc_id) if e.data.get("action") == "dlq_archive"]
        assert archived.data["positions"] == ["0:10"] and "order 22 re-sent" in archived.message
        with duckdb.connect(str(warehouse)) as con:
            assert unhandled_dlq_depth(con, topic_name) == 0
            assert con.execute(f"select count(*) from {OUTBOX_TABLE}").fetchone()[0] == 2  # each counted once

        # 5. resume: the waiting orders are ingested, the check passes, nothing is duplicated
        resume_incident(instance, store, repo, origin, inc_id, actor="ann")
        assert isinstance(kafka_defs.kafka_orders_sensor(sensor_context, kafka=kafka), dg.RunRequest)
        check = micro_batch(instance)
        assert check.passed and check.metadata["dlq_depth"].value == 0
        with duckdb.connect(str(warehouse)) as con:
            ids = [r[0] for r in con.execute("select order_id from raw_orders order by order_id").fetchall()]
        assert ids == [i for i in range(1, 34) if i != 22]  # 22 archived; 21 replayed once; 33 ingested as is

        # 6. the incident resolves, and the next detections (a passing DLQ check) do not reopen it
        store.transition(inc_id, Status.RESOLVED, "ann", note="replayed and archived the dead letters")
        later_detections, _ = read_detections(instance, cursor)
        assert [d.passed for d in later_detections if d.signal == kafka_defs.DLQ_CHECK] == [True]
        store.ingest(later_detections, graph_from_asset_graph(repo.asset_graph))
        assert store.get(inc_id).status == Status.RESOLVED
