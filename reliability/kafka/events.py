"""The shop's order events: one JSON object per order, with an explicit schema name and version.

Events carry exactly the `raw_orders` columns except `_loaded_at` (set by ingestion). They are
deterministic from (seed, order_id), so a test or benchmark can recompute what it produced.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any

SCHEMA_NAME = "shop.order"
SCHEMA_VERSION = 1
ORDER_STATUSES = ("placed", "shipped", "completed", "returned", "cancelled")
EVENT_FIELDS = ("order_id", "customer_id", "order_date", "ordered_at", "status", "amount")
DEFAULT_TOPIC = "shop.orders"
DEFAULT_PARTITIONS = 4
SHOP_START = date(2026, 1, 1)

# JSON Schema of version 1, for documentation and for consumers in other languages. Ingestion enforces it
# strictly (reliability.kafka.validation): `true` or `12.0` is not an integer, years start at 1, and a
# field given twice is rejected.
ORDER_EVENT_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "shop.order v1",
    "type": "object",
    "required": ["schema", "schema_version", *EVENT_FIELDS],
    "properties": {
        "schema": {"const": SCHEMA_NAME},
        "schema_version": {"const": SCHEMA_VERSION},
        "order_id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        "customer_id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        "order_date": {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
        # ISO 8601, stored in UTC: an offset (`Z`, `+05:00`) is converted, none means UTC already
        "ordered_at": {"type": "string", "format": "date-time"},
        "status": {"enum": list(ORDER_STATUSES)},
        "amount": {"type": "number", "minimum": 0, "maximum": 9999999999.99, "multipleOf": 0.01},
    },
}

_MIX = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


def _rand(seed: int, order_id: int, salt: int) -> int:
    """A cheap, deterministic 64-bit pseudo-random number (splitmix64 finaliser)."""
    z = (seed * 0x632BE59BD9B4E019 + order_id * _MIX + salt * 0xD1B54A32D1B54A33) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def order_event(seed: int, order_id: int, orders_per_day: int = 1000) -> dict[str, Any]:
    """The event of one order; the day follows from the id so ids and dates grow together."""
    day = SHOP_START + timedelta(days=(order_id - 1) // max(1, orders_per_day))
    known_customers = max(1, ((order_id - 1) // max(1, orders_per_day) + 1) * max(1, orders_per_day // 10))
    pct = _rand(seed, order_id, 1) % 100
    status = ORDER_STATUSES[0 if pct < 10 else 1 if pct < 25 else 2 if pct < 85 else 3 if pct < 93 else 4]
    ordered_at = datetime.combine(day, datetime.min.time()) + timedelta(seconds=_rand(seed, order_id, 2) % 86400)
    cents = 500 + _rand(seed, order_id, 3) % 49_500
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "order_id": order_id,
        "customer_id": _rand(seed, order_id, 4) % known_customers + 1,
        "order_date": day.isoformat(),
        "ordered_at": ordered_at.isoformat(),
        "status": status,
        "amount": cents / 100,
    }


def event_from_row(row: Sequence[Any]) -> dict[str, Any]:
    """The event of one generator row (order_id, customer_id, order_date, ordered_at, status, amount)."""
    order_id, customer_id, order_date, ordered_at, status, amount = row[:6]
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "order_id": int(order_id),
        "customer_id": int(customer_id),
        "order_date": order_date.isoformat(),
        "ordered_at": ordered_at.isoformat(),
        "status": status,
        "amount": float(amount),
    }


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def order_events(seed: int, first_id: int, count: int) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs for `count` orders starting at `first_id`; key = order id (keeps order per key)."""
    for order_id in range(first_id, first_id + count):
        yield str(order_id).encode(), encode(order_event(seed, order_id))


POISON_KINDS = ("bad_json", "missing_field", "wrong_type", "invalid_status", "bad_schema_version")


def poison_event(kind: str, order_id: int) -> bytes:
    """A message ingestion must reject, of a named kind (for tests and fault injection)."""
    good = order_event(0, order_id)
    if kind == "bad_json":
        return encode(good)[:-7]
    if kind == "missing_field":
        del good["status"]
    elif kind == "wrong_type":
        good["order_id"] = f"order-{order_id}"
    elif kind == "invalid_status":
        good["status"] = "teleported"
    elif kind == "bad_schema_version":
        good["schema_version"] = 99
    else:
        raise ValueError(f"unknown poison kind {kind!r}; known: {POISON_KINDS}")
    return encode(good)
