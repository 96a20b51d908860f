"""Dead letters: rejected messages published to `<topic>.dlq`, each exactly once, each always deliverable.

The rejects of a batch are recorded in the outbox table in the batch's own transaction (see
`warehouse`), then published here with headers naming the error, the field, and the source topic,
partition and offset. After a crash between commit and publish, start-up reads the DLQ once and
publishes only what is missing.

A DLQ record always fits in a Kafka message: a payload (or key) larger than the caps below is cut to the
cap, and headers say so (`dlq.payload.truncated`, its original size and SHA-256); the full message stays
in the source topic at the offset the headers name. Without this, a poison message near the broker's size
limit could never be dead-lettered (MSG_SIZE_TOO_LARGE) and would block its partition for good.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from datetime import datetime

from reliability.errors import UserFacingError
from reliability.kafka.warehouse import OUTBOX_TABLE

# Well under the 1 MB default of both librdkafka's `message.max.bytes` and the broker's limit, headers included.
MAX_PAYLOAD_BYTES = 512 * 1024
MAX_KEY_BYTES = 16 * 1024
MAX_HEADER_VALUE_BYTES = 1024  # error detail and the like: enough to name the field and quote its value
DELIVERY_TIMEOUT_MS = 30_000  # a publish is final (delivered or failed) within this, so a retry never doubles
READ_BACK_TIMEOUT_S = 120.0


class DeadLetterPublishError(UserFacingError):
    """Publishing to (or reading back) the DLQ failed, e.g. the broker is unreachable; the outbox keeps
    the rejects and the next run publishes them."""


@dataclass(frozen=True)
class DeadLetter:
    source_topic: str
    source_partition: int
    source_offset: int
    error: str
    detail: str | None
    key: bytes | None
    payload: bytes | None
    rejected_at: datetime | None


def _cap(data: bytes | None, limit: int) -> tuple[bytes | None, bool]:
    if data is None or len(data) <= limit:
        return data, False
    return data[:limit], True


def dead_letter_record(letter: DeadLetter, group_id: str) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """(key, value, headers) of the DLQ record for `letter`; never larger than the caps allow."""
    value, value_cut = _cap(letter.payload, MAX_PAYLOAD_BYTES)
    key, key_cut = _cap(letter.key, MAX_KEY_BYTES)
    detail = (letter.detail or "").encode()[:MAX_HEADER_VALUE_BYTES]
    headers = [
        ("dlq.error", letter.error.encode()),
        ("dlq.error.detail", detail),
        ("dlq.source.topic", letter.source_topic.encode()),
        ("dlq.source.partition", str(letter.source_partition).encode()),
        ("dlq.source.offset", str(letter.source_offset).encode()),
        ("dlq.consumer.group", group_id.encode()),
        ("dlq.rejected.at", letter.rejected_at.isoformat().encode() if letter.rejected_at else b""),
    ]
    if value_cut and letter.payload is not None:
        headers += [
            ("dlq.payload.truncated", b"true"),
            ("dlq.payload.original.bytes", str(len(letter.payload)).encode()),
            ("dlq.payload.sha256", hashlib.sha256(letter.payload).hexdigest().encode()),
        ]
    if key_cut and letter.key is not None:
        headers += [
            ("dlq.key.truncated", b"true"),
            ("dlq.key.original.bytes", str(len(letter.key)).encode()),
        ]
    return key, value, headers


def source_of(headers: list[tuple[str, bytes]] | None) -> tuple[str, int, int] | None:
    """(source topic, partition, offset) a DLQ record names in its headers; None if it names none."""
    h = dict(headers or [])
    try:
        return h["dlq.source.topic"].decode(), int(h["dlq.source.partition"]), int(h["dlq.source.offset"])
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


class DeadLetterQueue:
    """Publishes the outbox rows of one source topic to its DLQ topic."""

    def __init__(self, con, topic: str, group_id: str, bootstrap: str | None) -> None:
        self.con = con
        self.topic = topic
        self.dlq_topic = f"{topic}.dlq"
        self.group_id = group_id
        self.bootstrap = bootstrap
        self._producer = None

    def _producer_client(self):
        if self._producer is None:
            from reliability.kafka import clients

            self._producer = clients.producer(
                self.bootstrap, idempotent=True, **{"linger.ms": 5, "message.timeout.ms": DELIVERY_TIMEOUT_MS}
            )
        return self._producer

    def published_sources(self) -> set[tuple[str, int, int]]:
        """(source topic, partition, offset) of every message already in the DLQ topic (recovery only)."""
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

        from reliability.kafka import clients

        seen: set[tuple[str, int, int]] = set()
        reader = clients.consumer(f"{self.group_id}.dlq-recovery", self.bootstrap, **{"enable.partition.eof": True})
        try:
            md = reader.list_topics(self.dlq_topic, timeout=10).topics.get(self.dlq_topic)
            if md is None or md.error is not None:
                return seen
            ends = {}
            for p in md.partitions:
                low, high = reader.get_watermark_offsets(TopicPartition(self.dlq_topic, p), timeout=10)
                if high > low:
                    ends[p] = high
            if not ends:
                return seen
            reader.assign([TopicPartition(self.dlq_topic, p, OFFSET_BEGINNING) for p in ends])
            done: set[int] = set()
            deadline = time.monotonic() + READ_BACK_TIMEOUT_S
            while len(done) < len(ends):
                if time.monotonic() > deadline:  # e.g. the broker went away: retried by the caller
                    raise DeadLetterPublishError(
                        f"reading {self.dlq_topic} back to recover dead letters took over {READ_BACK_TIMEOUT_S:.0f}s"
                    )
                for msg in reader.consume(10_000, timeout=1.0):
                    if msg.error() is not None:
                        if msg.error().code() == KafkaError._PARTITION_EOF:
                            done.add(msg.partition())
                        continue
                    source = source_of(msg.headers())
                    if source is not None:
                        seen.add(source)
        finally:
            reader.close()
        return seen

    def recover(self) -> int:
        """Publish outbox rows a crash left unpublished, skipping those already in the DLQ topic."""
        pending = self.con.execute(
            f"select count(*) from {OUTBOX_TABLE} where source_topic = ? and not published", [self.topic]
        ).fetchone()[0]
        if not pending:
            return 0
        already = self.published_sources()
        if already:
            self.con.execute("create or replace temp table _dlq_seen(t varchar, p integer, o bigint)")
            self.con.executemany("insert into _dlq_seen values (?, ?, ?)", [list(k) for k in already])
            self.con.execute(
                f"""update {OUTBOX_TABLE} set published = true
                    where not published and (source_topic, source_partition, source_offset) in
                        (select (t, p, o) from _dlq_seen)"""
            )
        return self.publish()

    def publish(self) -> int:
        """Publish every unpublished outbox row of the topic, then mark them published; returns how many.

        Waits until each is delivered or has failed for good (DELIVERY_TIMEOUT_MS), so after a failure
        `recover` sees exactly what reached the DLQ. Raises DeadLetterPublishError on any failure."""
        from confluent_kafka import KafkaException

        rows = self.con.execute(
            f"""select source_topic, source_partition, source_offset, dlq_topic, error, detail,
                       message_key, payload, rejected_at
                from {OUTBOX_TABLE} where source_topic = ? and not published
                order by source_partition, source_offset""",
            [self.topic],
        ).fetchall()
        if not rows:
            return 0
        prod = self._producer_client()
        errors: list[str] = []

        def on_delivery(err, _msg) -> None:
            if err is not None:
                errors.append(str(err))

        for topic, part, offset, dlq, error, detail, key, payload, rejected_at in rows:
            letter = DeadLetter(
                topic, part, offset, error, detail,
                bytes(key) if key is not None else None, bytes(payload) if payload is not None else None, rejected_at,
            )  # fmt: skip
            record_key, value, headers = dead_letter_record(letter, self.group_id)
            while True:
                try:
                    prod.produce(dlq, value=value, key=record_key, headers=headers, on_delivery=on_delivery)
                    break
                except BufferError:
                    prod.poll(0.05)
                except KafkaException as exc:
                    errors.append(str(exc))
                    break
        left = prod.flush(DELIVERY_TIMEOUT_MS / 1000 + 15)
        if left or errors:
            # A fresh producer for the retry: an idempotent one can be left in a fatal state (e.g. after a
            # broker restart lost its producer id), and would then fail every later publish.
            self._producer = None
            with contextlib.suppress(Exception):
                prod.purge()
                prod.flush(0)
            raise DeadLetterPublishError(
                f"publishing {len(rows)} dead letter(s) to {rows[0][3]} failed: {errors[:1] or [f'{left} undelivered']}"
                " (kept in the outbox, retried on the next run)"
            )
        self.con.execute(
            f"update {OUTBOX_TABLE} set published = true where source_topic = ? and not published", [self.topic]
        )
        return len(rows)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
