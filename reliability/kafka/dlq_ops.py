"""Handling dead letters in the warehouse: list them, replay them through ingestion's validation after a
fix, archive them with a reason, and replay an incident's window from Kafka.

Handled state is a row per source message in `_kafka_dlq_handled` (see `warehouse`), in the same DuckDB
as the rows: a replay validates the payloads with ingestion's own per-message rules, then inserts the
rows that now pass AND their handled rows in ONE transaction. A crash leaves neither; a second replay
finds them handled; two replays at once cannot both commit (the handled row's primary key). Payloads
that still fail stay dead letters: no second outbox row, nothing published again, counted once.
Pure parts are in `reliability.kafka.dlq`.

The replay of a `duplicates` incident (`drop_copies`) also drops the producer's copies it re-reads (see
`reliability.kafka.dlq`): one row removed per copy that became a row and a handled row (`dropped`) per
copy, in ONE transaction; copies that were dead letters are not replayed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from reliability.errors import UserFacingError
from reliability.kafka.dlq import (
    ARCHIVED,
    DROPPED,
    REPLAYED,
    CopyFinder,
    DeadLetterView,
    PartitionReplay,
    day_windows,
    ingested_range,
    partition_replay,
    window_offset,
)
from reliability.kafka.validation import ROW_COLUMNS, TARGET_TABLE, insert_valid_sql, validate_payloads
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
    dropped: list[tuple[int, int]] = field(default_factory=list)  # producer copies dropped (duplicates)
    rows_removed: int = 0  # rows of those copies removed from the table

    def summary(self) -> str:
        line = f"replayed {len(self.replayed)} dead letter(s) into rows"
        if self.still_invalid:
            errors = sorted({e for _, _, e, _ in self.still_invalid})
            line += f"; {len(self.still_invalid)} still fail validation ({', '.join(errors)}) and stay dead letters"
        if self.skipped:
            line += f"; {len(self.skipped)} already handled"
        if self.dropped:
            line += (f"; dropped {len(self.dropped)} producer copy(ies) (identical key and payload at an earlier "
                     f"offset of the partition), {self.rows_removed} row(s) removed")  # fmt: skip
        return line

    def to_dict(self) -> dict[str, object]:
        return {"replayed": [f"{p}:{o}" for p, o in self.replayed],
                "still_invalid": [{"position": f"{p}:{o}", "error": e, "detail": d}
                                  for p, o, e, d in self.still_invalid],
                "skipped": [f"{p}:{o}" for p, o in self.skipped],
                "dropped": [f"{p}:{o}" for p, o in self.dropped], "rows_removed": self.rows_removed}  # fmt: skip


def _handled_positions(con, topic: str) -> set[tuple[int, int]]:
    rows = con.execute(
        f"select source_partition, source_offset from {HANDLED_TABLE} where source_topic = ?", [topic]
    ).fetchall()
    return {(int(p), int(o)) for p, o in rows}


HANDLED_INSERT = f"""insert into {HANDLED_TABLE} (source_topic, source_partition, source_offset, action, reason,
    incident, actor, handled_at) values (?, ?, ?, ?, ?, ?, ?, ?)"""


@contextmanager
def _handled_together(con, topic: str, what: str, doing: str) -> Iterator[None]:
    """One DuckDB transaction for rows and their handled marks, so a position is handled exactly once;
    a failure commits nothing and says so (`what`: "dead letters", `doing`: "replaying")."""
    import duckdb

    try:
        con.execute("begin transaction")
        yield
        con.execute("commit")
    except duckdb.Error as exc:
        with contextlib.suppress(duckdb.Error):
            con.execute("rollback")
        if isinstance(exc, duckdb.ConstraintException):
            raise UserFacingError(f"{what} of {topic} were handled by another replay meanwhile; "
                                  "nothing of this one was committed, run it again") from exc  # fmt: skip
        raise UserFacingError(f"{doing} {what} of {topic} failed, nothing committed: "
                              f"{describe_duckdb_error(exc)}") from exc  # fmt: skip


def replay(con, topic: str, letters: Sequence[tuple[int, int, bytes | None]], *, now: datetime,
           actor: str, incident: str | None = None, reason: str | None = None) -> ReplayOutcome:  # fmt: skip
    """Re-ingest dead letters `(partition, offset, payload)` of `topic`: the rows that now pass validation
    and their handled rows in one transaction (see the module docstring)."""

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
    with _handled_together(con, topic, "dead letters", "replaying"):
        con.execute(insert_valid_sql(), [stamp])
        if passed:
            con.executemany(
                HANDLED_INSERT, [[topic, p, o, REPLAYED, reason, incident, actor, stamp] for p, o in passed]
            )
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
            con.executemany(HANDLED_INSERT, [[topic, p, o, ARCHIVED, reason, incident, actor, stamp] for p, o in todo])
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
    drop_copies: bool = False  # a duplicates incident: the producer's copies are dropped
    # producer copies still to drop: position -> (offset of the original, payload)
    copies: dict[tuple[int, int], tuple[int, bytes]] = field(default_factory=dict, repr=False)

    def lines(self) -> list[str]:
        how = "; producer copies dropped" if self.drop_copies else ""
        out = [f"replay {self.topic} for {', '.join(self.days)} (offsets_for_times{how}):"]
        out += [f"  {p.line()}" for p in self.partitions]
        if self.outcome is not None:
            out.append(f"  {self.outcome.summary()}")
        return out

    def summary(self) -> str:
        """One line for the incident timeline; the offsets per partition stay in the entry's data."""
        messages = sum(p.messages for p in self.partitions)
        line = (f"replay {self.topic} for {', '.join(self.days)}: {messages} message(s) in "
                f"{len(self.partitions)} partition(s)")  # fmt: skip
        if self.outcome is not None:
            return f"{line}; {self.outcome.summary()}"
        letters = sum(len(p.dead_letters) for p in self.partitions)
        copies = sum(len(p.copies or ()) for p in self.partitions)
        planned = f"{line}; {letters} dead letter(s) to replay"
        return planned + (f", {copies} producer copy(ies) to drop" if copies else "")

    def to_dict(self) -> dict[str, object]:
        copy_of = {f"{p}:{o}": f"{p}:{first}" for (p, o), (first, _) in sorted(self.copies.items())}
        return {"topic": self.topic, "days": list(self.days), "partitions": [p.to_dict() for p in self.partitions],
                "drop_copies": self.drop_copies, "copy_of": copy_of,
                "outcome": self.outcome.to_dict() if self.outcome else None}  # fmt: skip


def plan_kafka_replay(con, bootstrap: str, topic: str, group_id: str, days: Sequence[str],
                      drop_copies: bool = False) -> KafkaReplay:  # fmt: skip
    """The offsets of the incident's days per partition (`offsets_for_times` of each window's start and end),
    sorted by what ingestion did with them. Reads the broker's metadata only, no message, unless
    `drop_copies`: then the window's ingested messages are read to find the producer's copies."""
    from confluent_kafka import TopicPartition

    from reliability.kafka import clients

    windows = day_windows(days)
    if not windows:
        raise UserFacingError("a Kafka replay needs the incident's days: name them with --partition or "
                              "--partition-range")  # fmt: skip
    ensure_tables(con)
    stored = stored_offsets(con, topic, group_id)
    letters = load_dead_letters(con, topic)
    handled = _handled_positions(con, topic)  # replayed or archived dead letters, dropped copies
    consumer = clients.consumer(f"{group_id}.replay-plan", bootstrap)
    spans: list[tuple[int, int, int]] = []  # (partition, start, end) per window
    try:
        md = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None or not md.partitions:
            raise UserFacingError(f"Kafka topic {topic!r} does not exist (or has no partitions)")
        parts = sorted(md.partitions)
        highs = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        for start_ms, end_ms in windows:
            starts = consumer.offsets_for_times([TopicPartition(topic, p, start_ms) for p in parts], timeout=10)
            ends = consumer.offsets_for_times([TopicPartition(topic, p, end_ms) for p in parts], timeout=10)
            for s, e in zip(starts, ends, strict=True):
                p = s.partition
                if s.error is not None or e.error is not None:
                    raise UserFacingError(f"offsets_for_times of {topic}[{p}] failed: {s.error or e.error}")
                spans.append((p, window_offset(s.offset, highs[p]), window_offset(e.offset, highs[p])))
    finally:
        consumer.close()
    copies = _find_copies(bootstrap, topic, group_id, spans, stored) if drop_copies else {}
    copies = {pos: found for pos, found in copies.items() if pos not in handled}
    planned = [
        partition_replay(
            p, start, end, stored.get(p),
            [d.offset for d in letters if d.partition == p and d.handled is None],
            [o for q, o in handled if q == p],
            [o for q, o in copies if q == p] if drop_copies else None,
        )
        for p, start, end in spans
    ]  # fmt: skip
    return KafkaReplay(topic, tuple(sorted(set(days))), planned, drop_copies=drop_copies, copies=copies)


def _read_ranges(bootstrap: str, topic: str, ranges: dict[int, tuple[int, int]],
                 group_id: str) -> Iterator[tuple[int, int, bytes | None, bytes]]:  # fmt: skip
    """`(partition, offset, key, payload)` of the messages at offsets [first, last] of each partition, in
    offset order per partition, read from the source topic (up to the log end when it is shorter)."""
    from confluent_kafka import KafkaError, TopicPartition

    from reliability.kafka import clients

    if not ranges:
        return
    consumer = clients.consumer(f"{group_id}.replay", bootstrap, **{"enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(topic, p, first) for p, (first, _) in ranges.items()])
        last = {p: end for p, (_, end) in ranges.items()}
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
                if p in last and msg.offset() <= last[p]:
                    yield p, msg.offset(), msg.key(), msg.value() or b""
                if p in last and msg.offset() >= last[p]:
                    del last[p]
    finally:
        consumer.close()


def read_messages(
    bootstrap: str, topic: str, wanted: dict[int, set[int]], group_id: str
) -> dict[tuple[int, int], bytes]:
    """The payloads of the messages at `wanted` offsets per partition, read from the source topic."""
    ranges = {p: (min(offsets), max(offsets)) for p, offsets in wanted.items() if offsets}
    return {(p, o): payload for p, o, _, payload in _read_ranges(bootstrap, topic, ranges, group_id)
            if o in wanted[p]}  # fmt: skip


def _find_copies(bootstrap: str, topic: str, group_id: str, spans: Sequence[tuple[int, int, int]],
                 stored: dict[int, int]) -> dict[tuple[int, int], tuple[int, bytes]]:  # fmt: skip
    """The producer copies among the window's ingested messages: position -> (original's offset, payload)."""
    taken: dict[int, list[tuple[int, int]]] = {}
    for p, start, end in spans:
        first, done = ingested_range(start, end, stored.get(p))
        if done > first:
            taken.setdefault(p, []).append((first, done))
    ranges = {p: (min(a for a, _ in r), max(b for _, b in r) - 1) for p, r in taken.items()}
    finder = CopyFinder()
    copies: dict[tuple[int, int], tuple[int, bytes]] = {}
    for p, offset, key, payload in _read_ranges(bootstrap, topic, ranges, group_id):
        if any(a <= offset < b for a, b in taken[p]):
            original = finder.add(p, offset, key, payload)
            if original is not None:
                copies[(p, offset)] = (original, payload)
    return copies


_ROW_MATCH = " and ".join(f"t.{c} = c.{c}" for c in ROW_COLUMNS)
# One row removed per copy of a payload, never the first (oldest) row of it: the original stays.
DELETE_COPIES_SQL = f"""
delete from {TARGET_TABLE} where rowid in (
    select rid from (
        select t.rowid as rid, c.copies,
            row_number() over (partition by {", ".join(f"t.{c}" for c in ROW_COLUMNS)}
                               order by t._loaded_at, t.rowid) as n
        from {TARGET_TABLE} t
        join (select {", ".join(ROW_COLUMNS)}, count(*) as copies from _checked where error is null
              group by all) c on {_ROW_MATCH}
    ) where n between 2 and copies + 1
)"""


def drop_producer_copies(con, topic: str, copies: dict[tuple[int, int], tuple[int, bytes]], *, now: datetime,
                         actor: str, incident: str | None = None) -> int:  # fmt: skip
    """Drop producer copies `position -> (original offset, payload)` in ONE transaction: the row of each
    copy that became a row is removed (never the original's: one row of each payload always stays), and
    every copy gets a handled row (`dropped`), so it is neither replayed nor dropped again. Returns the
    rows removed."""

    if not copies:
        return 0
    ensure_tables(con)
    dead = {(d.partition, d.offset) for d in load_dead_letters(con, topic)}
    made_rows = [payload for pos, (_, payload) in sorted(copies.items()) if pos not in dead]
    if made_rows:
        validate_payloads(con, made_rows)  # fills temp table _checked with their rows
    stamp = now.replace(tzinfo=None)
    with _handled_together(con, topic, "producer copies", "dropping"):
        removed = int(con.execute(DELETE_COPIES_SQL).fetchone()[0]) if made_rows else 0
        con.executemany(HANDLED_INSERT, [
            [topic, p, o, DROPPED, f"producer copy of {p}:{first} (identical key and payload)", incident, actor, stamp]
            for (p, o), (first, _) in sorted(copies.items())
        ])  # fmt: skip
    return removed


def replay_from_kafka(con, bootstrap: str, topic: str, group_id: str, days: Sequence[str], *, now: datetime,
                      actor: str, incident: str | None = None, dry_run: bool = False,
                      drop_copies: bool = False) -> KafkaReplay:  # fmt: skip
    """Replay the incident's days from Kafka, exactly once: the planned window's dead letters are read
    from the source topic and re-ingested (`replay`); its rows are not touched; messages not ingested yet
    are left to ordinary ingestion. Idempotent: a second run finds nothing left to replay.

    `drop_copies` (a duplicates incident): the window's producer copies are dropped first
    (`drop_producer_copies`), and a copy that was a dead letter is not replayed."""
    plan = plan_kafka_replay(con, bootstrap, topic, group_id, days, drop_copies=drop_copies)
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
    removed = drop_producer_copies(con, topic, plan.copies, now=now, actor=actor, incident=incident)
    letters = [(p, o, payloads[(p, o)]) for p, o in sorted(payloads)]
    plan.outcome = replay(con, topic, letters, now=now, actor=actor, incident=incident,
                          reason=f"replayed from Kafka for {', '.join(plan.days)}")  # fmt: skip
    plan.outcome.dropped, plan.outcome.rows_removed = sorted(plan.copies), removed
    return plan


def kafka_replayer(warehouse, bootstrap: str, topic: str, group_id: str, *, now: datetime, actor: str,
                   incident: str | None = None):  # fmt: skip
    """For reconciliation (`reconcile(..., replay_kafka=...)`): `(days, dry_run, drop_copies) -> KafkaReplay`
    on the warehouse file `warehouse`, opened only for the replay (a Dagster run may need it next)."""
    from reliability.kafka.warehouse import open_warehouse

    def run(days: Sequence[str], dry_run: bool, drop_copies: bool = False) -> KafkaReplay:
        with open_warehouse(warehouse) as con:
            return replay_from_kafka(con, bootstrap, topic, group_id, days, now=now, actor=actor,
                                     incident=incident, dry_run=dry_run, drop_copies=drop_copies)  # fmt: skip

    return run
