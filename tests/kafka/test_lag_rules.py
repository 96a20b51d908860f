"""Burrow's rules and Kafka Lag Exporter's time lag, one edge case at a time (pure functions, no Kafka).

The first table is Burrow 1.9.5's own correctness table (`core/internal/evaluator/caching_test.go`, the
`tests` slice), every case, as data: offsets as (offset, timestamp in ms, lag or None), and for each case
what every rule and `calculatePartitionStatus` return.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import pytest

from reliability.kafka.lag import (
    Commit,
    CommitRecord,
    GroupSample,
    GroupStatus,
    LagConfig,
    LagState,
    PartitionResult,
    PartitionStatus,
    Sample,
    add_commit,
    add_log_end_sample,
    advance,
    calculate_partition_status,
    evaluate_group,
    evaluate_partition,
    interpolate_time,
    is_lag_always_not_zero,
    is_lag_not_decreasing,
    is_recent_lag_zero,
    is_stalled,
    is_stopped,
    log_end_at,
    lookups_needed,
    offset_lag,
    rewind_index,
    time_lag,
)


class BurrowCase(NamedTuple):
    index: int
    offsets: list[tuple[int, int, int | None]]  # (offset, timestamp ms, lag at commit or None)
    broker_offsets: list[int]
    current_lag: int
    time_now_s: int
    allowed_lag: int
    lag_always_not_zero: bool
    rewind_index: int
    stopped: bool
    stalled: bool
    lag_not_decreasing: bool
    recent_lag_zero: bool
    status: str


# cases 9 and 10 share their commit history (one commit per second, always caught up)
_BURROW_9_10_OFFSETS = [
    (792748079, 1512224618356, 0),
    (792748080, 1512224619362, 0),
    (792748081, 1512224620366, 0),
    (792748082, 1512224621367, 0),
    (792748083, 1512224622370, 0),
    (792748084, 1512224623373, 0),
    (792748085, 1512224624378, 0),
    (792748086, 1512224625379, 0),
    (792748087, 1512224626383, 0),
    (792748088, 1512224627383, 0),
    (792748089, 1512224628383, 0),
    (792748090, 1512224629388, 0),
    (792748091, 1512224630391, 0),
    (792748092, 1512224631394, 0),
    (792748093, 1512224632397, 0),
]

BURROW_1_9_5_CASES = [
    # 0: returns OK because there is zero lag somewhere
    BurrowCase(
        0,
        [(1000, 100000, 0), (2000, 200000, 50), (3000, 300000, 100), (4000, 400000, 150), (5000, 500000, 200)],
        broker_offsets=[5200],
        current_lag=200,
        time_now_s=600,
        allowed_lag=0,
        lag_always_not_zero=False,
        rewind_index=-1,
        stopped=False,
        stalled=False,
        lag_not_decreasing=True,
        recent_lag_zero=False,
        status="OK",
    ),
    # 1: same status. does not return true for stop because time since last commit (400s) is equal to the
    # difference (500-100), not greater than
    BurrowCase(
        1,
        [(1000, 100000, 0), (2000, 200000, 50), (3000, 300000, 100), (4000, 400000, 150), (5000, 500000, 200)],
        broker_offsets=[5200],
        current_lag=200,
        time_now_s=900,
        allowed_lag=0,
        lag_always_not_zero=False,
        rewind_index=-1,
        stopped=False,
        stalled=False,
        lag_not_decreasing=True,
        recent_lag_zero=False,
        status="OK",
    ),
    # 2: status is now STOP because the time since last commit is great enough (500s), even though lag is zero at
    # the start (fixed due to #290)
    BurrowCase(
        2,
        [(1000, 100000, 0), (2000, 200000, 50), (3000, 300000, 100), (4000, 400000, 150), (5000, 500000, 200)],
        broker_offsets=[5200],
        current_lag=200,
        time_now_s=1000,
        allowed_lag=0,
        lag_always_not_zero=False,
        rewind_index=-1,
        stopped=True,
        stalled=False,
        lag_not_decreasing=True,
        recent_lag_zero=False,
        status="STOP",
    ),
    # 3: status is STOP when lag is always non-zero as well
    BurrowCase(
        3,
        [(1000, 100000, 50), (2000, 200000, 100), (3000, 300000, 150), (4000, 400000, 200), (5000, 500000, 250)],
        broker_offsets=[5250],
        current_lag=250,
        time_now_s=1000,
        allowed_lag=0,
        lag_always_not_zero=True,
        rewind_index=-1,
        stopped=True,
        stalled=False,
        lag_not_decreasing=True,
        recent_lag_zero=False,
        status="STOP",
    ),
    # 4: status is OK because of zero lag, but stall is true because the offset is always the same and there is
    # lag (another commit with turn this to stall)
    BurrowCase(
        4,
        [(1000, 100000, 0), (1000, 200000, 50), (1000, 300000, 100), (1000, 400000, 150), (1000, 500000, 200)],
        broker_offsets=[1200],
        current_lag=200,
        time_now_s=600,
        allowed_lag=0,
        lag_always_not_zero=False,
        rewind_index=-1,
        stopped=False,
        stalled=True,
        lag_not_decreasing=True,
        recent_lag_zero=False,
        status="OK",
    ),
    # 5: status is now STALL because the lag is always non-zero
    BurrowCase(
        5,
        [(1000, 100000, 100), (1000, 200000, 150), (1000, 300000, 200), (1000, 400000, 250), (1000, 500000, 300)],
        broker_offsets=[1300],
        current_lag=300,
        time_now_s=600,
        allowed_lag=0,
        lag_always_not_zero=True,
        rewind_index=-1,
        stopped=False,
        stalled=True,
        lag_not_decreasing=True,
        recent_lag_zero=False,
        status="STALL",
    ),
    # 6: status is still STALL even when the lag stays the same
    BurrowCase(
        6,
        [(1000, 100000, 100), (1000, 200000, 100), (1000, 300000, 100), (1000, 400000, 100), (1000, 500000, 100)],
        broker_offsets=[1100],
        current_lag=100,
        time_now_s=600,
        allowed_lag=0,
        lag_always_not_zero=True,
        rewind_index=-1,
        stopped=False,
        stalled=True,
        lag_not_decreasing=True,
        recent_lag_zero=False,
        status="STALL",
    ),
    # 7: status is OK because the offsets go backwards, but though the lag does decrease within the window (caught
    # up the rewind)
    BurrowCase(
        7,
        [(1000, 100000, 100), (2000, 200000, 150), (3000, 300000, 200), (2000, 400000, 1250), (4000, 500000, 300)],
        broker_offsets=[4300],
        current_lag=300,
        time_now_s=600,
        allowed_lag=0,
        lag_always_not_zero=True,
        rewind_index=3,
        stopped=False,
        stalled=False,
        lag_not_decreasing=False,
        recent_lag_zero=False,
        status="OK",
    ),
    # 8: status is OK because the current lag is 0 (even though the offsets show lag), even though it would be
    # considered stopped due to timestamps
    BurrowCase(
        8,
        [(1000, 100000, 50), (2000, 200000, 100), (3000, 300000, 150), (4000, 400000, 200), (5000, 500000, 250)],
        broker_offsets=[5250],
        current_lag=0,
        time_now_s=1000,
        allowed_lag=0,
        lag_always_not_zero=True,
        rewind_index=-1,
        stopped=True,
        stalled=False,
        lag_not_decreasing=True,
        recent_lag_zero=False,
        status="OK",
    ),
    # 9: status is STOP due to timestamps because the current lag is non-zero, even though lag is always zero in
    # offsets, only because there is new data (#290)
    BurrowCase(
        9,
        _BURROW_9_10_OFFSETS,
        broker_offsets=[792749024, 792749000, 792748800, 792748600, 792748500],
        current_lag=931,
        time_now_s=1512224650,
        allowed_lag=0,
        lag_always_not_zero=False,
        rewind_index=-1,
        stopped=True,
        stalled=False,
        lag_not_decreasing=True,
        recent_lag_zero=False,
        status="STOP",
    ),
    # 10: status is OK, even though it would be stop due to timestamps, as within the recent broker offset window
    # the lag was zero (#303)
    BurrowCase(
        10,
        _BURROW_9_10_OFFSETS,
        broker_offsets=[792748094, 792748093, 792748093, 792748093],
        current_lag=1,
        time_now_s=1512224650,
        allowed_lag=0,
        lag_always_not_zero=False,
        rewind_index=-1,
        stopped=True,
        stalled=False,
        lag_not_decreasing=True,
        recent_lag_zero=True,
        status="OK",
    ),
    # 11: same case as test 0 with additional `nil` lag entries which should not affect results
    BurrowCase(
        11,
        [
            (1000, 100000, 0),
            (1500, 150000, None),
            (2000, 200000, 50),
            (2500, 250000, None),
            (3000, 300000, 100),
            (3500, 350000, None),
            (4000, 400000, 150),
            (4500, 450000, None),
            (5000, 500000, 200),
            (5500, 550000, None),
        ],
        broker_offsets=[5700],
        current_lag=200,
        time_now_s=600,
        allowed_lag=0,
        lag_always_not_zero=False,
        rewind_index=-1,
        stopped=False,
        stalled=False,
        lag_not_decreasing=True,
        recent_lag_zero=False,
        status="OK",
    ),
    # 12: status is OK despite the fact that the current lag is greater zero and the time since last commit is
    # great enough because of the configured allowed lag
    BurrowCase(
        12,
        [(1000, 100000, 2), (2000, 200000, 1), (2000, 300000, 1)],
        broker_offsets=[2001],
        current_lag=1,
        time_now_s=550,
        allowed_lag=1,
        lag_always_not_zero=False,
        rewind_index=-1,
        stopped=True,
        stalled=False,
        lag_not_decreasing=False,
        recent_lag_zero=False,
        status="OK",
    ),
    # 13: same as 5 but with an allowed lag
    BurrowCase(
        13,
        [(1000, 100000, 100), (1000, 200000, 150), (1000, 300000, 200), (1000, 400000, 250), (1000, 500000, 300)],
        broker_offsets=[1300],
        current_lag=300,
        time_now_s=600,
        allowed_lag=99,
        lag_always_not_zero=True,
        rewind_index=-1,
        stopped=False,
        stalled=True,
        lag_not_decreasing=True,
        recent_lag_zero=False,
        status="STALL",
    ),
    # 14: same as 7 but with an allowed lag
    BurrowCase(
        14,
        [(1000, 100000, 100), (2000, 200000, 150), (3000, 300000, 200), (2000, 400000, 1250), (4000, 500000, 300)],
        broker_offsets=[4300],
        current_lag=300,
        time_now_s=600,
        allowed_lag=99,
        lag_always_not_zero=True,
        rewind_index=3,
        stopped=False,
        stalled=False,
        lag_not_decreasing=False,
        recent_lag_zero=False,
        status="OK",
    ),
    # 15: Rewind, but we did not catch up to the previous point
    BurrowCase(
        15,
        [(1000, 100000, 100), (2000, 200000, 150), (3000, 300000, 200), (2000, 400000, 1250), (2500, 500000, 300)],
        broker_offsets=[4300],
        current_lag=300,
        time_now_s=600,
        allowed_lag=0,
        lag_always_not_zero=True,
        rewind_index=3,
        stopped=False,
        stalled=False,
        lag_not_decreasing=False,
        recent_lag_zero=False,
        status="REWIND",
    ),
]


def _burrow_window(case: BurrowCase) -> list[Commit]:
    return [Commit(offset, lag, ts_ms / 1000.0) for offset, ts_ms, lag in case.offsets]


def test_the_burrow_table_is_complete():
    assert [c.index for c in BURROW_1_9_5_CASES] == list(range(16))


@pytest.mark.parametrize("case", BURROW_1_9_5_CASES, ids=lambda c: f"burrow-{c.index}")
def test_burrow_1_9_5_correctness_table(case: BurrowCase):
    window = _burrow_window(case)
    assert is_lag_always_not_zero(window, case.allowed_lag) is case.lag_always_not_zero
    assert rewind_index(window) == case.rewind_index
    assert is_stopped(window, float(case.time_now_s)) is case.stopped
    assert is_stalled(window) is case.stalled
    assert is_lag_not_decreasing(window) is case.lag_not_decreasing
    assert is_recent_lag_zero(window, case.broker_offsets) is case.recent_lag_zero
    status = calculate_partition_status(
        window, case.broker_offsets, case.current_lag, float(case.time_now_s), case.allowed_lag
    )
    assert status is PartitionStatus(case.status)
    # through the evaluator's entry point too (Burrow's default minimum-complete 0 evaluates any window)
    config = LagConfig(window_size=len(window), allowed_lag=case.allowed_lag)
    assert evaluate_partition(window, case.current_lag, float(case.time_now_s), config, case.broker_offsets) is status


CFG = LagConfig(window_size=5, min_distance_s=1.0)


def window(offsets: list[int], lags: list[int | None], start: float = 0.0, step: float = 10.0) -> list[Commit]:
    return [Commit(o, lag, start + i * step) for i, (o, lag) in enumerate(zip(offsets, lags, strict=True))]


# ------------------------------------------------------------------------------------------ partitions
def test_empty_window_or_unknown_lag_is_ok():
    assert evaluate_partition([], current_lag=500, now=100.0, config=CFG) is PartitionStatus.OK
    w = window([10, 10, 10, 10, 10], [1, 2, 3, 4, 5])
    assert evaluate_partition(w, None, now=41.0, config=CFG) is PartitionStatus.OK


def test_minimum_complete_holds_back_a_short_window():
    w = window([10, 10, 10, 10], [5, 10, 20, 30])
    assert evaluate_partition(w, current_lag=30, now=35.0, config=CFG) is PartitionStatus.STALL
    strict = LagConfig(window_size=5, min_complete=1.0)
    assert evaluate_partition(w, current_lag=30, now=35.0, config=strict) is PartitionStatus.OK


def test_current_lag_within_allowed_is_ok():
    w = window([10, 10, 10, 10, 10], [1, 1, 1, 1, 1])
    assert evaluate_partition(w, 0, now=41.0, config=CFG) is PartitionStatus.OK
    allowing = LagConfig(window_size=5, allowed_lag=5)
    assert evaluate_partition(w, 3, now=41.0, config=allowing) is PartitionStatus.OK


def test_stop_when_no_commit_for_longer_than_the_window_spans():
    w = window([10, 20, 30, 40, 50], [0, 0, 0, 0, 0])  # spans 0..40 s
    assert evaluate_partition(w, current_lag=7, now=81.0, config=CFG) is PartitionStatus.STOP
    # exactly at the boundary it is not stopped yet
    assert evaluate_partition(w, current_lag=7, now=80.0, config=CFG) is PartitionStatus.OK


def test_stop_suppressed_while_the_log_end_recently_equalled_the_last_commit():
    w = window([10, 20, 30, 40, 50], [0, 0, 0, 0, 0])
    assert evaluate_partition(w, 7, now=81.0, config=CFG, recent_log_ends=[50, 57]) is PartitionStatus.OK
    assert evaluate_partition(w, 7, now=81.0, config=CFG, recent_log_ends=[53, 57]) is PartitionStatus.STOP


def test_rewind_when_an_offset_goes_backwards_and_stays_behind():
    w = window([100, 110, 120, 40, 50], [5, 5, 5, 90, 95])
    assert evaluate_partition(w, current_lag=95, now=41.0, config=CFG) is PartitionStatus.REWIND


def test_rewind_that_recovers_at_the_next_commit_is_not_rewind():
    w = window([100, 110, 120, 115, 125], [5, 5, 5, 15, 10])
    assert evaluate_partition(w, current_lag=10, now=41.0, config=CFG) is PartitionStatus.OK


def test_rewind_checked_before_zero_lag():
    # a consumer at zero lag that resets to the start: the zero-lag commits do not hide it (Burrow's order)
    w = window([100, 110, 120, 130, 20], [0, 0, 0, 0, 110])
    assert evaluate_partition(w, current_lag=110, now=41.0, config=CFG) is PartitionStatus.REWIND


def test_any_zero_lag_in_window_is_ok():
    w = window([10, 20, 30, 40, 50], [0, 5, 10, 20, 30])
    assert evaluate_partition(w, current_lag=30, now=41.0, config=CFG) is PartitionStatus.OK


def test_stall_when_offsets_equal_and_lag_positive():
    w = window([42, 42, 42, 42, 42], [10, 20, 30, 40, 50])
    assert evaluate_partition(w, current_lag=50, now=41.0, config=CFG) is PartitionStatus.STALL


def test_warn_when_lag_never_decreases_and_ok_when_it_does_once():
    w = window([10, 20, 30, 40, 50], [5, 10, 10, 15, 20])
    assert evaluate_partition(w, current_lag=20, now=41.0, config=CFG) is PartitionStatus.WARN
    w = window([10, 20, 30, 40, 50], [5, 10, 8, 15, 20])
    assert evaluate_partition(w, current_lag=20, now=41.0, config=CFG) is PartitionStatus.OK


# ------------------------------------------------------------------------------------------- windows
def test_min_distance_merge_keeps_the_older_timestamp_and_the_newer_offset():
    w: list[Commit] = []
    w = add_commit(w, Commit(1, 0, 0.0), CFG)
    w = add_commit(w, Commit(2, 3, 0.5), CFG)  # closer than min_distance: merged into the first entry
    assert w == [Commit(2, 3, 0.0)]
    w = add_commit(w, Commit(3, 0, 0.9), CFG)  # still within 1 s of the kept (older) time
    w = add_commit(w, Commit(4, 0, 1.2), CFG)  # 1.2 s after it: a new entry
    assert [(c.offset, c.timestamp) for c in w] == [(3, 0.0), (4, 1.2)]


def test_a_consumer_committing_faster_than_min_distance_still_fills_the_window():
    w: list[Commit] = []
    for i in range(40):  # every 0.3 s: with the newer timestamp kept, the window would never grow
        w = add_commit(w, Commit(i, 0, i * 0.3), CFG)
    assert len(w) == CFG.window_size
    assert all(b.timestamp - a.timestamp >= CFG.min_distance_s for a, b in zip(w, w[1:], strict=False))


def test_add_commit_bounds_the_window():
    w: list[Commit] = []
    for i in range(10):
        w = add_commit(w, Commit(i, 0, float(i * 2)), CFG)
    assert [c.offset for c in w] == [5, 6, 7, 8, 9]


def test_offset_lag_edge_cases():
    assert offset_lag(100, 40) == 60
    assert offset_lag(100, 100) == 0
    assert offset_lag(100, 120) == 0  # committed past the end (truncated topic): never negative
    assert offset_lag(100, None) is None
    assert offset_lag(None, 5) is None
    assert offset_lag(100, -1001) is None


# ------------------------------------------------------------------------------------------- time lag
def test_time_lag_interpolates_between_bracketing_samples():
    table = [(0, 100.0), (100, 110.0), (300, 120.0)]
    assert interpolate_time(table, 200) == pytest.approx(115.0)
    assert time_lag(table, committed=200, log_end=300, now=130.0) == pytest.approx(15.0)


def test_time_lag_extrapolates_outside_the_table():
    table = [(100, 10.0), (200, 20.0)]
    assert interpolate_time(table, 50) == pytest.approx(5.0)
    assert interpolate_time(table, 250) == pytest.approx(25.0)


def test_time_lag_zero_when_caught_up_and_undefined_with_one_sample():
    assert time_lag([(100, 10.0)], committed=100, log_end=100, now=50.0) == 0.0
    assert time_lag([(100, 10.0)], committed=50, log_end=100, now=50.0) is None
    assert time_lag([], committed=50, log_end=100, now=50.0) is None
    assert time_lag([(0, 1.0), (10, 2.0)], committed=None, log_end=10, now=5.0) is None


def test_flat_stretch_keeps_both_ends_and_tables_are_bounded():
    table: list[tuple[int, float]] = []
    for ts in (1.0, 2.0, 3.0, 4.0):
        table = add_log_end_sample(table, 10, ts, size=4)
    assert table == [(10, 1.0), (10, 4.0)]  # when the stretch began, and the latest time it still held
    for i, ts in enumerate([5.0, 6.0, 7.0], start=1):
        table = add_log_end_sample(table, 10 + i * 10, ts, size=4)
    assert table == [(10, 4.0), (20, 5.0), (30, 6.0), (40, 7.0)]
    assert add_log_end_sample(table, 5, 8.0, size=4) == [(5, 8.0)]  # topic recreated


def test_time_lag_after_an_idle_minute_then_five_messages_stays_below_two_ticks():
    """A consumer caught up at the log end, an idle minute, then 5 messages: the clock is driven, 1 s ticks."""
    tick = 1.0
    table: list[tuple[int, float]] = []
    now = 1_000.0
    for _ in range(61):  # an idle minute at log end 100
        table = add_log_end_sample(table, 100, now, size=60)
        assert time_lag(table, committed=100, log_end=100, now=now) == 0.0
        now += tick
    table = add_log_end_sample(table, 105, now, size=60)  # 5 new messages; the consumer still at 100
    lag = time_lag(table, committed=100, log_end=105, now=now)
    assert lag is not None and lag < 2 * tick, lag
    now += tick  # one more tick without consuming: the lag grows by one tick, no more
    table = add_log_end_sample(table, 105, now, size=60)
    lag = time_lag(table, committed=100, log_end=105, now=now)
    assert lag is not None and lag < 2 * tick + tick, lag


def test_log_end_at_a_past_time():
    table = [(0, 10.0), (100, 20.0), (100, 30.0), (300, 40.0)]
    assert log_end_at(table, 5.0) is None  # before the table: the broker has to be asked
    assert log_end_at(table, 15.0) == 50
    assert log_end_at(table, 25.0) == 100
    assert log_end_at(table, 35.0) == 200
    assert log_end_at(table, 99.0) == 300


# ---------------------------------------------------------------------------------------------- groups
def _p(status: PartitionStatus, lag: int | None, partition: int, committed: int | None = 0) -> PartitionResult:
    return PartitionResult("t", partition, committed, 100, lag, None, status, 5)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([PartitionStatus.OK, PartitionStatus.OK], GroupStatus.OK),
        ([PartitionStatus.OK, PartitionStatus.WARN], GroupStatus.WARN),
        ([PartitionStatus.WARN, PartitionStatus.STALL], GroupStatus.ERR),
        ([PartitionStatus.OK, PartitionStatus.STOP], GroupStatus.ERR),
        ([PartitionStatus.REWIND, PartitionStatus.OK], GroupStatus.ERR),
    ],
)
def test_group_status_is_the_worst_partition(statuses, expected):
    result = evaluate_group("g", [_p(s, 10 * i, i) for i, s in enumerate(statuses)])
    assert result.status is expected


def test_group_reports_maxlag_totallag_and_partitions_without_commit():
    parts = [
        _p(PartitionStatus.OK, 5, 0),
        _p(PartitionStatus.WARN, 50, 1),
        _p(PartitionStatus.OK, None, 2, None),
    ]
    result = evaluate_group("g", parts, members=0, state="EMPTY")
    assert result.total_lag == 55
    assert result.max_lag is not None and result.max_lag.partition == 1
    assert result.worst is not None and result.worst.partition == 1
    assert result.no_commit_partitions == 1
    assert "without a committed offset" in result.message and "no active members" in result.message


def test_empty_group_is_ok_and_unknown_group_is_not_found():
    result = evaluate_group("g", [])
    assert result.status is GroupStatus.OK and result.total_lag == 0 and result.max_lag is None
    missing = evaluate_group("nobody", [], members=0, state="NOT_FOUND")
    assert missing.status is GroupStatus.NOT_FOUND and "not found" in missing.message


def test_a_group_that_never_committed_awaits_its_first_commit_and_one_that_vanished_does_not():
    from reliability.kafka.lag import Commit, LagState, awaits_first_commit

    missing = evaluate_group("ingest", [], members=0, state="NOT_FOUND")
    assert awaits_first_commit(missing, LagState())  # first deploy: the consumer has not run yet
    known = LagState(windows={"ingest": {("orders", 0): [Commit(10, 0, 1000.0)]}})
    assert not awaits_first_commit(missing, known)  # it committed before and is gone: a fault
    assert not awaits_first_commit(evaluate_group("ingest", []), LagState())  # found: judged by the rules


# ----------------------------------------------------------------------------------------------- ticks
TP = ("t", 0)


def _tick(state, commits, end, now, members=1, config=CFG, history=None):
    sample = Sample(
        groups={"g": GroupSample(members=members, state="STABLE" if members else "EMPTY")},
        log_end={TP: end},
        commits=[CommitRecord("g", TP[0], TP[1], offset, at) for offset, at in commits],
        partition_counts={"t": 1},
        log_end_history=history or {},
    )
    return advance(state, sample, now, config)


def test_first_tick_judges_from_the_commit_history_with_lags_from_the_time_index():
    """A fresh state: commits older than any log-end sample get their lag from the broker's time index."""
    commits = [(50, 10.0 * i) for i in range(5)]  # the same offset committed every 10 s: STALL
    sample = Sample(
        groups={"g": GroupSample(members=0, state="EMPTY")},
        log_end={TP: 140},
        commits=[CommitRecord("g", "t", 0, o, at) for o, at in commits],
        partition_counts={"t": 1},
    )
    needed = lookups_needed(LagState(), sample, 45.0, CFG)
    assert needed == {(TP, 10.0 * i) for i in range(5)}
    history = {(TP, 10.0 * i): 60 + 20 * i for i in range(5)}
    state, (result,) = _tick(LagState(), commits, 140, 45.0, members=0, history=history)
    assert [c.lag for c in state.windows["g"][TP]] == [10, 30, 50, 70, 90]
    assert result.partitions[0].status is PartitionStatus.STALL and result.status is GroupStatus.ERR


def test_a_stopped_group_is_stop_unless_the_log_end_was_recently_at_its_commit():
    caught_up = [(100 + i, float(i)) for i in range(5)]  # committed at the log end, then nothing
    state, _ = _tick(LagState(), caught_up, 104, 4.5, history={(TP, float(i)): 100 + i for i in range(5)})
    # 30 s later, 10 new messages: the log end was at the commit within `recent_s` -> not STOP yet
    _, (recent,) = _tick(state, [], 114, 34.0)
    assert recent.partitions[0].status is PartitionStatus.OK
    # once that is longer ago than recent_s, it is STOP; a fresh process (no log-end table) asks the
    # broker's time index where the log end was at the start of the recent interval
    fresh = LagState(windows=state.windows)
    later = 4.0 + CFG.recent_s + 50
    needed = lookups_needed(fresh, Sample(groups={"g": GroupSample()}, log_end={TP: 114}), later, CFG)
    assert needed == {(TP, later - CFG.recent_s)}
    _, (still_ok,) = _tick(fresh, [], 114, later, history={(TP, later - CFG.recent_s): 104})
    assert still_ok.partitions[0].status is PartitionStatus.OK  # the messages came within recent_s
    _, (stopped,) = _tick(fresh, [], 114, later, history={(TP, later - CFG.recent_s): 110})
    assert stopped.partitions[0].status is PartitionStatus.STOP and stopped.status is GroupStatus.ERR


def test_a_consumer_that_commits_with_lag_and_then_stops_is_stop_without_asking_the_broker():
    behind = [(10 * i, float(i)) for i in range(1, 5)]
    state, _ = _tick(LagState(), behind, 100, 4.5, history={(TP, float(i)): 100 for i in range(1, 5)})
    sample = Sample(groups={"g": GroupSample()}, log_end={TP: 130})
    assert lookups_needed(state, sample, 20.0, CFG) == set()  # lag at the last commit: never caught up since
    _, (result,) = _tick(state, [], 130, 20.0, members=0)
    assert result.partitions[0].status is PartitionStatus.STOP


def test_deleted_offsets_drop_the_window():
    state, _ = _tick(LagState(), [(5, 1.0)], 5, 1.5)
    state, (result,) = _tick(state, [(None, 2.0)], 5, 2.5)
    assert TP not in state.windows.get("g", {})
    assert result.partitions == ()


def test_partition_without_commit_is_reported():
    sample = Sample(
        groups={"g": GroupSample(members=1, assigned=(("t", 0), ("t", 1)))},
        log_end={("t", 0): 10, ("t", 1): 10},
        commits=[CommitRecord("g", "t", 1, 5, 0.5)],
        partition_counts={"t": 2},
        log_end_history={(("t", 1), 0.5): 10},
    )
    _, results = advance(LagState(), sample, 1.0, CFG)
    parts = {p.partition: p for p in results[0].partitions}
    assert parts[0].committed is None and parts[0].lag is None and parts[0].status is PartitionStatus.OK
    assert parts[1].lag == 5 and results[0].total_lag == 5 and results[0].no_commit_partitions == 1


def test_cluster_error_gives_err_for_every_watched_group_and_keeps_windows():
    state, _ = _tick(LagState(), [(1, 0.0)], 2, 0.5, history={(TP, 0.0): 2})
    error = Sample(groups={"g": GroupSample()}, log_end={}, error="Kafka cluster unreachable")
    state2, results = advance(state, error, 10.0)
    assert [r.status for r in results] == [GroupStatus.ERR]
    assert "unreachable" in results[0].message
    assert state2.windows == state.windows


def test_state_roundtrips_through_json_and_stays_bounded():
    state = LagState()
    for i in range(200):
        state, _ = _tick(state, [(i, i * 2.0)], i + 5, i * 2.0 + 0.5)
    state = LagState(state.windows, state.log_end_tables, {0: 1234, 7: 5}, None)
    data = json.loads(json.dumps(state.to_json()))
    again = LagState.from_json(data)
    assert again.windows == state.windows
    assert again.log_end_tables == state.log_end_tables and again.positions == {0: 1234, 7: 5}
    assert len(again.windows["g"][TP]) == CFG.window_size
    assert len(again.log_end_tables[TP]) <= CFG.time_table_size
    assert LagState.from_json(None).windows == {} and LagState.from_json({"v": 0}).windows == {}


def test_a_commit_record_read_again_does_not_rewrite_the_window():
    state, _ = _tick(LagState(), [(10, 1.0), (20, 3.0)], 30, 3.5, history={(TP, 1.0): 30, (TP, 3.0): 30})
    again, _ = _tick(state, [(10, 1.0)], 30, 4.0)
    assert [c.offset for c in again.windows["g"][TP]] == [10, 20]
