"""One lag tick against a real cluster for `reliability.kafka.lag`: few calls, concurrent where possible.

A tick = list groups + describe the non-empty ones + topic metadata + the end of the commit-log partitions
holding the watched groups and the commits written there since the last tick (`commit_log`) + one
`list_offsets` for the log ends of every partition the groups read + (only when the log-end table
cannot say) one `list_offsets` by timestamp per round of past log ends.

The state (windows, log-end tables, commit-log positions) is kept in one JSON file per cluster under
the Kafka state dir, shared by the CLI, the `kafka_consumer_lag` check and the lag sensor, so a CLI run
after the sensor starts from its history; the first run of all reads the history from the commit log.
Failures never raise out of a tick: an unreachable broker is `Sample(error=...)`, ERR for every group.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from reliability.kafka import commit_log
from reliability.kafka.lag import (
    GroupResult,
    GroupSample,
    LagConfig,
    LagState,
    Sample,
    TopicPartition,
    advance,
    evaluate_tick,
)

INTERNAL_GROUP_SUFFIXES = (".dlq-recovery",)
READER_GROUP = "reliability.lag-reader"  # never commits, so never listed as a group


@dataclass(frozen=True)
class WatchConfig:
    """Which groups to watch: explicit names, or glob/regex patterns; everything when both are empty."""

    groups: tuple[str, ...] = ()
    pattern: str | None = None
    timeout_s: float = 5.0
    required: tuple[str, ...] = ()  # always reported (NOT_FOUND when missing), e.g. groups feeding assets

    def matches(self, group: str) -> bool:
        if group.endswith(INTERNAL_GROUP_SUFFIXES):
            return False
        if group in self.required:
            return True
        if not self.groups and not self.pattern:
            return True
        if group in self.groups:
            return True
        if self.pattern:
            if any(ch in self.pattern for ch in "*?[") and fnmatch.fnmatchcase(group, self.pattern):
                return True
            try:
                return re.fullmatch(self.pattern, group) is not None
            except re.error:
                return False
        return False

    @property
    def named_only(self) -> bool:
        """Only named groups are watched: the commit log is read only where they live."""
        return bool(self.groups) and not self.pattern


def _state_name(state) -> str | None:
    return getattr(state, "name", None if state is None else str(state))


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    if "_TRANSPORT" in text or "_TIMED_OUT" in text or "Connection refused" in text or "timed out" in text:
        return f"Kafka cluster unreachable: {text}"
    return text


# ---------------------------------------------------------------------------------------- the state file
def state_path(cluster_id: str | None) -> Path:
    """The shared lag state of one cluster (by its id, so a recreated cluster starts afresh)."""
    from reliability.kafka.broker import state_dir

    name = re.sub(r"[^A-Za-z0-9_.-]", "_", cluster_id or "unknown-cluster")
    return state_dir() / "lag" / f"{name}.json"


_KNOWN_TEXTS: list[tuple[str, LagState]] = []  # the last few (JSON text, state) pairs, newest last


def _remember(text: str, state: LagState) -> None:
    _KNOWN_TEXTS[:] = [*_KNOWN_TEXTS[-3:], (text, state)]


def state_text(state: LagState) -> str:
    """The state as compact JSON (the sensor cursor and the file hold the same text)."""
    for text, known in reversed(_KNOWN_TEXTS):
        if known is state:
            return text
    text = state.to_text()
    _remember(text, state)
    return text


def state_from_text(text: str | None) -> LagState:
    """Parse a state (unknown or unreadable text is an empty state); a text this process wrote is not
    parsed again, so a sensor tick does not pay for its own cursor."""
    if not text:
        return LagState()
    for known_text, state in reversed(_KNOWN_TEXTS):
        if known_text == text:
            return state
    try:
        state = LagState.from_json(json.loads(text))
    except ValueError:
        return LagState()
    _remember(text, state)
    return state


def load_state(path: Path) -> LagState:
    """The persisted state; a missing or unreadable file is an empty state (it is a cache of the log)."""
    try:
        return state_from_text(path.read_text())
    except OSError:
        return LagState()


def save_state(path: Path, state: LagState) -> None:
    """Atomically replace the state file (concurrent writers: the last one wins, each file is whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(state_text(state))
    os.replace(tmp, path)


# -------------------------------------------------------------------------------------------- clients
METADATA_MAX_AGE_S = 30.0  # topic metadata is read again after this, or at once for a topic it lacks


@dataclass
class LagClients:
    """A warm AdminClient and commit-log reader per cluster, and its topic metadata; one tick at a time.

    Reading the metadata of every topic costs as much as the rest of a tick on a cluster with thousands
    of partitions, and partition counts rarely change, so it is reused for `METADATA_MAX_AGE_S`."""

    admin: object
    reader: object
    lock: threading.Lock
    metadata: object | None = None
    metadata_read_at: float = 0.0

    def topic_metadata(self, timeout: float, refresh: bool = False):
        import time

        if refresh or self.metadata is None or time.monotonic() - self.metadata_read_at > METADATA_MAX_AGE_S:
            self.metadata = self.admin.list_topics(timeout=timeout)
            self.metadata_read_at = time.monotonic()
        return self.metadata


_LAG_CLIENTS: dict[str, LagClients] = {}  # bootstrap -> warm clients
_LAG_CLIENTS_LOCK = threading.Lock()


def lag_clients(bootstrap: str) -> LagClients:
    """The warm clients of a cluster, made on first use."""
    from reliability.kafka import clients

    with _LAG_CLIENTS_LOCK:
        if bootstrap not in _LAG_CLIENTS:
            reader = clients.consumer(
                READER_GROUP,
                bootstrap,
                **{"enable.partition.eof": True, "fetch.wait.max.ms": 10, "check.crcs": False},
            )
            _LAG_CLIENTS[bootstrap] = LagClients(clients.admin(bootstrap), reader, threading.Lock())
        return _LAG_CLIENTS[bootstrap]


def forget_lag_clients(bootstrap: str) -> None:
    """Drop a cluster's warm clients after a failed tick, so the next tick starts with fresh connections
    and metadata (librdkafka keeps stale leader epochs after a broker restart: FENCED_LEADER_EPOCH)."""
    with _LAG_CLIENTS_LOCK:
        stale = _LAG_CLIENTS.pop(bootstrap, None)
    if stale is not None:
        with contextlib.suppress(Exception):  # already closed or broken: nothing left to release
            stale.reader.close()


# ---------------------------------------------------------------------------------------------- a tick
def _partition_counts(metadata) -> dict[str, int]:
    return {t: len(md.partitions) for t, md in metadata.topics.items() if md.error is None}


def _request_log_ends(admin, topics: set[str], counts: Mapping[str, int], timeout: float):
    """Ask for the log ends of every partition of `topics`; returns the futures and a list that gets the
    monotonic time of the answer (a callback on the first future, attached before it can complete)."""
    import time

    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    wanted = {TopicPartition(t, p): OffsetSpec.latest() for t in topics for p in range(counts[t])}
    answered: list[float] = []
    if not wanted:
        return {}, answered
    futures = admin.list_offsets(wanted, request_timeout=timeout)
    next(iter(futures.values())).add_done_callback(lambda _f: answered.append(time.monotonic()))
    return futures, answered


def _collect_log_ends(request, timeout: float, at: float, started: float) -> tuple[dict[TopicPartition, int], float]:
    """The log ends of one `_request_log_ends`, and when they were read: `at` (the tick's "now", taken
    at `started` on the monotonic clock) plus the time until the answer came."""
    import time

    from confluent_kafka import KafkaException

    futures, answered = request
    log_end: dict[TopicPartition, int] = {}
    for tp, fut in futures.items():
        try:
            log_end[(tp.topic, tp.partition)] = fut.result(timeout=timeout + 1).offset
        except KafkaException:
            continue  # partition leaderless right now: lag unknown for it this tick
    return log_end, at + ((answered[0] if answered else time.monotonic()) - started)


def take_sample(
    admin,
    reader,
    topic_metadata,
    state: LagState,
    watch: WatchConfig = WatchConfig(),
    now: float = 0.0,
    listing_future=None,
) -> Sample:
    """Watched groups, their new commits from the commit log, and the log ends of their partitions.

    Requests that do not depend on each other are in flight together: the group listing, the end of
    the commit log and the log ends of the topics the state already knows; then the group descriptions
    while the commit log is read; then the log ends of topics first seen in this tick, if any.
    `topic_metadata(refresh)` gives the (cached) topic metadata; it is refreshed when a group reads a
    topic it lacks. `listing_future`: the group listing, when the caller asked for it already."""
    import time

    from confluent_kafka import IsolationLevel, KafkaException, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    timeout = watch.timeout_s
    started = time.monotonic()
    try:
        listing_future = listing_future or admin.list_consumer_groups(request_timeout=timeout)
        counts = _partition_counts(topic_metadata(False))
        log_parts = counts.get(commit_log.TOPIC, 0)
        wanted_log = (
            commit_log.log_partitions_for((*watch.groups, *watch.required), log_parts)
            if watch.named_only
            else set(range(log_parts))
        )
        ends_futures = (
            admin.list_offsets(
                {TopicPartition(commit_log.TOPIC, p): OffsetSpec.latest() for p in wanted_log},
                isolation_level=IsolationLevel.READ_COMMITTED,
                request_timeout=timeout,
            )
            if wanted_log
            else {}
        )
        known_topics = {t for g, ws in state.windows.items() if watch.matches(g) for t, _ in ws if t in counts}
        known_request = _request_log_ends(admin, known_topics, counts, timeout)
        listing = listing_future.result(timeout=timeout + 1)
        found = {g.group_id: _state_name(g.state) for g in listing.valid}
        names = sorted(g for g in found if watch.matches(g))
        missing = [g for g in dict.fromkeys((*watch.groups, *watch.required)) if g not in found]
        if listing.errors:  # e.g. a coordinator still loading after a restart: missing is not "not found"
            why = f"group listing incomplete, try again: {_error_text(listing.errors[0])}"
            groups: dict[str, GroupSample] = {g: GroupSample(error=why) for g in missing}
        else:
            groups = {g: GroupSample(members=0, state="NOT_FOUND") for g in missing}
        # an EMPTY group has no members by definition: only the others are described
        groups |= {g: GroupSample(members=0, state="EMPTY") for g in names if found[g] == "EMPTY"}
        names = [g for g in names if found[g] != "EMPTY"]
        describe = admin.describe_consumer_groups(names, request_timeout=timeout) if names else {}
        ends = {tp.partition: fut.result(timeout=timeout + 1).offset for tp, fut in ends_futures.items()}
        start = {p: (o if o <= ends.get(p, o) else 0) for p, o in state.positions.items()}  # log recreated
        records, new_positions = commit_log.read_commits(reader, ends, start, timeout_s=max(10.0, 4 * timeout))
        for g in names:
            try:
                desc = describe[g].result(timeout=timeout + 1)
            except KafkaException as exc:
                groups[g] = GroupSample(error=_error_text(exc))
                continue
            tps: set[tuple[str, int]] = set()
            for member in desc.members:  # assigned partitions without a commit are shown, as "-"
                assignment = getattr(member, "assignment", None)
                tps |= {(tp.topic, tp.partition) for tp in getattr(assignment, "topic_partitions", None) or []}
            groups[g] = GroupSample(members=len(desc.members), state=_state_name(desc.state), assigned=tuple(tps))
        new_topics = {rec.topic for rec in records if rec.group in groups}
        new_topics |= {t for gs in groups.values() for t, _ in gs.assigned}
        if new_topics - counts.keys():  # a topic created since the metadata was read
            counts = _partition_counts(topic_metadata(True))
        new_topics = {t for t in new_topics if t in counts} - known_topics
        log_end, read_at = _collect_log_ends(known_request, timeout, now, started)
        log_end_times = dict.fromkeys(log_end, read_at)
        late, late_at = _collect_log_ends(_request_log_ends(admin, new_topics, counts, timeout), timeout, now, started)
        log_end |= late
        log_end_times |= dict.fromkeys(late, late_at)
        return Sample(
            groups=groups,
            log_end=log_end,
            log_end_times=log_end_times,
            commits=records,
            positions=new_positions,
            partition_counts=counts,
        )
    except KafkaException as exc:
        return Sample(groups={}, log_end={}, error=_error_text(exc))
    except Exception as exc:  # futures time out with concurrent.futures.TimeoutError, never crash a tick
        return Sample(groups={}, log_end={}, error=f"Kafka cluster unreachable or not answering: {exc!r}")


def past_log_ends(
    admin, needed: set[tuple[TopicPartition, float]], log_end: Mapping[TopicPartition, int], timeout: float
) -> dict[tuple[TopicPartition, float], int]:
    """Log ends at past times, from the broker's time index (the first offset produced at or after the
    time; none -> the current end). One `list_offsets` per round, each partition at most once a round."""
    from confluent_kafka import KafkaException
    from confluent_kafka import TopicPartition as KafkaTopicPartition
    from confluent_kafka.admin import OffsetSpec

    per_tp: dict[TopicPartition, list[float]] = {}
    for tp, at in needed:
        per_tp.setdefault(tp, []).append(at)
    rounds = [
        {tp: times[k] for tp, times in per_tp.items() if k < len(times)}
        for k in range(max((len(v) for v in per_tp.values()), default=0))
    ]
    pending = [
        (
            batch,
            admin.list_offsets(
                {KafkaTopicPartition(t, p): OffsetSpec.for_timestamp(int(at * 1000)) for (t, p), at in batch.items()},
                request_timeout=timeout,
            ),
        )
        for batch in rounds
    ]
    answers: dict[tuple[TopicPartition, float], int] = {}
    for batch, futures in pending:
        for ktp, fut in futures.items():
            tp = (ktp.topic, ktp.partition)
            try:
                offset = fut.result(timeout=timeout + 1).offset
            except KafkaException:
                continue
            end = log_end.get(tp)
            answers[(tp, batch[tp])] = end if offset < 0 and end is not None else offset
    return answers


def run_tick(
    bootstrap: str,
    watch: WatchConfig,
    now: float,
    state: LagState | None = None,
    config: LagConfig | None = None,
) -> tuple[LagState, list[GroupResult]]:
    """Sample, evaluate, persist: one tick. `state` None = the cluster's shared state file."""
    from reliability.kafka.broker import KafkaUnavailable

    config = config or LagConfig()
    try:
        kafka = lag_clients(bootstrap)
    except KafkaUnavailable as exc:
        return advance(state or LagState(), Sample(groups={}, log_end={}, error=str(exc)), now, config)
    with kafka.lock:
        try:
            listing = kafka.admin.list_consumer_groups(request_timeout=watch.timeout_s)  # meanwhile: metadata
            metadata = kafka.topic_metadata(watch.timeout_s)
        except Exception as exc:
            error = _error_text(exc)
            if not error.startswith("Kafka cluster unreachable"):
                error = f"Kafka cluster unreachable: {error}"
            groups = {g: GroupSample() for g in (*watch.groups, *watch.required)}
            forget_lag_clients(bootstrap)
            return advance(state or LagState(), Sample(groups=groups, log_end={}, error=error), now, config)
        path = state_path(metadata.cluster_id)
        state = load_state(path) if state is None else state
        sample = take_sample(
            kafka.admin,
            kafka.reader,
            lambda refresh: kafka.topic_metadata(watch.timeout_s, refresh),
            state,
            watch,
            now,
            listing,
        )
        new_state, results, needed = evaluate_tick(state, sample, now, config)
        if needed:  # commits older than the log-end table, or STOP to confirm: ask the broker's time index
            try:
                history = past_log_ends(kafka.admin, needed, sample.log_end, watch.timeout_s)
                sample = replace(sample, log_end_history=history)
            except Exception as exc:
                sample = Sample(groups=sample.groups, log_end={}, error=f"Kafka cluster not answering: {exc}")
            new_state, results, _ = evaluate_tick(state, sample, now, config)
        state = new_state
        if sample.error is None:
            save_state(path, state)
        else:  # e.g. FENCED_LEADER_EPOCH after a broker restart: the warm clients' metadata is stale
            forget_lag_clients(bootstrap)
        return state, results


def evaluate_once(
    bootstrap: str,
    watch: WatchConfig = WatchConfig(),
    samples: int = 1,
    interval_s: float = 1.0,
    groups: Sequence[str] = (),
    clock=None,
) -> list[GroupResult]:
    """The CLI's and the manual check's evaluation: a verdict from the first tick (the commit log has the
    history); more samples only add log-end points for time lag. Uses and updates the shared state."""
    import time

    from reliability.clock import utcnow

    clock = clock or utcnow
    if groups:
        watch = WatchConfig(groups=tuple(groups), pattern=None, timeout_s=watch.timeout_s)
    results: list[GroupResult] = []
    for i in range(max(1, samples)):
        if i:
            time.sleep(interval_s)
        _, results = run_tick(bootstrap, watch, clock().timestamp())
    if groups:
        results = [r for r in results if r.group in set(groups)]
    return results


def committed_offsets(admin, group: str, timeout: float = 10.0) -> dict[TopicPartition, int]:
    """A group's committed offsets right now (no history), e.g. to see whether new messages wait."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=timeout)[group]
    listed = res.result(timeout=timeout + 1).topic_partitions
    return {(tp.topic, tp.partition): tp.offset for tp in listed if tp.offset >= 0}
