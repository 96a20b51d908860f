"""Consumer lag evaluation as pure functions: Burrow's rules over real commit history, Kafka Lag Exporter's time lag.

No I/O here. The sampler (`reliability.kafka.sampling`) reads the group coordinator's commit log
(`__consumer_offsets`, as Burrow does), so every commit is seen with the time the broker stored it,
even commits made before this process started: a verdict needs no waiting. One tick
(`evaluate_tick`): the new commit records go into per-partition windows (`fold_commits`, Burrow's
storage: one entry per `min_distance_s`, a merged commit keeps the OLDER timestamp, at most
`window_size` entries); each new commit gets the lag it had when it was made (the log end at its time,
from the log-end table, else from the broker's time index); then every watched group is evaluated.
Past log ends neither source had are returned, the sampler asks the broker, and evaluates again.

Burrow's partition status (`calculate_partition_status`, rules in Burrow's order):
  current lag <= allowed -> OK; STOP when no commit for longer than the window spans, unless the log
  end recently equalled the last commit (Burrow's broker-offset history, `recent_s`; here it never
  starts before that commit, or a topic younger than `recent_s` would always look caught up); REWIND
  when the first backwards step in the window has not recovered to where it was (Burrow looks at the
  first one only); if no commit in the window had zero lag: STALL (same offset throughout), WARN (lag
  never decreased). Group status = worst partition (STOP/STALL/REWIND -> ERR); an unknown group is
  NOT_FOUND.

Time lag (Kafka Lag Exporter): per partition a table of (log-end offset, time) samples that keeps BOTH
ends of a flat stretch; the time a committed offset was produced is interpolated between the samples
bracketing it, and time lag = now - that time; 0 when caught up, unknown with fewer than two samples.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, NamedTuple


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
    NOT_FOUND = "NOT_FOUND"


_PARTITION_TO_GROUP = {
    PartitionStatus.OK: GroupStatus.OK,
    PartitionStatus.WARN: GroupStatus.WARN,
    PartitionStatus.STALL: GroupStatus.ERR,
    PartitionStatus.STOP: GroupStatus.ERR,
    PartitionStatus.REWIND: GroupStatus.ERR,
}
_GROUP_RANK = {GroupStatus.OK: 0, GroupStatus.WARN: 1, GroupStatus.NOT_FOUND: 2, GroupStatus.ERR: 3}
_PARTITION_RANK = {
    PartitionStatus.OK: 0,
    PartitionStatus.WARN: 1,
    PartitionStatus.STALL: 2,
    PartitionStatus.REWIND: 3,
    PartitionStatus.STOP: 4,
}


def worst_group_status(statuses: Iterable[GroupStatus]) -> GroupStatus:
    """The most severe of several group statuses (OK when there are none)."""
    return max(statuses, key=_GROUP_RANK.__getitem__, default=GroupStatus.OK)


@dataclass(frozen=True)
class LagConfig:
    """Burrow 1.9.5 defaults: 10 commits per window, min-distance 1 s, minimum-complete 0, allowed lag 0.

    `recent_s` is Burrow's broker-offset history (intervals x offset-refresh = 10 x 10 s): STOP is
    suppressed when the log end was at or below the last commit within that time.
    """

    window_size: int = 10
    min_distance_s: float = 1.0
    allowed_lag: int = 0
    min_complete: float = 0.0
    recent_s: float = 100.0
    time_table_size: int = 60


class Commit(NamedTuple):
    """One entry of a partition's window (a tuple: windows of thousands of partitions are rebuilt often).

    `timestamp` is the window time (the older one when commits closer than min-distance merged);
    `lag` is the lag when the offset was committed (None while unknown: Burrow's nil lag), measured
    at `committed_at`, which is only kept until the lag is known (it is not persisted).
    """

    offset: int
    lag: int | None
    timestamp: float
    committed_at: float | None = None


TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class CommitRecord:
    """One record of the commit log: a group committed `offset` (None = offsets deleted) at `timestamp`."""

    group: str
    topic: str
    partition: int
    offset: int | None
    timestamp: float


# ---------------------------------------------------------------------------------------------- offsets
def offset_lag(log_end: int | None, committed: int | None) -> int | None:
    """max(0, log end - committed); None when either is unknown (no commit, partition not found)."""
    if log_end is None or committed is None or committed < 0:
        return None
    return max(0, log_end - committed)


def add_commit(window: Sequence[Commit], commit: Commit, config: LagConfig) -> list[Commit]:
    """Append a commit, keeping one per `min_distance_s` (the merged entry keeps the older timestamp)."""
    out = list(window)
    if out and commit.timestamp - out[-1].timestamp < config.min_distance_s:
        # Burrow's min-distance: the new offset replaces the previous entry but keeps its time, so a
        # consumer committing faster than min-distance still moves the window forward
        out[-1] = commit._replace(timestamp=out[-1].timestamp)
    else:
        out.append(commit)
    return out[-config.window_size :]


# -------------------------------------------------------------------------------------- Burrow's rules
def is_lag_always_not_zero(window: Sequence[Commit], allowed_lag: int) -> bool:
    """Rule 1: no commit in the window had a lag within the allowed lag (unknown lags are skipped)."""
    return not any(c.lag is not None and c.lag <= allowed_lag for c in window)


def rewind_index(window: Sequence[Commit]) -> int:
    """Rule 2: index of the first commit whose offset went backwards, -1 if none."""
    for i in range(1, len(window)):
        if window[i].offset < window[i - 1].offset:
            return i
    return -1


def is_rewind_recovered(window: Sequence[Commit], index: int) -> bool:
    """Rule 2, part 2: after the rewind at `index`, a commit reached the offset from before it."""
    before = window[index - 1].offset
    return any(c.offset >= before for c in window[index:])


def is_stopped(window: Sequence[Commit], now: float) -> bool:
    """Rule 3: no commit for longer than the window spans (first to last commit)."""
    first, last = window[0].timestamp, window[-1].timestamp
    return now - last > last - first


def is_stalled(window: Sequence[Commit]) -> bool:
    """Rule 4: the same offset committed throughout the window."""
    return all(b.offset == a.offset for a, b in zip(window, window[1:], strict=False))


def is_lag_not_decreasing(window: Sequence[Commit]) -> bool:
    """Rule 5: the lag never went down between two commits with a known lag."""
    known = [c.lag for c in window if c.lag is not None]
    return all(b >= a for a, b in zip(known, known[1:], strict=False))


def is_recent_lag_zero(window: Sequence[Commit], recent_log_ends: Sequence[int]) -> bool:
    """The log end was at or below the last committed offset at some recent time (delays STOP)."""
    last = window[-1].offset
    return any(end <= last for end in recent_log_ends)


def calculate_partition_status(
    window: Sequence[Commit], recent_log_ends: Sequence[int], current_lag: int, now: float, allowed_lag: int = 0
) -> PartitionStatus:
    """Burrow's `calculatePartitionStatus`: the rules in Burrow's order on a non-empty window."""
    if current_lag <= allowed_lag:
        return PartitionStatus.OK
    if is_stopped(window, now) and not is_recent_lag_zero(window, recent_log_ends):
        return PartitionStatus.STOP
    index = rewind_index(window)
    if index > 0 and not is_rewind_recovered(window, index):
        return PartitionStatus.REWIND
    if is_lag_always_not_zero(window, allowed_lag):
        if is_stalled(window):
            return PartitionStatus.STALL
        if is_lag_not_decreasing(window):
            return PartitionStatus.WARN
    return PartitionStatus.OK


def evaluate_partition(
    window: Sequence[Commit],
    current_lag: int | None,
    now: float,
    config: LagConfig,
    recent_log_ends: Sequence[int] = (),
) -> PartitionStatus:
    """Burrow's `evaluatePartitionStatus`: OK without history, unknown lag, or below `min_complete`."""
    if not window or current_lag is None:
        return PartitionStatus.OK
    if len(window) / config.window_size < config.min_complete:
        return PartitionStatus.OK
    return calculate_partition_status(window, recent_log_ends, current_lag, now, config.allowed_lag)


# ------------------------------------------------------------------------------------------- log end
LogEndTable = list[tuple[int, float]]


def add_log_end_sample(table: Sequence[tuple[int, float]], log_end: int, timestamp: float, size: int) -> LogEndTable:
    """Append (log end, time); a flat stretch keeps both its first and its latest time (Kafka Lag Exporter).

    Keeping only the first time would date the next message to the start of an idle stretch and make
    time lag jump by the whole idle time; keeping only the latest would lose when the stretch began.
    """
    out = list(table)
    if out and log_end < out[-1][0]:  # topic recreated or truncated: start over
        out = []
    if len(out) >= 2 and out[-1][0] == log_end and out[-2][0] == log_end:
        out[-1] = (log_end, timestamp)
    else:
        out.append((log_end, timestamp))
    return out[-size:]


def _line(p: tuple[float, float], q: tuple[float, float], x: float) -> float:
    (x1, y1), (x2, y2) = p, q
    return y1 if x2 == x1 else y1 + (x - x1) * (y2 - y1) / (x2 - x1)


def interpolate_time(table: Sequence[tuple[int, float]], offset: int) -> float | None:
    """Time at which the log end was at `offset`: between the latest sample at or below it and the next
    sample above it, or extrapolated from the nearest two distinct offsets; None with fewer than two."""
    n = len(table)
    if n < 2:
        return None
    i = n - 1  # latest sample with offset <= target (scanning back: a lagging consumer is usually near the end)
    while i >= 0 and table[i][0] > offset:
        i -= 1
    if 0 <= i < n - 1:
        return _line(table[i], table[i + 1], offset)
    if i < 0:  # before the table: the first sample and the first one with a larger offset
        later = next((s for s in table if s[0] > table[0][0]), None)
        return table[0][1] if later is None else _line(table[0], later, offset)
    earlier = next((s for s in reversed(table) if s[0] < table[-1][0]), None)  # past the table's end
    return table[-1][1] if earlier is None else _line(earlier, table[-1], offset)


def log_end_at(table: Sequence[tuple[int, float]], at: float) -> int | None:
    """Log-end offset at time `at` from the table (linear between samples); None before the table."""
    if not table or at < table[0][1]:
        return None
    times = [t for _, t in table]
    j = bisect.bisect_right(times, at) - 1
    if j >= len(table) - 1:
        return table[-1][0]
    (o1, t1), (o2, t2) = table[j], table[j + 1]
    return o1 if t2 == t1 else math.floor(o1 + (at - t1) * (o2 - o1) / (t2 - t1))


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
class PartitionResult(NamedTuple):
    """One partition's verdict (a tuple: a tick builds thousands)."""

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
        if self.status is GroupStatus.NOT_FOUND:
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
    status = GroupStatus.NOT_FOUND if state == "NOT_FOUND" and not partitions else GroupStatus.OK
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


def awaits_first_commit(result: GroupResult, state: LagState) -> bool:
    """A group not found that never committed (nothing in the commit history): a consumer not started yet,
    e.g. on a first deploy, not a fault. Burrow does not evaluate unknown groups either. A group that did
    commit and is gone (offsets expired or deleted) stays NOT_FOUND."""
    return result.status is GroupStatus.NOT_FOUND and not state.windows.get(result.group)


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
@dataclass(frozen=True)
class GroupSample:
    """What one tick saw of a watched group besides its commits: members, state, assigned partitions."""

    members: int | None = None
    state: str | None = None
    error: str | None = None
    assigned: tuple[TopicPartition, ...] = ()


@dataclass(frozen=True)
class Sample:
    """One tick: watched groups, new commit records (log order), log ends, and answers to past log ends.

    `positions` are the commit-log read positions after `commits`; `partition_counts` lets a group's
    never-committed partitions be reported; `log_end_history` answers `lookups_needed`;
    `log_end_times` says when a log end was read if that was not the tick's `now` (a tick that first
    reads the commit log learns its topics late: dating that read to `now` would skew time lag).
    """

    groups: Mapping[str, GroupSample]
    log_end: Mapping[TopicPartition, int]
    log_end_times: Mapping[TopicPartition, float] = field(default_factory=dict)
    commits: Sequence[CommitRecord] = ()
    positions: Mapping[int, int] = field(default_factory=dict)
    partition_counts: Mapping[str, int] = field(default_factory=dict)
    log_end_history: Mapping[tuple[TopicPartition, float], int] = field(default_factory=dict)
    error: str | None = None


Windows = dict[str, dict[TopicPartition, list[Commit]]]


@dataclass
class LagState:
    """Commit windows per (group, topic, partition), log-end tables per partition, commit-log positions."""

    windows: Windows = field(default_factory=dict)
    log_end_tables: dict[TopicPartition, LogEndTable] = field(default_factory=dict)
    positions: dict[int, int] = field(default_factory=dict)
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Compact JSON: per group its own base time and, per topic and partition, one flat list of
        (offset, lag, centiseconds after the base) triples (unknown lag -1); tables likewise as pairs."""
        return json.loads(self.to_text())

    def to_text(self) -> str:
        """`to_json` as text. A group's windows that did not change since the last call (the same dict:
        ticks share untouched groups) are not encoded again, so a tick costs what changed."""
        parts = []
        cache: dict[int, tuple[Mapping, str]] = {}
        for g, ws in self.windows.items():
            known = _FRAGMENTS.get(id(ws))
            text = known[1] if known is not None and known[0] is ws else _group_fragment(ws)
            cache[id(ws)] = (ws, text)
            parts.append(f"{json.dumps(g)}:{text}")
        _FRAGMENTS.clear()
        _FRAGMENTS.update(cache)
        stamps = [tab[0][1] for tab in self.log_end_tables.values() if tab]
        base = int(min(stamps)) if stamps else 0
        tables: dict[str, dict[str, list[int]]] = {}
        for (t, p), tab in self.log_end_tables.items():
            flat: list[int] = []
            for o, ts in tab:
                flat += (o, int((ts - base) * 100 + 0.5))
            tables.setdefault(t, {})[str(p)] = flat
        rest = json.dumps(
            {"b": base, "t": tables, "p": {str(p): o for p, o in self.positions.items()}, "e": self.last_error},
            separators=(",", ":"),
        )
        return '{"v":5,"w":{' + ",".join(parts) + "}," + rest[1:]

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> LagState:
        """Inverse of `to_json`; an unknown or old format starts from an empty state."""
        if not data or data.get("v") != 5:
            return cls()
        windows: Windows = {}
        for g, fragment in data.get("w", {}).items():
            gbase = float(fragment["b"])
            windows[g] = {
                (t, int(p)): [
                    Commit(flat[i], None if flat[i + 1] < 0 else flat[i + 1], gbase + flat[i + 2] / 100)
                    for i in range(0, len(flat), 3)
                ]
                for t, parts in fragment["t"].items()
                for p, flat in parts.items()
            }
        base = float(data.get("b", 0))
        tables = {
            (t, int(p)): [(flat[i], base + flat[i + 1] / 100) for i in range(0, len(flat), 2)]
            for t, parts in data.get("t", {}).items()
            for p, flat in parts.items()
        }
        positions = {int(p): int(o) for p, o in data.get("p", {}).items()}
        return cls(windows=windows, log_end_tables=tables, positions=positions, last_error=data.get("e"))


# A memo, not state: the JSON of a group's windows depends on those (never mutated) windows only.
_FRAGMENTS: dict[int, tuple[Mapping, str]] = {}  # id(group windows) -> (those windows, their JSON)


def _group_fragment(ws: Mapping[TopicPartition, Sequence[Commit]]) -> str:
    stamps = [win[0].timestamp for win in ws.values() if win]
    base = int(min(stamps)) if stamps else 0
    per_topic: dict[str, dict[str, list[int]]] = {}
    for (t, p), win in ws.items():
        flat: list[int] = []
        for c in win:
            flat += (c.offset, -1 if c.lag is None else c.lag, int((c.timestamp - base) * 100 + 0.5))
        per_topic.setdefault(t, {})[str(p)] = flat
    return json.dumps({"b": base, "t": per_topic}, separators=(",", ":"))


def fold_commits(
    windows: Windows, records: Iterable[CommitRecord], config: LagConfig
) -> tuple[Windows, set[tuple[str, TopicPartition]]]:
    """New commit records (in log order) into the windows; deleted offsets drop their window.

    Returns the new windows (untouched ones shared with the input) and the (group, partition) keys
    that received a commit."""
    out = dict(windows)
    copied: set[str] = set()
    touched: set[tuple[str, TopicPartition]] = set()
    for rec in records:
        if rec.group not in copied:
            out[rec.group] = dict(out.get(rec.group, {}))
            copied.add(rec.group)
        per_group = out[rec.group]
        tp = (rec.topic, rec.partition)
        if rec.offset is None or rec.offset < 0:
            per_group.pop(tp, None)
            touched.discard((rec.group, tp))
            continue
        window = per_group.get(tp, [])
        if window and rec.timestamp < window[-1].timestamp:
            continue  # older than what the window holds: a record read again (Burrow drops backfill too)
        fresh = Commit(rec.offset, None, rec.timestamp, committed_at=rec.timestamp)
        per_group[tp] = add_commit(window, fresh, config)
        touched.add((rec.group, tp))
    return {g: ws for g, ws in out.items() if ws}, touched


def _updated_tables(
    state: LagState, sample: Sample, now: float, config: LagConfig
) -> dict[TopicPartition, LogEndTable]:
    tables = dict(state.log_end_tables)
    for tp, end in sample.log_end.items():
        at = sample.log_end_times.get(tp, now)
        tables[tp] = add_log_end_sample(tables.get(tp, []), end, at, config.time_table_size)
    return tables


def _log_end_then(
    tp: TopicPartition,
    at: float,
    tables: Mapping[TopicPartition, LogEndTable],
    history: Mapping[tuple[TopicPartition, float], int],
) -> int | None:
    known = log_end_at(tables.get(tp, ()), at)
    return known if known is not None else history.get((tp, at))


def _recent_log_end(
    tp: TopicPartition,
    window: Sequence[Commit],
    now: float,
    config: LagConfig,
    tables: Mapping[TopicPartition, LogEndTable],
    history: Mapping[tuple[TopicPartition, float], int],
) -> tuple[float, int | None]:
    """The lowest log end of the recent past (Burrow's broker-offset history): the log end at the start
    of the recent interval, which never begins before the last commit. Returns (that time, offset or None)."""
    last = window[-1]
    since = max(now - config.recent_s, last.timestamp)
    if last.lag is not None and last.lag > 0:
        return since, last.offset + last.lag  # behind when it committed: the log end only grew since
    if since == last.timestamp and last.lag is not None:
        return since, last.offset + last.lag
    return since, _log_end_then(tp, since, tables, history)


def _with_lags(
    windows: Windows,
    touched: Iterable[tuple[str, TopicPartition]],
    sample: Sample,
    tables: Mapping[TopicPartition, LogEndTable],
) -> tuple[Windows, set[tuple[TopicPartition, float]]]:
    """Fill the lag of fresh commits from the table or the answered lookups; return what is still missing.

    A commit whose lag cannot be known this tick (its partition's log end was not sampled) keeps no
    lag, which Burrow's rules skip."""
    missing: set[tuple[TopicPartition, float]] = set()
    out = dict(windows)
    for g, tp in touched:
        filled = []
        for c in out[g][tp]:
            if c.committed_at is not None:
                end = _log_end_then(tp, c.committed_at, tables, sample.log_end_history)
                if end is not None:
                    c = c._replace(lag=max(0, end - c.offset), committed_at=None)
                elif tp in sample.log_end:
                    missing.add((tp, c.committed_at))
            filled.append(c)
        out[g] = {**out[g], tp: filled}
    return out, missing


def _settled(windows: Windows, touched: Iterable[tuple[str, TopicPartition]]) -> Windows:
    """Forget `committed_at` once the tick is over (what is persisted and compared)."""
    out = dict(windows)
    for g, tp in touched:
        out[g] = {
            **out[g],
            tp: [c._replace(committed_at=None) if c.committed_at is not None else c for c in out[g][tp]],
        }
    return out


def evaluate_tick(
    state: LagState, sample: Sample, now: float, config: LagConfig = LagConfig()
) -> tuple[LagState, list[GroupResult], set[tuple[TopicPartition, float]]]:
    """Fold one sample into the state and evaluate every watched group. Pure: returns a new state.

    Also returns the (partition, time) pairs whose log end neither the table nor
    `sample.log_end_history` could give (lag at old commits, STOP suppression): when there are any,
    the caller asks the broker and evaluates the same sample again with the answers."""
    if sample.error is not None:
        # keep the windows (the outage is not the consumers' fault); every watched group reports ERR
        groups = sorted(set(sample.groups) or set(state.windows))
        results = [error_result(g, sample.error) for g in groups]
        return replace(state, last_error=sample.error), results, set()
    tables = _updated_tables(state, sample, now, config)
    folded, touched = fold_commits(state.windows, sample.commits, config)
    windows, missing = _with_lags(folded, touched, sample, tables)
    results: list[GroupResult] = []
    for group in sorted(sample.groups):
        gs = sample.groups[group]
        if gs.error is not None:
            results.append(error_result(group, gs.error))
            continue
        ws = windows.get(group, {})
        results.append(_evaluate_watched(group, gs, ws, sample, tables, now, config, missing))
    # forget tables of partitions no watched group reads any more (keeps the state bounded)
    watched = {tp for g in sample.groups for tp in windows.get(g, {})} | set(sample.log_end)
    tables = {tp: tab for tp, tab in tables.items() if tp in watched}
    positions = {**state.positions, **sample.positions}
    return LagState(_settled(windows, touched), tables, positions, None), results, missing


def advance(
    state: LagState, sample: Sample, now: float, config: LagConfig = LagConfig()
) -> tuple[LagState, list[GroupResult]]:
    """`evaluate_tick` with what the sample holds (unknown past log ends stay unknown)."""
    new_state, results, _ = evaluate_tick(state, sample, now, config)
    return new_state, results


def lookups_needed(
    state: LagState, sample: Sample, now: float, config: LagConfig = LagConfig()
) -> set[tuple[TopicPartition, float]]:
    """(partition, time) pairs whose log end the table cannot give: lag at old commits, STOP suppression."""
    return evaluate_tick(state, sample, now, config)[2]


def _evaluate_watched(
    group: str,
    gs: GroupSample,
    windows: Mapping[TopicPartition, list[Commit]],
    sample: Sample,
    tables: Mapping[TopicPartition, LogEndTable],
    now: float,
    config: LagConfig,
    missing: set[tuple[TopicPartition, float]],
) -> GroupResult:
    if gs.state == "NOT_FOUND":
        return evaluate_group(group, [], members=gs.members, state=gs.state)
    tps = set(windows) | set(gs.assigned)
    counts = sample.partition_counts
    for topic in {t for t, _ in tps}:  # every partition of a topic it reads, committed or not
        tps.update((topic, p) for p in range(counts.get(topic, 0)))
    log_ends, allowed = sample.log_end, config.allowed_lag
    partitions: list[PartitionResult] = []
    for tp in sorted(tps):
        window = windows.get(tp)
        end = log_ends.get(tp)
        if not window:  # never committed: shown, no lag, nothing to judge
            partitions.append(PartitionResult(tp[0], tp[1], None, end, None, None, PartitionStatus.OK, 0))
            continue
        committed = window[-1].offset
        lag = None if end is None else max(0, end - committed)
        recent: list[int] = []
        if lag is not None and lag > allowed and is_stopped(window, now):  # only STOP looks at it
            since, then = _recent_log_end(tp, window, now, config, tables, sample.log_end_history)
            if then is None:
                missing.add((tp, since))
            recent = [end] if then is None else [then, end]
        seconds = None if end is None else 0.0 if not lag else time_lag(tables.get(tp, ()), committed, end, now)
        status = evaluate_partition(window, lag, now, config, recent)
        partitions.append(PartitionResult(tp[0], tp[1], committed, end, lag, seconds, status, len(window)))
    return evaluate_group(group, partitions, members=gs.members, state=gs.state)
