"""Incident vocabulary shared by the store, triage, notifications and the CLI (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Status(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"
    REOPENED = "reopened"


# Statuses that still count as "open" for grouping: new failures join these.
ACTIVE_STATUSES: frozenset[Status] = frozenset({Status.OPEN, Status.ACKNOWLEDGED, Status.MITIGATED, Status.REOPENED})

# The allowed moves between statuses and what each records: see `lifecycle.py`.


class Severity(StrEnum):
    SEV1 = "SEV1"
    SEV2 = "SEV2"
    SEV3 = "SEV3"
    SEV4 = "SEV4"

    @property
    def rank(self) -> int:
        """1 is the most severe."""
        return int(self.value[3:])


def worst(a: Severity, b: Severity) -> Severity:
    return a if a.rank <= b.rank else b


class FaultClass(StrEnum):
    DATA_QUALITY = "data_quality"
    DUPLICATES = "duplicates"
    MISSING_VALUES = "missing_values"
    SCHEMA_CHANGE = "schema_change"
    VOLUME = "volume"  # rows missing: a day, a table, fewer rows than expected
    FRESHNESS = "freshness"
    CONSUMER_LAG = "consumer_lag"
    PIPELINE_FAILURE = "pipeline_failure"
    # anomaly monitors (reliability.anomaly): a learned metric left its expected band
    COMPLETENESS = "completeness"  # a declared relation between assets (payments per order) broke
    NULL_RATE = "null_rate"
    DISTRIBUTION = "distribution"  # value shares, numeric stats


class Source(StrEnum):
    """Where a detection came from in the Dagster event log."""

    ASSET_CHECK = "asset_check"
    FRESHNESS = "freshness"
    RUN_FAILURE = "run_failure"
    MANUAL = "manual"


class TimelineKind(StrEnum):
    DETECTION = "detection"
    STATUS_CHANGE = "status_change"
    NOTIFICATION = "notification"
    NOTE = "note"
    ACTION = "action"
    TRIAGE = "triage"


def format_incident_id(incident_id: int) -> str:
    return f"INC-{incident_id}"


# The platform's own status check on every asset (reliability.mitigation): it reports an incident, so it
# is never a detection, nor evidence that a repair worked.
OPEN_INCIDENT_CHECK = "open_incident"
STATUS_CHECKS = frozenset({OPEN_INCIDENT_CHECK})
MAX_INCIDENT_ID = 2**63 - 1  # the largest id every store (SQLite, PostgreSQL BIGINT) can hold


def parse_incident_id(text: str) -> int:
    """Accept `INC-12`, `inc-12` or `12`: ASCII digits only, within the store's integer range."""
    raw = text.strip()
    if raw.upper().startswith("INC-"):
        raw = raw[4:]
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(f"not an incident id: {text!r} (expected INC-<n> or <n>)")
    if len(raw) > 19 or not 1 <= int(raw) <= MAX_INCIDENT_ID:
        raise ValueError(f"not an incident id: {text!r} (ids run from 1 to {MAX_INCIDENT_ID})")
    return int(raw)


@dataclass(frozen=True)
class Detection:
    """One failure signal: a failed check, a freshness FAIL, a failed run (or a passing check).

    `detection_key` is unique per signal in the source (e.g. the Dagster event storage id), which makes
    re-processing after a sensor restart a no-op. `passed=True` detections only clear signals.
    """

    detection_key: str
    asset_key: str
    source: Source
    signal: str  # e.g. check name, "freshness", "run:<job>": identifies a recurring signal on the asset
    occurred_at: datetime
    passed: bool = False
    check_severity: str = "ERROR"  # ERROR | WARN (Dagster AssetCheckSeverity)
    fault_class: FaultClass = FaultClass.DATA_QUALITY
    description: str = ""
    partition: str | None = None
    run_id: str | None = None
    impact_started_at: datetime | None = None  # e.g. when the bad data was materialized; None: unknown
    metadata: dict[str, object] = field(default_factory=dict)
    partition_keys: tuple[str, ...] = ()  # every key the signal is about (a run over a range has many)
    blocked_by: tuple[str, ...] = ()  # not built because blocking checks on these assets failed

    @property
    def blocked(self) -> bool:
        """Blocked assets are part of another fault's blast radius, never a fault of their own."""
        return bool(self.blocked_by)

    @property
    def signal_key(self) -> str:
        return f"{self.asset_key}::{self.signal}"

    @property
    def partitions(self) -> tuple[str, ...]:
        """The partition keys this detection is about; () when unknown (then: every partition)."""
        if self.partition_keys:
            return self.partition_keys
        return (self.partition,) if self.partition else ()
