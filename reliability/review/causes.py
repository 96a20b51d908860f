"""The causal chain of an incident, from evidence to hypothesis (pure: no I/O, no Dagster).

Each known pattern maps facts the platform already holds (warehouse queries, Kafka offsets, the DLQ,
lag verdicts) to a hypothesis. A hypothesis is never a finding: every "why" says so and carries the
query or record that supports it. Anything the patterns do not explain is "unknown", with the evidence.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

UNKNOWN = "unknown"
PRODUCER_RETRIES = "producer retried without idempotence"
SCHEMA_CHANGE = "upstream schema or contract change"
STUCK_CONSUMER = "consumer stuck on a message"
MISSING_LOAD = "upstream load missing or partial"
VOLUME_DROP_RATIO = 0.5  # a partition with fewer rows than this share of the median is a drop


@dataclass(frozen=True)
class Evidence:
    """What was looked at (`query`: SQL, a topic read, a store record), what it returned, and a sample."""

    source: str
    query: str
    result: str
    sample: tuple[str, ...] = ()


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None  # the broker's (or producer's create) timestamp
    key: bytes | None
    value: bytes

    @property
    def at(self) -> datetime | None:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC) if self.timestamp_ms else None


@dataclass(frozen=True)
class DuplicateRun:
    """Identical (key, payload) messages at consecutive offsets of one partition."""

    topic: str
    partition: int
    offsets: tuple[int, ...]
    key: str
    payload_sha256: str
    first_at: datetime | None

    def describe(self) -> str:
        offsets = ", ".join(str(o) for o in self.offsets)
        return f"{self.topic}[{self.partition}] offsets {offsets}: key {self.key}, sha256 {self.payload_sha256[:12]}"


@dataclass(frozen=True)
class DuplicateScan:
    runs: tuple[DuplicateRun, ...]  # adjacent identical copies
    scattered: int  # copies of an identical (key, payload) that are NOT adjacent to it in offset order

    @property
    def adjacent_copies(self) -> int:
        return sum(len(r.offsets) - 1 for r in self.runs)


def scan_duplicates(records: Iterable[KafkaRecord]) -> DuplicateScan:
    """Runs of identical (key, payload) at consecutive offsets, per partition, in offset order.

    A producer retrying a batch whose acknowledgement was lost (no idempotence) writes it again right
    after the first copy: the copies are adjacent. Copies far apart point elsewhere (a replay, a resend)."""
    by_partition: dict[tuple[str, int], list[KafkaRecord]] = {}
    for r in records:
        by_partition.setdefault((r.topic, r.partition), []).append(r)
    runs: list[DuplicateRun] = []
    scattered = 0
    for (topic, partition), recs in sorted(by_partition.items()):
        recs.sort(key=lambda r: r.offset)
        seen: set[tuple[bytes | None, bytes]] = set()
        i = 0
        while i < len(recs):
            j = i
            while (
                j + 1 < len(recs)
                and recs[j + 1].offset == recs[j].offset + 1
                and (recs[j + 1].key, recs[j + 1].value) == (recs[i].key, recs[i].value)
            ):
                j += 1
            ident = (recs[i].key, recs[i].value)
            if ident in seen:
                scattered += j - i + 1
            elif j > i:
                key = (recs[i].key or b"").decode("utf-8", "replace")
                sha = hashlib.sha256(recs[i].value).hexdigest()
                runs.append(DuplicateRun(topic, partition, tuple(r.offset for r in recs[i : j + 1]), key, sha,
                                         recs[i].at))  # fmt: skip
            seen.add(ident)
            i = j + 1
    return DuplicateScan(tuple(runs), scattered)


def volume_drops(rows_by_partition: Mapping[str, int], ratio: float = VOLUME_DROP_RATIO) -> list[str]:
    """Partitions whose row count is below `ratio` x the median of all partitions (needs 3 or more)."""
    if len(rows_by_partition) < 3:
        return []
    median = statistics.median(rows_by_partition.values())
    return sorted(p for p, n in rows_by_partition.items() if n < ratio * median)


@dataclass
class Findings:
    """Everything gathered about one incident; each field None/empty when it could not be looked at."""

    root_asset: str
    fault_class: str
    failing_checks: list[Evidence] = field(default_factory=list)  # the detections (store records)
    upstream: list[tuple[str, bool, Evidence]] = field(default_factory=list)  # asset, fault present, query
    duplicate_keys: list[str] = field(default_factory=list)
    kafka: DuplicateScan | None = None
    kafka_evidence: Evidence | None = None
    dlq_errors: dict[str, int] = field(default_factory=dict)  # error class -> rejects in the window
    dlq_evidence: Evidence | None = None
    lag_statuses: list[str] = field(default_factory=list)  # verdicts of lag detections (e.g. STALL)
    lag_evidence: Evidence | None = None
    dlq_growth: int | None = None  # DLQ rejects while the lag fault was seen
    volume: dict[str, int] = field(default_factory=dict)  # data partition -> rows
    volume_evidence: Evidence | None = None
    notes: list[str] = field(default_factory=list)  # what could not be looked at, and why


@dataclass(frozen=True)
class Hypothesis:
    cause: str
    pattern: str  # which known pattern matched ("none" for unknown)
    reasoning: str
    evidence: tuple[Evidence, ...]
    prevention: str  # why it was possible (contributing factor)
    actions: tuple[str, ...]


def hypothesize(f: Findings) -> Hypothesis:
    """The first known pattern the evidence matches, else UNKNOWN with all gathered evidence."""
    scan = f.kafka
    if scan is not None and scan.runs and scan.scattered == 0 and f.kafka_evidence is not None:
        run = scan.runs[0]
        return Hypothesis(
            PRODUCER_RETRIES, "duplicates",
            f"{scan.adjacent_copies} duplicate message(s) are identical payloads with identical keys at "
            f"adjacent offsets ({len(scan.runs)} run(s), none scattered; first: {run.describe()}): the signature "
            "of a batch re-sent after a lost acknowledgement by a producer without idempotence",
            (f.kafka_evidence,),
            "the producer of the topic does not set enable.idempotence=true (acks=all); nothing at ingestion "
            "rejects a key it has already stored",
            (f"enable `enable.idempotence` (and acks=all) on the producer of {run.topic}",
             f"add a uniqueness contract check on {f.root_asset} at ingestion (dedupe by key and payload hash)"),
        )  # fmt: skip
    if len(f.dlq_errors) == 1 and f.dlq_evidence is not None:
        ((error, count),) = f.dlq_errors.items()
        return Hypothesis(
            SCHEMA_CHANGE, "schema change",
            f"{count} message(s) were dead-lettered in the incident window, all with one error class ({error}): "
            "a producer started sending a shape the contract does not accept",
            (f.dlq_evidence,),
            "the producer can change what it sends without the consumer's contract being checked first",
            (f"agree the change behind `{error}` with the producer of {f.root_asset} and version the schema",
             f"add a contract check for the field named by `{error}` in the producer's CI"),
        )  # fmt: skip
    if any(s.upper() == "STALL" for s in f.lag_statuses) and f.dlq_growth == 0 and f.lag_evidence is not None:
        return Hypothesis(
            STUCK_CONSUMER, "stuck consumer",
            "consumer lag was STALL (committed offsets not moving while messages wait) and the DLQ did not grow: "
            "the consumer is neither progressing nor rejecting, i.e. stuck on one message",
            tuple(e for e in (f.lag_evidence, f.dlq_evidence) if e is not None),
            "a message the consumer can neither process nor dead-letter blocks its partition",
            (f"find the message at the stalled offset and make the consumer of {f.root_asset} dead-letter it",
             "alert on STALL with a shorter window than on lag growth"),
        )  # fmt: skip
    drops = volume_drops(f.volume)
    if len(drops) == 1 and f.volume_evidence is not None:
        return Hypothesis(
            MISSING_LOAD, "missing upstream load",
            f"only partition {drops[0]} has fewer than {VOLUME_DROP_RATIO:.0%} of the median row count; "
            "the others are normal: one load was missing or partial",
            (f.volume_evidence,),
            "a partial load is accepted without a row-count check against the source",
            (f"re-run the load of {drops[0]} into {f.root_asset} from the source",
             f"add a row_count contract check per partition on {f.root_asset}"),
        )  # fmt: skip
    gathered = tuple(
        e
        for e in (f.kafka_evidence, f.dlq_evidence, f.lag_evidence, f.volume_evidence, *(u[2] for u in f.upstream))
        if e is not None
    )
    return Hypothesis(
        UNKNOWN, "none",
        "no known pattern matches the evidence gathered; the cause is left to the reviewers",
        gathered,
        "unknown",
        (f"find the cause of the {f.fault_class} fault on {f.root_asset} and record it in the notes file",),
    )  # fmt: skip


@dataclass(frozen=True)
class Why:
    question: str
    answer: str
    hypothesis: bool  # False only for what the evidence shows directly
    evidence: tuple[Evidence, ...]


def most_upstream_present(upstream: Sequence[tuple[str, bool, Evidence]]) -> str | None:
    """The first asset (ordered upstream first) where the fault's predicate holds."""
    return next((asset for asset, present, _ in upstream if present), None)


def five_whys(f: Findings, h: Hypothesis) -> list[Why]:
    """symptom -> failing check -> most upstream asset with the fault -> ingestion evidence -> hypothesis."""
    checks = ", ".join(e.query for e in f.failing_checks) or "(no detection recorded)"
    whys = [Why("Why was an incident opened?", f"checks failed: {checks}", False, tuple(f.failing_checks))]
    origin = most_upstream_present(f.upstream)
    if origin is not None:
        whys.append(Why(
            "Why did those checks fail?",
            f"the fault is already present in {origin}, the most upstream asset where the check's predicate holds",
            False, tuple(u[2] for u in f.upstream),
        ))  # fmt: skip
    else:
        whys.append(Why(
            "Why did those checks fail?",
            f"the fault was reported on {f.root_asset}; its predicate could not be re-run on the parents"
            + (f" ({'; '.join(f.notes)})" if f.notes else ""),
            True, tuple(u[2] for u in f.upstream),
        ))  # fmt: skip
    if h.cause == UNKNOWN:
        whys.append(Why(f"Why is the fault in {origin or f.root_asset}?", UNKNOWN + ": " + h.reasoning, True,
                        h.evidence))  # fmt: skip
        return whys
    whys.append(Why(f"Why is the fault in {origin or f.root_asset}?", h.reasoning, True, h.evidence))
    whys.append(Why("Why did ingestion produce it?", h.cause, True, h.evidence))
    whys.append(Why("Why was that possible?", h.prevention, True, ()))
    return whys
