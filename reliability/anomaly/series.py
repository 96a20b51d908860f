"""Scoring any series with the platform's models: a `timestamp,value` CSV in, one verdict per point out.

Pure: parsing and scoring take text and give rows. Each point is judged against the points before it
(as a monitor running at each timestamp would), anomalies are kept out of later training, and the
season follows the frequency: day of week for daily points, hour of day for hourly or finer points,
none for weekly or coarser ones.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from reliability.anomaly.detector import LEARNING, MonitorSettings, Point, Verdict, judge_series
from reliability.errors import UserFacingError

HEADER = ("timestamp", "value")
MAX_WINDOW = 2_000


class BadSeries(UserFacingError):
    """The CSV cannot be scored; the message names the file, line and value."""


@dataclass(frozen=True)
class Observation:
    line: int
    text: str  # the timestamp as written
    at: datetime
    value: float


def _parse_time(text: str) -> datetime:
    at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def parse_series(text: str, source: str) -> list[Observation]:
    """Rows of `timestamp,value` (ISO 8601 timestamps, numbers), strictly increasing in time."""
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None or tuple(h.strip().lower() for h in header) != HEADER:
        raise BadSeries(f"{source}:1: expected the header 'timestamp,value', got {','.join(header or [])!r}")
    out: list[Observation] = []
    for line, row in enumerate(rows, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise BadSeries(f"{source}:{line}: expected 2 columns (timestamp,value), got {len(row)}: {','.join(row)!r}")
        stamp, raw = row[0].strip(), row[1].strip()
        try:
            at = _parse_time(stamp)
        except ValueError:
            raise BadSeries(f"{source}:{line}: timestamp {stamp!r} is not an ISO 8601 date or time") from None
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise BadSeries(f"{source}:{line}: value {raw!r} is not a finite number")
        if out and at <= out[-1].at:
            raise BadSeries(f"{source}:{line}: timestamp {stamp!r} is not after the previous one ({out[-1].text!r})")
        out.append(Observation(line, stamp, at, value))
    if not out:
        raise BadSeries(f"{source}: no data rows after the header")
    return out


def to_points(observations: Sequence[Observation]) -> tuple[list[Point], int]:
    """Points in steps of the series' typical spacing, with their season; and the season count."""
    if len(observations) < 2:
        return [Point(0.0, o.value) for o in observations], 0
    gaps = [(b.at - a.at).total_seconds() for a, b in zip(observations, observations[1:], strict=False)]
    step = statistics.median(gaps)
    first = observations[0].at
    day = timedelta(days=1).total_seconds()
    if 0.9 * day <= step <= 1.1 * day:
        season, seasons = (lambda at: at.weekday()), 7
    elif step < day and day % step == 0:
        season, seasons = (lambda at: int((at.hour * 3600 + at.minute * 60 + at.second) // step)), int(day // step)
    else:
        season, seasons = (lambda at: None), 0
    points = [Point((o.at - first).total_seconds() / step, o.value, season(o.at)) for o in observations]
    return points, seasons


def score_series(observations: Sequence[Observation], settings: MonitorSettings) -> list[Verdict]:
    points, seasons = to_points(observations)
    # a season needs a few cycles of history: widen the window for hour-of-day seasons
    window = min(MAX_WINDOW, max(settings.window, 8 * seasons))
    return judge_series(points, replace(settings, window=window))


def _number(value: float) -> str:
    return "-inf" if value == -math.inf else "inf" if value == math.inf else f"{value:.4f}"


def verdict_rows(observations: Sequence[Observation], verdicts: Sequence[Verdict]) -> Iterator[list[str]]:
    """`timestamp,value,score,is_anomaly` rows; a point judged during cold start has no score and
    `is_anomaly` says `learning`."""
    yield ["timestamp", "value", "score", "is_anomaly"]
    for o, v in zip(observations, verdicts, strict=True):
        if v.status == LEARNING:
            yield [o.text, f"{o.value:g}", "", LEARNING]
        else:
            yield [o.text, f"{o.value:g}", _number(v.score or 0.0), "true" if v.is_anomaly else "false"]
