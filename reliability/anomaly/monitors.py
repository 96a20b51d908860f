"""Monitors: every metric of a table judged for one day against its own history (pure).

Each metric kind has defaults a good engineer would pick (nulls alert on a rise only, a share must move
by a few points, ...); the assets configuration (`reliability.anomaly.config`) overrides them per
asset, per metric kind or per metric, and can switch a column's monitors off. Verdicts are grouped by
fault class: one asset check per class, failing when any of its monitors flags the day.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from reliability.anomaly.detector import ANOMALY, LEARNING, OK, MonitorSettings, Point, Verdict, judge
from reliability.anomaly.metrics import fault_class_of_metric, metric_kind
from reliability.incidents.model import FaultClass

# kind -> the settings that differ from MonitorSettings' defaults
KIND_DEFAULTS: Mapping[str, Mapping[str, object]] = {
    "row_count": {"min_rel_change": 0.05, "multiplicative": True},
    "null_fraction": {"direction": "spike", "min_abs_change": 0.02, "min_rel_change": 0.0},
    "distinct_count": {"min_abs_change": 0.5, "min_rel_change": 0.0},
    "share": {"min_abs_change": 0.03, "min_rel_change": 0.0},
    # extremes hang on single rows: only a new extreme well beyond the usual ones is news
    "min": {"direction": "drop", "min_rel_change": 0.5},
    "max": {"direction": "spike", "min_rel_change": 0.5},
    "mean": {"min_rel_change": 0.03},
    "p50": {"min_rel_change": 0.03},
    "p95": {"min_rel_change": 0.03},
    "freshness_gap_hours": {"direction": "spike", "min_abs_change": 1.0, "min_rel_change": 0.0},
    "load_delay_hours": {"direction": "spike", "min_abs_change": 1.0, "min_rel_change": 0.0},
    "ratio": {"min_rel_change": 0.05, "multiplicative": True},
}
CHECK_PREFIX = "anomaly_"
MONITORED_CLASSES: tuple[FaultClass, ...] = (
    FaultClass.VOLUME, FaultClass.COMPLETENESS, FaultClass.NULL_RATE, FaultClass.DISTRIBUTION, FaultClass.FRESHNESS,
)  # fmt: skip


def check_name(fault_class: FaultClass) -> str:
    """`anomaly_volume`, ...: also the check's `check_type`, which names the incident's fault class."""
    return f"{CHECK_PREFIX}{fault_class.value}"


def default_settings(metric: str, base: MonitorSettings | None = None) -> MonitorSettings:
    return (base or MonitorSettings()).with_overrides(**KIND_DEFAULTS.get(metric_kind(metric), {}))


def days_to_judge(
    today: date,
    rows_by_day: Mapping[date, int],
    judged_rows: Mapping[date, float],
    first_judged: date | None,
    lookback_days: int,
) -> list[date]:
    """The complete days of a table materialized without partitions that need a verdict, oldest first.

    Only days before `today` (the in-progress day would look like a volume drop) and within
    `lookback_days` of it. A day is judged when it was never judged, from the first day the monitors
    know (the first judged day, else the first day with rows): a day without rows after it is a
    missing day, judged and flagged. A judged day whose row count changed since (late rows, deletes)
    is judged again. `rows_by_day` and `judged_rows` cover the lookback window.
    """
    start = today - timedelta(days=lookback_days)
    with_rows = [d for d, n in rows_by_day.items() if n > 0 and start <= d < today]
    known = [d for d in (first_judged, min(with_rows, default=None)) if d is not None]
    if not known:
        return []
    days = []
    day = max(start, min(known))
    while day < today:
        rows = float(rows_by_day.get(day, 0))
        if day not in judged_rows or judged_rows[day] != rows:
            days.append(day)
        day += timedelta(days=1)
    return days


def day_point(day: date, value: float) -> Point:
    """Daily metrics: time in days, season = weekday."""
    return Point(float(day.toordinal()), float(value), day.weekday())


def judge_day(
    today: Mapping[str, float],
    history: Mapping[str, Sequence[tuple[date, float]]],
    day: date,
    excluded_days: Collection[date] = (),
    settings_for: Callable[[str], MonitorSettings | None] = default_settings,
) -> dict[str, Verdict]:
    """A verdict for each metric measured on `day`, from its history before `day` minus excluded days.
    `settings_for` returns None for a metric whose monitor is switched off."""
    excluded = set(excluded_days)
    verdicts: dict[str, Verdict] = {}
    for metric, value in sorted(today.items()):
        settings = settings_for(metric)
        if settings is None or not settings.enabled:
            continue
        points = [day_point(d, v) for d, v in history.get(metric, ()) if d < day and d not in excluded]
        verdicts[metric] = judge(points, day_point(day, value), settings)
    return verdicts


@dataclass(frozen=True)
class ClassVerdict:
    """What one anomaly check reports: its status, the monitor that decides it, and every anomaly."""

    fault_class: FaultClass
    status: str  # anomaly | ok | learning
    worst_metric: str | None
    worst: Verdict | None
    anomalies: dict[str, Verdict]
    monitors: int
    learning: int

    @property
    def passed(self) -> bool:
        return self.status != ANOMALY


def by_fault_class(verdicts: Mapping[str, Verdict]) -> dict[FaultClass, ClassVerdict]:
    """One verdict per fault class with monitors: anomaly when any monitor flags the day, learning when
    none has enough history yet, else ok. The decisive monitor is the one furthest outside its band."""
    grouped: dict[FaultClass, dict[str, Verdict]] = {}
    for metric, verdict in verdicts.items():
        grouped.setdefault(fault_class_of_metric(metric), {})[metric] = verdict
    out = {}
    for fault_class, members in grouped.items():
        anomalies = {m: v for m, v in members.items() if v.is_anomaly}
        judged = {m: v for m, v in members.items() if v.status != LEARNING}
        candidates = anomalies or judged
        worst_metric = max(candidates, key=lambda m: abs(candidates[m].score or 0.0)) if candidates else None
        status = ANOMALY if anomalies else OK if judged else LEARNING
        out[fault_class] = ClassVerdict(
            fault_class, status, worst_metric, members.get(worst_metric) if worst_metric else None, anomalies,
            len(members), len(members) - len(judged),
        )  # fmt: skip
    return out
