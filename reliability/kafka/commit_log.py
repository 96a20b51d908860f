"""The group coordinator's commit log (`__consumer_offsets`): every offset commit with the time it was stored.

Burrow reads this topic instead of polling committed offsets, and so do we: polling sees only the
latest offset, never a re-commit of the same offset (STALL) nor when commits stopped (STOP), and a
fresh process would have to wait a whole window before it could say anything. The log keeps the
history (compaction leaves at least the latest commit of every partition), so a first run can judge.

Decoding follows Kafka's record schemas (OffsetCommitKey v0/v1, OffsetCommitValue v0-v4); other keys
(group metadata, the new consumer protocol's records) are skipped. Only the log partitions that hold
the watched groups are read (`group_log_partition`, Kafka's `abs(groupId.hashCode) % partitions`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

from reliability.kafka.lag import CommitRecord

TOPIC = "__consumer_offsets"


class _Reader:
    """Big-endian reader over one record's bytes (Kafka's classic and compact encodings)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str | None:
        size = self.take(">h")
        return self._text(size)

    def uvarint(self) -> int:
        shift = result = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    def compact_string(self) -> str | None:
        return self._text(self.uvarint() - 1)

    def _text(self, size: int) -> str | None:
        if size < 0:
            return None
        text = self.data[self.pos : self.pos + size].decode("utf-8")
        self.pos += size
        return text


def java_string_hash(text: str) -> int:
    """Java's `String.hashCode` (UTF-16 code units), as a signed 32-bit int."""
    h = 0
    units = text.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i : i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def group_log_partition(group: str, log_partitions: int) -> int:
    """The commit-log partition that holds `group` (Kafka's `Utils.abs(hashCode) % partitions`, where
    `Utils.abs(Integer.MIN_VALUE)` is 0)."""
    h = java_string_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % log_partitions


def decode_commit(key: bytes | None, value: bytes | None) -> CommitRecord | None:
    """One commit-log record as a commit (offset None = deleted offsets), or None if it is no commit."""
    if not key or len(key) < 2:
        return None
    k = _Reader(key)
    if k.take(">h") not in (0, 1):
        return None  # group metadata and other coordinator records
    group, topic, partition = k.string(), k.string(), k.take(">i")
    if group is None or topic is None:
        return None
    if value is None:
        return CommitRecord(group, topic, partition, None, 0.0)
    v = _Reader(value)
    version = v.take(">h")
    if version not in (0, 1, 2, 3, 4):
        return None  # a future format: skipped like Burrow does, rather than stopping every tick
    offset = v.take(">q")
    if version >= 3:
        v.take(">i")  # leader epoch
    if version >= 4:
        v.compact_string()  # metadata
    else:
        v.string()
    committed_ms = v.take(">q")
    return CommitRecord(group, topic, partition, offset, committed_ms / 1000.0)


def read_commits(
    consumer, ends: Mapping[int, int], positions: Mapping[int, int], timeout_s: float = 10.0
) -> tuple[list[CommitRecord], dict[int, int]]:
    """Commit records of the log partitions in `ends` from `positions` (start of log if absent) to `ends`.

    `ends` are the partitions' last stable offsets when the tick began; reading stops there (records
    after it belong to the next tick). Returns the records in log order and the new positions.
    """
    import time

    from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

    todo = {p: end for p, end in ends.items() if positions.get(p, 0) < end}
    new_positions = {p: max(positions.get(p, 0), 0) for p in ends}
    if not todo:
        return [], new_positions
    consumer.assign([TopicPartition(TOPIC, p, positions.get(p, OFFSET_BEGINNING)) for p in todo])
    records: list[CommitRecord] = []
    deadline = time.monotonic() + timeout_s
    try:
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {TOPIC} took over {timeout_s:.0f}s (partitions {sorted(todo)} unread)")
            # a batch returns when full or at its timeout: short timeouts, so the end of the log is not waited on
            for msg in consumer.consume(num_messages=5_000, timeout=0.02):
                p = msg.partition()
                if p not in todo:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(err)
                    new_positions[p] = min(msg.offset(), todo.pop(p))  # transaction markers end some logs
                    continue
                if msg.offset() >= todo[p]:  # written after this tick began: next tick's
                    new_positions[p] = todo.pop(p)
                    continue
                rec = decode_commit(msg.key(), msg.value())
                if rec is not None:
                    if rec.offset is None:  # a deletion carries no commit time: stamp it with the record's
                        rec = CommitRecord(rec.group, rec.topic, rec.partition, None, msg.timestamp()[1] / 1000.0)
                    records.append(rec)
                new_positions[p] = msg.offset() + 1
                if new_positions[p] >= todo[p]:
                    del todo[p]
    finally:
        consumer.unassign()
    return records, new_positions


def log_partitions_for(groups: Iterable[str], log_partitions: int) -> set[int]:
    """The commit-log partitions holding these groups."""
    return {group_log_partition(g, log_partitions) for g in groups}
