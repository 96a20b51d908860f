"""Produce order events, idempotently by default (`enable.idempotence=true`, `acks=all`).

`idempotent=False` gives a retrying producer without idempotence, which can duplicate or reorder on
retries: it exists to inject exactly those faults. `resend_every=N` makes the duplicate happen for sure:
every Nth message is sent twice in a row, identical key and payload, as such a producer does when a
batch's acknowledgement is lost and it retries (the copies land at adjacent offsets of one partition).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from reliability.errors import UserFacingError
from reliability.kafka import clients
from reliability.kafka.events import POISON_KINDS, order_events, poison_event

if TYPE_CHECKING:
    from reliability.shop.generator import ShopScale


@dataclass
class ProduceStats:
    valid: int = 0
    poison: int = 0
    poison_by_kind: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


# (key, value) or (key, value, timestamp in epoch ms): the message's own time instead of the send time
Message = tuple[bytes | None, bytes] | tuple[bytes | None, bytes, int]


def with_resends(messages: Iterable[Message], every: int) -> Iterable[Message]:
    """Each message, and every `every`-th one a second time right after it (identical key, payload and
    timestamp: a retry re-sends the batch as it was)."""
    for position, pair in enumerate(messages, start=1):
        yield pair
        if every > 0 and position % every == 0:
            yield pair


def produce(
    topic: str,
    messages: Iterable[Message],
    bootstrap: str | None = None,
    idempotent: bool = True,
    rate_per_s: float | None = None,
    flush_timeout_s: float = 60.0,
    resend_every: int = 0,
) -> list[str]:
    """Send (key, value) pairs; returns delivery errors (empty when all were acknowledged).

    `resend_every` > 0 injects the duplicates of a non-idempotent retrying producer (and uses one)."""
    from confluent_kafka import KafkaException

    errors: list[str] = []
    if resend_every > 0:
        idempotent = False
        messages = with_resends(messages, resend_every)

    def on_delivery(err, _msg) -> None:
        if err is not None:
            errors.append(str(err))

    prod = clients.producer(bootstrap, idempotent=idempotent)
    started = time.monotonic()
    for sent, (key, value, *stamp) in enumerate(messages):
        if rate_per_s:
            ahead = sent / rate_per_s - (time.monotonic() - started)
            if ahead > 0:
                prod.poll(0)
                time.sleep(ahead)
        while True:
            try:
                prod.produce(topic, value=value, key=key, on_delivery=on_delivery, **_timestamp(stamp))
                break
            except BufferError:
                prod.poll(0.05)
            except KafkaException as exc:
                raise UserFacingError(f"producing to {topic}: {exc}") from exc
        prod.poll(0)
    remaining = prod.flush(flush_timeout_s)
    if remaining:
        errors.append(f"{remaining} message(s) not delivered within {flush_timeout_s:.0f}s")
    return errors


def _timestamp(stamp: list[int]) -> dict[str, int]:
    return {"timestamp": stamp[0]} if stamp else {}


def poison_positions(count: int, poison_count: int) -> dict[int, list[str]]:
    """Evenly spread positions (0-based, before the valid message at that position) -> poison kinds,
    deterministic. Every requested poison message gets a place, even with more poison than orders."""
    positions: dict[int, list[str]] = {}
    step = count / poison_count if poison_count > 0 else 0
    for i in range(max(0, poison_count)):
        positions.setdefault(int(i * step + step / 2), []).append(POISON_KINDS[i % len(POISON_KINDS)])
    return positions


def order_stream(seed: int, first_id: int, count: int, poison_count: int = 0) -> Iterable[tuple[bytes | None, bytes]]:
    """`count` valid order events with `poison_count` poison messages interleaved."""
    poison_at = poison_positions(count, poison_count)
    for position, pair in enumerate(order_events(seed, first_id, count)):
        for kind in poison_at.pop(position, ()):
            yield b"poison", poison_event(kind, first_id + position)
        yield pair
    for position, kinds in sorted(poison_at.items()):  # no valid message left to precede (count == 0)
        for kind in kinds:
            yield b"poison", poison_event(kind, first_id + position)


def produce_orders(
    topic: str,
    count: int,
    seed: int = 42,
    first_id: int = 1,
    poison_count: int = 0,
    bootstrap: str | None = None,
    idempotent: bool = True,
    rate_per_s: float | None = None,
    resend_every: int = 0,
) -> ProduceStats:
    """Produce `count` valid orders (ids first_id..) plus `poison_count` poison messages."""
    positions = poison_positions(count, poison_count)
    stats = ProduceStats(valid=count, poison=sum(map(len, positions.values())))
    for kinds in positions.values():
        for kind in kinds:
            stats.poison_by_kind[kind] = stats.poison_by_kind.get(kind, 0) + 1
    started = time.monotonic()
    stats.errors = produce(
        topic,
        order_stream(seed, first_id, count, poison_count),
        bootstrap=bootstrap,
        idempotent=idempotent,
        rate_per_s=rate_per_s,
        resend_every=resend_every,
    )
    stats.seconds = time.monotonic() - started
    if stats.errors:
        raise UserFacingError(f"producing to {topic} failed: {stats.errors[:3]}")
    return stats


def last_produced_day(topic: str, bootstrap: str | None = None, look_back: int = 100):
    """Latest `order_date` among the last messages of each partition (None for an empty/missing topic).

    Days are produced in order, so this tells which days a topic already holds without scanning it:
    `kafka produce --days` skips them, and running the demo twice does not duplicate orders.
    """
    import json
    from datetime import date

    from confluent_kafka import TopicPartition

    reader = clients.consumer("reliability.produce-probe", bootstrap)
    try:
        md = reader.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return None
        latest = None
        starts, wanted = [], 0
        for p in md.partitions:
            # a broker that has just started may not lead its partitions yet: retried, not fatal
            low, high = clients.retry_transient(
                lambda p=p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            )
            if high > low:
                starts.append(TopicPartition(topic, p, max(low, high - look_back)))
                wanted += high - max(low, high - look_back)
        if not starts:
            return None
        reader.assign(starts)  # the tail of every partition at once
        seen = 0
        deadline = time.monotonic() + 10
        while seen < wanted and time.monotonic() < deadline:
            # consume() waits for a full batch or the timeout: ask for what is left, wait briefly
            for msg in reader.consume(wanted - seen, timeout=0.5):
                if msg.error() is not None:
                    continue
                seen += 1
                try:
                    day = date.fromisoformat(json.loads(msg.value())["order_date"])
                except (ValueError, KeyError, TypeError):
                    continue
                latest = day if latest is None or day > latest else latest
        return latest
    finally:
        reader.close()


def produce_shop_days(
    topic: str,
    days: Sequence[date],
    scale: ShopScale,
    bootstrap: str | None = None,
    idempotent: bool = True,
    rate_per_s: float | None = None,
    resend_every: int = 0,
    at_order_time: bool = False,
) -> int:
    """The shop generator's orders of `days` as events (same ids as its payments); returns the count.

    `at_order_time`: each message carries its order's `ordered_at` as its timestamp, as a shop that
    produces when the order is placed does (so the broker's `offsets_for_times` of a day finds that
    day's orders); by default the broker stamps the time of sending."""
    from datetime import UTC

    from reliability.kafka.events import encode, event_from_row
    from reliability.shop.generator import order_rows

    def message(row) -> Message:  # noqa: ANN001
        key, value = str(row[0]).encode(), encode(event_from_row(row))
        return (key, value, int(row[3].replace(tzinfo=UTC).timestamp() * 1000)) if at_order_time else (key, value)

    total = 0
    for day in days:
        rows = order_rows(scale, day)
        errors = produce(
            topic,
            (message(row) for row in rows),
            bootstrap=bootstrap,
            idempotent=idempotent,
            rate_per_s=rate_per_s,
            resend_every=resend_every,
        )
        if errors:
            raise UserFacingError(f"producing to {topic} failed: {errors[:3]}")
        total += len(rows)
    return total
