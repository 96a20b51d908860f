"""The SQL validation that decides row or DLQ, on a real DuckDB, for every poison kind (no Kafka)."""

from __future__ import annotations

import json

import duckdb
import pytest

from reliability.kafka.events import POISON_KINDS, encode, order_event, poison_event
from reliability.kafka.ingest import validate_payloads


@pytest.fixture
def con():
    connection = duckdb.connect()
    yield connection
    connection.close()


def test_valid_events_pass_and_are_typed(con):
    payloads = [encode(order_event(7, i)) for i in range(1, 101)]
    assert validate_payloads(con, payloads) == []
    rows = con.execute(
        "select order_id, status, amount, typeof(amount), typeof(ordered_at) from _valid where ok order by idx"
    ).fetchall()
    assert [r[0] for r in rows] == list(range(1, 101))
    first = order_event(7, 1)
    assert rows[0][1] == first["status"] and float(rows[0][2]) == first["amount"]
    assert rows[0][3] == "DECIMAL(12,2)" and rows[0][4] == "TIMESTAMP"


@pytest.mark.parametrize(
    ("kind", "error", "detail"),
    [
        ("bad_json", "invalid_json", None),
        ("missing_field", "missing_field", "status"),
        ("wrong_type", "wrong_type", "order_id"),
        ("invalid_status", "invalid_status", "status=teleported"),
        ("bad_schema_version", "unsupported_schema_version", None),
    ],
)
def test_each_poison_kind_is_rejected_with_its_reason(con, kind, error, detail):
    assert kind in POISON_KINDS
    payloads = [encode(order_event(1, 1)), poison_event(kind, 2), encode(order_event(1, 3))]
    assert validate_payloads(con, payloads) == [(1, error, detail)]


def test_broken_bytes_and_edge_values(con):
    good = order_event(1, 1)
    negative = {**good, "amount": -1}
    bad_date = {**good, "order_date": "2026-13-45"}
    null_field = {**good, "customer_id": None}
    not_object = [1, 2]
    payloads = [
        b"\xff\xfe not utf-8",
        b"",
        encode(negative),
        encode(bad_date),
        encode(null_field),
        json.dumps(not_object).encode(),
        b'{"a": 1}\x1e{"b": 2}',
        encode({**good, "schema": "other.thing"}),
        encode(good),
    ]
    rejected = {i: e for i, e, _ in validate_payloads(con, payloads)}
    assert rejected == {
        0: "invalid_encoding",
        1: "invalid_json",
        2: "invalid_value",
        3: "invalid_value",
        4: "missing_field",
        5: "invalid_json",
        6: "invalid_encoding",
        7: "unknown_schema",
    }


@pytest.mark.parametrize(("count", "poison"), [(0, 5), (3, 10), (10, 3), (1000, 120)])
def test_every_requested_poison_message_is_produced(count: int, poison: int) -> None:
    from reliability.kafka.producer import order_stream

    stream = list(order_stream(seed=1, first_id=1, count=count, poison_count=poison))
    assert sum(1 for key, _ in stream if key == b"poison") == poison
    assert len(stream) == count + poison
