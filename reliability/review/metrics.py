"""Incident metrics: counts and MTTD / MTTA / MTTM / MTTR, median and p90, by a dimension. Pure, but
for `load_figures`, the one store read they need.

One `IncidentTimes` per incident, built from the store's record; every interval is in seconds and None
while it has not happened (an open incident has no MTTR: it is left out of that figure, not zero).
p90 is the nearest-rank percentile: a value that occurred, never an interpolation.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

METRICS = ("mttd", "mtta", "mttm", "mttr")
DIMENSIONS = ("severity", "fault_class", "owner", "week")


@dataclass(frozen=True)
class IncidentTimes:
    incident_id: int
    severity: str
    fault_class: str
    owner: str
    detected_at: datetime
    status: str
    mttd: float | None
    mtta: float | None
    mttm: float | None
    mttr: float | None

    @property
    def week(self) -> str:
        year, week, _ = self.detected_at.isocalendar()
        return f"{year}-W{week:02d}"


def _between(a: datetime | None, b: datetime | None) -> float | None:
    return (b - a).total_seconds() if a is not None and b is not None else None


IMPACT_ESTIMATE = "impact_estimate"  # timeline data key of a post-mortem's impact-start estimate


def impact_estimate(timeline: Iterable[Any]) -> datetime | None:
    """The latest impact start a post-mortem estimated from the data (see `reliability.review.service`)."""
    found = None
    for entry in timeline:
        estimate = (entry.data or {}).get(IMPACT_ESTIMATE)
        if estimate and estimate.get("at"):
            found = datetime.fromisoformat(estimate["at"])
    return found


def times_of(incident: Any, timeline: Iterable[Any] = ()) -> IncidentTimes:
    """An incident's intervals; MTTD from the post-mortem's estimate of the impact start when one was
    recorded on `timeline` (the broker timestamp of the first bad message beats when a check ran)."""
    impact = impact_estimate(timeline) or incident.impact_started_at
    return IncidentTimes(
        incident.id,
        incident.severity,
        incident.fault_class,
        incident.owners[0] if incident.owners else "unassigned",
        incident.detected_at,
        incident.status,
        _between(impact, incident.detected_at),
        _between(incident.detected_at, incident.acknowledged_at),
        _between(incident.detected_at, incident.mitigated_at),
        _between(incident.detected_at, incident.resolved_at),
    )


# The timeline entries the figures read: detections (counted by fault class) and the impact-start
# estimates a post-mortem records (`reliability.review.service.record_impact` writes them as triage).
FIGURE_KINDS = ("detection", "triage")


def figures(
    incidents: Iterable[Any], timelines: Mapping[int, Sequence[Any]]
) -> tuple[list[IncidentTimes], dict[str, int]]:
    """Each incident's times and the detections recorded on incidents by fault class, from the incidents
    and their timeline entries by incident id (of at least FIGURE_KINDS)."""
    times: list[IncidentTimes] = []
    detections: dict[str, int] = {}
    for incident in incidents:
        timeline = timelines.get(incident.id, ())
        times.append(times_of(incident, timeline))
        for entry in timeline:
            if entry.kind == "detection":
                fault = str(entry.data.get("fault_class") or incident.fault_class)
                detections[fault] = detections.get(fault, 0) + 1
    return times, detections


def p90(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass(frozen=True)
class GroupStats:
    dimension: str
    value: str
    count: int
    open: int
    figures: dict[str, tuple[float | None, float | None]]  # metric -> (median, p90)


def _stats(dimension: str, value: str, group: Sequence[IncidentTimes]) -> GroupStats:
    figures = {}
    for metric in METRICS:
        values = [v for v in (getattr(t, metric) for t in group) if v is not None]
        figures[metric] = (median(values), p90(values))
    return GroupStats(dimension, value, len(group), sum(t.status != "resolved" for t in group), figures)


def stats_by(times: Iterable[IncidentTimes], dimension: str) -> list[GroupStats]:
    """One row per value of `dimension` (severity, fault_class, owner, week), sorted by value."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}; known: {DIMENSIONS}")
    key: Callable[[IncidentTimes], str] = lambda t: str(getattr(t, dimension))  # noqa: E731
    groups: dict[str, list[IncidentTimes]] = {}
    for t in times:
        groups.setdefault(key(t), []).append(t)
    return [_stats(dimension, value, group) for value, group in sorted(groups.items())]


def overall(times: Sequence[IncidentTimes]) -> GroupStats:
    return _stats("all", "all", list(times))


def since(times: Iterable[IncidentTimes], start: datetime | None) -> list[IncidentTimes]:
    return [t for t in times if start is None or t.detected_at >= start]


def load_figures(store: Any) -> tuple[list[IncidentTimes], dict[str, int]]:
    """Every incident's times and the detections by fault class (`figures`) in two store queries however
    many incidents there are: what `/metrics`, `incidents stats` and `incident_metrics` read. Lives here,
    not in the post-mortem service, so those start without the post-mortem's templates and evidence code."""
    return figures(store.list_incidents(), store.timelines(FIGURE_KINDS))
