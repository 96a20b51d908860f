"""The anomaly models: one expected value and band for the next point of a series, from its history.

Pure (no I/O). A plain z-score (mean +/- 3 sd) is fooled three ways on daily table metrics: weekly
seasonality widens its band so real drops hide inside it, a trend moves the mean away from today, and
one past outlier inflates the standard deviation for weeks. So the model here is:

- robust: medians and MAD instead of mean and sd, so a few outliers left in the history barely move it;
- trend-aware: a Theil-Sen slope (median of pairwise slopes, taken between points of the same season
  so the weekly pattern does not bias it), extrapolated to the scored point;
- seasonal: a per-season (day of week) median of the detrended history, used only when it explains
  the history clearly better than one level ("where the history shows weekly seasonality");
- trained on the history the caller passes, without the points it marks excluded (partitions
  quarantined or covered by an incident), so a past fault never becomes normal;
- cold start: fewer than `min_history` usable points gives the verdict "learning", never a pass.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from reliability.anomaly import DIRECTIONS

Direction = Literal["both", "drop", "spike"]
MAD_TO_SD = 1.4826  # MAD of a normal sample times this estimates its standard deviation

LEARNING, OK, ANOMALY = "learning", "ok", "anomaly"


@dataclass(frozen=True)
class MonitorSettings:
    """How one monitor judges its metric. `sensitivity` is the band's half-width in robust standard
    deviations (lower = more alerts); the band is never narrower than `min_abs_change` or
    `min_rel_change` x |expected|, so a metric that never moved (0 nulls) does not alert on noise."""

    direction: Direction = "both"
    sensitivity: float = 4.5
    min_history: int = 21
    window: int = 56
    min_abs_change: float = 0.0
    min_rel_change: float = 0.02
    seasonal: Literal["auto", "on", "off"] = "auto"
    trend: bool = True
    enabled: bool = True
    # counts grow and swing in proportion to their size: model log(value) (when the history is all > 0)
    multiplicative: bool = False

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {list(DIRECTIONS)}, got {self.direction!r}")
        if not (self.sensitivity > 0 and math.isfinite(self.sensitivity)):
            raise ValueError(f"sensitivity must be a number > 0, got {self.sensitivity!r}")
        if self.min_history < 3:
            raise ValueError(f"min_history must be at least 3, got {self.min_history!r}")
        if self.window < self.min_history:
            raise ValueError(f"window ({self.window}) must be at least min_history ({self.min_history})")
        if self.min_abs_change < 0 or self.min_rel_change < 0:
            raise ValueError("min_abs_change and min_rel_change must be >= 0")
        if self.seasonal not in ("auto", "on", "off"):
            raise ValueError(f"seasonal must be auto, on or off, got {self.seasonal!r}")

    def with_overrides(self, **overrides: object) -> MonitorSettings:
        return replace(self, **overrides)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Point:
    """One observation: `t` is its position in time (days, or steps of the series' frequency),
    `season` its season (weekday) or None when the series has none."""

    t: float
    value: float
    season: Hashable | None = None


@dataclass(frozen=True)
class Verdict:
    status: str  # learning | ok | anomaly
    value: float
    expected: float | None = None
    low: float | None = None
    high: float | None = None
    score: float | None = None  # signed distance from expected, in robust sd (sensitivity = band edge)
    model: str = ""
    history_points: int = 0

    @property
    def is_anomaly(self) -> bool:
        return self.status == ANOMALY

    def describe(self) -> str:
        if self.status == LEARNING:
            return f"learning: {self.history_points} usable point(s) of history so far"
        return (
            f"{self.status}: value {self.value:.6g}, expected {self.expected:.6g} "
            f"(band {self.low:.6g} .. {self.high:.6g}), score {self.score:+.2f}, model {self.model}"
        )


def _mad(values: Sequence[float], center: float) -> float:
    return statistics.median(abs(v - center) for v in values)


def _theil_sen(points: Sequence[Point]) -> float:
    """Median slope over pairs of points in the same season (all pairs when seasons never repeat)."""
    slopes = []
    for i, a in enumerate(points):
        for b in points[i + 1 :]:
            if b.t != a.t and a.season == b.season:
                slopes.append((b.value - a.value) / (b.t - a.t))
    if not slopes:
        for i, a in enumerate(points):
            slopes += [(b.value - a.value) / (b.t - a.t) for b in points[i + 1 :] if b.t != a.t]
    return statistics.median(slopes) if slopes else 0.0


@dataclass(frozen=True)
class _Fit:
    slope: float
    t_ref: float
    levels: dict  # season -> level; key None holds the overall level
    scale: float  # robust sd of the residuals
    model: str

    def expected(self, point_t: float, season: Hashable | None) -> float:
        level = self.levels.get(season, self.levels[None])
        return level + self.slope * (point_t - self.t_ref)


def _loo_residuals(values: Sequence[float]) -> list[float]:
    """Each value minus the median of the others: the error of predicting a point the fit never saw.
    In-sample residuals around a median of 3 are 0 for one point in 3 and would make the noise look
    far smaller than it is."""
    if len(values) < 2:
        return [0.0 for _ in values]
    return [v - statistics.median([*values[:i], *values[i + 1 :]]) for i, v in enumerate(values)]


def _fit_with_slope(history: Sequence[Point], settings: MonitorSettings, slope: float, t_ref: float) -> _Fit:
    """Levels (one, or one per season when that predicts the history clearly better) after the slope.
    The scale is the robust spread of leave-one-out prediction errors."""
    detrended = [p.value - slope * (p.t - t_ref) for p in history]
    levels: dict = {None: statistics.median(detrended)}
    residuals = _loo_residuals(detrended)
    params, model = 1 + (1 if slope else 0), "trend" if slope else "robust"
    by_season: dict = {}
    for p, v in zip(history, detrended, strict=True):
        by_season.setdefault(p.season, []).append(v)
    if (
        settings.seasonal != "off"
        and None not in by_season
        and len(by_season) >= 2
        and min(map(len, by_season.values())) >= 3
    ):
        seasonal_residuals = [r for vs in by_season.values() for r in _loo_residuals(vs)]
        # mean (not median) absolute errors: a pattern on two days of seven (weekends) is most of the
        # gain, and a median would call those days outliers
        flat_l1 = statistics.fmean(abs(r) for r in residuals)
        if settings.seasonal == "on" or statistics.fmean(abs(r) for r in seasonal_residuals) < 0.7 * flat_l1:
            levels.update({s: statistics.median(vs) for s, vs in by_season.items()})
            residuals = seasonal_residuals
            params = len(by_season) + (1 if slope else 0)
            model = "seasonal+trend" if slope else "seasonal"
    raw_scale = MAD_TO_SD * _mad(residuals, statistics.median(residuals))
    # a scale estimated from few points is itself uncertain (heavier tails, as Student's t)
    dof = max(1, len(history) - params)
    return _Fit(slope, t_ref, levels, raw_scale * (1 + 2 / dof), model)


def _fit(history: Sequence[Point], settings: MonitorSettings) -> _Fit:
    """The model with a trend when the trend explains the history (tighter residuals), else without."""
    t_ref = statistics.median(p.t for p in history)
    flat = _fit_with_slope(history, settings, 0.0, t_ref)
    if not settings.trend or len(history) < 6:
        return flat
    slope = _theil_sen(history)
    if not slope:
        return flat
    trended = _fit_with_slope(history, settings, slope, t_ref)
    return trended if trended.scale < flat.scale else flat


def judge(history: Sequence[Point], point: Point, settings: MonitorSettings) -> Verdict:
    """The verdict on `point` given its `history` (earlier points, excluded ones already removed)."""
    usable = sorted((p for p in history if math.isfinite(p.value) and p.t < point.t), key=lambda p: p.t)
    usable = usable[-settings.window :]
    if len(usable) < settings.min_history:
        return Verdict(LEARNING, point.value, history_points=len(usable))
    if settings.multiplicative and all(p.value > 0 for p in usable):
        return _judge_log(usable, point, settings)
    fit = _fit(usable, settings)
    expected = fit.expected(point.t, point.season)
    half_width = max(
        settings.sensitivity * fit.scale, settings.min_abs_change, settings.min_rel_change * abs(expected), 1e-9
    )
    score = settings.sensitivity * (point.value - expected) / half_width
    return _verdict(point.value, expected, expected - half_width, expected + half_width, score, fit.model,
                    len(usable), settings)  # fmt: skip


def _verdict(value: float, expected: float, low: float, high: float, score: float, model: str, points: int,
             settings: MonitorSettings) -> Verdict:  # fmt: skip
    breach = {"both": abs(score), "drop": -score, "spike": score}[settings.direction] > settings.sensitivity
    return Verdict(ANOMALY if breach else OK, value, expected, low, high, score, model, points)


def _judge_log(usable: Sequence[Point], point: Point, settings: MonitorSettings) -> Verdict:
    """Judged on log(value): trend and season act as factors; a value of 0 is infinitely far below."""
    fit = _fit([replace(p, value=math.log(p.value)) for p in usable], settings)
    log_expected = fit.expected(point.t, point.season)
    half_width = max(settings.sensitivity * fit.scale, math.log1p(settings.min_rel_change), 1e-9)
    log_value = math.log(point.value) if point.value > 0 else -math.inf
    score = settings.sensitivity * (log_value - log_expected) / half_width
    low, high = math.exp(log_expected - half_width), math.exp(log_expected + half_width)
    return _verdict(point.value, math.exp(log_expected), low, high, score, f"{fit.model} (log)", len(usable), settings)


def judge_series(points: Sequence[Point], settings: MonitorSettings, learn_anomalies: bool = False) -> list[Verdict]:
    """Every point judged against the points before it, as a monitor running day after day would.

    An anomaly is left out of later training (as an incident's partitions are) unless
    `learn_anomalies`: a fault that lasts is then still flagged, not learned as the new normal."""
    history: list[Point] = []
    verdicts = []
    for point in sorted(points, key=lambda p: p.t):
        verdict = judge(history, point, settings)
        verdicts.append(verdict)
        if learn_anomalies or not verdict.is_anomaly:
            history.append(point)
    return verdicts


def zscore_verdict(history: Sequence[Point], point: Point, window: int = 14, k: float = 3.0) -> Verdict:
    """The baseline: mean +/- k standard deviations of the trailing `window` points, no seasonality,
    no trend, outliers kept (Elementary's default anomaly test)."""
    usable = sorted((p for p in history if math.isfinite(p.value) and p.t < point.t), key=lambda p: p.t)[-window:]
    if len(usable) < window:
        return Verdict(LEARNING, point.value, history_points=len(usable))
    values = [p.value for p in usable]
    mean = statistics.fmean(values)
    sd = statistics.stdev(values)
    if sd == 0:
        score = 0.0 if point.value == mean else math.copysign(math.inf, point.value - mean)
    else:
        score = (point.value - mean) / sd
    return Verdict(
        ANOMALY if abs(score) > k else OK, point.value, mean, mean - k * sd, mean + k * sd, score, "zscore", len(usable)
    )
