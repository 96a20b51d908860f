"""Ingestion into DuckDB on the real broker: rows, DLQ with headers, offsets, re-runs, the Dagster asset."""

from __future__ import annotations

import json

import duckdb
import pytest
from confluent_kafka import TopicPartition

from reliability.kafka import clients
from reliability.kafka.events import encode, order_event
from reliability.kafka.ingest import Ingestor, ingest
from reliability.kafka.producer import produce_orders
from reliability.kafka.warehouse import OUTBOX_TABLE, stored_offsets

pytestmark = pytest.mark.kafka


def read_topic(bootstrap: str, topic: str) -> list:
    """Every message of a topic (read_committed), for assertions."""
    consumer = clients.consumer("test-reader", bootstrap, **{"enable.partition.eof": True})
    md = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in md.partitions])
    out, eof = [], set()
    while len(eof) < len(md.partitions):
        for msg in consumer.consume(1000, timeout=2):
            if msg.error():
                eof.add(msg.partition())
            else:
                out.append(msg)
    consumer.close()
    return out


def test_rows_dlq_headers_and_offsets(kafka_broker, topic_name, tmp_path):
    clients.ensure_topic(topic_name, 3, kafka_broker)
    produced = produce_orders(topic_name, 3000, seed=5, poison_count=10, bootstrap=kafka_broker)
    warehouse = tmp_path / "wh.duckdb"
    stats = ingest(warehouse, topic=topic_name, group_id=f"g.{topic_name}", bootstrap=kafka_broker)
    assert (stats.rows, stats.rejected) == (3000, 10)

    con = duckdb.connect(str(warehouse))
    count, distinct = con.execute("select count(*), count(distinct order_id) from raw_orders").fetchone()
    assert count == distinct == 3000
    row = con.execute(
        "select customer_id, order_date::varchar, status, amount::double from raw_orders where order_id = 42"
    ).fetchone()
    expected = order_event(5, 42)
    assert row == (expected["customer_id"], expected["order_date"], expected["status"], expected["amount"])
    assert sum(stored_offsets(con, topic_name, f"g.{topic_name}").values()) == 3010
    con.close()

    dlq = read_topic(kafka_broker, f"{topic_name}.dlq")
    assert len(dlq) == produced.poison == 10
    for msg in dlq:
        headers = {k: v.decode() for k, v in msg.headers()}
        assert headers["dlq.source.topic"] == topic_name
        assert headers["dlq.error"] in {
            "invalid_json",
            "missing_field",
            "wrong_type",
            "invalid_status",
            "unsupported_schema_version",
        }
        source = read_at(
            kafka_broker, topic_name, int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"])
        )
        assert source == msg.value()  # the DLQ holds the original bytes of the message it names


def read_at(bootstrap: str, topic: str, partition: int, offset: int) -> bytes:
    consumer = clients.consumer("test-reader", bootstrap)
    consumer.assign([TopicPartition(topic, partition, offset)])
    try:
        for _ in range(20):
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                return msg.value()
        raise AssertionError(f"no message at {topic}[{partition}]@{offset}")
    finally:
        consumer.close()


def test_rerun_and_more_data_never_duplicates(kafka_broker, topic_name, tmp_path):
    clients.ensure_topic(topic_name, 2, kafka_broker)
    warehouse = tmp_path / "wh.duckdb"
    group = f"g.{topic_name}"
    produce_orders(topic_name, 1000, bootstrap=kafka_broker)
    assert ingest(warehouse, topic=topic_name, group_id=group, bootstrap=kafka_broker).rows == 1000
    assert ingest(warehouse, topic=topic_name, group_id=group, bootstrap=kafka_broker).rows == 0
    produce_orders(topic_name, 500, first_id=1001, bootstrap=kafka_broker)
    assert ingest(warehouse, topic=topic_name, group_id=group, bootstrap=kafka_broker).rows == 500
    con = duckdb.connect(str(warehouse))
    assert con.execute("select count(*), count(distinct order_id), max(order_id) from raw_orders").fetchone() == (
        1500,
        1500,
        1500,
    )
    con.close()
    # progress is mirrored to Kafka's group offsets, so lag tools see it
    admin = clients.admin(kafka_broker)
    from confluent_kafka import ConsumerGroupTopicPartitions

    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
    assert sum(tp.offset for tp in res.topic_partitions) == 1500


def test_outbox_left_unpublished_by_a_crash_is_published_once(kafka_broker, topic_name, tmp_path):
    clients.ensure_topic(topic_name, 1, kafka_broker)
    produce_orders(topic_name, 200, poison_count=4, bootstrap=kafka_broker)
    warehouse = tmp_path / "wh.duckdb"
    group = f"g.{topic_name}"
    ingest(warehouse, topic=topic_name, group_id=group, bootstrap=kafka_broker)
    # simulate a crash after the DuckDB commit: two rows published, all four marked unpublished
    con = duckdb.connect(str(warehouse))
    con.execute(f"update {OUTBOX_TABLE} set published = false")
    con.close()
    ingestor = Ingestor(warehouse, topic=topic_name, group_id=group, bootstrap=kafka_broker)
    try:
        assert ingestor.recover_outbox() == 0  # all four already in the DLQ: nothing re-sent
    finally:
        ingestor.close()
    assert len(read_topic(kafka_broker, f"{topic_name}.dlq")) == 4


def test_dagster_asset_materializes_raw_orders_with_dlq_check(kafka_broker, topic_name, tmp_path):
    import dagster as dg
    from dagster_duckdb import DuckDBResource

    from reliability.kafka import defs as kafka_defs

    clients.ensure_topic(topic_name, 2, kafka_broker)
    produce_orders(topic_name, 2000, poison_count=3, bootstrap=kafka_broker)
    warehouse = tmp_path / "wh.duckdb"
    resources = {
        "warehouse": DuckDBResource(database=str(warehouse)),
        "kafka": kafka_defs.KafkaSource(bootstrap_servers=kafka_broker, topic=topic_name, group_id=f"g.{topic_name}"),
    }
    selection = dg.AssetSelection.assets(kafka_defs.RAW_ORDERS).without_checks() | dg.AssetSelection.checks(
        dg.AssetCheckKey(kafka_defs.RAW_ORDERS, kafka_defs.DLQ_CHECK)
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([kafka_defs.raw_orders], instance=instance, resources=resources, selection=selection)
        assert result.success
        mat = result.asset_materializations_for_node("raw_orders")[0]
        assert mat.metadata["dagster/row_count"].value == 2000
        assert mat.metadata["rejected_to_dlq"].value == 3
        (check,) = result.get_asset_check_evaluations()
        assert check.check_name == kafka_defs.DLQ_CHECK and not check.passed
        assert check.severity == dg.AssetCheckSeverity.WARN and check.metadata["dlq_depth"].value == 3

        again = dg.materialize([kafka_defs.raw_orders], instance=instance, resources=resources, selection=selection)
        assert again.asset_materializations_for_node("raw_orders")[0].metadata["rows_ingested"].value == 0


def test_definitions_load_with_sensors_and_checks():
    import dagster as dg

    from reliability.kafka import defs as kafka_defs

    d = kafka_defs.defs()
    repo = d.get_repository_def()
    assert {s.name for s in repo.sensor_defs} == {"kafka_orders_sensor", "kafka_lag_sensor"}
    checks = {key.name for key in repo.asset_graph.asset_check_keys}
    assert {kafka_defs.LAG_CHECK, kafka_defs.DLQ_CHECK} <= checks
    spec = repo.asset_graph.get(dg.AssetKey(["raw_orders"]))
    assert spec.pools == {"duckdb"}


def test_orders_sensor_requests_a_micro_batch_only_when_messages_wait(kafka_broker, topic_name, tmp_path):
    import dagster as dg

    from reliability.kafka import defs as kafka_defs

    clients.ensure_topic(topic_name, 2, kafka_broker)
    source = kafka_defs.KafkaSource(bootstrap_servers=kafka_broker, topic=topic_name, group_id=f"g.{topic_name}")
    with dg.DagsterInstance.ephemeral() as instance:

        def evaluate():
            ctx = dg.build_sensor_context(instance=instance, resources={"kafka": source})
            return kafka_defs.kafka_orders_sensor(ctx)

        assert isinstance(evaluate(), dg.SkipReason)  # empty topic: nothing to do
        produce_orders(topic_name, 120, bootstrap=kafka_broker)
        request = evaluate()
        assert isinstance(request, dg.RunRequest) and request.tags["kafka/pending"] == "120"
        ingest(tmp_path / "wh.duckdb", topic=topic_name, group_id=source.group_id, bootstrap=kafka_broker)
        caught_up = evaluate()
        assert isinstance(caught_up, dg.SkipReason) and "caught up" in caught_up.skip_message


def test_lag_check_can_be_run_by_hand(kafka_broker, topic_name, tmp_path):
    import dagster as dg
    from dagster_duckdb import DuckDBResource

    from reliability.kafka import defs as kafka_defs

    clients.ensure_topic(topic_name, 2, kafka_broker)
    group = f"g.{topic_name}"
    produce_orders(topic_name, 100, bootstrap=kafka_broker)
    ingest(tmp_path / "wh.duckdb", topic=topic_name, group_id=group, bootstrap=kafka_broker)
    produce_orders(topic_name, 30, first_id=101, bootstrap=kafka_broker)
    resources = {
        "warehouse": DuckDBResource(database=str(tmp_path / "wh.duckdb")),
        "kafka": kafka_defs.KafkaSource(bootstrap_servers=kafka_broker, topic=topic_name, group_id=group),
    }
    result = dg.materialize(
        [kafka_defs.raw_orders, kafka_defs.kafka_consumer_lag],
        resources=resources,
        selection=dg.AssetSelection.checks(dg.AssetCheckKey(kafka_defs.RAW_ORDERS, kafka_defs.LAG_CHECK)),
    )
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == kafka_defs.LAG_CHECK and check.passed  # window not full yet: OK by Burrow
    assert check.metadata["total_lag"].value == 30 and check.metadata["consumer_group"].value == group


def _send(bootstrap: str, topic: str, values: list[bytes]) -> None:
    prod = clients.producer(bootstrap, idempotent=True)
    for i, value in enumerate(values):
        prod.produce(topic, value=value, key=str(i).encode())
    assert prod.flush(30) == 0


def test_bulk_path_takes_clean_batches_without_per_message_validation(kafka_broker, topic_name, tmp_path, monkeypatch):
    from reliability.kafka import warehouse as warehouse_module

    def no_per_message_path(*_args, **_kwargs):
        raise AssertionError("a batch without rejects must not be validated per message")

    monkeypatch.setattr(warehouse_module, "validate_payloads", no_per_message_path)
    clients.ensure_topic(topic_name, 2, kafka_broker)
    produce_orders(topic_name, 2000, seed=3, bootstrap=kafka_broker)
    warehouse = tmp_path / "wh.duckdb"
    stats = ingest(warehouse, topic=topic_name, group_id=f"g.{topic_name}", bootstrap=kafka_broker, batch_size=300)
    assert (stats.rows, stats.rejected) == (2000, 0)
    con = duckdb.connect(str(warehouse))
    assert con.execute("select count(*), count(distinct order_id) from raw_orders").fetchone() == (2000, 2000)
    assert sum(stored_offsets(con, topic_name, f"g.{topic_name}").values()) == 2000
    con.close()


_GOOD = [encode(order_event(9, i)) for i in range(1, 6)]
_PRETTY = json.dumps(order_event(9, 6), indent=2).encode()  # valid, with newlines between tokens


@pytest.mark.parametrize(
    ("values", "rows", "rejected"),
    [
        # payloads with newlines: lines would not be messages (the blank one would even make the count right)
        (
            [_GOOD[0], b"", _GOOD[1] + b"\n" + _GOOD[2], _PRETTY, _GOOD[4]],
            [1, 5, 6],
            [(1, "invalid_json"), (2, "invalid_json")],
        ),
        # no newline, but lines that yield no row or trailing content: the reader's row count or error tells
        (
            [_GOOD[0], b"", b"   ", _GOOD[1] + _GOOD[2], b"[" + _GOOD[3] + b"]", _GOOD[4]],
            [1, 5],
            [(1, "invalid_json"), (2, "invalid_json"), (3, "invalid_json"), (4, "invalid_json")],
        ),
    ],
)
def test_payloads_that_break_line_framing_are_judged_one_by_one(
    kafka_broker, topic_name, tmp_path, values, rows, rejected
):
    """The bulk path reads one payload per line; a batch where that framing breaks is validated per message."""
    clients.ensure_topic(topic_name, 1, kafka_broker)
    _send(kafka_broker, topic_name, values)
    warehouse = tmp_path / "wh.duckdb"
    stats = ingest(warehouse, topic=topic_name, group_id=f"g.{topic_name}", bootstrap=kafka_broker)
    assert (stats.rows, stats.rejected) == (len(rows), len(rejected))
    con = duckdb.connect(str(warehouse))
    assert [r[0] for r in con.execute("select order_id from raw_orders order by order_id").fetchall()] == rows
    assert con.execute(f"select source_offset, error from {OUTBOX_TABLE} order by source_offset").fetchall() == (
        rejected
    )
    assert stored_offsets(con, topic_name, f"g.{topic_name}") == {0: len(values)}
    con.close()


def test_coercion_cases_end_exact_in_raw_orders_or_in_the_dlq_naming_the_field(kafka_broker, topic_name, tmp_path):
    """On the real broker, through whichever path the batch takes: each value stored exactly or dead-lettered."""
    from tests.kafka.test_validation import COERCION_CASES

    clients.ensure_topic(topic_name, 1, kafka_broker)
    cases = list(COERCION_CASES.items())
    _send(kafka_broker, topic_name, [payload for _, (payload, _) in cases])
    warehouse = tmp_path / "wh.duckdb"
    stats = ingest(warehouse, topic=topic_name, group_id=f"g.{topic_name}", bootstrap=kafka_broker)
    accepted = [expected for _, (_, expected) in cases if not isinstance(expected[0], str)]
    rejected = {offset: expected for offset, (_, (_, expected)) in enumerate(cases) if isinstance(expected[0], str)}
    assert (stats.rows, stats.rejected) == (len(accepted), len(rejected))
    with duckdb.connect(str(warehouse)) as con:
        rows = con.execute("select order_id, customer_id, order_date, ordered_at, status, amount from raw_orders")
        assert sorted(rows.fetchall()) == sorted(accepted)
    dead = {
        int(dict(m.headers())["dlq.source.offset"]): (
            dict(m.headers())["dlq.error"].decode(),
            dict(m.headers())["dlq.error.detail"].decode(),
        )
        for m in read_topic(kafka_broker, f"{topic_name}.dlq")
    }
    assert dead == rejected
