"""Exactly-once ingestion of order events from Kafka into DuckDB, with a dead letter queue.

Why exactly once: the rows of a batch and the next offset of every partition it touched are written in
ONE DuckDB transaction; on start the consumer is assigned those stored offsets (Kafka's committed
offsets are only written afterwards, for lag visibility, never read). A crash anywhere therefore
replays from the last committed transaction: no row lost, none duplicated.

Poison messages (bad JSON, missing field, wrong type, bad value, unknown schema version) are rejected
by a vectorised SQL validation in DuckDB and recorded in an outbox table in the same transaction, then
published to `<topic>.dlq` with headers naming the error, source topic, partition and offset. After a
crash between commit and publish, start-up reads the DLQ once and publishes only what is missing, so
the DLQ also holds every poison message exactly once.

Run as `python -m reliability.kafka.ingest --topic shop.orders --until-caught-up` (used by the crash
test, which SIGKILLs it) or through the Dagster asset in `reliability.kafka.defs`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from reliability.kafka.events import DEFAULT_TOPIC, ORDER_STATUSES, SCHEMA_NAME, SCHEMA_VERSION

DEFAULT_GROUP = "reliability.raw_orders"
TARGET_TABLE = "raw_orders"
OFFSETS_TABLE = "_kafka_offsets"
OUTBOX_TABLE = "_kafka_dlq_outbox"
SEPARATOR = b"\x1e"  # ASCII record separator: never valid inside a JSON document

DDL = [
    """create table if not exists raw_orders (
        order_id bigint, customer_id bigint, order_date date, ordered_at timestamp,
        status varchar, amount decimal(12, 2), _loaded_at timestamp)""",
    f"""create table if not exists {OFFSETS_TABLE} (
        topic varchar not null, "partition" integer not null, next_offset bigint not null,
        consumer_group varchar, updated_at timestamp, primary key (topic, "partition"))""",
    f"""create table if not exists {OUTBOX_TABLE} (
        source_topic varchar not null, source_partition integer not null, source_offset bigint not null,
        dlq_topic varchar not null, error varchar not null, detail varchar, message_key blob,
        payload blob, rejected_at timestamp, published boolean not null default false)""",
]


def _status_list() -> str:
    return ", ".join("'" + s.replace("'", "''") + "'" for s in ORDER_STATUSES)


# One CASE naming the first rule a message breaks; NULL means valid. Literals are our constants only.
_INT_TYPES = "('UBIGINT', 'BIGINT')"
VALIDATION_SQL = f"""
create or replace temp table _checked as
with parsed as (
    select idx, v, json_valid(v) as ok_json from _batch
), rules as (
    select idx, v,
    case
        when not ok_json or json_type(v) <> 'OBJECT' then 'invalid_json'
        when coalesce(json_type(v, '$.schema'), 'NULL') = 'NULL'
            or json_type(v, '$.schema_version') is null then 'missing_field'
        when v->>'$.schema' <> '{SCHEMA_NAME}' then 'unknown_schema'
        when json_type(v, '$.schema_version') not in {_INT_TYPES}
            or try_cast(v->>'$.schema_version' as bigint) is distinct from {SCHEMA_VERSION}
            then 'unsupported_schema_version'
        when coalesce(json_type(v, '$.order_id'), 'NULL') = 'NULL'
            or coalesce(json_type(v, '$.customer_id'), 'NULL') = 'NULL'
            or coalesce(json_type(v, '$.order_date'), 'NULL') = 'NULL'
            or coalesce(json_type(v, '$.ordered_at'), 'NULL') = 'NULL'
            or coalesce(json_type(v, '$.status'), 'NULL') = 'NULL'
            or coalesce(json_type(v, '$.amount'), 'NULL') = 'NULL' then 'missing_field'
        when json_type(v, '$.order_id') not in {_INT_TYPES}
            or json_type(v, '$.customer_id') not in {_INT_TYPES}
            or json_type(v, '$.order_date') <> 'VARCHAR'
            or json_type(v, '$.ordered_at') <> 'VARCHAR'
            or json_type(v, '$.status') <> 'VARCHAR'
            or json_type(v, '$.amount') not in ('DOUBLE', 'UBIGINT', 'BIGINT') then 'wrong_type'
        when v->>'$.status' not in ({_status_list()}) then 'invalid_status'
        when try_cast(v->>'$.order_id' as bigint) is null
            or try_cast(v->>'$.customer_id' as bigint) is null
            or try_cast(v->>'$.order_date' as date) is null
            or try_cast(v->>'$.ordered_at' as timestamp) is null
            or try_cast(v->>'$.amount' as decimal(12, 2)) is null
            or try_cast(v->>'$.amount' as decimal(12, 2)) < 0 then 'invalid_value'
    end as error
    from parsed
)
select idx, error,
    case when error = 'missing_field' then concat_ws(',',
            case when coalesce(json_type(v, '$.schema'), 'NULL') = 'NULL' then 'schema' end,
            case when json_type(v, '$.schema_version') is null then 'schema_version' end,
            case when coalesce(json_type(v, '$.order_id'), 'NULL') = 'NULL' then 'order_id' end,
            case when coalesce(json_type(v, '$.customer_id'), 'NULL') = 'NULL' then 'customer_id' end,
            case when coalesce(json_type(v, '$.order_date'), 'NULL') = 'NULL' then 'order_date' end,
            case when coalesce(json_type(v, '$.ordered_at'), 'NULL') = 'NULL' then 'ordered_at' end,
            case when coalesce(json_type(v, '$.status'), 'NULL') = 'NULL' then 'status' end,
            case when coalesce(json_type(v, '$.amount'), 'NULL') = 'NULL' then 'amount' end)
         when error = 'wrong_type' then concat_ws(',',
            case when json_type(v, '$.order_id') not in {_INT_TYPES} then 'order_id' end,
            case when json_type(v, '$.customer_id') not in {_INT_TYPES} then 'customer_id' end,
            case when json_type(v, '$.order_date') <> 'VARCHAR' then 'order_date' end,
            case when json_type(v, '$.ordered_at') <> 'VARCHAR' then 'ordered_at' end,
            case when json_type(v, '$.status') <> 'VARCHAR' then 'status' end,
            case when json_type(v, '$.amount') not in ('DOUBLE', 'UBIGINT', 'BIGINT') then 'amount' end)
         when error = 'invalid_status' then 'status=' || left(v->>'$.status', 100)
    end as detail,
    case when error is null then (v->>'$.order_id')::bigint end as order_id,
    case when error is null then (v->>'$.customer_id')::bigint end as customer_id,
    case when error is null then (v->>'$.order_date')::date end as order_date,
    case when error is null then (v->>'$.ordered_at')::timestamp end as ordered_at,
    case when error is null then v->>'$.status' end as status,
    case when error is null then (v->>'$.amount')::decimal(12, 2) end as amount
from rules
"""


@dataclass
class IngestStats:
    messages: int = 0
    rows: int = 0
    rejected: int = 0
    batches: int = 0
    dlq_published: int = 0
    dlq_recovered: int = 0
    seconds: float = 0.0
    rejected_by_error: dict[str, int] = field(default_factory=dict)
    end_offsets: dict[int, int] = field(default_factory=dict)


def ensure_tables(con) -> None:
    for ddl in DDL:
        con.execute(ddl)


def stored_offsets(con, topic: str) -> dict[int, int]:
    rows = con.execute(f'select "partition", next_offset from {OFFSETS_TABLE} where topic = ?', [topic]).fetchall()
    return {int(p): int(o) for p, o in rows}


def dlq_depth(con, topic: str) -> int:
    """Messages rejected to the DLQ of `topic` so far (from the outbox, same DB as the rows)."""
    ensure_tables(con)
    return int(con.execute(f"select count(*) from {OUTBOX_TABLE} where source_topic = ?", [topic]).fetchone()[0])


def validate_payloads(con, payloads: list[bytes]) -> list[tuple[int, str, str | None]]:
    """Load payloads into temp table `_checked` (typed columns for the valid ones).

    Returns (index, error, detail) of the rejected payloads. Payloads that are not UTF-8 or contain the
    separator byte are replaced by an invalid document and reported as such.
    """
    overrides: dict[int, str] = {}
    joined = SEPARATOR.join(payloads)
    text: str | None = None
    if joined.count(SEPARATOR) == len(payloads) - 1:
        try:
            text = joined.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    if text is None:  # slow path, only for batches holding broken bytes
        parts: list[str] = []
        for i, raw in enumerate(payloads):
            try:
                if SEPARATOR in raw:
                    raise ValueError("separator byte")
                parts.append(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                overrides[i] = "invalid_encoding"
                parts.append("\x01")
        text = "\x1e".join(parts)
    con.execute(
        "create or replace temp table _batch as "
        "select (i - 1)::bigint as idx, v from unnest(string_split($1, chr(30))) with ordinality as x(v, i)",
        [text],
    )
    con.execute(VALIDATION_SQL)
    n = con.execute("select count(*) from _checked").fetchone()[0]
    if n != len(payloads):
        raise RuntimeError(f"validation saw {n} payloads, expected {len(payloads)}")
    rejected = con.execute("select idx, error, detail from _checked where error is not null order by idx").fetchall()
    out = []
    for idx, error, detail in rejected:
        if idx in overrides:
            error, detail = overrides[idx], "payload is not UTF-8 text"
        out.append((int(idx), str(error), detail))
    return out


class Ingestor:
    """One consumer + one DuckDB connection; `run()` ingests until caught up or a limit is hit."""

    def __init__(
        self,
        warehouse: Path | str,
        topic: str = DEFAULT_TOPIC,
        group_id: str = DEFAULT_GROUP,
        bootstrap: str | None = None,
        batch_size: int = 50_000,
        con=None,
    ) -> None:
        import duckdb

        from reliability.kafka import clients

        self.topic = topic
        self.dlq_topic = f"{topic}.dlq"
        self.group_id = group_id
        self.batch_size = batch_size
        self.bootstrap = bootstrap
        self._own_con = con is None
        self.con = con if con is not None else duckdb.connect(str(warehouse))
        ensure_tables(self.con)
        self.consumer = clients.consumer(
            group_id,
            bootstrap,
            **{"fetch.max.bytes": 52428800, "queued.max.messages.kbytes": 262144, "fetch.wait.max.ms": 50},
        )
        self._producer = None
        self.on_batch = None  # optional callable(stats) after each committed batch (progress output)
        self.stats = IngestStats()
        self.next_offsets: dict[int, int] = {}

    # -- set-up ---------------------------------------------------------------------------------------
    def _partitions(self) -> list[int]:
        md = self.consumer.list_topics(self.topic, timeout=30).topics.get(self.topic)
        if md is None or md.error is not None or not md.partitions:
            from reliability.errors import UserFacingError

            raise UserFacingError(f"Kafka topic {self.topic!r} does not exist (or has no partitions)")
        return sorted(md.partitions)

    def assign(self) -> None:
        """Assign every partition at the offset stored in DuckDB (beginning when none is stored)."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        stored = stored_offsets(self.con, self.topic)
        parts = self._partitions()
        self.next_offsets = {p: stored.get(p, OFFSET_BEGINNING) for p in parts}
        self.consumer.assign([TopicPartition(self.topic, p, self.next_offsets[p]) for p in parts])

    def _producer_client(self):
        if self._producer is None:
            from reliability.kafka import clients

            self._producer = clients.producer(self.bootstrap, idempotent=True, **{"linger.ms": 5})
        return self._producer

    # -- DLQ ------------------------------------------------------------------------------------------
    def _published_in_dlq(self) -> set[tuple[str, int, int]]:
        """(source topic, partition, offset) of every message already in the DLQ topic (recovery only)."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        from reliability.kafka import clients

        seen: set[tuple[str, int, int]] = set()
        md = self.consumer.list_topics(self.dlq_topic, timeout=30).topics.get(self.dlq_topic)
        if md is None or md.error is not None:
            return seen
        reader = clients.consumer(f"{self.group_id}.dlq-recovery", self.bootstrap, **{"enable.partition.eof": True})
        try:
            ends = {}
            for p in md.partitions:
                low, high = reader.get_watermark_offsets(TopicPartition(self.dlq_topic, p), timeout=30)
                if high > low:
                    ends[p] = high
            if not ends:
                return seen
            reader.assign([TopicPartition(self.dlq_topic, p, OFFSET_BEGINNING) for p in ends])
            done: set[int] = set()
            while len(done) < len(ends):
                for msg in reader.consume(10_000, timeout=1.0):
                    if msg.error() is not None:
                        if msg.error().code() == -191:  # _PARTITION_EOF
                            done.add(msg.partition())
                        continue
                    h = dict(msg.headers() or [])
                    try:
                        seen.add(
                            (
                                h["dlq.source.topic"].decode(),
                                int(h["dlq.source.partition"]),
                                int(h["dlq.source.offset"]),
                            )
                        )
                    except (KeyError, ValueError):
                        continue
        finally:
            reader.close()
        return seen

    def recover_outbox(self) -> int:
        """Publish outbox rows a crash left unpublished, skipping those already in the DLQ topic."""
        pending = self.con.execute(
            f"select count(*) from {OUTBOX_TABLE} where source_topic = ? and not published", [self.topic]
        ).fetchone()[0]
        if not pending:
            return 0
        already = self._published_in_dlq()
        if already:
            self.con.execute("create or replace temp table _dlq_seen(t varchar, p integer, o bigint)")
            self.con.executemany("insert into _dlq_seen values (?, ?, ?)", [list(k) for k in already])
            self.con.execute(
                f"""update {OUTBOX_TABLE} set published = true
                    where not published and (source_topic, source_partition, source_offset) in
                        (select (t, p, o) from _dlq_seen)"""
            )
        recovered = self._publish_outbox()
        self.stats.dlq_recovered += recovered
        return recovered

    def _publish_outbox(self) -> int:
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
            headers = [
                ("dlq.error", error.encode()),
                ("dlq.error.detail", (detail or "").encode()),
                ("dlq.source.topic", topic.encode()),
                ("dlq.source.partition", str(part).encode()),
                ("dlq.source.offset", str(offset).encode()),
                ("dlq.consumer.group", self.group_id.encode()),
                ("dlq.rejected.at", rejected_at.isoformat().encode() if rejected_at else b""),
            ]
            while True:
                try:
                    prod.produce(
                        dlq,
                        value=bytes(payload) if payload is not None else None,
                        key=bytes(key) if key is not None else None,
                        headers=headers,
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    prod.poll(0.05)
        left = prod.flush(60)
        if left or errors:
            raise RuntimeError(f"DLQ publish to {rows[0][3]} failed: {errors[:3] or f'{left} undelivered'}")
        self.con.execute(
            f"update {OUTBOX_TABLE} set published = true where source_topic = ? and not published",
            [self.topic],
        )
        self.stats.dlq_published += len(rows)
        return len(rows)

    # -- the exactly-once step ------------------------------------------------------------------------
    def process(self, msgs: list) -> None:
        """Validate a batch, then write rows + rejects + next offsets in one transaction."""
        from confluent_kafka import KafkaError, KafkaException

        good = []
        for m in msgs:
            err = m.error()
            if err is None:
                good.append(m)
            elif err.code() != KafkaError._PARTITION_EOF:
                raise KafkaException(err)
        if not good:
            return
        payloads = [m.value() or b"" for m in good]
        rejected = validate_payloads(self.con, payloads)
        next_offsets: dict[int, int] = {}
        for m in good:
            next_offsets[m.partition()] = m.offset() + 1
        now = datetime.now(UTC).replace(tzinfo=None)
        outbox = [
            [
                self.topic,
                good[i].partition(),
                good[i].offset(),
                self.dlq_topic,
                error,
                detail,
                good[i].key(),
                payloads[i],
                now,
            ]
            for i, error, detail in rejected
        ]
        con = self.con
        con.execute("begin transaction")
        try:
            con.execute(
                f"""insert into {TARGET_TABLE} (order_id, customer_id, order_date, ordered_at, status, amount,
                        _loaded_at)
                    select order_id, customer_id, order_date, ordered_at, status, amount, ?::timestamp
                    from _checked where error is null order by idx""",
                [now],
            )
            if outbox:
                con.executemany(
                    f"""insert into {OUTBOX_TABLE} (source_topic, source_partition, source_offset, dlq_topic,
                            error, detail, message_key, payload, rejected_at)
                        values (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    outbox,
                )
            con.executemany(
                f"""insert into {OFFSETS_TABLE} (topic, "partition", next_offset, consumer_group, updated_at)
                    values (?, ?, ?, ?, ?)
                    on conflict (topic, "partition") do update
                    set next_offset = excluded.next_offset, consumer_group = excluded.consumer_group,
                        updated_at = excluded.updated_at""",
                [[self.topic, p, o, self.group_id, now] for p, o in next_offsets.items()],
            )
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        self.next_offsets.update(next_offsets)
        self.stats.messages += len(good)
        self.stats.rejected += len(rejected)
        self.stats.rows += len(good) - len(rejected)
        self.stats.batches += 1
        for _, error, _ in rejected:
            self.stats.rejected_by_error[error] = self.stats.rejected_by_error.get(error, 0) + 1
        if self.on_batch is not None:
            self.on_batch(self.stats)
        if outbox:
            self._publish_outbox()
        self._commit_to_kafka(next_offsets)

    def _commit_to_kafka(self, next_offsets: dict[int, int]) -> None:
        """Mirror progress into Kafka's group offsets so lag tools see it (never read back)."""
        from confluent_kafka import KafkaException, TopicPartition

        with contextlib.suppress(KafkaException):  # visibility only; correctness lives in DuckDB
            self.consumer.commit(
                offsets=[TopicPartition(self.topic, p, o) for p, o in next_offsets.items()], asynchronous=True
            )

    def end_offsets(self) -> dict[int, int]:
        from confluent_kafka import TopicPartition

        return {
            p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)[1]
            for p in self.next_offsets
        }

    def caught_up(self, targets: dict[int, int]) -> bool:
        for p, end in targets.items():
            pos = self.next_offsets.get(p, -2)
            if pos < 0:  # not consumed yet: caught up only if the partition is empty
                from confluent_kafka import TopicPartition

                low, _ = self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)
                if end > low:
                    return False
            elif pos < end:
                return False
        return True

    def run(
        self, max_seconds: float | None = None, max_messages: int | None = None, idle_timeout_s: float = 5.0
    ) -> IngestStats:
        """Ingest until the end offsets seen at start are reached (a micro-batch), or a limit is hit."""
        started = time.monotonic()
        self.assign()
        self.recover_outbox()
        targets = self.end_offsets()
        self.stats.end_offsets = targets
        idle_since = time.monotonic()
        while not self.caught_up(targets):
            if max_seconds is not None and time.monotonic() - started > max_seconds:
                break
            if max_messages is not None and self.stats.messages >= max_messages:
                break
            limit = self.batch_size
            if max_messages is not None:
                limit = max(1, min(limit, max_messages - self.stats.messages))
            msgs = self.consumer.consume(limit, timeout=0.5)
            if msgs:
                self.process(msgs)
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > idle_timeout_s:
                break  # e.g. aborted transactions at the end of a partition never yield messages
        self.stats.seconds = time.monotonic() - started
        return self.stats

    def close(self) -> None:
        try:
            self.consumer.close()
        finally:
            if self._producer is not None:
                self._producer.flush(10)
            if self._own_con:
                self.con.close()


def ingest(
    warehouse: Path | str,
    topic: str = DEFAULT_TOPIC,
    group_id: str = DEFAULT_GROUP,
    bootstrap: str | None = None,
    **run_kwargs,
) -> IngestStats:
    """One micro-batch: open, ingest to the current end of the topic, close."""
    ingestor = Ingestor(
        warehouse,
        topic=topic,
        group_id=group_id,
        bootstrap=bootstrap,
        batch_size=run_kwargs.pop("batch_size", 50_000),
    )
    try:
        return ingestor.run(**run_kwargs)
    finally:
        ingestor.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", help="DuckDB file (default: settings warehouse_path)")
    parser.add_argument("--topic", default=DEFAULT_TOPIC)
    parser.add_argument("--group", default=DEFAULT_GROUP)
    parser.add_argument("--bootstrap", help="default: KAFKA_BOOTSTRAP_SERVERS or the local broker")
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--max-seconds", type=float)
    parser.add_argument("--idle-timeout", type=float, default=5.0)
    parser.add_argument("--forever", action="store_true", help="keep consuming new messages until killed")
    parser.add_argument("--progress", action="store_true", help="print a JSON line after each committed batch")
    args = parser.parse_args(argv)
    warehouse = args.warehouse
    if warehouse is None:
        from reliability.settings import get_settings

        warehouse = get_settings().warehouse_path
        Path(warehouse).parent.mkdir(parents=True, exist_ok=True)
    ingestor = Ingestor(
        warehouse, topic=args.topic, group_id=args.group, bootstrap=args.bootstrap, batch_size=args.batch_size
    )
    if args.progress:
        ingestor.on_batch = lambda st: print(json.dumps({"batches": st.batches, "rows": st.rows}), flush=True)
    try:
        while True:
            stats = ingestor.run(max_seconds=args.max_seconds, idle_timeout_s=args.idle_timeout)
            if not args.forever:
                break
            time.sleep(0.2)
    finally:
        ingestor.close()
    print(json.dumps(asdict(stats)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
