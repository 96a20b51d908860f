"""Gather the evidence for a post-mortem: the warehouse (DuckDB), the Kafka topic, the DLQ outbox.

Each look is recorded as `Evidence` (the query, the result, a sample). What cannot be looked at (no
warehouse, no topic, no broker) is said in `Findings.notes`, never guessed. Identifiers from data are
quoted before they reach SQL.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reliability.incidents.model import FaultClass
from reliability.review.causes import DuplicateScanner, Evidence, Findings, KafkaRecord

SAMPLE_ROWS = 5
MAX_TOPIC_MESSAGES = 1_000_000
TOPIC_READ_TIMEOUT_S = 60.0
DLQ_WINDOW = timedelta(days=1)  # rejects this long before the detection still count as its evidence
_KEY_COLUMN = (re.compile(r"^soda_(?P<col>\w+?)_duplicate$"), re.compile(r"^unique_(?P<col>\w+)$"))


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _naive_utc(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def detections(incident: Any) -> list[dict]:
    return [e.data | {"at": e.at} for e in incident.timeline if e.kind == "detection"]


def failing_check_evidence(incident: Any) -> list[Evidence]:
    out = []
    for d in detections(incident):
        meta = d.get("metadata") or {}
        failed = meta.get("rows_failed", meta.get("duplicate_count"))
        result = f"failed at {d['at']:%Y-%m-%d %H:%M:%S}" + (f", {failed} row(s) failed" if failed else "")
        if d.get("blocked_by"):
            result = f"blocked by {', '.join(d['blocked_by'])}"
        out.append(Evidence("incident store", f"{d.get('asset_key')}:{d.get('signal')}", result))
    return out


def key_column(incident: Any) -> str | None:
    """The column a duplicate check is about: its metadata's `column`, else the check's name."""
    for d in detections(incident):
        meta = d.get("metadata") or {}
        if meta.get("column"):
            return str(meta["column"])
        signal = str(d.get("signal") or "")
        asset = str(d.get("asset_key") or "")
        for pattern in _KEY_COLUMN:
            m = pattern.match(signal)
            if m:
                col = m.group("col")
                prefix = asset.split("/")[-1] + "_"
                return col[len(prefix) :] if col.startswith(prefix) else col
    return None


def _table(con: Any, name: str) -> tuple[str, str] | None:
    row = con.execute(
        "select table_schema, table_name from information_schema.tables where table_name = ? order by table_schema",
        [name],
    ).fetchone()
    return (row[0], row[1]) if row else None


def _columns(con: Any, schema: str, table: str) -> dict[str, str]:
    rows = con.execute(
        "select column_name, data_type from information_schema.columns where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def _chain(incident: Any) -> list[str]:
    """Root first, then the failing assets, upstream first (by depth)."""
    assets = sorted((a for a in incident.assets if a.role in ("root", "failing")), key=lambda a: (a.depth, a.asset_key))
    keys = [a.asset_key for a in assets]
    return keys or [incident.root_asset]


def warehouse_findings(con: Any, incident: Any, findings: Findings) -> dict[str, int]:
    """Re-run the fault's predicate on the root and the failing assets; row counts of every asset found."""
    rows: dict[str, int] = {}
    for a in incident.assets:
        table = _table(con, a.asset_key.split("/")[-1])
        if table is not None:
            sql = f"select count(*) from {quote(table[0])}.{quote(table[1])}"
            rows[a.asset_key] = int(con.execute(sql).fetchone()[0])
    if incident.fault_class == FaultClass.DUPLICATES:
        _duplicates(con, incident, findings)
    if incident.fault_class == FaultClass.VOLUME:
        _volume(con, incident, findings)
    return rows


def _duplicates(con: Any, incident: Any, findings: Findings) -> None:
    column = key_column(incident)
    if column is None:
        findings.notes.append("no key column named by the duplicate checks")
        return
    for asset in _chain(incident):
        table = _table(con, asset.split("/")[-1])
        if table is None or column not in _columns(con, *table):
            findings.notes.append(f"{asset}: no table with column {column} in the warehouse")
            continue
        sql = (f"select {quote(column)}, count(*) as copies from {quote(table[0])}.{quote(table[1])} "
               f"group by {quote(column)} having count(*) > 1 order by {quote(column)}")  # fmt: skip
        dupes = con.execute(sql).fetchall()
        evidence = Evidence("duckdb", sql, f"{len(dupes)} {column} value(s) stored more than once",
                            tuple(f"{column}={k} x{n}" for k, n in dupes[:SAMPLE_ROWS]))  # fmt: skip
        findings.upstream.append((asset, bool(dupes), evidence))
        if dupes and not findings.duplicate_keys:
            findings.duplicate_keys = [str(k) for k, _ in dupes]


def _volume(con: Any, incident: Any, findings: Findings) -> None:
    table = _table(con, incident.root_asset.split("/")[-1])
    if table is None:
        findings.notes.append(f"{incident.root_asset}: not in the warehouse")
        return
    dates = [c for c, t in _columns(con, *table).items() if t.upper() == "DATE"]
    if not dates:
        findings.notes.append(f"{incident.root_asset}: no date column to count rows per partition")
        return
    sql = (f"select {quote(dates[0])}, count(*) from {quote(table[0])}.{quote(table[1])} "
           f"group by 1 order by 1")  # fmt: skip
    counts = {str(d): int(n) for d, n in con.execute(sql).fetchall()}
    findings.volume = counts
    findings.volume_evidence = Evidence("duckdb", sql, f"rows per {dates[0]} over {len(counts)} partition(s)",
                                        tuple(f"{d}: {n}" for d, n in list(counts.items())[:10]))  # fmt: skip


def dlq_findings(con: Any, incident: Any, topic: str | None, findings: Findings) -> None:
    """Rejects of the source topic in the incident window, by error class (the ingestion outbox)."""
    from reliability.kafka.warehouse import OUTBOX_TABLE

    if topic is None or _table(con, OUTBOX_TABLE) is None:
        findings.notes.append("no DLQ outbox in the warehouse")
        return
    start = _naive_utc(incident.detected_at - DLQ_WINDOW)
    end = _naive_utc(max(incident.last_detected_at, incident.detected_at))
    sql = (f"select error, count(*) from {OUTBOX_TABLE} where source_topic = ? and rejected_at between ? and ? "
           "group by error order by 2 desc")  # fmt: skip
    errors = {str(e): int(n) for e, n in con.execute(sql, [topic, start, end]).fetchall()}
    findings.dlq_errors = errors
    first = con.execute(
        f"select min(rejected_at) from {OUTBOX_TABLE} where source_topic = ? and rejected_at between ? and ?",
        [topic, start, end],
    ).fetchone()[0]
    findings.first_rejected_at = first.replace(tzinfo=UTC) if first is not None else None
    shown = sql.replace("?", "{}").format(repr(topic), f"'{start:%Y-%m-%d %H:%M:%S}'", f"'{end:%Y-%m-%d %H:%M:%S}'")
    result = f"{sum(errors.values())} reject(s) in {len(errors)} error class(es)"
    findings.dlq_evidence = Evidence("duckdb", shown, result, tuple(f"{e}: {n}" for e, n in errors.items()))
    if findings.lag_statuses:
        findings.dlq_growth = sum(errors.values())


def lag_findings(incident: Any, findings: Findings) -> None:
    lags = [d for d in detections(incident) if d.get("fault_class") == FaultClass.CONSUMER_LAG]
    statuses = [str((d.get("metadata") or {}).get("status") or "") for d in lags]
    findings.lag_statuses = [s for s in statuses if s]
    if lags:
        findings.lag_evidence = Evidence(
            "incident store", "consumer-lag detections on " + ", ".join(sorted({str(d['asset_key']) for d in lags})),
            "verdicts: " + (", ".join(findings.lag_statuses) or "none recorded"),
            tuple(f"{d['at']:%Y-%m-%d %H:%M:%S} {(d.get('metadata') or {}).get('consumer_group', '')}"
                  for d in lags[:5]),
        )  # fmt: skip


def read_topic(topic: str, keys: Iterable[str] | None, bootstrap: str | None = None,
               max_messages: int = MAX_TOPIC_MESSAGES) -> Iterator[KafkaRecord]:  # fmt: skip
    """The messages of `topic` whose key is one of `keys` (every message when `keys` is None), over the
    whole retained log, in offset order per partition."""
    from confluent_kafka import KafkaError, TopicPartition

    from reliability.kafka import clients

    wanted = None if keys is None else {k.encode() for k in keys}
    reader = clients.consumer("reliability.review", bootstrap, **{"enable.partition.eof": True})
    try:
        md = reader.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return
        starts, ends = [], {}
        for p in md.partitions:
            low, high = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                starts.append(TopicPartition(topic, p, low))
                ends[p] = high
        if not starts:
            return
        reader.assign(starts)
        done: set[int] = set()
        seen, deadline = 0, time.monotonic() + TOPIC_READ_TIMEOUT_S
        while len(done) < len(ends) and seen < max_messages and time.monotonic() < deadline:
            for msg in reader.consume(10_000, timeout=0.5):
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        done.add(msg.partition())
                    continue
                seen += 1
                if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                    done.add(msg.partition())
                if wanted is None or msg.key() in wanted:
                    kind, ts = msg.timestamp()
                    yield KafkaRecord(topic, msg.partition(), msg.offset(), ts if kind else None,
                                      msg.key(), msg.value() or b"")  # fmt: skip
    finally:
        reader.close()


def kafka_findings(topic: str, findings: Findings, bootstrap: str | None = None) -> None:
    """Scan the topic for identical (key, payload) copies: only the duplicated keys when the warehouse
    still shows them, else every message (after a repair the topic is the evidence that is left)."""
    keys = findings.duplicate_keys or None
    scanner = DuplicateScanner()
    read = 0
    for record in read_topic(topic, keys, bootstrap):
        scanner.add(record)
        read += 1
    scan = scanner.result()
    findings.kafka = scan
    if keys:
        shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        query = f"read {topic} from the earliest retained offset; messages keyed {shown}"
    else:
        query = f"read {topic} from the earliest retained offset; every message"
    result = (
        f"{read} message(s) read: {len(scan.runs)} run(s) of identical payloads at adjacent offsets "
        f"({scan.adjacent_copies} extra copies), {scan.scattered} scattered copies"
    )
    findings.kafka_evidence = Evidence("kafka", query, result, tuple(r.describe() for r in scan.runs[:SAMPLE_ROWS]))


def gather(incident: Any, warehouse: Path | None, topic: str | None, bootstrap: str | None = None,
           read_kafka: bool = True) -> tuple[Findings, dict[str, int]]:  # fmt: skip
    """All the evidence for `incident`; row counts of its assets found in the warehouse."""
    findings = Findings(incident.root_asset, incident.fault_class, failing_check_evidence(incident))
    lag_findings(incident, findings)
    rows: dict[str, int] = {}
    if warehouse is None:
        findings.notes.append("no warehouse given")
    elif not Path(warehouse).exists():
        findings.notes.append(f"warehouse {warehouse} not found")
    else:
        import duckdb

        with duckdb.connect(str(warehouse), read_only=True) as con:
            rows = warehouse_findings(con, incident, findings)
            dlq_findings(con, incident, topic, findings)
    duplicates = incident.fault_class == FaultClass.DUPLICATES
    if read_kafka and topic and (findings.duplicate_keys or duplicates):
        kafka_findings(topic, findings, bootstrap)
    return findings, rows
