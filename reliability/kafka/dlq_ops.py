"""Handling dead letters in the warehouse: list them, replay them through ingestion's validation after a
fix, archive them with a reason, and replay an incident's window from Kafka.

Handled state is a row per source message in `_kafka_dlq_handled` (see `warehouse`), in the same DuckDB
as the rows: a replay validates the payloads with ingestion's own per-message rules, then inserts the
rows that now pass AND their handled rows in ONE transaction. A crash leaves neither; a second replay
finds them handled; two replays at once cannot both commit (the handled row's primary key). Payloads
that still fail stay dead letters: no second outbox row, nothing published again, counted once.
Pure parts are in `reliability.kafka.dlq`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from reliability.errors import UserFacingError
from reliability.kafka.dlq import (
    ARCHIVED,
    REPLAYED,
    DeadLetterView,
    PartitionReplay,
    day_windows,
    partition_replay,
    window_offset,
)
from reliability.kafka.validation import insert_valid_sql, validate_payloads
from reliability.kafka.warehouse import (
    HANDLED_TABLE,
    OUTBOX_TABLE,
    describe_duckdb_error,
    ensure_tables,
    stored_offsets,
)

READ_TIMEOUT_S = 60.0


def load_dead_letters(con, topic: str) -> list[DeadLetterView]:
    """Every dead letter of `topic` the warehouse keeps, with what was done with it, by position."""
    ensure_tables(con)
    rows = con.execute(
        f"""select o.source_partition, o.source_offset, o.error, o.detail, o.message_key, o.payload,
                   o.rejected_at, o.published, h.action, h.reason, h.incident, h.handled_at
            from {OUTBOX_TABLE} o left join {HANDLED_TABLE} h
              on h.source_topic = o.source_topic and h.source_partition = o.source_partition
             and h.source_offset = o.source_offset
            where o.source_topic = ?
            order by o.source_partition, o.source_offset""",
        [topic],
    ).fetchall()
    return [_view(*row) for row in rows]


def _as_bytes(blob) -> bytes | None:
    return bytes(blob) if blob is not None else None


def _view(p, o, error, detail, key, payload, rejected_at, published, action, reason, incident, handled_at):
    return DeadLetterView(int(p), int(o), error, detail, _as_bytes(key), _as_bytes(payload), rejected_at,
                          bool(published), action, reason, incident, handled_at)  # fmt: skip


@dataclass
class ReplayOutcome:
    replayed: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset) now rows
    still_invalid: list[tuple[int, int, str, str | None]] = field(default_factory=list)  # stay dead letters
    skipped: list[tuple[int, int]] = field(default_factory=list)  # already handled: nothing done

    def summary(self) -> str:
        line = f"replayed {len(self.replayed)} dead letter(s) into rows"
        if self.still_invalid:
            errors = sorted({e for _, _, e, _ in self.still_invalid})
            line += f"; {len(self.still_invalid)} still fail validation ({', '.join(errors)}) and stay dead letters"
        if self.skipped:
            line += f"; {len(self.skipped)} already handled"
        return line

    def to_dict(self) -> dict[str, object]:
        return {"replayed": [f"{p}:{o}" for p, o in self.replayed],
                "still_invalid": [{"position": f"{p}:{o}", "error": e, "detail": d}
                                  for p, o, e, d in self.still_invalid],
                "skipped": [f"{p}:{o}" for p, o in self.skipped]}  # fmt: skip


def _handled_positions(con, topic: str) -> set[tuple[int, int]]:
    rows = con.execute(
        f"select source_partition, source_offset from {HANDLED_TABLE} where source_topic = ?", [topic]
    ).fetchall()
    return {(int(p), int(o)) for p, o in rows}


def replay(con, topic: str, letters: Sequence[tuple[int, int, bytes | None]], *, now: datetime,
           actor: str, incident: str | None = None, reason: str | None = None) -> ReplayOutcome:  # fmt: skip
    """Re-ingest dead letters `(partition, offset, payload)` of `topic`: the rows that now pass validation
    and their handled rows in one transaction (see the module docstring)."""
    import duckdb

    ensure_tables(con)
    dead = {(d.partition, d.offset) for d in load_dead_letters(con, topic)}
    strays = [f"{p}:{o}" for p, o, _ in letters if (p, o) not in dead]
    if strays:  # a message that became a row would become a second one
        raise UserFacingError(f"{', '.join(strays[:5])} of {topic} are not dead letters: only those are replayed")
    handled = _handled_positions(con, topic)
    outcome = ReplayOutcome(skipped=[(p, o) for p, o, _ in letters if (p, o) in handled])
    todo = [(p, o, payload) for p, o, payload in letters if (p, o) not in handled]
    if not todo:
        return outcome
    rejected = validate_payloads(con, [payload or b"" for _, _, payload in todo])  # fills temp table _checked
    bad = {i: (error, detail) for i, error, detail in rejected}
    stamp = now.replace(tzinfo=None)
    passed = [(p, o) for i, (p, o, _) in enumerate(todo) if i not in bad]
    try:
        con.execute("begin transaction")
        con.execute(insert_valid_sql(), [stamp])
        if passed:
            con.executemany(
                f"""insert into {HANDLED_TABLE} (source_topic, source_partition, source_offset, action, reason,
                        incident, actor, handled_at) values (?, ?, ?, ?, ?, ?, ?, ?)""",
                [[topic, p, o, REPLAYED, reason, incident, actor, stamp] for p, o in passed],
            )
        con.execute("commit")
    except duckdb.Error as exc:
        with contextlib.suppress(duckdb.Error):
            con.execute("rollback")
        if isinstance(exc, duckdb.ConstraintException):
            raise UserFacingError(f"dead letters of {topic} were handled by another replay meanwhile; "
                                  "nothing of this one was committed, run it again") from exc  # fmt: skip
        raise UserFacingError(f"replaying dead letters of {topic} failed, nothing committed: "
                              f"{describe_duckdb_error(exc)}") from exc  # fmt: skip
    outcome.replayed = passed
    outcome.still_invalid = [(todo[i][0], todo[i][1], error, detail) for i, (error, detail) in sorted(bad.items())]
    return outcome


def archive(con, topic: str, positions: Sequence[tuple[int, int]], *, reason: str, now: datetime, actor: str,
            incident: str | None = None) -> list[tuple[int, int]]:  # fmt: skip
    """Mark dead letters handled without a row (they are no longer counted); returns the ones it marked
    (already handled ones are left as they are)."""
    if not reason.strip():
        raise UserFacingError("--reason: say why these dead letters are archived")
    ensure_tables(con)
    handled = _handled_positions(con, topic)
    todo = [p for p in positions if p not in handled]
    if todo:
        stamp = now.replace(tzinfo=None)
        con.execute("begin transaction")
        try:
            con.executemany(
                f"""insert into {HANDLED_TABLE} (source_topic, source_partition, source_offset, action, reason,
                        incident, actor, handled_at) values (?, ?, ?, ?, ?, ?, ?, ?)""",
                [[topic, p, o, ARCHIVED, reason, incident, actor, stamp] for p, o in todo],
            )
            con.execute("commit")
        except BaseException:
            with contextlib.suppress(Exception):
                con.execute("rollback")
            raise
    return todo


# ------------------------------------------------------------------------------------ replay from Kafka
@dataclass
class KafkaReplay:
    """A replay of an incident's days from Kafka: the planned offsets, and (unless a dry run) what it did."""

    topic: str
    days: tuple[str, ...]
    partitions: list[PartitionReplay]
    outcome: ReplayOutcome | None = None

    def lines(self) -> list[str]:
        out = [f"replay {self.topic} for {', '.join(self.days)} (offsets_for_times):"]
        out += [f"  {p.line()}" for p in self.partitions]
        if self.outcome is not None:
            out.append(f"  {self.outcome.summary()}")
        return out

    def to_dict(self) -> dict[str, object]:
        return {"topic": self.topic, "days": list(self.days), "partitions": [p.to_dict() for p in self.partitions],
                "outcome": self.outcome.to_dict() if self.outcome else None}  # fmt: skip


def plan_kafka_replay(con, bootstrap: str, topic: str, group_id: str, days: Sequence[str]) -> KafkaReplay:
    """The offsets of the incident's days per partition (`offsets_for_times` of each window's start and end),
    sorted by what ingestion did with them. Reads the broker's metadata only, no message."""
    from confluent_kafka import TopicPartition

    from reliability.kafka import clients

    windows = day_windows(days)
    if not windows:
        raise UserFacingError("a Kafka replay needs the incident's days: name them with --partition or "
                              "--partition-range")  # fmt: skip
    ensure_tables(con)
    stored = stored_offsets(con, topic, group_id)
    letters = load_dead_letters(con, topic)
    consumer = clients.consumer(f"{group_id}.replay-plan", bootstrap)
    try:
        md = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None or not md.partitions:
            raise UserFacingError(f"Kafka topic {topic!r} does not exist (or has no partitions)")
        parts = sorted(md.partitions)
        highs = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        planned: list[PartitionReplay] = []
        for start_ms, end_ms in windows:
            starts = consumer.offsets_for_times([TopicPartition(topic, p, start_ms) for p in parts], timeout=10)
            ends = consumer.offsets_for_times([TopicPartition(topic, p, end_ms) for p in parts], timeout=10)
            for s, e in zip(starts, ends, strict=True):
                p = s.partition
                if s.error is not None or e.error is not None:
                    raise UserFacingError(f"offsets_for_times of {topic}[{p}] failed: {s.error or e.error}")
                start, end = window_offset(s.offset, highs[p]), window_offset(e.offset, highs[p])
                unhandled = [d.offset for d in letters if d.partition == p and d.handled is None]
                handled = [d.offset for d in letters if d.partition == p and d.handled is not None]
                planned.append(partition_replay(p, start, end, stored.get(p), unhandled, handled))
    finally:
        consumer.close()
    return KafkaReplay(topic, tuple(sorted(set(days))), planned)


def read_messages(
    bootstrap: str, topic: str, wanted: dict[int, set[int]], group_id: str
) -> dict[tuple[int, int], bytes]:
    """The payloads of the messages at `wanted` offsets per partition, read from the source topic."""
    from confluent_kafka import KafkaError, TopicPartition

    from reliability.kafka import clients

    todo = {p: set(offsets) for p, offsets in wanted.items() if offsets}
    found: dict[tuple[int, int], bytes] = {}
    if not todo:
        return found
    consumer = clients.consumer(f"{group_id}.replay", bootstrap, **{"enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(topic, p, min(offsets)) for p, offsets in todo.items()])
        last = {p: max(offsets) for p, offsets in todo.items()}
        deadline = time.monotonic() + READ_TIMEOUT_S
        while last:
            if time.monotonic() > deadline:
                raise UserFacingError(f"reading {topic} for the replay took over {READ_TIMEOUT_S:.0f}s "
                                      f"(partitions {sorted(last)} unread)")  # fmt: skip
            for msg in consumer.consume(1000, timeout=0.5):
                p = msg.partition()
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        last.pop(p, None)
                    continue
                if msg.offset() in todo.get(p, ()):
                    found[(p, msg.offset())] = msg.value() or b""
                if p in last and msg.offset() >= last[p]:
                    del last[p]
    finally:
        consumer.close()
    return found


def replay_from_kafka(con, bootstrap: str, topic: str, group_id: str, days: Sequence[str], *, now: datetime,
                      actor: str, incident: str | None = None, dry_run: bool = False) -> KafkaReplay:  # fmt: skip
    """Replay the incident's days from Kafka, exactly once: the planned window's dead letters are read
    from the source topic and re-ingested (`replay`); its rows are not touched; messages not ingested yet
    are left to ordinary ingestion. Idempotent: a second run finds nothing left to replay."""
    plan = plan_kafka_replay(con, bootstrap, topic, group_id, days)
    if dry_run:
        return plan
    wanted: dict[int, set[int]] = {}
    for part in plan.partitions:
        wanted.setdefault(part.partition, set()).update(part.dead_letters)
    payloads = read_messages(bootstrap, topic, wanted, group_id)
    missing = sorted((p, o) for p, offsets in wanted.items() for o in offsets if (p, o) not in payloads)
    if missing:
        where = ", ".join(f"{p}:{o}" for p, o in missing[:5])
        raise UserFacingError(
            f"{len(missing)} dead letter(s) of {topic} are no longer in the topic ({where}; retention?): "
            "replay them from the warehouse with `reliability kafka dlq replay`"
        )
    letters = [(p, o, payloads[(p, o)]) for p, o in sorted(payloads)]
    plan.outcome = replay(con, topic, letters, now=now, actor=actor, incident=incident,
                          reason=f"replayed from Kafka for {', '.join(plan.days)}")  # fmt: skip
    return plan


def kafka_replayer(warehouse, bootstrap: str, topic: str, group_id: str, *, now: datetime, actor: str,
                   incident: str | None = None):  # fmt: skip
    """For reconciliation (`reconcile(..., replay_kafka=...)`): `(days, dry_run) -> KafkaReplay` on the
    warehouse file `warehouse`, opened only for the replay (a Dagster run may need it next)."""
    from reliability.kafka.warehouse import open_warehouse

    def run(days: Sequence[str], dry_run: bool) -> KafkaReplay:
        with open_warehouse(warehouse) as con:
            return replay_from_kafka(con, bootstrap, topic, group_id, days, now=now, actor=actor,
                                     incident=incident, dry_run=dry_run)  # fmt: skip

    return run
