"""Event -> `Detection`: the one mapping from Dagster event-log facts to incident signals.

Pure: the event-log reader (`reliability.incidents.eventlog`) turns whatever Dagster stores into the
plain event records below, whichever way it read them (fast SQL or public API), so there is exactly
one place that decides what a check result, a freshness change or a failed run means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from reliability.incidents.model import STATUS_CHECKS, Detection, FaultClass, Source

if TYPE_CHECKING:
    from reliability.incidents.triage import LineageGraph

# checks this platform reports about incidents themselves (reliability.mitigation): never a detection
IGNORED_CHECKS = STATUS_CHECKS
# the run tag the quarantine guard (reliability.mitigation.guard) puts on a run it refused
QUARANTINE_REFUSED_TAG = "reliability/quarantine_refused"


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
    blocking: bool = False
    metadata: Mapping[str, object] = field(default_factory=dict)  # only MAPPED_METADATA, as plain values
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
    blocking_failed_check_assets: Sequence[str] = ()  # assets whose failed ERROR check was blocking
    partition_keys: tuple[str, ...] = ()  # the partitions the run was building
    quarantine_refused: str | None = None  # INC-n when an incident's quarantine refused the run


@dataclass(frozen=True)
class RunSuccessEvent:
    """Assets a successful run built: their run-failure signals clear."""

    run_id: str
    timestamp: float
    materialized: Sequence[str] = ()


@dataclass(frozen=True)
class EventBatch:
    """Everything one tick read from the event log, in the reader's order."""

    checks: Sequence[CheckEvent] = ()
    freshness: Sequence[FreshnessEvent] = ()
    run_failures: Sequence[RunFailureEvent] = ()
    run_successes: Sequence[RunSuccessEvent] = ()


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


# Metadata the check producers write (reliability.contracts, reliability.dbt, reliability.kafka) and the
# mapper reads; the event-log readers keep only these keys.
CHECK_TYPE = "check_type"  # Soda check type, or the platform's own check type (consumer_lag, ...)
DBT_TEST = "dbt_test"  # a dbt test's test_metadata.name ("unique", "dbt_utils.expression_is_true", ...)
NOT_EVALUATED_DUE_TO = "not_evaluated_due_to"  # name of the failed check that made this one impossible
SCHEMA_CHANGES = "schema_changes"  # [{"column", "old_type", "new_type"}]; new_type None: column gone
ROWS_FAILED = "rows_failed"
ROWS_TESTED = "rows_tested"
MAPPED_METADATA = (CHECK_TYPE, DBT_TEST, NOT_EVALUATED_DUE_TO, SCHEMA_CHANGES, ROWS_FAILED, ROWS_TESTED)
RUN_FAILURE_SIGNAL = "run_failure"

FAULT_CLASS_BY_CHECK_TYPE: Mapping[str, FaultClass] = {
    # Soda contract check types
    "duplicate": FaultClass.DUPLICATES,
    "missing": FaultClass.MISSING_VALUES,
    "schema": FaultClass.SCHEMA_CHANGE,
    "freshness": FaultClass.FRESHNESS,
    "row_count": FaultClass.VOLUME,
    "invalid": FaultClass.DATA_QUALITY,
    "aggregate": FaultClass.DATA_QUALITY,
    "metric": FaultClass.DATA_QUALITY,
    "failed_rows": FaultClass.DATA_QUALITY,
    # platform checks
    "consumer_lag": FaultClass.CONSUMER_LAG,
    "dead_letters": FaultClass.DATA_QUALITY,
    "contract_valid": FaultClass.DATA_QUALITY,
    # anomaly monitors (reliability.anomaly): check_type `anomaly_<fault class>`
    "anomaly_volume": FaultClass.VOLUME,
    "anomaly_completeness": FaultClass.COMPLETENESS,
    "anomaly_null_rate": FaultClass.NULL_RATE,
    "anomaly_distribution": FaultClass.DISTRIBUTION,
    "anomaly_freshness": FaultClass.FRESHNESS,
}
FAULT_CLASS_BY_DBT_TEST: Mapping[str, FaultClass] = {
    "unique": FaultClass.DUPLICATES,
    "not_null": FaultClass.MISSING_VALUES,
    "accepted_values": FaultClass.DATA_QUALITY,
    "relationships": FaultClass.DATA_QUALITY,
    "dbt_utils.unique_combination_of_columns": FaultClass.DUPLICATES,
    "dbt_utils.not_null_proportion": FaultClass.MISSING_VALUES,
    "dbt_utils.recency": FaultClass.FRESHNESS,
    "dbt_utils.equal_rowcount": FaultClass.VOLUME,
    "dbt_utils.fewer_rows_than": FaultClass.VOLUME,
}


def fault_class_of(metadata: Mapping[str, object]) -> FaultClass:
    """The fault class a check declares through its own metadata (never guessed from its name);
    a check that declares nothing known is a data-quality check."""
    dbt_test = metadata.get(DBT_TEST)
    if isinstance(dbt_test, str):
        return FAULT_CLASS_BY_DBT_TEST.get(dbt_test, FaultClass.DATA_QUALITY)
    check_type = metadata.get(CHECK_TYPE)
    if isinstance(check_type, str):
        return FAULT_CLASS_BY_CHECK_TYPE.get(check_type, FaultClass.DATA_QUALITY)
    return FaultClass.DATA_QUALITY


def check_partitions(event: CheckEvent) -> tuple[str, ...]:
    """What a check result is about: the partition Dagster evaluated it on, else the keys the check
    named (Soda contracts name their window), else the partitions of the run it ran in."""
    if event.partition:
        return (event.partition,)
    return event.partition_keys or event.run_partition_keys


def detection_from_check(event: CheckEvent) -> Detection:
    """One check evaluation; a check that could not be evaluated because another one failed (a
    column it reads changed type or disappeared) is reported under that check's signal."""
    cause = event.metadata.get(NOT_EVALUATED_DUE_TO)
    caused = isinstance(cause, str) and not event.passed
    metadata = {k: v for k, v in event.metadata.items() if k in (SCHEMA_CHANGES, ROWS_FAILED, ROWS_TESTED)}
    if caused:
        metadata[NOT_EVALUATED_DUE_TO] = cause
        metadata["not_evaluated"] = [event.check_name]
    return Detection(
        # storage ids are per run on run-sharded SQLite: the run id makes the key unique everywhere
        detection_key=f"check:{event.run_id or 'runless'}:{event.storage_id}",
        asset_key=event.asset_key,
        source=Source.ASSET_CHECK,
        signal=str(cause) if caused else event.check_name,
        occurred_at=_ts(event.timestamp),
        passed=event.passed,
        check_severity=event.severity,
        fault_class=FaultClass.SCHEMA_CHANGE if caused else fault_class_of(event.metadata),
        description=event.description or "",
        partition=event.partition,
        partition_keys=check_partitions(event),
        run_id=event.run_id or None,
        impact_started_at=_ts(event.target_timestamp) if event.target_timestamp else None,
        metadata=metadata,
    )


def check_detections(events: Sequence[CheckEvent]) -> list[Detection]:
    """Check detections, with every check that was not evaluated because another check of the same
    run failed folded into that check's detection (`not_evaluated`): one fault, one signal."""
    detections = [detection_from_check(e) for e in events if e.check_name not in IGNORED_CHECKS]
    causes = {
        (d.run_id, d.asset_key, d.signal): d
        for d in detections
        if not d.passed and NOT_EVALUATED_DUE_TO not in d.metadata
    }
    out: list[Detection] = []
    for d in detections:
        cause = causes.get((d.run_id, d.asset_key, d.signal)) if NOT_EVALUATED_DUE_TO in d.metadata else None
        if cause is not None:
            cause.metadata.setdefault("not_evaluated", []).extend(d.metadata["not_evaluated"])  # type: ignore[union-attr]
            continue
        out.append(d)
    return out


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


def detections_from_run_failure(event: RunFailureEvent, graph: LineageGraph | None = None) -> list[Detection]:
    """A failed run: one detection per asset that failed to materialize (or was planned and not
    materialized) and per asset with a failed check in the run; else the run's asset selection;
    else the job itself.

    A blocking check that failed explains the run failure: its own detection is the fault, so its asset
    gets no run-failure detection, and every asset downstream of it (per `graph`) that was not built
    is `blocked`: a detection that never opens an incident and never fails a signal. A run an incident's
    quarantine refused is that incident working, no detection (it would reopen the mitigated incident).
    """
    if event.quarantine_refused:
        return []
    failed = list(event.failed_to_materialize)
    if not failed:  # storages that do not record failures: planned but never materialized
        done = set(event.materialized)
        failed = [k for k in event.planned if k not in done]
    blockers = set(event.blocking_failed_check_assets)
    blocked: dict[str, list[str]] = {}
    if blockers:
        for asset in failed:
            upstream = graph.ancestors(asset) & blockers if graph is not None and asset in graph else set()
            if upstream:
                blocked[asset] = sorted(upstream)
    assets = [k for k in failed if k not in blocked and k not in blockers]
    # a failed check that did not block still failed in this run: its asset is affected too
    assets += [k for k in event.failed_check_assets if k not in assets and k not in blockers]
    if not assets and not blocked and not blockers:
        assets = list(event.asset_selection) or [f"job:{event.job_name}"]

    def failure(asset: str, description: str, blocked_by: tuple[str, ...] = ()) -> Detection:
        return Detection(
            detection_key=f"run:{event.run_id}:{asset}",
            asset_key=asset,
            source=Source.RUN_FAILURE,
            signal=RUN_FAILURE_SIGNAL,
            occurred_at=_ts(event.timestamp),
            fault_class=FaultClass.PIPELINE_FAILURE,
            description=description,
            run_id=event.run_id,
            blocked_by=blocked_by,
            metadata={"job": event.job_name},
            partition_keys=tuple(event.partition_keys),
        )

    out = [failure(asset, event.message) for asset in dict.fromkeys(assets)]
    out += [
        failure(asset, f"not built: blocked by a failed blocking check on {', '.join(by)}", tuple(by))
        for asset, by in blocked.items()
    ]
    return out


def detections_from_run_success(event: RunSuccessEvent) -> list[Detection]:
    """Assets built by a run: their run-failure signal passes again."""
    return [
        Detection(
            detection_key=f"built:{event.run_id}:{asset}",
            asset_key=asset,
            source=Source.RUN_FAILURE,
            signal=RUN_FAILURE_SIGNAL,
            occurred_at=_ts(event.timestamp),
            passed=True,
            fault_class=FaultClass.PIPELINE_FAILURE,
            description="built successfully",
            run_id=event.run_id,
        )
        for asset in dict.fromkeys(event.materialized)
    ]


def detections_from_events(batch: EventBatch, graph: LineageGraph | None = None) -> list[Detection]:
    """Every detection of a batch, in event order; `graph` tells blocked assets from failed ones."""
    out = check_detections(batch.checks)
    out += [d for d in map(detection_from_freshness, batch.freshness) if d is not None]
    for failure in batch.run_failures:
        out += detections_from_run_failure(failure, graph)
    for success in batch.run_successes:
        out += detections_from_run_success(success)
    out.sort(key=lambda d: d.occurred_at)
    return out
