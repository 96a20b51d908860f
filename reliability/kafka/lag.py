"""Consumer lag evaluation as pure functions: Burrow's sliding-window rules, Kafka Lag Exporter's time lag.

No I/O here: `advance(state, sample, now, config)` takes the previous window state and one sample of
committed offsets and log-end offsets, and returns the new state and one `GroupResult` per group. The
sampler (`reliability.kafka.sampling`) and the Dagster sensor are thin shells around it.

Burrow (per partition, over the last N commits, one kept per `min_distance_s`):
  1. window not full -> OK;  2. current lag <= allowed lag -> OK;
  3. STOP: time since the last commit > time span of the window;
  4. REWIND: a committed offset went backwards inside the window;
  5. any zero lag in the window -> OK; STALL: same offset across the window; WARN: lag never decreased.
Group status = worst partition (STOP/STALL/REWIND -> ERR), with `maxlag` partition and `totallag`.
Burrow checks REWIND only when no lag in the window was zero; we check it first, so a reset backwards
right after a zero-lag period (the common way it happens) is not missed.

Polling cannot see commits, only the current committed offset. A changed offset is a new commit; an
unchanged one counts as a (re-)commit only while the group has active members or has no lag: a live
consumer that keeps committing the same offset is STALL, a group with nobody left committing while
messages pile up drifts into STOP, and an idle, caught-up batch consumer is not mistaken for stopped.

Time lag (Kafka Lag Exporter): per partition a table of (log-end offset, time) samples; the time a
committed offset was produced is interpolated between the two samples bracketing it (extrapolated
outside), and time lag = now - that time; 0 when caught up, undefined with fewer than two samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class PartitionStatus(StrEnum):
    OK = "OK"
    WARN = "WARN"
    STALL = "STALL"
    STOP = "STOP"
    REWIND = "REWIND"


class GroupStatus(StrEnum):
    OK = "OK"
    WARN = "WARN"
    ERR = "ERR"


_PARTITION_TO_GROUP = {
    PartitionStatus.OK: GroupStatus.OK,
    PartitionStatus.WARN: GroupStatus.WARN,
    PartitionStatus.STALL: GroupStatus.ERR,
    PartitionStatus.STOP: GroupStatus.ERR,
    PartitionStatus.REWIND: GroupStatus.ERR,
}
_GROUP_RANK = {GroupStatus.OK: 0, GroupStatus.WARN: 1, GroupStatus.ERR: 2}
_PARTITION_RANK = {
    PartitionStatus.OK: 0,
    PartitionStatus.WARN: 1,
    PartitionStatus.STALL: 2,
    PartitionStatus.REWIND: 3,
    PartitionStatus.STOP: 4,
}


@dataclass(frozen=True)
class LagConfig:
    """Burrow defaults: 10 commits per window; min_distance 1 s (Burrow's default for its storage)."""

    window_size: int = 10
    min_distance_s: float = 1.0
    allowed_lag: int = 0
    time_table_size: int = 60


@dataclass(frozen=True)
class Commit:
    """One entry of a partition's window: committed offset, lag at that moment, when it was seen."""

    offset: int
    lag: int
    timestamp: float


# ---------------------------------------------------------------------------------------------- offsets
def offset_lag(log_end: int | None, committed: int | None) -> int | None:
    """max(0, log end - committed); None when either is unknown (no commit, partition not found)."""
    if log_end is None or committed is None or committed < 0:
        return None
    return max(0, log_end - committed)


def add_commit(window: Sequence[Commit], commit: Commit, config: LagConfig) -> list[Commit]:
    """Append a commit to the window, keeping one per `min_distance_s` and at most `window_size`."""
    out = list(window)
    if out and commit.timestamp - out[-1].timestamp < config.min_distance_s:
        out[-1] = commit  # too close to the previous one: it replaces it (Burrow's min-distance)
    else:
        out.append(commit)
    return out[-config.window_size :]


# -------------------------------------------------------------------------------------- Burrow's rules
def is_stopped(window: Sequence[Commit], now: float) -> bool:
    """No commit for longer than the window spans."""
    first, last = window[0].timestamp, window[-1].timestamp
    return now - last > last - first


def is_rewind(window: Sequence[Commit]) -> bool:
    return any(b.offset < a.offset for a, b in zip(window, window[1:], strict=False))


def is_stalled(window: Sequence[Commit]) -> bool:
    return all(b.offset == a.offset for a, b in zip(window, window[1:], strict=False))


def is_lag_not_decreasing(window: Sequence[Commit]) -> bool:
    return all(b.lag >= a.lag for a, b in zip(window, window[1:], strict=False))


def evaluate_partition(
    window: Sequence[Commit], current_lag: int | None, now: float, config: LagConfig
) -> PartitionStatus:
    """Burrow's partition status, rules applied in order (see module doc)."""
    if len(window) < config.window_size:
        return PartitionStatus.OK
    if current_lag is None or current_lag <= config.allowed_lag:
        return PartitionStatus.OK
    if is_stopped(window, now):
        return PartitionStatus.STOP
    if is_rewind(window):
        return PartitionStatus.REWIND
    if any(c.lag == 0 for c in window):
        return PartitionStatus.OK
    if is_stalled(window):
        return PartitionStatus.STALL
    if is_lag_not_decreasing(window):
        return PartitionStatus.WARN
    return PartitionStatus.OK


# ------------------------------------------------------------------------------------------- time lag
def add_log_end_sample(
    table: Sequence[tuple[int, float]], log_end: int, timestamp: float, size: int
) -> list[tuple[int, float]]:
    """Append (log end, time); a flat head keeps its earliest time (when that offset was first reached)."""
    out = list(table)
    if out and log_end == out[-1][0]:
        return out
    if out and log_end < out[-1][0]:  # topic recreated or truncated: start over
        out = []
    out.append((log_end, timestamp))
    return out[-size:]


def interpolate_time(table: Sequence[tuple[int, float]], offset: int) -> float | None:
    """Time at which the log end was at `offset`, linear between bracketing samples (or extrapolated)."""
    if len(table) < 2:
        return None
    if offset <= table[0][0]:
        left, right = table[0], table[1]
    elif offset >= table[-1][0]:
        left, right = table[-2], table[-1]
    else:
        left, right = table[0], table[1]
        for a, b in zip(table, table[1:], strict=False):
            if a[0] <= offset <= b[0]:
                left, right = a, b
                break
    (o1, t1), (o2, t2) = left, right
    if o2 == o1:
        return t1
    return t1 + (offset - o1) * (t2 - t1) / (o2 - o1)


def time_lag(
    table: Sequence[tuple[int, float]], committed: int | None, log_end: int | None, now: float
) -> float | None:
    """Seconds since the oldest unconsumed message was produced; 0 when caught up; None if unknown."""
    if committed is None or committed < 0 or log_end is None:
        return None
    if committed >= log_end:
        return 0.0
    produced_at = interpolate_time(table, committed)
    if produced_at is None:
        return None
    return max(0.0, now - produced_at)


# -------------------------------------------------------------------------------------- group results
@dataclass(frozen=True)
class PartitionResult:
    topic: str
    partition: int
    committed: int | None
    log_end: int | None
    lag: int | None
    time_lag_s: float | None
    status: PartitionStatus
    window_len: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "committed": self.committed,
            "log_end": self.log_end,
            "lag": self.lag,
            "time_lag_s": None if self.time_lag_s is None else round(self.time_lag_s, 3),
            "status": self.status.value,
            "window": self.window_len,
        }


@dataclass(frozen=True)
class GroupResult:
    group: str
    status: GroupStatus
    total_lag: int
    max_lag: PartitionResult | None
    max_time_lag_s: float | None
    worst: PartitionResult | None
    partitions: tuple[PartitionResult, ...]
    members: int | None = None
    state: str | None = None
    error: str | None = None
    topics: tuple[str, ...] = ()
    no_commit_partitions: int = 0

    @property
    def message(self) -> str:
        if self.error:
            return f"{self.group}: {self.error}"
        parts = [f"{self.group}: {self.status.value}", f"total lag {self.total_lag}"]
        if self.max_time_lag_s is not None:
            parts.append(f"time lag {self.max_time_lag_s:.1f}s")
        if self.worst is not None and self.worst.status is not PartitionStatus.OK:
            parts.append(f"worst {self.worst.topic}[{self.worst.partition}] {self.worst.status.value}")
        if self.no_commit_partitions:
            parts.append(f"{self.no_commit_partitions} partition(s) without a committed offset")
        if self.state == "NOT_FOUND":
            parts.append("group not found (no members, no committed offsets)")
        elif self.members == 0:
            parts.append("no active members")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "status": self.status.value,
            "total_lag": self.total_lag,
            "max_lag": None if self.max_lag is None else self.max_lag.to_dict(),
            "max_time_lag_s": None if self.max_time_lag_s is None else round(self.max_time_lag_s, 3),
            "worst": None if self.worst is None else self.worst.to_dict(),
            "members": self.members,
            "state": self.state,
            "error": self.error,
            "topics": list(self.topics),
            "no_commit_partitions": self.no_commit_partitions,
            "message": self.message,
            "partitions": [p.to_dict() for p in self.partitions],
        }


def evaluate_group(
    group: str,
    partitions: Sequence[PartitionResult],
    members: int | None = None,
    state: str | None = None,
) -> GroupResult:
    """Worst partition decides; STOP/STALL/REWIND -> ERR. Partitions without a commit are counted, not lag."""
    status = GroupStatus.OK
    worst: PartitionResult | None = None
    max_lag: PartitionResult | None = None
    total = 0
    max_time: float | None = None
    for p in partitions:
        mapped = _PARTITION_TO_GROUP[p.status]
        if _GROUP_RANK[mapped] > _GROUP_RANK[status]:
            status = mapped
        if worst is None or (_PARTITION_RANK[p.status], p.lag or 0) > (
            _PARTITION_RANK[worst.status],
            worst.lag or 0,
        ):
            worst = p
        if p.lag is not None:
            total += p.lag
            if max_lag is None or p.lag > (max_lag.lag or 0):
                max_lag = p
        if p.time_lag_s is not None and (max_time is None or p.time_lag_s > max_time):
            max_time = p.time_lag_s
    return GroupResult(
        group=group,
        status=status,
        total_lag=total,
        max_lag=max_lag,
        max_time_lag_s=max_time,
        worst=worst,
        partitions=tuple(partitions),
        members=members,
        state=state,
        topics=tuple(sorted({p.topic for p in partitions})),
        no_commit_partitions=sum(1 for p in partitions if p.committed is None),
    )


def error_result(group: str, error: str) -> GroupResult:
    """A group that could not be sampled (broker unreachable, group vanished): ERR, saying why."""
    return GroupResult(
        group=group,
        status=GroupStatus.ERR,
        total_lag=0,
        max_lag=None,
        max_time_lag_s=None,
        worst=None,
        partitions=(),
        error=error,
    )


# ------------------------------------------------------------------------------------------ one tick
TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class GroupSample:
    """What one tick saw of one group: committed offset per partition (None = no commit)."""

    committed: Mapping[TopicPartition, int | None]
    members: int | None = None
    state: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Sample:
    """One tick: groups, log-end offset of every partition they touch, and a cluster-level error if any."""

    groups: Mapping[str, GroupSample]
    log_end: Mapping[TopicPartition, int]
    error: str | None = None


@dataclass
class LagState:
    """Windows of commits per (group, topic, partition) and log-end tables per (topic, partition)."""

    windows: dict[str, dict[TopicPartition, list[Commit]]] = field(default_factory=dict)
    log_end_tables: dict[TopicPartition, list[tuple[int, float]]] = field(default_factory=dict)
    last_error: str | None = None

    # compact JSON, bounded by window_size x partitions + time_table_size x partitions
    def to_json(self) -> dict[str, Any]:
        """Compact JSON: grouped by topic, times in centiseconds after a base time (one cursor per tick)."""
        stamps = [c.timestamp for ws in self.windows.values() for win in ws.values() for c in win]
        stamps += [ts for tab in self.log_end_tables.values() for _, ts in tab]
        base = int(min(stamps)) if stamps else 0

        def cs(ts: float) -> int:
            return round((ts - base) * 100)

        windows: dict[str, dict[str, dict[str, list[list[int]]]]] = {}
        for g, ws in self.windows.items():
            per_topic = windows.setdefault(g, {})
            for (t, p), win in ws.items():
                per_topic.setdefault(t, {})[str(p)] = [[c.offset, c.lag, cs(c.timestamp)] for c in win]
        tables: dict[str, dict[str, list[list[int]]]] = {}
        for (t, p), tab in self.log_end_tables.items():
            tables.setdefault(t, {})[str(p)] = [[o, cs(ts)] for o, ts in tab]
        return {"v": 2, "b": base, "w": windows, "t": tables, "e": self.last_error}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> LagState:
        """Inverse of `to_json`; an unknown or old format starts from an empty state."""
        if not data or data.get("v") != 2:
            return cls()
        base = float(data.get("b", 0))
        windows = {
            g: {
                (t, int(p)): [Commit(int(o), int(lag), base + ts / 100) for o, lag, ts in win]
                for t, parts in per_topic.items()
                for p, win in parts.items()
            }
            for g, per_topic in data.get("w", {}).items()
        }
        tables = {
            (t, int(p)): [(int(o), base + ts / 100) for o, ts in tab]
            for t, parts in data.get("t", {}).items()
            for p, tab in parts.items()
        }
        return cls(windows=windows, log_end_tables=tables, last_error=data.get("e"))


def advance(
    state: LagState, sample: Sample, now: float, config: LagConfig = LagConfig()
) -> tuple[LagState, list[GroupResult]]:
    """Fold one sample into the state and evaluate every group. Pure: returns a new state."""
    if sample.error is not None:
        # keep the windows (the outage is not the consumers' fault); every known group reports ERR
        groups = sorted(set(state.windows) | set(sample.groups))
        results = [error_result(g, sample.error) for g in groups]
        return LagState(state.windows, state.log_end_tables, sample.error), results
    tables = dict(state.log_end_tables)
    for tp, end in sample.log_end.items():
        tables[tp] = add_log_end_sample(tables.get(tp, []), end, now, config.time_table_size)
    windows: dict[str, dict[TopicPartition, list[Commit]]] = {}
    results: list[GroupResult] = []
    for group in sorted(sample.groups):
        gs = sample.groups[group]
        if gs.error is not None:
            if group in state.windows:
                windows[group] = state.windows[group]
            results.append(error_result(group, gs.error))
            continue
        old = state.windows.get(group, {})
        new_windows: dict[TopicPartition, list[Commit]] = {}
        partitions: list[PartitionResult] = []
        alive = bool(gs.members)
        for tp in sorted(gs.committed):
            committed = gs.committed[tp]
            end = sample.log_end.get(tp)
            lag = offset_lag(end, committed)
            window = old.get(tp, [])
            if committed is not None and committed >= 0 and lag is not None:
                # a new commit: the offset moved, or a live member (re-)commits, or it is caught up
                # (nothing to commit is not being stopped)
                if not window or window[-1].offset != committed or alive or lag == 0:
                    window = add_commit(window, Commit(committed, lag, now), config)
            else:
                window = []
            new_windows[tp] = window
            status = evaluate_partition(window, lag, now, config) if lag is not None else PartitionStatus.OK
            partitions.append(
                PartitionResult(
                    topic=tp[0],
                    partition=tp[1],
                    committed=committed if committed is None or committed >= 0 else None,
                    log_end=end,
                    lag=lag,
                    time_lag_s=time_lag(tables.get(tp, []), committed, end, now),
                    status=status,
                    window_len=len(window),
                )
            )
        windows[group] = new_windows
        results.append(evaluate_group(group, partitions, members=gs.members, state=gs.state))
    # forget tables of partitions no watched group reads any more (keeps the state bounded)
    watched = {tp for ws in windows.values() for tp in ws}
    tables = {tp: tab for tp, tab in tables.items() if tp in watched}
    return LagState(windows, tables, None), results
