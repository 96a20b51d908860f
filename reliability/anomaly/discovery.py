"""Which assets of the code location get anomaly monitors, and the day column of each (pure).

The Dagster glue (`reliability.anomaly.defs`) describes every asset as a `TableAsset` from its spec;
`monitored_assets` merges them with the `anomaly:` section: every DuckDB table is monitored unless the
section or the asset opts out; a listed asset's own fields win over what was discovered.

The day column is found where the platform already knows it (first match wins): the section's
`partition_column`, a dbt model's `meta: {anomaly: {day_column: ...}}`, the `unique_key` of a
`replace_window` incremental model (the daily models' date column), its dbt `event_time`, or a raw
asset's `reliability/day_column` metadata. None: the table is judged as whole-table snapshots.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reliability.anomaly.config import AnomalyConfig, AssetMonitors
from reliability.errors import ConfigError

# dbt materializations that leave nothing in the warehouse to measure (a view is measured by running it)
NOT_TABLES = frozenset({"ephemeral"})
REPLACE_WINDOW = "replace_window"


@dataclass(frozen=True)
class TableAsset:
    """An asset of the code location as the anomaly area sees it."""

    asset: str
    table: str
    schema: str = "main"
    is_table: bool = True  # stored as a DuckDB table (kinds or storage kind say so)
    materialization: str | None = None  # dbt's, for dbt nodes
    day_column: str | None = None
    day_column_source: str | None = None
    enabled: bool = True  # false: the asset's own definition opts out (dbt meta)

    @property
    def monitorable(self) -> bool:
        return self.is_table and self.materialization not in NOT_TABLES


def dbt_anomaly_meta(node: Mapping[str, Any]) -> Mapping[str, Any]:
    """`meta.anomaly` of a dbt node (config meta wins over the node's own meta)."""
    config = node.get("config") or {}
    meta = {**(node.get("meta") or {}), **(config.get("meta") or {})}
    raw = meta.get("anomaly") or {}
    where = f"dbt {node.get('resource_type', 'node')} {node.get('name', '?')!r}: meta.anomaly"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping like {{day_column: order_date}}, got {raw!r}")
    unknown = sorted(set(raw) - {"day_column", "enabled"})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known: ['day_column', 'enabled']")
    if "day_column" in raw and (not isinstance(raw["day_column"], str) or not raw["day_column"]):
        raise ConfigError(f"{where}.day_column: expected a column name, got {raw['day_column']!r}")
    if not isinstance(raw.get("enabled", True), bool):
        raise ConfigError(f"{where}.enabled: expected true or false, got {raw['enabled']!r}")
    return raw


def dbt_day_column(node: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The day column of a dbt node and where it was found, or (None, None)."""
    config = node.get("config") or {}
    meta = dbt_anomaly_meta(node)
    if meta.get("day_column"):
        return str(meta["day_column"]), "dbt meta anomaly.day_column"
    unique_key = config.get("unique_key")
    if config.get("incremental_strategy") == REPLACE_WINDOW and isinstance(unique_key, str) and unique_key:
        return unique_key, "dbt unique_key (replace_window)"
    event_time = config.get("event_time")
    if isinstance(event_time, str) and event_time:
        return event_time, "dbt event_time"
    return None, None


def dbt_table_asset(asset: str, node: Mapping[str, Any], relation: str | None, is_table: bool) -> TableAsset:
    """A dbt model, seed or snapshot; `relation` is its `database.schema.table` name when known."""
    parts = (relation or "").split(".")
    table = parts[-1] if relation else str(node.get("alias") or node.get("name") or asset)
    schema = parts[-2] if relation and len(parts) >= 2 else str(node.get("schema") or "main")
    day_column, source = dbt_day_column(node)
    materialization = (node.get("config") or {}).get("materialized")
    if node.get("resource_type") in ("seed", "snapshot"):
        materialization = str(node["resource_type"])
    return TableAsset(
        asset, table, schema, is_table, materialization, day_column, source, dbt_anomaly_meta(node).get("enabled", True)
    )


def monitored_assets(section: AnomalyConfig, assets: Iterable[TableAsset]) -> AnomalyConfig:
    """The monitors of this code location: the section's overrides applied to every discovered table,
    plus listed assets that were not discovered as tables. Relations between assets not monitored
    here are left out."""
    if not section.enabled:
        return AnomalyConfig(defaults=section.defaults, metric_overrides=section.metric_overrides, enabled=False)
    found = {a.asset: a for a in assets}
    monitors: dict[str, AssetMonitors] = {}
    for name, asset in found.items():
        listed = section.assets.get(name)
        if listed is None and not (section.all_tables and asset.monitorable and asset.enabled):
            continue
        if listed is not None and not listed.enabled:
            continue
        monitors[name] = _merge(listed, asset)
    relations = tuple(r for r in section.relations if {r.numerator, r.denominator} <= set(monitors))
    return dataclasses.replace(section, assets=monitors, relations=relations)


def _merge(listed: AssetMonitors | None, asset: TableAsset) -> AssetMonitors:
    discovered = {
        "table": asset.table,
        "schema": asset.schema,
        "partition_column": asset.day_column,
        "day_column_source": asset.day_column_source,
    }
    if listed is None:
        return AssetMonitors(asset=asset.asset, **discovered)
    kept = {k: v for k, v in discovered.items() if k not in listed.explicit}
    if "partition_column" in listed.explicit:
        kept.pop("day_column_source")
    return dataclasses.replace(listed, **kept)
