"""Burrow's rules and Kafka Lag Exporter's time lag, one edge case at a time (pure functions, no Kafka)."""

from __future__ import annotations

import json

import pytest

from reliability.kafka.lag import (
    Commit,
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
    evaluate_group,
    evaluate_partition,
    interpolate_time,
    offset_lag,
    time_lag,
)

CFG = LagConfig(window_size=5, min_distance_s=1.0)


def window(offsets: list[int], lags: list[int], start: float = 0.0, step: float = 10.0) -> list[Commit]:
    return [Commit(o, lag, start + i * step) for i, (o, lag) in enumerate(zip(offsets, lags, strict=True))]


# ------------------------------------------------------------------------------------------ partitions
def test_empty_window_is_ok():
    assert evaluate_partition([], current_lag=500, now=100.0, config=CFG) is PartitionStatus.OK


def test_single_sample_is_ok_even_with_lag():
    assert evaluate_partition(window([10], [90]), current_lag=90, now=5.0, config=CFG) is PartitionStatus.OK


def test_incomplete_window_is_ok():
    w = window([10, 10, 10, 10], [5, 10, 20, 30])
    assert evaluate_partition(w, current_lag=30, now=35.0, config=CFG) is PartitionStatus.OK


def test_current_lag_within_allowed_is_ok():
    w = window([10, 10, 10, 10, 10], [1, 1, 1, 1, 1])
    assert evaluate_partition(w, 0, now=41.0, config=CFG) is PartitionStatus.OK
    allowing = LagConfig(window_size=5, allowed_lag=5)
    assert evaluate_partition(w, 3, now=41.0, config=allowing) is PartitionStatus.OK


def test_unknown_current_lag_is_ok():
    w = window([10, 10, 10, 10, 10], [1, 2, 3, 4, 5])
    assert evaluate_partition(w, None, now=41.0, config=CFG) is PartitionStatus.OK


def test_stop_when_no_commit_for_longer_than_the_window_spans():
    w = window([10, 20, 30, 40, 50], [0, 0, 0, 0, 0])  # spans 0..40 s
    assert evaluate_partition(w, current_lag=7, now=81.0, config=CFG) is PartitionStatus.STOP
    # exactly at the boundary it is not stopped yet
    assert evaluate_partition(w, current_lag=7, now=80.0, config=CFG) is PartitionStatus.OK


def test_stop_not_reported_when_head_has_not_moved_past_last_commit():
    w = window([10, 20, 30, 40, 50], [0, 0, 0, 0, 0])
    assert evaluate_partition(w, current_lag=0, now=1000.0, config=CFG) is PartitionStatus.OK


def test_rewind_when_an_offset_goes_backwards():
    w = window([100, 110, 120, 40, 50], [5, 5, 5, 90, 95])
    assert evaluate_partition(w, current_lag=95, now=41.0, config=CFG) is PartitionStatus.REWIND


def test_rewind_caught_even_after_zero_lag():
    # Burrow would skip it (a zero lag in the window): we check REWIND first
    w = window([100, 110, 120, 130, 20], [0, 0, 0, 0, 110])
    assert evaluate_partition(w, current_lag=110, now=41.0, config=CFG) is PartitionStatus.REWIND


def test_any_zero_lag_in_window_is_ok():
    w = window([10, 20, 30, 40, 50], [0, 5, 10, 20, 30])
    assert evaluate_partition(w, current_lag=30, now=41.0, config=CFG) is PartitionStatus.OK


def test_stall_when_offsets_equal_and_lag_positive():
    w = window([42, 42, 42, 42, 42], [10, 20, 30, 40, 50])
    assert evaluate_partition(w, current_lag=50, now=41.0, config=CFG) is PartitionStatus.STALL


def test_offsets_equal_but_lag_zero_in_window_is_ok():
    w = window([42, 42, 42, 42, 42], [0, 0, 3, 5, 8])
    assert evaluate_partition(w, current_lag=8, now=41.0, config=CFG) is PartitionStatus.OK


def test_warn_when_lag_never_decreases():
    w = window([10, 20, 30, 40, 50], [5, 10, 10, 15, 20])
    assert evaluate_partition(w, current_lag=20, now=41.0, config=CFG) is PartitionStatus.WARN


def test_ok_when_lag_decreases_once():
    w = window([10, 20, 30, 40, 50], [5, 10, 8, 15, 20])
    assert evaluate_partition(w, current_lag=20, now=41.0, config=CFG) is PartitionStatus.OK


def test_rules_apply_in_order_stop_before_rewind_before_stall():
    rewound_and_old = window([100, 90, 90, 90, 90], [1, 11, 12, 13, 14])
    assert evaluate_partition(rewound_and_old, 14, now=500.0, config=CFG) is PartitionStatus.STOP
    assert evaluate_partition(rewound_and_old, 14, now=41.0, config=CFG) is PartitionStatus.REWIND


# ------------------------------------------------------------------------------------------- windows
def test_add_commit_keeps_one_per_min_distance_and_bounds_the_window():
    w: list[Commit] = []
    w = add_commit(w, Commit(1, 0, 0.0), CFG)
    w = add_commit(w, Commit(2, 0, 0.5), CFG)  # closer than min_distance: replaces
    assert [c.offset for c in w] == [2]
    for i in range(1, 10):
        w = add_commit(w, Commit(2 + i, 0, float(i * 2)), CFG)
    assert len(w) == CFG.window_size
    assert [c.offset for c in w] == [7, 8, 9, 10, 11]


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


def test_flat_head_keeps_its_first_time_and_tables_are_bounded():
    table: list[tuple[int, float]] = []
    table = add_log_end_sample(table, 10, 1.0, size=3)
    table = add_log_end_sample(table, 10, 2.0, size=3)
    assert table == [(10, 1.0)]
    for i, ts in enumerate([3.0, 4.0, 5.0], start=1):
        table = add_log_end_sample(table, 10 + i * 10, ts, size=3)
    assert table == [(20, 3.0), (30, 4.0), (40, 5.0)]
    assert add_log_end_sample(table, 5, 6.0, size=3) == [(5, 6.0)]  # topic recreated


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


def test_empty_group_has_no_partitions_and_is_ok():
    result = evaluate_group("g", [])
    assert result.status is GroupStatus.OK and result.total_lag == 0 and result.max_lag is None


# ----------------------------------------------------------------------------------------------- ticks
def _tick(state, committed, end, now, members=1, config=CFG):
    sample = Sample(
        groups={"g": GroupSample(committed={("t", 0): committed}, members=members)}, log_end={("t", 0): end}
    )
    return advance(state, sample, now, config)


def test_advance_detects_stop_of_a_group_without_members():
    state = LagState()
    for i in range(5):  # a live consumer keeps up
        state, _ = _tick(state, committed=100 * i, end=100 * i, now=float(i * 10))
    statuses = []
    for i in range(5, 12):  # it is gone; messages pile up
        state, results = _tick(state, committed=400, end=100 * i, now=float(i * 10), members=0)
        statuses.append(results[0].partitions[0].status)
    assert statuses[0] is PartitionStatus.OK  # 10 s since last commit < 40 s span
    assert statuses[-1] is PartitionStatus.STOP
    assert results[0].status is GroupStatus.ERR


def test_advance_detects_stall_of_a_live_group():
    state = LagState()
    for i in range(6):
        state, results = _tick(state, committed=50, end=100 + 10 * i, now=float(i * 10), members=1)
    assert results[0].partitions[0].status is PartitionStatus.STALL


def test_idle_caught_up_consumer_without_members_is_not_stopped_when_data_arrives():
    state = LagState()
    for i in range(10):
        state, _ = _tick(state, committed=500, end=500, now=float(i * 10), members=0)
    state, results = _tick(state, committed=500, end=600, now=100.0, members=0)
    assert results[0].status is GroupStatus.OK


def test_partition_without_commit_is_reported():
    sample = Sample(
        groups={"g": GroupSample(committed={("t", 0): None, ("t", 1): 5}, members=0)},
        log_end={("t", 0): 10, ("t", 1): 10},
    )
    _, results = advance(LagState(), sample, 1.0, CFG)
    parts = {p.partition: p for p in results[0].partitions}
    assert parts[0].committed is None and parts[0].lag is None and parts[0].status is PartitionStatus.OK
    assert parts[1].lag == 5 and results[0].total_lag == 5 and results[0].no_commit_partitions == 1


def test_cluster_error_gives_err_for_every_known_group_and_keeps_windows():
    state, _ = _tick(LagState(), committed=1, end=2, now=0.0)
    state2, results = advance(state, Sample(groups={}, log_end={}, error="Kafka cluster unreachable"), 10.0)
    assert [r.status for r in results] == [GroupStatus.ERR]
    assert "unreachable" in results[0].message
    assert state2.windows == state.windows


def test_state_roundtrips_through_json_and_stays_bounded():
    state = LagState()
    for i in range(200):
        state, _ = _tick(state, committed=i, end=i + 5, now=float(i * 2))
    data = json.loads(json.dumps(state.to_json()))
    again = LagState.from_json(data)
    assert again.windows == state.windows
    assert again.log_end_tables == state.log_end_tables
    assert len(again.windows["g"][("t", 0)]) == CFG.window_size
    assert len(again.log_end_tables[("t", 0)]) <= CFG.time_table_size
    assert LagState.from_json(None).windows == {} and LagState.from_json({"v": 0}).windows == {}
