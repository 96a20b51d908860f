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


class DuplicateScanner:
    """Streaming `scan_duplicates`: feed records in offset order per partition (as a consumer reads them).

    Keeps one digest per distinct (key, payload) and the previous record of each partition, so a whole
    topic can be scanned without holding it in memory."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self.previous: dict[tuple[str, int], tuple[KafkaRecord, bytes]] = {}
        self.open_runs: dict[tuple[str, int], list[KafkaRecord]] = {}
        self.runs: list[DuplicateRun] = []
        self.scattered = 0
        self._scattered_run: set[tuple[str, int]] = set()

    def add(self, r: KafkaRecord) -> None:
        where = (r.topic, r.partition)
        digest = hashlib.sha256(len(r.key or b"").to_bytes(8, "big") + (r.key or b"") + r.value).digest()
        prev = self.previous.get(where)
        if prev is not None and prev[1] == digest and r.offset == prev[0].offset + 1:
            if where in self._scattered_run:
                self.scattered += 1
            else:
                self.open_runs.setdefault(where, [prev[0]]).append(r)
        else:
            self._close(where)
            self._scattered_run.discard(where)
            if digest in self.seen:
                self.scattered += 1
                self._scattered_run.add(where)
        self.seen.add(digest)
        self.previous[where] = (r, digest)

    def _close(self, where: tuple[str, int]) -> None:
        run = self.open_runs.pop(where, None)
        if run:
            first = run[0]
            key = (first.key or b"").decode("utf-8", "replace")
            sha = hashlib.sha256(first.value).hexdigest()
            self.runs.append(DuplicateRun(first.topic, first.partition, tuple(x.offset for x in run), key, sha,
                                          first.at))  # fmt: skip

    def result(self) -> DuplicateScan:
        for where in list(self.open_runs):
            self._close(where)
        return DuplicateScan(tuple(sorted(self.runs, key=lambda r: (r.topic, r.partition, r.offsets))), self.scattered)


def scan_duplicates(records: Iterable[KafkaRecord]) -> DuplicateScan:
    """Runs of identical (key, payload) at consecutive offsets of a partition, and the scattered copies.

    A producer retrying a batch whose acknowledgement was lost (no idempotence) writes it again right
    after the first copy: the copies are adjacent. Copies far apart point elsewhere (a replay, a resend)."""
    scanner = DuplicateScanner()
    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        scanner.add(r)
    return scanner.result()


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
    first_rejected_at: datetime | None = None  # earliest reject of the window (when ingestion saw it)
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
    observation: str  # what the evidence shows (a fact)
    reasoning: str  # why that points at the cause (the inference)
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
            f"adjacent offsets ({len(scan.runs)} run(s), none scattered; first: {run.describe()})",
            "identical copies at adjacent offsets are the signature of a batch re-sent after a lost "
            "acknowledgement by a producer without idempotence",
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
            f"{count} message(s) were dead-lettered in the incident window, all with one error class ({error})",
            "one error class for a whole spike means one change: a producer started sending a shape the contract "
            "does not accept",
            (f.dlq_evidence,),
            "the producer can change what it sends without the consumer's contract being checked first",
            (f"agree the change behind `{error}` with the producer of {f.root_asset} and version the schema",
             f"add a contract check for the field named by `{error}` in the producer's CI"),
        )  # fmt: skip
    if any(s.upper() == "STALL" for s in f.lag_statuses) and f.dlq_growth == 0 and f.lag_evidence is not None:
        return Hypothesis(
            STUCK_CONSUMER, "stuck consumer",
            "consumer lag was STALL (committed offsets not moving while messages wait) and the DLQ did not grow",
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
            "the others are normal",
            "a drop confined to one partition means one load was missing or partial, not a change in the source",
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
        "no known pattern matches the evidence gathered",
        "the cause is left to the reviewers",
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
    elif f.upstream:
        whys.append(Why(
            "Why did those checks fail?",
            f"the fault was reported on {f.root_asset}; its predicate no longer holds on "
            f"{', '.join(u[0] for u in f.upstream)} (repaired since the detection?)",
            True, tuple(u[2] for u in f.upstream),
        ))  # fmt: skip
    else:
        whys.append(Why(
            "Why did those checks fail?",
            f"the fault was reported on {f.root_asset}; its predicate could not be re-run on the parents"
            + (f" ({'; '.join(f.notes)})" if f.notes else ""),
            True, tuple(u[2] for u in f.upstream),
        ))  # fmt: skip
    if h.cause == UNKNOWN:
        answer = f"{UNKNOWN}: {h.observation}; {h.reasoning}"
        whys.append(Why(f"Why is the fault in {origin or f.root_asset}?", answer, True, h.evidence))
        return whys
    whys.append(Why(f"Why is the fault in {origin or f.root_asset}?", h.observation, False, h.evidence))
    whys.append(Why("Why did ingestion produce it?", f"{h.cause}: {h.reasoning}", True, h.evidence))
    whys.append(Why("Why was that possible?", h.prevention, True, ()))
    return whys
