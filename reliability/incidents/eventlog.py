"""Reading Dagster's event log after a cursor: check evaluations, freshness changes, failed runs.

Check evaluations are the bulk of a busy tick, so they are read straight from the SQL event-log
tables and parsed with `json` (`fast_check_events`, 10x faster than Dagster's serdes). That touches
Dagster internals: whenever that path is unavailable or meets a shape it does not know, the public
API (`public_check_events`) gives the same `CheckEvent`s. `tests/incidents/test_eventlog.py` compares
the two on SQLite and PostgreSQL storage, so a Dagster upgrade that changes the internals fails there.

Only plain event records leave this module; `reliability.incidents.mapping` decides what they mean.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from dagster._core.events import DagsterEventType

from reliability.incidents.mapping import CheckEvent, EventBatch, FreshnessEvent, RunFailureEvent
from reliability.partitions import MAX_PARTITION_KEYS, PARTITION_KEYS_METADATA, partition_keys

FETCH_LIMIT = 20_000  # events per type per tick; the rest waits for the next tick
SHARDED_MARGIN_S = 300.0  # run-sharded SQLite: re-read this much history each tick (deduplicated)
FIRST_TICK_LOOKBACK_S = 24 * 3600.0  # a new (or reset) sensor looks this far back for check results


def _first_tick_since() -> float:
    return time.time() - FIRST_TICK_LOOKBACK_S


@dataclass
class Cursor:
    """Event-log positions. `checks` is a global storage id; on run-sharded SQLite storage (Dagster's
    default, where ids are per run) `shards` keeps the last id per run shard of the runs updated
    within `checks_ts` minus a margin (plus runs in progress and the runless shard); a run shard not
    in it is read from that time on, and anything read twice is deduplicated by the store."""

    checks: int | None = None
    checks_ts: float | None = None
    freshness: int | None = None
    runs: str | None = None
    shards: dict[str, int] | None = None  # run-sharded SQLite: last storage id read per run shard

    @classmethod
    def parse(cls, raw: str | None) -> Cursor:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(data.get("checks"), data.get("checks_ts"), data.get("freshness"), data.get("runs"),
                   data.get("shards"))  # fmt: skip

    def dumps(self) -> str:
        return json.dumps(
            {"checks": self.checks, "checks_ts": self.checks_ts, "freshness": self.freshness, "runs": self.runs,
             "shards": self.shards},
            sort_keys=True,
        )  # fmt: skip


# ------------------------------------------------------------------------------------------ records -> events
def check_event_from_record(record: Any) -> CheckEvent:
    """A deserialized check-evaluation record (public API) as a `CheckEvent`."""
    entry = record.event_log_entry
    evaluation = entry.dagster_event.event_specific_data
    target = evaluation.target_materialization_data
    return CheckEvent(
        storage_id=record.storage_id,
        run_id=entry.run_id or None,
        timestamp=entry.timestamp,
        asset_key=evaluation.asset_key.to_user_string(),
        check_name=evaluation.check_name,
        passed=bool(evaluation.passed),
        severity=evaluation.severity.value if evaluation.severity else "ERROR",
        description=evaluation.description,
        partition=evaluation.partition,
        target_timestamp=target.timestamp if target is not None and target.timestamp else None,
        partition_keys=_keys((evaluation.metadata or {}).get(PARTITION_KEYS_METADATA)),
    )


def _keys(value: Any) -> tuple[str, ...]:
    """Partition keys from check metadata (a JSON list, as a MetadataValue or already plain)."""
    value = getattr(value, "value", value)
    if isinstance(value, dict) and value.get("__class__") in ("JsonMetadataEntryData", "JsonMetadataValue"):
        value = value.get("data")
    if not isinstance(value, list):
        return ()
    return tuple(str(k) for k in value[:MAX_PARTITION_KEYS])


def check_event_from_json(storage_id: int, run_id: str | None, raw: str) -> CheckEvent:
    """A serialized ASSET_CHECK_EVALUATION event parsed with json. Raises on any shape it does not
    expect; the caller then deserializes with Dagster's serdes instead."""
    entry = json.loads(raw)
    data = entry["dagster_event"]["event_specific_data"]
    if data.get("__class__") != "AssetCheckEvaluation":
        raise ValueError("not an AssetCheckEvaluation")
    severity = (data.get("severity") or {}).get("__enum__", "AssetCheckSeverity.ERROR").rsplit(".", 1)[-1]
    target = data.get("target_materialization_data") or {}
    return CheckEvent(
        storage_id=storage_id,
        run_id=run_id or None,
        timestamp=float(entry["timestamp"]),
        asset_key=dg.AssetKey(data["asset_key"]["path"]).to_user_string(),
        check_name=data["check_name"],
        passed=bool(data["success"]),
        severity=severity,
        description=data.get("description"),
        partition=data.get("partition"),
        target_timestamp=float(target["timestamp"]) if target.get("timestamp") else None,
        partition_keys=_keys((data.get("metadata") or {}).get(PARTITION_KEYS_METADATA)),
    )


def _check_event_from_row(storage_id: int, run_id: str | None, raw: str, strict: bool) -> CheckEvent:
    try:
        return check_event_from_json(storage_id, run_id, raw)
    except (KeyError, TypeError, ValueError, AttributeError):
        if strict:
            raise
        from dagster._core.event_api import EventLogRecord

        entry = dg.deserialize_value(raw, dg.EventLogEntry)
        return check_event_from_record(EventLogRecord(storage_id=storage_id, event_log_entry=entry))


# ------------------------------------------------------------------------------------------ readers
def _records(instance: dg.DagsterInstance, records_filter: dg.EventRecordsFilter) -> Sequence[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # get_event_records is deprecated for 2.0, still the only filter API
        return instance.get_event_records(records_filter, limit=FETCH_LIMIT, ascending=True)


def public_check_events(instance: dg.DagsterInstance, cursor: Cursor) -> tuple[list[CheckEvent], Cursor]:
    """Check evaluations after `cursor` through Dagster's public (deserializing) API."""
    new = replace(cursor)
    event_type = DagsterEventType.ASSET_CHECK_EVALUATION
    if instance.event_log_storage.is_run_sharded:
        from dagster._core.storage.event_log.sql_event_log import RunShardedEventsCursor

        if cursor.checks_ts is None:
            records = _records(
                instance, dg.EventRecordsFilter(event_type=event_type, after_timestamp=_first_tick_since())
            )
        else:
            since = cursor.checks_ts - SHARDED_MARGIN_S
            after = RunShardedEventsCursor(id=0, run_updated_after=datetime.fromtimestamp(since, UTC))
            records = _records(
                instance, dg.EventRecordsFilter(event_type=event_type, after_cursor=after, after_timestamp=since)
            )
        if records:
            new.checks_ts = max([cursor.checks_ts or 0.0] + [r.event_log_entry.timestamp for r in records])
        return [check_event_from_record(r) for r in records], new
    first = _first_tick_since() if cursor.checks is None else None
    records = _records(
        instance, dg.EventRecordsFilter(event_type=event_type, after_cursor=cursor.checks, after_timestamp=first)
    )
    if records:
        new.checks = records[-1].storage_id
    return [check_event_from_record(r) for r in records], new


def fast_check_events(
    instance: dg.DagsterInstance, cursor: Cursor, strict: bool = False
) -> tuple[list[CheckEvent], Cursor] | None:
    """Check evaluations after `cursor` read straight from the SQL event-log tables (every SQL
    storage: SQLite run-sharded or consolidated, PostgreSQL, MySQL). None if that is not possible.
    `strict` (tests) raises where a row would otherwise fall back to Dagster's serdes."""
    storage = instance.event_log_storage
    try:
        from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES, RunsFilter
        from dagster._core.storage.event_log.schema import SqlEventLogStorageTable as T
        from sqlalchemy import select
    except ImportError:  # pragma: no cover - Dagster moved its internals: use the public API
        return None
    if not hasattr(storage, "index_connection"):
        return None
    new = replace(cursor)
    query = select(T.c.id, T.c.run_id, T.c.timestamp, T.c.event).where(
        T.c.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION.value
    )
    rows: list[Any] = []
    if storage.is_run_sharded:
        if not hasattr(storage, "run_connection"):
            return None
        from dagster._core.storage.event_log.sqlite.sqlite_event_log import RUNLESS_RUN_ID

        since = cursor.checks_ts - SHARDED_MARGIN_S if cursor.checks_ts is not None else _first_tick_since()
        updated = instance.get_run_records(filters=RunsFilter(updated_after=datetime.fromtimestamp(since, UTC)))
        # runs still going may not have been "updated" lately, yet keep writing check results
        going = instance.get_run_records(filters=RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES)))
        run_ids = list(dict.fromkeys(r.dagster_run.run_id for r in [*updated, *going])) + [RUNLESS_RUN_ID]
        since_naive = datetime.fromtimestamp(since, UTC).replace(tzinfo=None)
        known = cursor.shards or {}
        positions: dict[str, int] = {}
        for run_id in run_ids:
            last = known.get(run_id)
            # a shard read before continues after its last id; a new one starts at the time window
            shard_query = query.where(T.c.id > last) if last is not None else query.where(T.c.timestamp > since_naive)
            with storage.run_connection(run_id) as conn:
                got = conn.execute(shard_query.order_by(T.c.id)).fetchall()
            rows += got
            if got:
                positions[run_id] = got[-1][0]
            elif last is not None:
                positions[run_id] = last
        new.shards = positions  # only runs still in the window: the cursor stays small
    else:
        if cursor.checks is not None:
            query = query.where(T.c.id > cursor.checks)
        else:  # first tick: recent history only, not every failure ever recorded
            since = _first_tick_since()
            query = query.where(T.c.timestamp > datetime.fromtimestamp(since, UTC).replace(tzinfo=None))
        with storage.index_connection() as conn:
            rows = conn.execute(query.order_by(T.c.id).limit(FETCH_LIMIT)).fetchall()
    events = [_check_event_from_row(storage_id, run_id, raw, strict) for storage_id, run_id, _ts_col, raw in rows]
    if rows:
        if storage.is_run_sharded:
            new.checks_ts = max([cursor.checks_ts or 0.0] + [e.timestamp for e in events])
        else:
            new.checks = rows[-1][0]
    return events, new


def freshness_events(instance: dg.DagsterInstance, cursor: Cursor) -> tuple[list[FreshnessEvent], Cursor]:
    """Freshness changes live in the index shard on every storage: a global cursor works."""
    new = replace(cursor)
    records = _records(
        instance,
        dg.EventRecordsFilter(event_type=DagsterEventType.FRESHNESS_STATE_CHANGE, after_cursor=cursor.freshness),
    )
    events = []
    for r in records:
        entry = r.event_log_entry
        change = entry.dagster_event.event_specific_data
        previous = change.previous_state
        events.append(
            FreshnessEvent(
                storage_id=r.storage_id,
                timestamp=change.state_change_timestamp or entry.timestamp,
                asset_key=change.key.to_user_string(),
                new_state=getattr(change.new_state, "value", str(change.new_state)),
                previous_state=getattr(previous, "value", None if previous is None else str(previous)),
            )
        )
    if records:
        new.freshness = records[-1].storage_id
    return events, new


def run_failure_event(instance: dg.DagsterInstance, record: Any) -> RunFailureEvent:
    """What a failed run's own event log says about the assets it was to build."""
    entry = record.event_log_entry
    run_id = entry.run_id
    run = instance.get_run_by_id(run_id)
    failed: list[str] = []
    planned: list[str] = []
    done: list[str] = []
    failed_checks: list[str] = []
    of_type = {
        DagsterEventType.ASSET_FAILED_TO_MATERIALIZE,
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.ASSET_CHECK_EVALUATION,
    }
    for e in instance.all_logs(run_id, of_type=of_type):
        event_type = e.dagster_event_type
        if event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = e.dagster_event.event_specific_data
            if not evaluation.passed:
                failed_checks.append(evaluation.asset_key.to_user_string())
            continue
        key = e.dagster_event.asset_key.to_user_string()
        if event_type == DagsterEventType.ASSET_FAILED_TO_MATERIALIZE:
            failed.append(key)
        elif event_type == DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            planned.append(key)
        else:
            done.append(key)
    message = (entry.dagster_event.message or "run failed")[:1000] if entry.dagster_event else "run failed"
    return RunFailureEvent(
        run_id=run_id,
        job_name=run.job_name if run else "unknown_job",
        timestamp=entry.timestamp,
        message=message,
        failed_to_materialize=tuple(failed),
        planned=tuple(planned),
        materialized=tuple(done),
        failed_check_assets=tuple(failed_checks),
        asset_selection=tuple(k.to_user_string() for k in (run.asset_selection or ())) if run else (),
        partition_keys=tuple(partition_keys(run.tags)) if run else (),
    )


def run_failure_events(instance: dg.DagsterInstance, cursor: Cursor) -> tuple[list[RunFailureEvent], Cursor]:
    new = replace(cursor)
    result = instance.fetch_run_status_changes(
        DagsterEventType.RUN_FAILURE, limit=1000, cursor=cursor.runs, ascending=True
    )
    if result.records:
        new.runs = result.cursor
    return [run_failure_event(instance, r) for r in result.records], new


def with_run_partitions(instance: dg.DagsterInstance, checks: Sequence[CheckEvent]) -> list[CheckEvent]:
    """Check events labelled with the partitions of their runs (one run-storage query per tick), for
    results that name none themselves: dbt tests, checks of unpartitioned runs."""
    from dagster._core.storage.dagster_run import RunsFilter

    wanted = list(dict.fromkeys(e.run_id for e in checks if e.run_id and not (e.partition or e.partition_keys)))
    if not wanted:
        return list(checks)
    runs: dict[str, tuple[str, ...]] = {}
    for start in range(0, len(wanted), 500):
        for record in instance.get_run_records(filters=RunsFilter(run_ids=wanted[start : start + 500])):
            runs[record.dagster_run.run_id] = tuple(partition_keys(record.dagster_run.tags))
    return [replace(e, run_partition_keys=runs.get(e.run_id or "", ())) for e in checks]


def read_events(instance: dg.DagsterInstance, cursor: Cursor) -> tuple[EventBatch, Cursor]:
    """Everything new since `cursor`, and the cursor after it; each part advances its own position."""
    fast = fast_check_events(instance, cursor)
    checks, after_checks = fast if fast is not None else public_check_events(instance, cursor)
    checks = with_run_partitions(instance, checks)
    fresh, after_fresh = freshness_events(instance, cursor)
    failures, after_runs = run_failure_events(instance, cursor)
    new = replace(after_checks, freshness=after_fresh.freshness, runs=after_runs.runs)
    return EventBatch(checks=checks, freshness=fresh, run_failures=failures), new
