"""Dead letters: a DLQ record always fits, and a ~1 MB poison message never blocks its partition (real broker)."""

from __future__ import annotations

import hashlib
from datetime import datetime

import duckdb
import pytest

from reliability.kafka import clients
from reliability.kafka.dead_letters import MAX_KEY_BYTES, MAX_PAYLOAD_BYTES, DeadLetter, dead_letter_record, source_of
from reliability.kafka.events import encode, order_event
from reliability.kafka.ingest import ingest
from reliability.kafka.warehouse import OUTBOX_TABLE, stored_offsets
from tests.kafka.test_ingest import read_topic

AT = datetime(2026, 3, 1, 12, 0)


def _letter(payload: bytes | None, key: bytes | None = b"k") -> DeadLetter:
    return DeadLetter("shop.orders", 2, 41, "invalid_json", "order_id", key, payload, AT)


def test_a_small_dead_letter_is_the_message_itself_with_headers_naming_its_source():
    key, value, headers = dead_letter_record(_letter(b"{bad"), "g1")
    assert (key, value) == (b"k", b"{bad")
    h = dict(headers)
    assert h["dlq.error"] == b"invalid_json" and h["dlq.error.detail"] == b"order_id"
    assert h["dlq.consumer.group"] == b"g1" and h["dlq.rejected.at"] == b"2026-03-01T12:00:00"
    assert "dlq.payload.truncated" not in h
    assert source_of(headers) == ("shop.orders", 2, 41)


def test_a_dead_letter_too_large_for_kafka_is_truncated_and_says_so():
    payload = bytes(range(256)) * 4000  # 1,024,000 bytes: over Kafka's default 1 MB message limit
    key = b"x" * (MAX_KEY_BYTES + 10)
    record_key, value, headers = dead_letter_record(_letter(payload, key), "g1")
    assert value == payload[:MAX_PAYLOAD_BYTES] and record_key == key[:MAX_KEY_BYTES]
    h = dict(headers)
    assert h["dlq.payload.truncated"] == b"true"
    assert h["dlq.payload.original.bytes"] == str(len(payload)).encode()
    assert h["dlq.payload.sha256"] == hashlib.sha256(payload).hexdigest().encode()
    assert h["dlq.key.truncated"] == b"true" and h["dlq.key.original.bytes"] == str(len(key)).encode()
    assert source_of(headers) == ("shop.orders", 2, 41)  # the full message stays there
    wire = len(value) + len(record_key) + sum(len(k) + len(v) for k, v in headers)
    assert wire < 1_000_000 - 10_000


def test_headers_without_a_source_name_none():
    assert source_of([("dlq.source.topic", b"t"), ("dlq.source.partition", b"x"), ("dlq.source.offset", b"1")]) is None
    assert source_of(None) is None


@pytest.mark.kafka
def test_a_1mb_poison_message_goes_to_the_dlq_and_the_orders_behind_it_are_ingested(kafka_broker, topic_name, tmp_path):
    clients.ensure_topic(topic_name, 1, kafka_broker)
    poison = b'{"schema": "shop.order", "pad": "' + b"p" * 999_766  # 999,800 bytes, not even valid JSON
    prod = clients.producer(kafka_broker)
    prod.produce(topic_name, key=b"poison", value=poison)
    for i in range(1, 201):
        prod.produce(topic_name, key=str(i).encode(), value=encode(order_event(4, i)))
    assert prod.flush(30) == 0
    warehouse = tmp_path / "wh.duckdb"
    group = f"g.{topic_name}"

    stats = ingest(warehouse, topic=topic_name, group_id=group, bootstrap=kafka_broker)
    assert (stats.rows, stats.rejected, stats.dlq_published) == (200, 1, 1)
    assert not stats.stalled and stats.error is None

    with duckdb.connect(str(warehouse)) as con:
        assert con.execute("select count(*), count(distinct order_id) from raw_orders").fetchone() == (200, 200)
        assert stored_offsets(con, topic_name, group) == {0: 201}
        assert con.execute(f"select error, published from {OUTBOX_TABLE}").fetchall() == [("invalid_json", True)]
    (dead,) = read_topic(kafka_broker, f"{topic_name}.dlq")
    h = dict(dead.headers())
    assert h["dlq.payload.truncated"] == b"true" and int(h["dlq.payload.original.bytes"]) == len(poison)
    assert dead.value() == poison[:MAX_PAYLOAD_BYTES] and source_of(dead.headers()) == (topic_name, 0, 0)
    # a second run has nothing left to do: nothing is stuck
    again = ingest(warehouse, topic=topic_name, group_id=group, bootstrap=kafka_broker)
    assert (again.rows, again.rejected, again.dlq_recovered) == (0, 0, 0)
