"""The warehouse side of ingestion: its tables, the one transaction per batch, and the spool files.

Why exactly once: the rows of a batch, its rejects (the DLQ outbox) and the next offset of every
partition it touched are written in ONE DuckDB transaction, and the consumer starts from those stored
offsets. A crash anywhere replays from the last committed transaction: no row lost, none duplicated.
Offsets are kept per (consumer group, topic, partition): each group has its own progress.

Dead letters are handled (replayed after a fix, or archived with a reason) by `reliability.kafka.dlq_ops`:
a row in `_kafka_dlq_handled` per source message, written in the same transaction as the rows a replay
inserts, so a dead letter is turned into a row at most once and `kafka_dlq_depth` counts only the
dead letters without such a row.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from reliability.errors import UserFacingError
from reliability.kafka.broker import pid_alive
from reliability.kafka.validation import TARGET_TABLE, bulk_insert_sql, insert_valid_sql, validate_payloads

OFFSETS_TABLE = "_kafka_offsets"
OUTBOX_TABLE = "_kafka_dlq_outbox"
HANDLED_TABLE = "_kafka_dlq_handled"
UNKNOWN_GROUP = "(unknown)"  # group of offset rows an older version stored without one

DDL = [
    f"""create table if not exists {TARGET_TABLE} (
        order_id bigint, customer_id bigint, order_date date, ordered_at timestamp,
        status varchar, amount decimal(12, 2), _loaded_at timestamp)""",
    f"""create table if not exists {OFFSETS_TABLE} (
        consumer_group varchar not null, topic varchar not null, "partition" integer not null,
        next_offset bigint not null, updated_at timestamp, primary key (consumer_group, topic, "partition"))""",
    f"""create table if not exists {OUTBOX_TABLE} (
        source_topic varchar not null, source_partition integer not null, source_offset bigint not null,
        dlq_topic varchar not null, error varchar not null, detail varchar, message_key blob,
        payload blob, rejected_at timestamp, published boolean not null default false)""",
    # One row per dead letter that was handled: replayed into a row, or archived with a reason. The key
    # makes a second replay of the same message fail its transaction instead of inserting a second row.
    f"""create table if not exists {HANDLED_TABLE} (
        source_topic varchar not null, source_partition integer not null, source_offset bigint not null,
        action varchar not null, reason varchar, incident varchar, actor varchar, handled_at timestamp,
        primary key (source_topic, source_partition, source_offset))""",
]


class WarehouseUnavailable(UserFacingError):
    """The warehouse cannot be opened or written (locked by another process, disk full...)."""


def open_warehouse(path: Path | str):
    """A DuckDB connection to `path`, or a one-line error naming the file and the cause."""
    import duckdb

    try:
        return duckdb.connect(str(path))
    except duckdb.Error as exc:
        raise WarehouseUnavailable(f"cannot open warehouse {path}: {describe_duckdb_error(exc)}") from exc


def describe_duckdb_error(exc: BaseException) -> str:
    """One line saying what went wrong, for the errors users meet (lock, full disk), else DuckDB's own."""
    text = str(exc)
    if "Conflicting lock" in text or "Could not set lock" in text:
        holder = text.split("Conflicting lock is held in", 1)[-1].split("See also", 1)[0].strip().rstrip(".")
        held = f" ({holder})" if "Conflicting lock is held in" in text else ""
        return f"it is locked by another process{held}; is another ingester or Dagster run using it?"
    if "No space left on device" in text or "ENOSPC" in text:
        return "no space left on device"
    return " ".join(text.split())[:300]


def _offsets_key(con) -> list[str]:
    row = con.execute(
        """select constraint_column_names from duckdb_constraints()
           where table_name = ? and constraint_type = 'PRIMARY KEY'""",
        [OFFSETS_TABLE],
    ).fetchone()
    return list(row[0]) if row else []


def migrate_offsets_table(con) -> bool:
    """Re-key an `_kafka_offsets` table from (topic, partition) to (consumer_group, topic, partition).

    One transaction: a copy keyed the new way replaces the old table, rows keep the group they recorded.
    Returns True if it migrated."""
    exists = con.execute("select count(*) from duckdb_tables() where table_name = ?", [OFFSETS_TABLE]).fetchone()[0]
    if not exists or "consumer_group" in _offsets_key(con):
        return False
    con.execute("begin transaction")
    try:
        con.execute(f"alter table {OFFSETS_TABLE} rename to {OFFSETS_TABLE}_old")
        con.execute(DDL[1])
        con.execute(
            f"""insert into {OFFSETS_TABLE} (consumer_group, topic, "partition", next_offset, updated_at)
                select coalesce(consumer_group, '{UNKNOWN_GROUP}'), topic, "partition", next_offset, updated_at
                from {OFFSETS_TABLE}_old"""
        )
        con.execute(f"drop table {OFFSETS_TABLE}_old")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return True


def ensure_tables(con) -> None:
    migrate_offsets_table(con)
    for ddl in DDL:
        con.execute(ddl)


def stored_offsets(con, topic: str, group_id: str) -> dict[int, int]:
    """Next offset to read per partition of `topic` for `group_id`, as committed with its rows."""
    rows = con.execute(
        f'select "partition", next_offset from {OFFSETS_TABLE} where consumer_group = ? and topic = ?',
        [group_id, topic],
    ).fetchall()
    return {int(p): int(o) for p, o in rows}


def dlq_depth(con, topic: str) -> int:
    """Messages rejected to the DLQ of `topic` so far (from the outbox, same DB as the rows)."""
    ensure_tables(con)
    return int(con.execute(f"select count(*) from {OUTBOX_TABLE} where source_topic = ?", [topic]).fetchone()[0])


def unhandled_dlq_depth(con, topic: str) -> int:
    """Dead letters of `topic` nobody has replayed or archived yet: what `kafka_dlq_depth` counts."""
    ensure_tables(con)
    return int(
        con.execute(
            f"""select count(*) from {OUTBOX_TABLE} o where o.source_topic = ? and not exists (
                    select 1 from {HANDLED_TABLE} h where h.source_topic = o.source_topic
                    and h.source_partition = o.source_partition and h.source_offset = o.source_offset)""",
            [topic],
        ).fetchone()[0]
    )


_SPOOL_PREFIX = "reliability-ingest-"
_spool_ids = itertools.count()


def spool_path(con, warehouse: Path | str | None, topic: str, group_id: str) -> Path:
    """Where an ingester spools batches for the bulk path: RAM-backed /dev/shm when there is one (the file
    is transport only, never needs the disk). The name is unique to this ingester, so two can never read
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


@dataclass
class WrittenBatch:
    """What one committed transaction held."""

    messages: int
    rows: int
    rejected: list[tuple[int, str, str | None]]  # (index in the batch, error, detail)


class WarehouseWriter:
    """Writes batches of one (topic, group) into the warehouse, one transaction each."""

    def __init__(self, con, topic: str, group_id: str, dlq_topic: str, spools: list[Path]) -> None:
        self.con = con
        self.topic = topic
        self.group_id = group_id
        self.dlq_topic = dlq_topic
        self.spools = spools
        self._bulk_sql = {path: bulk_insert_sql(str(path)) for path in spools}

    def _insert_all_valid(self, spooled: Path, count: int, now: datetime) -> bool:
        """Bulk path, inside the open transaction: True if it inserted one row per payload (so none is a
        reject); False means the caller must roll back and validate per message."""
        import duckdb

        try:
            (inserted,) = self.con.execute(self._bulk_sql[spooled], [now]).fetchone()
        except duckdb.Error as exc:  # malformed JSON, a duplicate key...: the batch holds a reject
            if "No space left" in str(exc):
                raise
            return False
        return inserted == count

    def write(
        self, msgs: list, payloads: list[bytes], next_offsets: dict[int, int], now: datetime, spooled: Path | None
    ) -> WrittenBatch:
        """Rows, rejects (outbox) and next offsets in one transaction. A batch without rejects takes the bulk
        path from `spooled` (the payloads one per line; None: spool them here); one holding any reject is
        rolled back and redone by `validate_payloads`, which names them. Raises WarehouseUnavailable (one
        line) when DuckDB cannot write, e.g. a full disk; nothing of the batch is then committed."""
        import duckdb

        if spooled is None:
            try:
                with open(self.spools[-1], "wb") as file:
                    spooled = self.spools[-1] if spool_payloads(file, payloads) else None
            except OSError:
                spooled = None
        con = self.con
        rejected: list[tuple[int, str, str | None]] = []
        try:
            con.execute("begin transaction")
            if spooled is None or not self._insert_all_valid(spooled, len(payloads), now):
                con.execute("rollback")
                rejected = validate_payloads(con, payloads)
                con.execute("begin transaction")
                con.execute(insert_valid_sql(), [now])
                if rejected:
                    con.executemany(
                        f"""insert into {OUTBOX_TABLE} (source_topic, source_partition, source_offset,
                                dlq_topic, error, detail, message_key, payload, rejected_at)
                            values (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                        [
                            [self.topic, msgs[i].partition(), msgs[i].offset(), self.dlq_topic, error, detail,
                             msgs[i].key(), payloads[i], now]
                            for i, error, detail in rejected
                        ],
                    )  # fmt: skip
            parts = list(next_offsets)
            con.execute(
                f"""insert into {OFFSETS_TABLE} (consumer_group, topic, "partition", next_offset, updated_at)
                    select $1, $2, unnest($3::integer[]), unnest($4::bigint[]), $5::timestamp
                    on conflict (consumer_group, topic, "partition") do update
                    set next_offset = excluded.next_offset, updated_at = excluded.updated_at""",
                [self.group_id, self.topic, parts, [next_offsets[p] for p in parts], now],
            )
            con.execute("commit")
        except BaseException as exc:
            with contextlib.suppress(duckdb.Error):  # none open if it failed between rollback and begin
                con.execute("rollback")
            if isinstance(exc, duckdb.Error):
                raise WarehouseUnavailable(
                    f"writing a batch of {len(payloads)} message(s) from {self.topic} failed, nothing of it was "
                    f"committed: {describe_duckdb_error(exc)}"
                ) from exc
            raise
        return WrittenBatch(messages=len(payloads), rows=len(payloads) - len(rejected), rejected=rejected)
