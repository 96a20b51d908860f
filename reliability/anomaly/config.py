"""Which tables the anomaly monitors watch and how: the `anomaly:` section of the assets file (pure).

Every table asset of the code location is monitored by default, with no configuration: the raw assets,
and every dbt model (views included), seed and snapshot of any configured dbt project (not exposures,
ephemeral models, or assets that are not DuckDB tables such as `incident_metrics`).
`reliability.anomaly.discovery` finds them and their day column; this section only overrides or opts out:

    anomaly:
      enabled: true                                      # false: no anomaly monitors at all
      all_tables: true                                   # false: only the assets listed below
      defaults: {sensitivity: 4.5, min_history: 21}     # any monitor setting, for every metric
      metrics: {row_count: {direction: drop}}            # per metric kind (or full metric name)
      assets:
        raw_orders:
          partition_column: order_date                   # the day a row belongs to (default: discovered)
          table: raw_orders                              # default: discovered, else the asset name
          schema: main                                   # default: discovered, else main
          blocking: false                                # true: an anomaly fails the run (ERROR)
          enabled: false                                 # no anomaly checks on this asset
          sensitivity: 4                                 # any monitor setting, for this asset
          disabled_columns: [email]                      # no monitor on these columns
          metrics: {"null_fraction:customer_id": {direction: both}}
      relations:
        - {numerator: raw_payments, denominator: raw_orders}   # payments per order, judged on raw_payments

The day column: `partition_column` here, else a dbt model's `meta: {anomaly: {day_column: ...}}`, its
`unique_key` when `incremental_strategy='replace_window'` (the platform's daily models), its dbt
`event_time`, or a raw asset's `reliability/day_column` metadata. A table without one is monitored as
whole-table snapshots, one point per day the check runs. Listing an asset that is not found as a table
(an asset of another kind) monitors it anyway.

Settings resolve from the most general to the most specific: built-in defaults, `defaults`, the metric
kind's built-in defaults, `metrics` (kind, then full name), the asset's settings, the asset's `metrics`
(kind, then full name). Every bad value fails loading with the file and field named.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reliability.anomaly.detector import MonitorSettings
from reliability.anomaly.metrics import DEFAULT_LOADED_AT, metric_column, metric_kind
from reliability.anomaly.monitors import KIND_DEFAULTS
from reliability.errors import ConfigError

SETTING_FIELDS = tuple(f.name for f in dataclasses.fields(MonitorSettings))
ASSET_FIELDS = ("partition_column", "table", "schema", "blocking", "disabled_columns", "metrics", "loaded_at_column")
SECTION_FIELDS = ("enabled", "all_tables", "defaults", "metrics", "assets", "relations")


@dataclass(frozen=True)
class AssetMonitors:
    asset: str
    table: str
    partition_column: str | None  # the day column; None: whole-table snapshots
    schema: str = "main"
    blocking: bool = False
    loaded_at_column: str = DEFAULT_LOADED_AT
    disabled_columns: frozenset[str] = frozenset()
    overrides: Mapping[str, object] = field(default_factory=dict)  # the asset's own monitor settings
    metric_overrides: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    explicit: frozenset[str] = frozenset()  # fields set in the file (the rest may be discovered)
    day_column_source: str | None = None  # where the day column comes from, shown on the checks

    @property
    def enabled(self) -> bool:
        """`enabled: false` on the asset: no anomaly checks on it at all."""
        return self.overrides.get("enabled", True) is not False


@dataclass(frozen=True)
class Relation:
    """Rows of `numerator` per row of `denominator` on the same day, monitored on `numerator`."""

    numerator: str
    denominator: str


@dataclass(frozen=True)
class AnomalyConfig:
    assets: Mapping[str, AssetMonitors] = field(default_factory=dict)
    defaults: Mapping[str, object] = field(default_factory=dict)
    metric_overrides: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    relations: tuple[Relation, ...] = ()
    enabled: bool = True  # false: no anomaly monitors at all
    all_tables: bool = True  # false: only the assets listed under `assets`

    def settings_for(self, asset: str, metric: str) -> MonitorSettings | None:
        """The monitor settings of one metric of one asset; None when its monitor is switched off."""
        monitors = self.assets[asset]
        column = metric_column(metric)
        if column is not None and column in monitors.disabled_columns:
            return None
        kind = metric_kind(metric)
        layers = [
            self.defaults, KIND_DEFAULTS.get(kind, {}), self.metric_overrides.get(kind, {}),
            self.metric_overrides.get(metric, {}), monitors.overrides, monitors.metric_overrides.get(kind, {}),
            monitors.metric_overrides.get(metric, {}),
        ]  # fmt: skip
        merged: dict[str, object] = {}
        for layer in layers:
            merged.update(layer)
        settings = MonitorSettings(**merged)  # validated when the config was parsed
        return settings if settings.enabled else None

    def relations_of(self, asset: str) -> tuple[Relation, ...]:
        return tuple(r for r in self.relations if r.numerator == asset)


def _settings(raw: object, where: str) -> dict[str, object]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of monitor settings, got {raw!r}")
    unknown = sorted(set(raw) - set(SETTING_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {unknown}; known: {sorted(SETTING_FIELDS)}")
    try:
        MonitorSettings(**raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return dict(raw)


def _metric_overrides(raw: object, where: str) -> dict[str, dict[str, object]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of metric -> settings, got {raw!r}")
    return {str(metric): _settings(value, f"{where}.{metric}") for metric, value in raw.items()}


def _asset(name: str, raw: object, where: str) -> AssetMonitors:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of monitor overrides, got {raw!r}")
    unknown = sorted(set(raw) - set(ASSET_FIELDS) - set(SETTING_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known: {sorted({*ASSET_FIELDS, *SETTING_FIELDS})}")
    column = raw.get("partition_column")
    if column is not None and (not isinstance(column, str) or not column):
        raise ConfigError(f"{where}.partition_column: expected the name of the table's date column, got {column!r}")
    blocking = raw.get("blocking", False)
    if not isinstance(blocking, bool):
        raise ConfigError(f"{where}.blocking: expected true or false, got {blocking!r}")
    disabled = raw.get("disabled_columns") or []
    if not isinstance(disabled, list) or not all(isinstance(c, str) for c in disabled):
        raise ConfigError(f"{where}.disabled_columns: expected a list of column names, got {disabled!r}")
    texts = {}
    for key, default in (("table", name), ("schema", "main"), ("loaded_at_column", DEFAULT_LOADED_AT)):
        value = raw.get(key, default)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}.{key}: expected a name, got {value!r}")
        texts[key] = value
    return AssetMonitors(
        asset=name, table=texts["table"], partition_column=column, schema=texts["schema"], blocking=blocking,
        loaded_at_column=texts["loaded_at_column"], disabled_columns=frozenset(disabled),
        overrides=_settings({k: v for k, v in raw.items() if k in SETTING_FIELDS}, where),
        metric_overrides=_metric_overrides(raw.get("metrics"), f"{where}.metrics"),
        explicit=frozenset(raw), day_column_source="anomaly.assets" if column else None,
    )  # fmt: skip


def parse_anomaly_config(raw: object, source: str) -> AnomalyConfig:
    """The `anomaly:` section; errors read `<file>: anomaly.assets.raw_orders.sensitivity: ...`."""
    if raw is None:
        return AnomalyConfig()
    where = f"{source}: anomaly"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with {list(SECTION_FIELDS)}, got {raw!r}")
    unknown = sorted(set(raw) - set(SECTION_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known: {list(SECTION_FIELDS)}")
    assets_raw = raw.get("assets") or {}
    if not isinstance(assets_raw, Mapping):
        raise ConfigError(f"{where}.assets: expected a mapping of asset key -> monitors, got {assets_raw!r}")
    assets = {str(k): _asset(str(k), v, f"{where}.assets.{k}") for k, v in assets_raw.items()}
    relations = []
    for i, item in enumerate(raw.get("relations") or []):
        if not isinstance(item, Mapping) or set(item) != {"numerator", "denominator"}:
            raise ConfigError(f"{where}.relations.{i}: expected {{numerator: <asset>, denominator: <asset>}}, "
                              f"got {item!r}")  # fmt: skip
        for role in ("numerator", "denominator"):
            if not isinstance(item[role], str) or not item[role]:
                raise ConfigError(f"{where}.relations.{i}.{role}: expected an asset key, got {item[role]!r}")
            override = assets.get(item[role])
            if override is not None and not override.enabled:
                raise ConfigError(f"{where}.relations.{i}.{role}: {item[role]!r} is switched off "
                                  f"(anomaly.assets.{item[role]}.enabled: false)")  # fmt: skip
        relations.append(Relation(str(item["numerator"]), str(item["denominator"])))
    switches = {}
    for key in ("enabled", "all_tables"):
        value = raw.get(key, True)
        if not isinstance(value, bool):
            raise ConfigError(f"{where}.{key}: expected true or false, got {value!r}")
        switches[key] = value
    return AnomalyConfig(
        assets=assets,
        defaults=_settings(raw.get("defaults"), f"{where}.defaults"),
        metric_overrides=_metric_overrides(raw.get("metrics"), f"{where}.metrics"),
        relations=tuple(relations),
        **switches,
    )


def load_anomaly_config(assets_file: Path | None) -> AnomalyConfig:
    """The `anomaly:` section of the assets file (none: the defaults, every table monitored)."""
    if assets_file is None:
        return AnomalyConfig()
    from reliability.yamlfile import load_yaml_mapping

    raw = load_yaml_mapping(assets_file, "asset policy file")
    return parse_anomaly_config(raw.get("anomaly"), str(assets_file))
