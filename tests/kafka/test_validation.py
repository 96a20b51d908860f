"""The SQL validation that decides row or DLQ, on a real DuckDB, for every poison kind (no Kafka)."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

import duckdb
import pytest

from reliability.kafka.events import POISON_KINDS, encode, order_event, poison_event
from reliability.kafka.validation import bulk_insert_sql, split_payloads, validate_payloads
from reliability.kafka.warehouse import ensure_tables


@pytest.fixture
def con():
    connection = duckdb.connect()
    yield connection
    connection.close()


def test_valid_events_pass_and_are_typed(con):
    payloads = [encode(order_event(7, i)) for i in range(1, 101)]
    assert validate_payloads(con, payloads) == []
    rows = con.execute(
        "select order_id, status, amount, typeof(amount), typeof(ordered_at) from _checked "
        "where error is null order by idx"
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
        ("bad_schema_version", "unsupported_schema_version", "schema_version=99"),
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


GOOD = order_event(1, 1)


def _with(**changes) -> bytes:
    return encode({**GOOD, **changes})


# (payload, expected): expected is (error, detail) for a reject, or the exact row for an accepted payload.
COERCION_CASES = {
    "float id": (_with(order_id=600002.7), ("wrong_type", "order_id")),
    "integral float id": (_with(customer_id=3.0), ("wrong_type", "customer_id")),
    "true as id": (_with(order_id=True), ("wrong_type", "order_id")),
    "id as string": (_with(order_id="12"), ("wrong_type", "order_id")),
    "negative id": (_with(order_id=-5), ("invalid_value", "order_id=-5")),
    "zero customer": (_with(customer_id=0), ("invalid_value", "customer_id=0")),
    "id beyond bigint": (_with(order_id=2**70), ("invalid_value", f"order_id={2**70}")),
    "year 0": (_with(order_date="0000-01-01"), ("invalid_value", "order_date=0000-01-01")),
    "lenient date": (_with(order_date="2026-1-1"), ("invalid_value", "order_date=2026-1-1")),
    "date with time": (_with(order_date="2026-01-01T00:00:00"), ("invalid_value", "order_date=2026-01-01T00:00:00")),
    "year 0 timestamp": (_with(ordered_at="0000-01-01T00:00:00"), ("invalid_value", "ordered_at=0000-01-01T00:00:00")),
    "bad offset": (
        _with(ordered_at="2026-01-01T10:00:00+25:00"),
        ("invalid_value", "ordered_at=2026-01-01T10:00:00+25:00"),
    ),
    "nanoseconds": (
        _with(ordered_at="2026-01-01T10:00:00.1234567"),
        ("invalid_value", "ordered_at=2026-01-01T10:00:00.1234567"),
    ),
    "three decimals": (_with(amount=12.345), ("invalid_value", "amount=12.345")),
    "negative amount": (_with(amount=-1), ("invalid_value", "amount=-1")),
    "amount as string": (_with(amount="12.50"), ("wrong_type", "amount")),
    "duplicate key": (b'{"order_id": 7, ' + encode(GOOD)[1:], ("duplicate_key", "duplicate key: order_id")),
    "two bad values": (_with(order_id=-1, amount=1.001), ("invalid_value", "order_id=-1, amount=1.001")),
    "offset +05:00": (
        _with(ordered_at="2026-03-01T10:00:00+05:00"),
        (1, 48, date(2026, 1, 1), datetime(2026, 3, 1, 5, 0), "shipped", Decimal("484.23")),
    ),
    "offset -03:30 over midnight": (
        _with(ordered_at="2026-03-01T22:00:00.25-03:30"),
        (1, 48, date(2026, 1, 1), datetime(2026, 3, 2, 1, 30, 0, 250000), "shipped", Decimal("484.23")),
    ),
    "Z": (
        _with(ordered_at="2026-03-01T10:00:00Z"),
        (1, 48, date(2026, 1, 1), datetime(2026, 3, 1, 10, 0), "shipped", Decimal("484.23")),
    ),
    "no offset is UTC": (
        _with(ordered_at="2026-03-01 10:00"),
        (1, 48, date(2026, 1, 1), datetime(2026, 3, 1, 10, 0), "shipped", Decimal("484.23")),
    ),
    "UTF-8 BOM": (
        b"\xef\xbb\xbf" + encode(GOOD),
        (1, 48, date(2026, 1, 1), datetime(2026, 1, 1, 14, 11, 3), "shipped", Decimal("484.23")),
    ),
    "leading whitespace": (
        b" \t\r" + encode(GOOD),
        (1, 48, date(2026, 1, 1), datetime(2026, 1, 1, 14, 11, 3), "shipped", Decimal("484.23")),
    ),
    "integral amount, big id": (
        _with(order_id=2**62, amount=7),
        (2**62, 48, date(2026, 1, 1), datetime(2026, 1, 1, 14, 11, 3), "shipped", Decimal("7.00")),
    ),
}


def test_the_fixture_event_is_what_the_cases_assume():
    assert (GOOD["customer_id"], GOOD["status"], GOOD["amount"], GOOD["ordered_at"]) == (
        48, "shipped", 484.23, "2026-01-01T14:11:03"
    )  # fmt: skip


@pytest.mark.parametrize("case", list(COERCION_CASES))
def test_values_are_stored_exactly_or_rejected_naming_the_field(con, case):
    payload, expected = COERCION_CASES[case]
    rejected = validate_payloads(con, [payload])
    if isinstance(expected[0], str):
        assert rejected == [(0, *expected)]
    else:
        assert rejected == []
        row = con.execute(
            "select order_id, customer_id, order_date, ordered_at, status, amount from _checked"
        ).fetchone()
        assert row == expected


@pytest.mark.parametrize("case", list(COERCION_CASES))
def test_the_bulk_path_never_accepts_what_the_per_message_path_rejects(con, tmp_path, case):
    """Bulk and per-message give the same result: a row the bulk path inserts has the per-message values."""
    payload, expected = COERCION_CASES[case]
    ensure_tables(con)
    spool = tmp_path / "batch.ndjson"
    spool.write_bytes(payload + b"\n")
    try:
        (inserted,) = con.execute(bulk_insert_sql(str(spool)), [datetime(2026, 1, 1)]).fetchone()
    except duckdb.Error:
        inserted = 0  # the reader refused the line: the batch goes to the per-message path
    if inserted:
        row = con.execute("select order_id, customer_id, order_date, ordered_at, status, amount from raw_orders")
        assert not isinstance(expected[0], str) and row.fetchone() == expected
    elif case in ("no offset is UTC",):
        raise AssertionError("a plain valid event should take the bulk path")


def test_clean_events_take_the_bulk_path_with_the_same_values(con, tmp_path):
    ensure_tables(con)
    payloads = [encode(order_event(3, i)) for i in range(1, 301)]
    spool = tmp_path / "batch.ndjson"
    spool.write_bytes(b"\n".join(payloads) + b"\n")
    (inserted,) = con.execute(bulk_insert_sql(str(spool)), [datetime(2026, 1, 1)]).fetchone()
    assert inserted == 300
    assert validate_payloads(con, payloads) == []
    cols = "order_id, customer_id, order_date, ordered_at, status, amount"
    bulk = con.execute(f"select {cols} from raw_orders order by order_id").fetchall()
    assert bulk == con.execute(f"select {cols} from _checked order by order_id").fetchall()


def test_split_payloads_marks_bytes_that_cannot_be_lines():
    text, overrides = split_payloads([b"{}", b"\xff", b"a\x1eb", "é".encode()])
    assert text.split("\x1e") == ["{}", "\x01", "\x01", "é"]
    assert overrides == {1: "payload is not UTF-8 text", 2: "payload holds byte 0x1e"}
    assert split_payloads([b"{}", b"[]"]) == ("{}\x1e[]", {})
