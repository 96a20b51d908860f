"""Event -> `Detection`: the one mapping from Dagster event-log facts to incident signals.

Pure: the event-log reader (`reliability.incidents.eventlog`) turns whatever Dagster stores into the
plain event records below, whichever way it read them (fast SQL or public API), so there is exactly
one place that decides what a check result, a freshness change or a failed run means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from reliability.incidents.model import Detection, FaultClass, Source


@dataclass(frozen=True)
class CheckEvent:
    """One ASSET_CHECK_EVALUATION as plain values."""

    storage_id: int
    run_id: str | None
    timestamp: float
    asset_key: str
    check_name: str
    passed: bool
    severity: str  # "ERROR" | "WARN"
    description: str | None = None
    partition: str | None = None
    target_timestamp: float | None = None  # when the checked materialization happened
    partition_keys: tuple[str, ...] = ()  # named by the check itself (metadata `partition_keys`)
    run_partition_keys: tuple[str, ...] = ()  # the partitions of the run that evaluated the check


@dataclass(frozen=True)
class FreshnessEvent:
    """One FRESHNESS_STATE_CHANGE as plain values (states: PASS, WARN, FAIL, UNKNOWN)."""

    storage_id: int
    timestamp: float
    asset_key: str
    new_state: str
    previous_state: str | None


@dataclass(frozen=True)
class RunFailureEvent:
    """A failed run and what its event log says about the assets it was meant to build."""

    run_id: str
    job_name: str
    timestamp: float
    message: str
    failed_to_materialize: Sequence[str] = ()
    planned: Sequence[str] = ()
    materialized: Sequence[str] = ()
    failed_check_assets: Sequence[str] = ()  # assets with a failed check evaluation in the run
    asset_selection: Sequence[str] = ()
    partition_keys: tuple[str, ...] = ()  # the partitions the run was building


@dataclass(frozen=True)
class EventBatch:
    """Everything one tick read from the event log, in the reader's order."""

    checks: Sequence[CheckEvent] = ()
    freshness: Sequence[FreshnessEvent] = ()
    run_failures: Sequence[RunFailureEvent] = field(default_factory=tuple)


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


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


def check_partitions(event: CheckEvent) -> tuple[str, ...]:
    """What a check result is about: the partition Dagster evaluated it on, else the keys the check
    named (Soda contracts name their window), else the partitions of the run it ran in."""
    if event.partition:
        return (event.partition,)
    return event.partition_keys or event.run_partition_keys


def detection_from_check(event: CheckEvent) -> Detection:
    return Detection(
        # storage ids are per run on run-sharded SQLite: the run id makes the key unique everywhere
        detection_key=f"check:{event.run_id or 'runless'}:{event.storage_id}",
        asset_key=event.asset_key,
        source=Source.ASSET_CHECK,
        signal=event.check_name,
        occurred_at=_ts(event.timestamp),
        passed=event.passed,
        check_severity=event.severity,
        fault_class=classify_check(event.check_name, event.description),
        description=event.description or "",
        partition=event.partition,
        partition_keys=check_partitions(event),
        run_id=event.run_id or None,
        impact_started_at=_ts(event.target_timestamp) if event.target_timestamp else None,
    )


def detection_from_freshness(event: FreshnessEvent) -> Detection | None:
    """FAIL opens, PASS clears; WARN and UNKNOWN are not signals."""
    if event.new_state not in ("FAIL", "PASS"):
        return None
    return Detection(
        detection_key=f"freshness:{event.storage_id}",
        asset_key=event.asset_key,
        source=Source.FRESHNESS,
        signal="freshness_policy",
        occurred_at=_ts(event.timestamp),
        passed=event.new_state == "PASS",
        check_severity="ERROR",
        fault_class=FaultClass.FRESHNESS,
        description=f"freshness {event.previous_state} -> {event.new_state}",
    )


def detections_from_run_failure(event: RunFailureEvent) -> list[Detection]:
    """A failed run: one detection per asset that failed to materialize (or was planned and not
    materialized) and per asset with a failed check in the run; else the run's asset selection;
    else the job itself."""
    assets = list(event.failed_to_materialize)
    if not assets:  # storages that do not record failures: planned but never materialized
        done = set(event.materialized)
        assets = [k for k in event.planned if k not in done]
    # a blocking check that failed is what failed the run: its asset is affected too
    assets += [k for k in event.failed_check_assets if k not in assets]
    if not assets:
        assets = list(event.asset_selection)
    if not assets:
        assets = [f"job:{event.job_name}"]
    return [
        Detection(
            detection_key=f"run:{event.run_id}:{asset}",
            asset_key=asset,
            source=Source.RUN_FAILURE,
            signal=f"run_failure:{event.job_name}",
            occurred_at=_ts(event.timestamp),
            fault_class=FaultClass.PIPELINE_FAILURE,
            description=event.message,
            run_id=event.run_id,
            partition_keys=tuple(event.partition_keys),
        )
        for asset in dict.fromkeys(assets)
    ]


def detections_from_events(batch: EventBatch) -> list[Detection]:
    """Every detection of a batch, in event order."""
    out = [detection_from_check(e) for e in batch.checks]
    out += [d for d in map(detection_from_freshness, batch.freshness) if d is not None]
    for failure in batch.run_failures:
        out += detections_from_run_failure(failure)
    out.sort(key=lambda d: d.occurred_at)
    return out
