"""Exactly-once ingestion of order events from Kafka into DuckDB, with a dead letter queue.

Why exactly once: the rows of a batch and the next offset of every partition it touched are written in
ONE DuckDB transaction; on start the consumer is assigned those stored offsets (Kafka's committed
offsets are only written afterwards, for lag visibility, never read). A crash anywhere therefore
replays from the last committed transaction: no row lost, none duplicated.

A batch without poison takes the bulk path: its payloads, one per line in a spool file (in /dev/shm), are
parsed by DuckDB's NDJSON reader with typed columns straight into raw_orders, all or nothing. A batch
holding any poison message (bad JSON, missing field, wrong type, bad value, unknown schema version) is
redone by a vectorised validation in DuckDB (one typed JSON parse per message; the rule broken is named
only for the rejected ones); the rejects are recorded in an outbox table in the same transaction, then
published to `<topic>.dlq` with headers naming the error, source topic, partition and offset. After a
crash between commit and publish, start-up reads the DLQ once and publishes only what is missing, so
the DLQ also holds every poison message exactly once.

Run as `python -m reliability.kafka.ingest --topic shop.orders` (one micro-batch up to the current end
of the topic; `--forever` keeps going, as the crash test does before it SIGKILLs it), as
`reliability kafka ingest`, or through the Dagster asset in `reliability.kafka.defs`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from reliability.kafka.broker import pid_alive
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


# Rules for the payloads the fast path (below) rejected, to name what is wrong. Each is parsed twice in
# C (json_valid, then one json_extract with a list of paths); the rules then only look at the raw JSON
# text of each field: its first character gives its JSON type, so no
# per-field JSON parsing is needed. One CASE names the first rule a message breaks; NULL means valid.
# Every literal here is one of our constants, never message content.
_FIELDS = ("schema", "schema_version", "order_id", "customer_id", "order_date", "ordered_at", "status", "amount")
_STRING_FIELDS = ("schema", "order_date", "ordered_at", "status")
_INT_FIELDS = ("schema_version", "order_id", "customer_id")
_PATHS = "[" + ", ".join(f"'$.{f}'" for f in _FIELDS) + "]"


def _kind_sql(field: str) -> str:
    """JSON kind of a field from its raw text: MISSING, STRING, INT, NUMBER or OTHER."""
    r = f"r_{field}"
    return (
        f"case when {r} is null or {r} = 'null' then 'MISSING' "
        f"when {r}[1] = '\"' then 'STRING' "
        f"when {r}[1] in ('-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9') then "
        f"(case when contains({r}, '.') or contains({r}, 'e') or contains({r}, 'E') then 'NUMBER' else 'INT' end) "
        f"else 'OTHER' end as k_{field}"
    )


def _text_sql(field: str, index: int) -> str:
    """The string value of a field: strip the quotes, or decode escapes when there are any."""
    r = f"r_{field}"
    return f"case when contains({r}, '\\') then j[{index}]->>'$' else {r}[2:-2] end as s_{field}"


_EXPECTED = {f: "('STRING')" for f in _STRING_FIELDS} | {f: "('INT')" for f in _INT_FIELDS}
_EXPECTED["amount"] = "('INT', 'NUMBER')"
_RAW_COLS = ", ".join(f"j[{i + 1}]::varchar as r_{f}" for i, f in enumerate(_FIELDS))
_KIND_COLS = ",\n        ".join(_kind_sql(f) for f in _FIELDS)
_TEXT_COLS = ",\n        ".join(_text_sql(f, _FIELDS.index(f) + 1) for f in _STRING_FIELDS)
_CHECKED_FIELDS = _FIELDS[2:]
_MISSING = " or ".join(f"k_{f} = 'MISSING'" for f in _CHECKED_FIELDS)
_WRONG = " or ".join(f"k_{f} not in {_EXPECTED[f]}" for f in _CHECKED_FIELDS)
_MISSING_DETAIL = ", ".join(f"case when k_{f} = 'MISSING' then '{f}' end" for f in _FIELDS)
_WRONG_DETAIL = ", ".join(f"case when k_{f} not in {_EXPECTED[f]} then '{f}' end" for f in _CHECKED_FIELDS)
VALIDATION_SQL = f"""
create or replace temp table _checked as
with parsed as (
    select idx, json_valid(v) and starts_with(ltrim(v), '{{') as ok, v from _suspect
), raw as (
    select idx, ok, j, {_RAW_COLS}
    from (select idx, ok, case when ok then json_extract(v, {_PATHS}) end as j from parsed)
), kinds as (
    select *,
        {_KIND_COLS},
        {_TEXT_COLS}
    from raw
), typed as (
    select *,
        try_cast(r_order_id as bigint) as v_order_id,
        try_cast(r_customer_id as bigint) as v_customer_id,
        try_cast(s_order_date as date) as v_order_date,
        try_cast(s_ordered_at as timestamp) as v_ordered_at,
        try_cast(r_amount as decimal(12, 2)) as v_amount
    from kinds
), rules as (
    select *,
    case
        when not ok then 'invalid_json'
        when k_schema = 'MISSING' or k_schema_version = 'MISSING' then 'missing_field'
        when k_schema <> 'STRING' or s_schema <> '{SCHEMA_NAME}' then 'unknown_schema'
        when k_schema_version <> 'INT' or try_cast(r_schema_version as bigint) is distinct from {SCHEMA_VERSION}
            then 'unsupported_schema_version'
        when {_MISSING} then 'missing_field'
        when {_WRONG} then 'wrong_type'
        when s_status not in ({_status_list()}) then 'invalid_status'
        when v_order_id is null or v_customer_id is null or v_order_date is null or v_ordered_at is null
            or v_amount is null or v_amount < 0 then 'invalid_value'
    end as error
    from typed
)
select idx, error,
    case when error = 'missing_field' then concat_ws(',', {_MISSING_DETAIL})
         when error = 'wrong_type' then concat_ws(',', {_WRONG_DETAIL})
         when error = 'invalid_status' then 'status=' || left(s_status, 100)
    end as detail,
    v_order_id as order_id, v_customer_id as customer_id, v_order_date as order_date,
    v_ordered_at as ordered_at, s_status as status, v_amount as amount
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


# Fast path, one typed parse per payload (`try` turns malformed JSON into NULL): rows it accepts are
# inserted as they are; only the rows it rejects go through VALIDATION_SQL to name the rule they break.
# Like any JSON reader it coerces a number sent as a string ("12") for a numeric field; everything else
# is as strict as the rules above.
_STRUCT = (
    '{"schema":"VARCHAR","schema_version":"BIGINT","order_id":"BIGINT","customer_id":"BIGINT",'
    '"order_date":"DATE","ordered_at":"TIMESTAMP","status":"VARCHAR","amount":"DECIMAL(12,2)"}'
)
FAST_SQL = f"""
create or replace temp table _valid as
select idx, s.order_id, s.customer_id, s.order_date, s.ordered_at, s.status, s.amount,
    coalesce(s.schema = '{SCHEMA_NAME}' and s.schema_version = {SCHEMA_VERSION}
        and s.order_id is not null and s.customer_id is not null and s.order_date is not null
        and s.ordered_at is not null and s.status in ({_status_list()}) and s.amount >= 0, false) as ok
from (
    select (i - 1)::bigint as idx,
        case when starts_with(ltrim(v), '{{') then try(json_transform(v, '{_STRUCT}')) end as s
    from unnest(string_split($1, chr(30))) with ordinality as x(v, i)
)
"""


def validate_payloads(con, payloads: list[bytes]) -> list[tuple[int, str, str | None]]:
    """Load payloads into temp table `_valid` (typed columns; `ok` marks the rows to insert).

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
    con.execute(FAST_SQL, [text])
    n, bad = con.execute("select count(*), count(*) filter (where not ok) from _valid").fetchone()
    if n != len(payloads):
        raise RuntimeError(f"validation saw {n} payloads, expected {len(payloads)}")
    if not bad:
        return []
    con.execute(
        "create or replace temp table _suspect as select idx, v from "
        "(select (i - 1)::bigint as idx, v from unnest(string_split($1, chr(30))) with ordinality as x(v, i)) "
        "where idx in (select idx from _valid where not ok)",
        [text],
    )
    con.execute(VALIDATION_SQL)
    rejected = con.execute(
        "select idx, coalesce(error, 'invalid_value'), "
        "case when error is null then 'rejected by the typed parse' else detail end "
        "from _checked order by idx"
    ).fetchall()
    out = []
    for idx, error, detail in rejected:
        if idx in overrides:
            error, detail = overrides[idx], "payload is not UTF-8 text"
        out.append((int(idx), str(error), detail))
    return out


# Fast path for a whole batch: DuckDB's parallel NDJSON reader parses the newline-joined payloads from a
# spool file with the same typed columns (and the same casts) as FAST_SQL, and the rows go straight into
# raw_orders. It is all-or-nothing: the caller rolls back and takes the per-message path (validate_payloads)
# unless the insert counted exactly one valid row per payload. That holds because the reader is never
# laxer than FAST_SQL: a line that is not a JSON object, or has trailing content, is an error; only a
# blank line yields no row, and no line yields two, so n lines -> n valid rows means every payload is one.
_VALID_ROW = (
    f"s.schema = '{SCHEMA_NAME}' and s.schema_version = {SCHEMA_VERSION} and s.order_id is not null "
    "and s.customer_id is not null and s.order_date is not null and s.ordered_at is not null "
    f"and s.status in ({_status_list()}) and s.amount >= 0"
)


def bulk_insert_sql(path: str) -> str:
    """The bulk insert of the batch spooled at `path` (our own file name, quoted as a SQL literal)."""
    literal = "'" + path.replace("'", "''") + "'"
    return f"""
insert into {TARGET_TABLE} (order_id, customer_id, order_date, ordered_at, status, amount, _loaded_at)
select s.order_id, s.customer_id, s.order_date, s.ordered_at, s.status, s.amount, $1::timestamp
from read_json({literal}, format = 'newline_delimited', compression = 'uncompressed', columns = {_STRUCT}) as s
where coalesce({_VALID_ROW}, false)
"""


_SPOOL_PREFIX = "reliability-ingest-"
_spool_ids = itertools.count()


def spool_path(con, warehouse: Path | str | None, topic: str, group_id: str) -> Path:
    """Where an Ingestor spools batches for the bulk path: RAM-backed /dev/shm when there is one (the file
    is transport only, never needs the disk). The name is unique to this Ingestor, so two can never read
    each other's batch; the files a SIGKILLed process left for the same (database, topic, group) are
    removed here, so crashes do not pile them up."""
    shm = Path("/dev/shm")
    root = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    if warehouse is None:
        row = con.execute("select path from duckdb_databases() where database_name = current_database()").fetchone()
        warehouse = row[0] if row and row[0] else None
    where = str(Path(warehouse).resolve()) if warehouse is not None else "memory"
    key = hashlib.sha1(f"{where}|{topic}|{group_id}".encode()).hexdigest()[:16]
    for stale in root.glob(f"{_SPOOL_PREFIX}{key}-*"):
        pid = stale.name[len(_SPOOL_PREFIX) + len(key) + 1 :].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            stale.unlink(missing_ok=True)
    return root / f"{_SPOOL_PREFIX}{key}-{os.getpid()}-{next(_spool_ids)}.ndjson"


def spool_payloads(file: BinaryIO, payloads: list[bytes]) -> bool:
    """Append payloads to a spool file, one per line; False (the batch cannot take the bulk path) when a
    payload holds a newline, as lines would then not be messages, or when the file cannot be written."""
    data = b"\n".join(payloads)
    if data.count(b"\n") != len(payloads) - 1:
        return False
    try:
        file.write(data)
        file.write(b"\n")
    except OSError:
        return False
    return True


class _Transaction:
    """Batches queued for the writer's next transaction, spooled for the bulk path as they arrive (in the
    consuming thread, so the writer thread only runs DuckDB)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.batches: list[tuple[list, list[bytes], dict[int, int]]] = []
        self.messages = 0
        try:
            self._file: BinaryIO | None = open(path, "wb")  # noqa: SIM115 - closed in take()
        except OSError:
            self._file = None

    def add(self, batch: tuple[list, list[bytes], dict[int, int]]) -> None:
        self.batches.append(batch)
        self.messages += len(batch[0])
        if self._file is not None and not spool_payloads(self._file, batch[1]):
            self.discard()

    def discard(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def take(self) -> tuple[list, list[bytes], dict[int, int], Path | None]:
        """The merged batch and its spool file (None: not spooled, validate per message)."""
        spooled = None
        if self._file is not None:
            try:
                self._file.close()
                spooled = self.path
            except OSError:
                pass
            self._file = None
        return (*_merge(self.batches), spooled)


def _merge(batches: list[tuple[list, list[bytes], dict[int, int]]]) -> tuple[list, list[bytes], dict[int, int]]:
    """Consecutive prepared batches as one (group commit); later next offsets win."""
    if len(batches) == 1:
        return batches[0]
    good: list = []
    payloads: list[bytes] = []
    next_offsets: dict[int, int] = {}
    for g, p, o in batches:
        good += g
        payloads += p
        next_offsets.update(o)
    return good, payloads, next_offsets


class Ingestor:
    """One consumer + one DuckDB connection; `run()` ingests until caught up or a limit is hit."""

    def __init__(
        self,
        warehouse: Path | str | None,
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
            **{
                "fetch.max.bytes": 52428800,
                "queued.max.messages.kbytes": 262144,
                "queued.min.messages": 200_000,  # prefetch deep: librdkafka fetches while DuckDB writes
                # Once the prefetch queue is full librdkafka pauses fetching for this long (default 1 s):
                # the queue then ran dry and consume() waited out its timeout several times per 1M messages.
                "fetch.queue.backoff.ms": 10,
                "fetch.wait.max.ms": 50,
            },
        )
        self._producer = None
        # One spool file for `process()`, two that transactions alternate between while pipelined (the
        # consuming thread fills one while the writer reads the other).
        spool = spool_path(self.con, warehouse, topic, group_id)
        self._spools = [spool.with_suffix(f".{i}.ndjson") for i in range(3)]
        self._bulk_sql = {path: bulk_insert_sql(str(path)) for path in self._spools}
        self.pipelined = os.environ.get("RELIABILITY_INGEST_PIPELINE", "1") == "1"
        self.on_batch = None  # optional callable(stats) after each committed batch (progress output)
        self.stats = IngestStats()
        self.next_offsets: dict[int, int] = {}  # written to DuckDB
        self.consumed: dict[int, int] = {}  # handed to the writer (may run one batch ahead)

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
        self.consumed = dict(self.next_offsets)
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
        batch = self.prepare(msgs)
        if batch is not None:
            self.write(*batch)
            self._commit_to_kafka(batch[2])

    def prepare(self, msgs: list):
        """Consumer-thread part of a batch: drop EOF events, collect payloads and next offsets."""
        from confluent_kafka import KafkaError, KafkaException

        good = msgs
        errors = [m for m in msgs if m.error() is not None]  # rare: copy the list only when there are some
        if errors:
            for m in errors:
                if m.error().code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(m.error())
            good = [m for m in msgs if m.error() is None]
        if not good:
            return None
        payloads = [m.value() or b"" for m in good]
        # Offsets only grow within a partition, so the last message of each partition gives its next offset:
        # walk back and stop once every assigned partition is seen.
        next_offsets: dict[int, int] = {}
        assigned = len(self.consumed)  # 0 before assign(): then walk all of them
        for m in reversed(good):
            p = m.partition()
            if p not in next_offsets:
                next_offsets[p] = m.offset() + 1
                if len(next_offsets) == assigned:
                    break
        self.consumed.update(next_offsets)
        return good, payloads, next_offsets

    def _write_returning_offsets(
        self, good: list, payloads: list[bytes], next_offsets: dict[int, int], spooled: Path | None
    ) -> dict[int, int]:
        """`write` for the writer thread; hands the committed offsets back to the consuming thread."""
        self.write(good, payloads, next_offsets, spooled)
        return next_offsets

    def _insert_all_valid(self, spooled: Path, count: int, now: datetime) -> bool:
        """Bulk path, inside the open transaction: True if it inserted one row per payload (so none is a
        reject); False means the caller must roll back and validate per message."""
        import duckdb

        try:
            (inserted,) = self.con.execute(self._bulk_sql[spooled], [now]).fetchone()
        except duckdb.Error:  # malformed JSON or a value that does not cast: the batch holds a reject
            return False
        return inserted == count

    def write(
        self, good: list, payloads: list[bytes], next_offsets: dict[int, int], spooled: Path | None = None
    ) -> None:
        """Writer part of a batch (may run in a worker thread, one batch at a time, in order).

        Rows, rejects and next offsets commit in one transaction. A batch without rejects takes the bulk
        path (from `spooled`, the payloads one per line, else spooled here); one holding any reject is
        rolled back and redone by `validate_payloads`, which names them.
        """
        import duckdb

        if spooled is None:
            try:
                with open(self._spools[2], "wb") as file:
                    spooled = self._spools[2] if spool_payloads(file, payloads) else None
            except OSError:
                spooled = None
        now = datetime.now(UTC).replace(tzinfo=None)
        rejected: list[tuple[int, str, str | None]] = []
        outbox: list[list] = []
        con = self.con
        con.execute("begin transaction")
        try:
            if spooled is None or not self._insert_all_valid(spooled, len(payloads), now):
                con.execute("rollback")
                rejected = validate_payloads(con, payloads)
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
                con.execute("begin transaction")
                con.execute(
                    f"""insert into {TARGET_TABLE} (order_id, customer_id, order_date, ordered_at, status,
                            amount, _loaded_at)
                        select order_id, customer_id, order_date, ordered_at, status, amount, ?::timestamp
                        from _valid where ok""",
                    [now],
                )
                if outbox:
                    con.executemany(
                        f"""insert into {OUTBOX_TABLE} (source_topic, source_partition, source_offset,
                                dlq_topic, error, detail, message_key, payload, rejected_at)
                            values (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                        outbox,
                    )
            parts = list(next_offsets)
            con.execute(
                f"""insert into {OFFSETS_TABLE} (topic, "partition", next_offset, consumer_group, updated_at)
                    select $1, unnest($2::integer[]), unnest($3::bigint[]), $4, $5::timestamp
                    on conflict (topic, "partition") do update
                    set next_offset = excluded.next_offset, consumer_group = excluded.consumer_group,
                        updated_at = excluded.updated_at""",
                [self.topic, parts, [next_offsets[p] for p in parts], self.group_id, now],
            )
            con.execute("commit")
        except BaseException:
            with contextlib.suppress(duckdb.Error):  # none open if it failed between rollback and begin
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

    def _commit_to_kafka(self, next_offsets: dict[int, int]) -> None:
        """Mirror progress into Kafka's group offsets so lag tools see it (never read back).

        Called from the consuming thread only: a commit from the writer thread waits for the consumer's
        running `consume()` call (up to its timeout), which stalled every transaction."""
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
            pos = self.consumed.get(p, -2)
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
        consumed = 0
        # Pipelined: while DuckDB (which releases the GIL) writes in the writer thread, this thread keeps
        # consuming; batches that arrive while the writer is busy are queued and go, merged, into its next
        # transaction, up to `batch_size` messages (group commit of partial batches: fewer commits when
        # messages trickle in). Transactions are written one at a time, in order, so a crash still leaves
        # a prefix of batches with matching offsets.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb-writer") as writer:
            pending: Future | None = None
            queued: _Transaction | None = None
            transactions = 0
            try:
                while not self.caught_up(targets):
                    if max_seconds is not None and time.monotonic() - started > max_seconds:
                        break
                    if max_messages is not None and consumed >= max_messages:
                        break
                    limit = self.batch_size
                    if max_messages is not None:
                        limit = max(1, min(limit, max_messages - consumed))
                    msgs = self.consumer.consume(limit, timeout=0.5)
                    batch = self.prepare(msgs) if msgs else None
                    if batch is not None:
                        consumed += len(batch[0])
                        idle_since = time.monotonic()
                        if not self.pipelined:
                            self.write(*batch)
                            self._commit_to_kafka(batch[2])
                            continue
                        if queued is None:  # its spool file is free: the writer is done with transaction n - 2
                            queued = _Transaction(self._spools[transactions % 2])
                            transactions += 1
                        queued.add(batch)
                        if pending is None or pending.done() or queued.messages >= self.batch_size:
                            if pending is not None:
                                self._commit_to_kafka(pending.result())
                            pending = writer.submit(self._write_returning_offsets, *queued.take())
                            queued = None
                    elif time.monotonic() - idle_since > idle_timeout_s:
                        break  # e.g. aborted transactions at the end of a partition never yield messages
                if queued is not None:
                    if pending is not None:
                        self._commit_to_kafka(pending.result())
                    pending = writer.submit(self._write_returning_offsets, *queued.take())
                    queued = None
            finally:
                if queued is not None:
                    queued.discard()
                if pending is not None:
                    done = pending
                    pending = None
                    self._commit_to_kafka(done.result())
        self.stats.seconds = time.monotonic() - started
        return self.stats

    def close(self) -> None:
        try:
            self.consumer.close()
            for path in self._spools:
                path.unlink(missing_ok=True)
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
