"""The anomaly models on synthetic series: seasonality, trend, cold start, direction, excluded days."""

from __future__ import annotations

import math
import random
from datetime import date, timedelta

import pytest

from reliability.anomaly.detector import (
    ANOMALY,
    LEARNING,
    MonitorSettings,
    Point,
    judge,
    judge_series,
    zscore_verdict,
)
from reliability.anomaly.metrics import (
    TableShape,
    fault_class_of_metric,
    metric_column,
    plan_metrics,
    quote_identifier,
    read_metrics,
)
from reliability.anomaly.monitors import by_fault_class, day_point, default_settings, judge_day
from reliability.incidents.model import FaultClass

START = date(2026, 3, 2)  # a Monday
WEEKLY = (0.85, 0.9, 0.95, 1.0, 1.1, 1.3, 1.2)


def shop_volume(days: int, seed: int = 1) -> list[tuple[date, float]]:
    """Orders per day: weekly seasonality, a slow trend, 3% noise."""
    rng = random.Random(seed)
    return [
        (START + timedelta(i), 2000 * WEEKLY[i % 7] * (1 + 0.0025 * i) * math.exp(rng.gauss(0, 0.03)))
        for i in range(days)
    ]


def test_clean_seasonal_trending_history_of_60_days_raises_nothing() -> None:
    series = [day_point(d, v) for d, v in shop_volume(60)]
    verdicts = judge_series(series, default_settings("row_count"))
    assert [v.status for v in verdicts[:21]] == [LEARNING] * 21  # three weeks: three points per weekday
    assert not [v for v in verdicts if v.is_anomaly]
    assert "seasonal" in verdicts[-1].model  # the weekly pattern was found, not averaged away


def test_a_drop_hidden_inside_the_weekly_swing_is_found_where_the_zscore_misses_it() -> None:
    history = [day_point(d, v) for d, v in shop_volume(56)]
    day, usual = shop_volume(57)[-1]  # a Saturday-level day expected high...
    dropped = day_point(day, usual * 0.7)  # ...30% low: still inside a plain mean +/- 3 sd
    ours = judge(history, dropped, default_settings("row_count"))
    baseline = zscore_verdict(history, dropped)
    assert ours.status == ANOMALY and ours.score < 0 and ours.low > dropped.value
    assert not baseline.is_anomaly


def test_a_trend_is_followed_not_flagged() -> None:
    # +1.5 a day, no season: after 8 weeks the level is 1.8x the start; the next day is normal
    series = [Point(float(i), 100 + 1.5 * i + (i % 3 - 1) * 0.2) for i in range(57)]
    verdict = judge(series[:-1], series[-1], MonitorSettings())
    assert verdict.status == "ok" and verdict.model == "trend"
    assert verdict.expected == pytest.approx(series[-1].value, rel=0.01)


def test_cold_start_says_learning_until_min_history() -> None:
    settings = MonitorSettings(min_history=10)
    points = [Point(float(i), 5.0) for i in range(11)]
    assert judge(points[:9], Point(9.0, 500.0), settings).status == LEARNING
    assert judge(points[:9], Point(9.0, 500.0), settings).describe().startswith("learning: 9 usable")
    assert judge(points[:10], Point(10.0, 500.0), settings).status == ANOMALY


def test_direction_and_sensitivity() -> None:
    history = [Point(float(i), 100.0 + (i % 5)) for i in range(30)]
    low, high = Point(30.0, 60.0), Point(30.0, 140.0)
    assert judge(history, low, MonitorSettings(direction="spike")).status == "ok"
    assert judge(history, low, MonitorSettings(direction="drop")).status == ANOMALY
    assert judge(history, high, MonitorSettings(direction="drop")).status == "ok"
    slight = Point(30.0, 112.0)
    assert judge(history, slight, MonitorSettings(sensitivity=3.0)).is_anomaly
    assert not judge(history, slight, MonitorSettings(sensitivity=8.0)).is_anomaly


def test_a_missing_day_is_an_infinite_drop_of_a_count() -> None:
    history = [day_point(d, v) for d, v in shop_volume(30)]
    verdict = judge(history, day_point(START + timedelta(30), 0.0), default_settings("row_count"))
    assert verdict.is_anomaly and verdict.score == -math.inf


def test_excluded_days_are_not_learned_as_normal() -> None:
    """A five-week incident of 30% nulls, resolved a week ago: left in, it is most of the history and
    becomes normal; excluded, the same fault a week later is still flagged."""
    history = [(START + timedelta(i), 0.0 if i < 21 or i >= 56 else 0.3) for i in range(63)]
    incident_days = {START + timedelta(i) for i in range(21, 56)}
    day = START + timedelta(63)
    same_fault = {"null_fraction:email": 0.3}
    learned = judge_day(same_fault, {"null_fraction:email": history}, day)
    kept_out = judge_day(same_fault, {"null_fraction:email": history}, day, excluded_days=incident_days)
    assert not learned["null_fraction:email"].is_anomaly
    assert kept_out["null_fraction:email"].is_anomaly


def test_null_rate_monitor_ignores_noise_below_its_floor_and_alerts_on_rises_only() -> None:
    history = {"null_fraction:email": [(START + timedelta(i), 0.0) for i in range(25)]}
    day = START + timedelta(25)
    assert not judge_day({"null_fraction:email": 0.01}, history, day)["null_fraction:email"].is_anomaly
    assert judge_day({"null_fraction:email": 0.05}, history, day)["null_fraction:email"].is_anomaly


def test_verdicts_grouped_by_fault_class_name_the_worst_monitor() -> None:
    history = {
        "row_count": [(START + timedelta(i), 1000.0 + i % 3) for i in range(25)],
        "null_fraction:a": [(START + timedelta(i), 0.0) for i in range(25)],
        "share:status=placed": [(START + timedelta(i), 0.1) for i in range(25)],
        "share:status=done": [(START + timedelta(i), 0.9) for i in range(5)],
    }
    today = {"row_count": 1001.0, "null_fraction:a": 0.5, "share:status=placed": 0.1, "share:status=done": 0.9}
    grouped = by_fault_class(judge_day(today, history, START + timedelta(25)))
    assert (
        grouped[FaultClass.NULL_RATE].status == ANOMALY
        and grouped[FaultClass.NULL_RATE].worst_metric == "null_fraction:a"
    )
    assert grouped[FaultClass.VOLUME].passed and grouped[FaultClass.VOLUME].status == "ok"
    distribution = grouped[FaultClass.DISTRIBUTION]
    assert distribution.status == "ok" and distribution.learning == 1 and distribution.monitors == 2


def test_a_switched_off_monitor_gives_no_verdict() -> None:
    history = {"null_fraction:a": [(START + timedelta(i), 0.0) for i in range(25)]}
    verdicts = judge_day({"null_fraction:a": 0.9}, history, START + timedelta(25), settings_for=lambda m: None)
    assert verdicts == {}


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="direction"):
        MonitorSettings(direction="down")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sensitivity"):
        MonitorSettings(sensitivity=0)
    with pytest.raises(ValueError, match="min_history"):
        MonitorSettings(min_history=1)


def test_metric_plan_quotes_hostile_names_and_reads_one_row() -> None:
    shape = TableShape(
        'ord"ers; drop table x',
        (("day", "DATE"), ('am"t', "DECIMAL(12,2)"), ("kind", "VARCHAR"), ("order_id", "BIGINT")),
        "day",
        categorical=frozenset({"kind"}),
    )
    plan = plan_metrics(shape)
    assert quote_identifier('ord"ers; drop table x') in plan.sql and '"am""t"' in plan.sql
    assert 'min("order_id"' not in plan.sql  # ids carry no distribution
    from datetime import datetime

    row = (10, 0, 2, 1.0, 9.0, 5.0, [5.0, 8.5], 0, {"a": 7, "b": 3}, 0)
    metrics = read_metrics(plan, row, datetime(2026, 3, 3))
    assert metrics["row_count"] == 10 and metrics['null_fraction:am"t'] == 0.2
    assert metrics['p95:am"t'] == 8.5 and metrics["share:kind=a"] == 0.7 and metrics["distinct_count:kind"] == 2
    assert read_metrics(plan, (0,) + (None,) * 9, datetime(2026, 3, 3)) == {"row_count": 0.0}
    assert metric_column("share:kind=a") == "kind" and fault_class_of_metric("share:kind=a") == FaultClass.DISTRIBUTION
    assert fault_class_of_metric("ratio:a/b") == FaultClass.COMPLETENESS
