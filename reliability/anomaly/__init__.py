"""Anomaly monitors: per-partition metrics judged against their own history (see README, "Anomaly monitors").

Kept light: the CLI reads `DIRECTIONS` from here without importing the models."""

DIRECTIONS: tuple[str, ...] = ("both", "drop", "spike")  # which way a monitor flags: drops, spikes or both
# asset metadata naming the table's day column (the day a row belongs to), for assets that are not dbt models
DAY_COLUMN_METADATA = "reliability/day_column"
