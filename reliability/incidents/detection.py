"""Detection: Dagster event log -> `Detection`s -> incidents, observations, run tags, notifications.

`run_tick` is everything one sensor evaluation does, callable without a sensor context (tests, the
benchmark). The cursor holds one event-log position per event type, so a restart resumes where the
last committed tick stopped; replayed events are no-ops in the store (unique detection keys).
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from dagster._core.events import DagsterEventType

from reliability.incidents.model import Detection, FaultClass, Source, format_incident_id
from reliability.incidents.notify import deliver_due
from reliability.incidents.store import IncidentStore, IngestResult
from reliability.incidents.triage import (
    EXPOSURE_KINDS,
    AssetChangeFacts,
    LineageGraph,
    blast_radius,
    root_cause_hint,
)

log = logging.getLogger(__name__)

RUN_TAG = "reliability/incident"
OBSERVATION_ASSET_LIMIT = 20  # per incident change: root and failing first, exposures, then nearest
FETCH_LIMIT = 20_000  # events per type per tick; the rest waits for the next tick
INGEST_CHUNK = 5_000
# checks this platform reports about incidents themselves (reliability.mitigation): never a detection
IGNORED_CHECKS = frozenset({"open_incident"})
QUARANTINE_REFUSED_TAG = "reliability/quarantine_refused"


# ------------------------------------------------------------------------------------------ pure mapping
def classify_check(check_name: str, description: str | None = None) -> FaultClass:
    """Fault class from a check's name (dbt tests, Soda checks, freshness, the Kafka lag check)."""
    name = check_name.lower()
    if "lag" in name.split("_") or "consumer_lag" in name:
        return FaultClass.CONSUMER_LAG
    if "fresh" in name:
        return FaultClass.FRESHNESS
    if "duplicate" in name or name.startswith("unique") or "_unique" in name:
        return FaultClass.DUPLICATES
    if "not_null" in name or "missing" in name:
        return FaultClass.MISSING_VALUES
    if "schema" in name:
        return FaultClass.SCHEMA_CHANGE
    return FaultClass.DATA_QUALITY


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def detection_from_check_record(record: Any) -> Detection:
    entry = record.event_log_entry
    evaluation = entry.dagster_event.event_specific_data
    key = evaluation.asset_key.to_user_string()
    target = evaluation.target_materialization_data
    return Detection(
        # storage ids are per run on run-sharded SQLite: the run id makes the key unique everywhere
        detection_key=f"check:{entry.run_id or 'runless'}:{record.storage_id}",
        asset_key=key,
        source=Source.ASSET_CHECK,
        signal=evaluation.check_name,
        occurred_at=_ts(entry.timestamp),
        passed=bool(evaluation.passed),
        check_severity=evaluation.severity.value if evaluation.severity else "ERROR",
        fault_class=classify_check(evaluation.check_name, evaluation.description),
        description=evaluation.description or "",
        partition=evaluation.partition,
        run_id=entry.run_id or None,
        impact_started_at=_ts(target.timestamp) if target is not None and target.timestamp else None,
    )


def detection_from_freshness_record(record: Any) -> Detection | None:
    entry = record.event_log_entry
    change = entry.dagster_event.event_specific_data
    new_state = getattr(change.new_state, "value", str(change.new_state))
    if new_state not in ("FAIL", "PASS"):
        return None
    return Detection(
        detection_key=f"freshness:{record.storage_id}",
        asset_key=change.key.to_user_string(),
        source=Source.FRESHNESS,
        signal="freshness_policy",
        occurred_at=_ts(change.state_change_timestamp or entry.timestamp),
        passed=new_state == "PASS",
        check_severity="ERROR",
        fault_class=FaultClass.FRESHNESS,
        description=f"freshness {getattr(change.previous_state, 'value', change.previous_state)} -> {new_state}",
    )


def detections_from_run_failure(instance: dg.DagsterInstance, record: Any) -> list[Detection]:
    """A failed run: one detection per asset that failed to materialize (or was planned and not
    materialized) and per asset with a failed check in the run; else the run's asset selection;
    else the job itself."""
    entry = record.event_log_entry
    run_id = entry.run_id
    run = instance.get_run_by_id(run_id)
    if run is not None and run.tags.get(QUARANTINE_REFUSED_TAG):
        return []  # refused by an incident's quarantine (reliability.mitigation): already that incident
    job = run.job_name if run else "unknown_job"
    assets: list[str] = []
    planned: list[str] = []
    done: set[str] = set()
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
            assets.append(key)
        elif event_type == DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            planned.append(key)
        else:
            done.add(key)
    if not assets:  # storages that do not record failures: planned but never materialized
        assets = [k for k in planned if k not in done]
    # a blocking check that failed is what failed the run: its asset is affected too
    assets += [k for k in failed_checks if k not in assets]
    if not assets and run is not None and run.asset_selection:
        assets = [k.to_user_string() for k in run.asset_selection]
    if not assets:
        assets = [f"job:{job}"]
    message = (entry.dagster_event.message or "run failed")[:1000] if entry.dagster_event else "run failed"
    return [
        Detection(
            detection_key=f"run:{run_id}:{asset}",
            asset_key=asset,
            source=Source.RUN_FAILURE,
            signal=f"run_failure:{job}",
            occurred_at=_ts(entry.timestamp),
            fault_class=FaultClass.PIPELINE_FAILURE,
            description=message,
            run_id=run_id,
        )
        for asset in dict.fromkeys(assets)
    ]


# ------------------------------------------------------------------------------------------ cursor
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


def _records(instance: dg.DagsterInstance, records_filter: dg.EventRecordsFilter) -> Sequence[Any]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # get_event_records is deprecated for 2.0, still the only filter API
        return instance.get_event_records(records_filter, limit=FETCH_LIMIT, ascending=True)


def _check_records(instance: dg.DagsterInstance, cursor: Cursor, new: Cursor) -> Sequence[Any]:
    """Check evaluations through Dagster's public (deserializing) API."""
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
        return records
    first = _first_tick_since() if cursor.checks is None else None
    records = _records(
        instance, dg.EventRecordsFilter(event_type=event_type, after_cursor=cursor.checks, after_timestamp=first)
    )
    if records:
        new.checks = records[-1].storage_id
    return records


def detection_from_raw_check(storage_id: int, run_id: str | None, raw: str) -> Detection:
    """Parse a serialized ASSET_CHECK_EVALUATION event with json (10x faster than Dagster's serdes,
    which dominated a 10k-event tick). Raises on any shape it does not expect; callers fall back."""
    entry = json.loads(raw)
    data = entry["dagster_event"]["event_specific_data"]
    if data.get("__class__") != "AssetCheckEvaluation":
        raise ValueError("not an AssetCheckEvaluation")
    asset_key = dg.AssetKey(data["asset_key"]["path"]).to_user_string()
    severity = (data.get("severity") or {}).get("__enum__", "AssetCheckSeverity.ERROR").rsplit(".", 1)[-1]
    target = data.get("target_materialization_data") or {}
    check_name = data["check_name"]
    return Detection(
        detection_key=f"check:{run_id or 'runless'}:{storage_id}",
        asset_key=asset_key,
        source=Source.ASSET_CHECK,
        signal=check_name,
        occurred_at=_ts(float(entry["timestamp"])),
        passed=bool(data["success"]),
        check_severity=severity,
        fault_class=classify_check(check_name, data.get("description")),
        description=data.get("description") or "",
        partition=data.get("partition"),
        run_id=run_id or None,
        impact_started_at=_ts(float(target["timestamp"])) if target.get("timestamp") else None,
    )


def _fast_check_detections(instance: dg.DagsterInstance, cursor: Cursor, new: Cursor) -> list[Detection] | None:
    """Check evaluations read straight from the SQL event log tables (every SQL storage: SQLite
    run-sharded or consolidated, PostgreSQL, MySQL). None if the storage is not one of those."""
    storage = instance.event_log_storage
    try:
        from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES, RunsFilter
        from dagster._core.storage.event_log.schema import SqlEventLogStorageTable as T
        from sqlalchemy import select
    except ImportError:  # pragma: no cover - Dagster moved its internals: use the public API
        return None
    if not hasattr(storage, "index_connection"):
        return None
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
    out: list[Detection] = []
    latest_ts = cursor.checks_ts or 0.0
    for storage_id, run_id, _ts_col, raw in rows:
        try:
            d = detection_from_raw_check(storage_id, run_id, raw)
        except (KeyError, TypeError, ValueError, AttributeError):
            from dagster import deserialize_value
            from dagster._core.event_api import EventLogRecord

            entry = deserialize_value(raw, dg.EventLogEntry)
            d = detection_from_check_record(EventLogRecord(storage_id=storage_id, event_log_entry=entry))
        out.append(d)
        latest_ts = max(latest_ts, d.occurred_at.timestamp())
    if rows:
        if storage.is_run_sharded:
            new.checks_ts = latest_ts
        else:
            new.checks = rows[-1][0]
    return out


def read_detections(instance: dg.DagsterInstance, cursor: Cursor) -> tuple[list[Detection], Cursor]:
    """New detections since `cursor`, in event order, and the cursor after them."""
    out: list[Detection] = []
    new = Cursor(cursor.checks, cursor.checks_ts, cursor.freshness, cursor.runs, cursor.shards)
    fast = _fast_check_detections(instance, cursor, new)
    if fast is None:
        fast = [detection_from_check_record(r) for r in _check_records(instance, cursor, new)]
    out += fast
    # freshness changes live in the index shard on every storage: a global cursor works
    fresh = _records(
        instance,
        dg.EventRecordsFilter(event_type=DagsterEventType.FRESHNESS_STATE_CHANGE, after_cursor=cursor.freshness),
    )
    out += [d for d in (detection_from_freshness_record(r) for r in fresh) if d is not None]
    if fresh:
        new.freshness = fresh[-1].storage_id
    result = instance.fetch_run_status_changes(
        DagsterEventType.RUN_FAILURE, limit=1000, cursor=cursor.runs, ascending=True
    )
    for r in result.records:
        out += detections_from_run_failure(instance, r)
    if result.records:
        new.runs = result.cursor
    out = [d for d in out if d.signal not in IGNORED_CHECKS]
    out.sort(key=lambda d: d.occurred_at)
    return out, new


# ------------------------------------------------------------------------------------------ side effects
def asset_change_facts(instance: dg.DagsterInstance, asset_key: str) -> AssetChangeFacts | None:
    """What changed recently on an asset: code version, column schema, last run status."""
    if asset_key.startswith("job:"):
        return None
    key = dg.AssetKey.from_user_string(asset_key)
    records = instance.fetch_materializations(key, limit=2, ascending=False).records
    if not records:
        return AssetChangeFacts(asset_key)

    def facts(rec: Any) -> tuple[str | None, dict[str, str] | None]:
        mat = rec.asset_materialization
        tags = (mat.tags or {}) if mat else {}
        schema = (mat.metadata or {}).get("dagster/column_schema") if mat else None
        schema = getattr(schema, "value", schema)
        cols = {c.name: c.type for c in schema.columns} if schema is not None and hasattr(schema, "columns") else None
        return tags.get("dagster/code_version"), cols

    code, cols = facts(records[0])
    prev_code, prev_cols = facts(records[1]) if len(records) > 1 else (None, None)
    run = instance.get_run_by_id(records[0].run_id) if records[0].run_id else None
    return AssetChangeFacts(
        asset_key=asset_key,
        last_materialized_at=_ts(records[0].timestamp),
        code_version=code,
        previous_code_version=prev_code,
        columns=cols,
        previous_columns=prev_cols,
        last_run_status=run.status.value if run else None,
        last_run_id=records[0].run_id or None,
    )


def update_root_causes(instance: dg.DagsterInstance, store: IncidentStore, graph: LineageGraph,
                       incident_ids: Iterable[int], budget_s: float = 0.5) -> int:  # fmt: skip
    """Fill the root-cause hint (most upstream failing asset + what changed on it) of touched and
    not-yet-explained incidents, within `budget_s`; the rest is picked up next tick."""
    started = time.perf_counter()
    done = 0
    for inc_id in dict.fromkeys([*incident_ids, *store.unexplained()]):
        if time.perf_counter() - started > budget_s:
            break
        done += 1
        inc = store.get(inc_id)
        failing = [a.asset_key for a in sorted(inc.assets, key=lambda a: a.depth) if a.role in ("root", "failing")]
        if inc.root_cause.get("changes") is not None and inc.root_cause.get("asset_key") == failing[0]:
            continue  # already explained for this root
        upstream = root_cause_hint(graph, failing)
        facts = asset_change_facts(instance, upstream.asset_key) if upstream.asset_key else None
        hint = root_cause_hint(graph, failing, {upstream.asset_key: facts} if facts else None)
        store.record_root_cause(inc_id, hint.to_dict())
    return done


def observation_signature(inc: Any) -> str:
    """What the observations state; unchanged -> no new observations (joins alone bump versions)."""
    failing = sorted(a.asset_key for a in inc.assets if a.role in ("root", "failing"))
    return json.dumps([inc.status, inc.severity, inc.root_asset, failing, inc.root_cause.get("text")])


def observed_assets(inc: Any) -> list[Any]:
    """Root and failing assets, exposures, then the nearest impacted assets; OBSERVATION_ASSET_LIMIT."""
    order = {"root": 0, "failing": 1}

    def rank(a: Any) -> tuple[int, int, str]:
        return (order.get(a.role, 2 if a.kind in EXPOSURE_KINDS or a.kind == "exposure" else 3), a.depth, a.asset_key)

    return [a for a in sorted(inc.assets, key=rank) if not a.asset_key.startswith("job:")][:OBSERVATION_ASSET_LIMIT]


def publish_observations(instance: dg.DagsterInstance, store: IncidentStore, budget_s: float = 0.5) -> int:
    """AssetObservations on the affected assets of every incident whose status, severity, root,
    failing assets or root-cause hint changed (shown on the asset pages in the Dagster UI).

    Bounded by `budget_s` per tick (checked between incidents): incidents not reached stay
    unpublished and go out next tick, so a burst of incidents never delays detection.
    """
    started = time.perf_counter()
    count = 0
    marks: dict[int, tuple[int, str]] = {}
    for inc, last_signature in store.unpublished():
        signature = observation_signature(inc)
        if signature == last_signature:
            marks[inc.id] = (inc.version, signature)
            continue
        if time.perf_counter() - started > budget_s:
            break
        summary = _summary_markdown(inc)
        for a in observed_assets(inc):
            instance.report_runless_asset_event(
                dg.AssetObservation(
                    asset_key=dg.AssetKey.from_user_string(a.asset_key),
                    description=f"{inc.display_id} [{inc.severity}, {inc.status}]: {inc.title}"[:500],
                    metadata={
                        "incident_id": inc.display_id,
                        "incident_severity": inc.severity,
                        "incident_status": inc.status,
                        "incident_role": a.role,
                        "incident_root_asset": inc.root_asset,
                        "incident_summary": dg.MetadataValue.md(summary),
                    },
                    tags={RUN_TAG: inc.display_id},
                )
            )
            count += 1
        marks[inc.id] = (inc.version, signature)
    store.mark_published(marks)
    return count


def _summary_markdown(inc: Any) -> str:
    from reliability.incidents.triage import md_escape

    br = inc.blast_radius
    lines = [
        f"### {inc.display_id} · {inc.severity} · {inc.status}",
        f"**{md_escape(inc.title)}**",
        "",
        f"- Root asset: `{md_escape(inc.root_asset)}`",
        f"- Detected: {inc.detected_at.isoformat()}",
        f"- Blast radius: {br.get('downstream_count', 0)} downstream asset(s), top tier {br.get('top_tier') or '-'}",
    ]
    if br.get("exposures"):
        lines.append("- Exposures reached: " + ", ".join(f"`{md_escape(e)}`" for e in br["exposures"]))
    if inc.owners:
        lines.append("- Owners: " + ", ".join(md_escape(o) for o in inc.owners))
    if inc.root_cause.get("text"):
        lines.append(f"- Root-cause hint: {md_escape(str(inc.root_cause['text']))}")
    lines.append(f"\n`reliability incidents show {inc.display_id}`")
    return "\n".join(lines)


def tag_runs(instance: dg.DagsterInstance, runs: dict[str, set[int]]) -> None:
    """Link runs to incidents: tag `reliability/incident` = `INC-3` (comma-joined if several)."""
    for run_id, ids in runs.items():
        run = instance.get_run_by_id(run_id)
        if run is None:
            continue
        existing = [x for x in run.tags.get(RUN_TAG, "").split(",") if x]
        merged = list(dict.fromkeys(existing + [format_incident_id(i) for i in sorted(ids)]))
        if merged != existing:
            instance.add_run_tags(run_id, {RUN_TAG: ",".join(merged)})


# ------------------------------------------------------------------------------------------ the tick
@dataclass
class TickOutcome:
    cursor: Cursor
    detections: int = 0
    opened: list[int] = field(default_factory=list)
    joined: int = 0
    reopened: int = 0
    mitigated: int = 0
    duplicates: int = 0
    observations: int = 0
    delivery: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.detections - self.duplicates} new detection(s) ({self.duplicates} already seen): "
            f"opened {len(self.opened)} incident(s) {[format_incident_id(i) for i in self.opened][:10]}, "
            f"joined {self.joined}, reopened {self.reopened}, mitigated {self.mitigated}; "
            f"{self.observations} observation(s); notifications {self.delivery}; {self.seconds:.2f}s"
        )


def run_tick(
    instance: dg.DagsterInstance,
    store: IncidentStore,
    graph: LineageGraph,
    cursor: Cursor,
    *,
    deliver: bool = True,
    tick_budget_s: float = 1.0,
    delivery_budget_s: float = 5.0,
    delivery_timeout_s: float = 3.0,
) -> TickOutcome:
    """One sensor evaluation. Detection (read + ingest) always completes; the follow-ups (root-cause
    hints, observations) share what is left of `tick_budget_s` and resume next tick; delivery has
    its own budget. A failing follow-up is logged and retried next tick, never blocks detection."""
    started = time.perf_counter()
    # a code server holds a large heap: full GC passes triggered by the batch's many small objects
    # cost more than the batch itself, so collect once afterwards instead
    gc_enabled = gc.isenabled()
    gc.disable()
    try:
        detections, new_cursor = read_detections(instance, cursor)
        outcome = TickOutcome(cursor=new_cursor, detections=len(detections))
        touched: set[int] = set()
        runs: dict[str, set[int]] = {}
        for i in range(0, len(detections), INGEST_CHUNK):
            res: IngestResult = store.ingest(detections[i : i + INGEST_CHUNK], graph)
            outcome.opened += res.opened
            outcome.joined += len(res.joined)
            outcome.reopened += len(res.reopened)
            outcome.mitigated += len(res.mitigated)
            outcome.duplicates += res.duplicates
            touched |= res.incident_ids
            for run_id, ids in res.runs.items():
                runs.setdefault(run_id, set()).update(ids)
    finally:
        if gc_enabled:
            gc.enable()

    def left() -> float:
        return max(0.05, tick_budget_s - (time.perf_counter() - started))

    try:
        tag_runs(instance, runs)
    except Exception:  # noqa: BLE001
        log.exception("incident sensor: run tags failed (the incidents themselves are recorded)")
    try:
        update_root_causes(instance, store, graph, sorted(touched), budget_s=left() / 2)
    except Exception:  # noqa: BLE001
        log.exception("incident sensor: root-cause hints failed; will retry on the next tick")
    try:
        outcome.observations = publish_observations(instance, store, budget_s=left())
    except Exception:  # noqa: BLE001
        log.exception("incident sensor: observations failed; will retry on the next tick")
    if deliver:
        try:
            store.refresh_alertmanager()
            outcome.delivery = deliver_due(store, budget_s=delivery_budget_s, timeout=delivery_timeout_s).to_dict()
        except Exception:  # noqa: BLE001
            log.exception("incident sensor: delivery failed; the outbox keeps every message")
    outcome.seconds = time.perf_counter() - started
    return outcome


def radius_for(graph: LineageGraph, asset_key: str) -> dict[str, object]:
    return blast_radius(graph, [asset_key]).to_dict()
