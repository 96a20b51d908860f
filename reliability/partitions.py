"""Which partitions a Dagster run processes, from its tags (pure: no Dagster import).

One place for this, because contract checks bind their Soda window to it and incident detection
labels check results and failed runs with it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

# check-result metadata: the partition keys a result is about (incident detection reads it)
PARTITION_KEYS_METADATA = "partition_keys"
MAX_PARTITION_KEYS = 10_000  # a longer range is cut: the keys only label a detection

_PARTITION_TAG = "dagster/partition"
_RANGE_START_TAG, _RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
_KEY_FORMATS = (("%Y-%m-%d", dt.timedelta(days=1)), ("%Y-%m-%d-%H:%M", dt.timedelta(hours=1)))


def _key_window(key: str) -> tuple[dt.datetime, dt.datetime] | None:
    for fmt, step in _KEY_FORMATS:
        try:
            start = dt.datetime.strptime(key, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
        return start, start + step
    return None


def partition_window(tags: Mapping[str, str]) -> tuple[dt.datetime, dt.datetime] | None:
    """`[start, end)` in UTC of the daily/hourly partition (or partition range) a run processes.

    From the run's tags, so it works for checks that run with their asset and for check-only runs.
    None when the run is not time-partitioned (the checks then see the whole table).
    """
    first = tags.get(_RANGE_START_TAG) or tags.get(_PARTITION_TAG)
    last = tags.get(_RANGE_END_TAG) or tags.get(_PARTITION_TAG)
    if not first or not last:
        return None
    first_window, last_window = _key_window(first), _key_window(last)
    if first_window is None or last_window is None:
        return None
    return first_window[0], last_window[1]


def partition_keys(tags: Mapping[str, str]) -> list[str]:
    """The partition keys a run processes: its partition, or every key of its time-partition range."""
    single = tags.get(_PARTITION_TAG)
    first, last = tags.get(_RANGE_START_TAG), tags.get(_RANGE_END_TAG)
    if not (first and last):
        return [single] if single else []
    for fmt, step in _KEY_FORMATS:
        try:
            at = dt.datetime.strptime(first, fmt)
            end = dt.datetime.strptime(last, fmt)
        except ValueError:
            continue
        keys = []
        while at <= end and len(keys) <= MAX_PARTITION_KEYS:
            keys.append(at.strftime(fmt))
            at += step
        return keys
    return [first] if first == last else [first, last]


def partition_label(tags: Mapping[str, str]) -> str | None:
    """A run's partition as people read it: the key, `first..last` for a range, None if unpartitioned.

    A single-run backfill builds many days in one run; its check results have no partition of their
    own, and the reconciliation verdict names the range they covered."""
    first, last = tags.get(_RANGE_START_TAG), tags.get(_RANGE_END_TAG)
    if first and last:
        return first if first == last else f"{first}..{last}"
    return tags.get(_PARTITION_TAG)
