"""Dagster glue: every table asset of the code location (raw assets, dbt models and seeds; see
`reliability.anomaly.discovery`) gets one multi-asset check with one check per fault class
(`anomaly_volume`, `anomaly_null_rate`, `anomaly_distribution`, `anomaly_freshness`, and
`anomaly_completeness` on the numerator of a declared relation); the `anomaly:` section of the assets
file only overrides or opts out.

The checks run after each materialization of their asset and judge, in one scan per table and day: a
partitioned run's complete days; for an unpartitioned run or a run of today's partition, the complete days
(never the day in progress) that are new or changed since the last judgement, a day without rows included (a
missing day), or the last judged day again when none is; for a table without a day column, a whole-table
snapshot per day the check runs (no freshness check). The measurements are kept in
`reliability.metric_history` in the warehouse and judged against the history without the days an incident
covers. Warn by default, blocking per asset. The metadata shows the measured value, the expected band and the
score (numbers, so Dagster plots them), "learning" while the history is too short, "nothing_to_judge" when
there is no complete day yet; `partition_keys` lists the anomalous days. The check's `check_type` names the
incident's fault class.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import dagster as dg

from reliability.anomaly import DAY_COLUMN_METADATA
from reliability.anomaly.config import AnomalyConfig, load_anomaly_config
from reliability.anomaly.discovery import TableAsset, dbt_table_asset, monitored_assets
from reliability.anomaly.monitors import MONITORED_CLASSES, ClassVerdict, by_fault_class, check_name
from reliability.incidents.model import FaultClass
from reliability.partitions import PARTITION_KEYS_METADATA, partition_keys
from reliability.resources import DUCKDB_POOL
from reliability.settings import Settings

log = logging.getLogger(__name__)
CHECK_TYPE = "check_type"
CLASS_DESCRIPTIONS = {
    FaultClass.VOLUME: "row count of the day against its learned band (weekday, trend)",
    FaultClass.NULL_RATE: "null fraction of every column against its learned band",
    FaultClass.DISTRIBUTION: "value shares, distinct counts and numeric min/max/mean/p50/p95 against learned bands",
    FaultClass.FRESHNESS: "latest event time and load delay against the partition end, against learned bands",
    FaultClass.COMPLETENESS: "rows per row of a related asset (a declared relation) against its learned band",
}


def _classes(config: AnomalyConfig, asset: str) -> list[FaultClass]:
    """A snapshot (no day column) has no day end to measure freshness against: no freshness check."""
    snapshot = config.assets[asset].partition_column is None
    skipped = {FaultClass.COMPLETENESS, *([FaultClass.FRESHNESS] if snapshot else [])}
    classes = [c for c in MONITORED_CLASSES if c not in skipped]
    return classes + ([FaultClass.COMPLETENESS] if config.relations_of(asset) else [])


def _days(keys: list[str]) -> list[date]:
    days = []
    for key in keys:
        try:
            days.append(date.fromisoformat(key))
        except ValueError:
            continue
    return days


def excluded_days(asset: str) -> tuple[set[date], str | None]:
    """Days of the asset covered by an incident (open or resolved; a quarantine is an incident's):
    never learned as normal. An unreachable store leaves nothing out and says so."""
    try:
        from reliability.incidents.config import open_store
        from reliability.incidents.triage import partitions_by_asset

        with open_store(create=False) as store:  # the sensor creates the store; none yet: no incidents
            incidents = store.list_incidents()
        days: set[date] = set()
        for incident in incidents:
            days.update(_days(partitions_by_asset(incident.blast_radius).get(asset, [])))
        return days, None
    except Exception as exc:  # the monitors still judge; the metadata says what was not left out
        log.warning("anomaly monitors of %s: incident store unavailable: %s", asset, exc)
        return set(), f"incident store unavailable ({type(exc).__name__}): no incident days left out"


def _number(value: float | None) -> float | None:
    if value is None or math.isnan(value):
        return None
    return max(-1e12, min(1e12, value))  # a missing day scores -inf; metadata needs a finite number


def _metadata_value(value: object) -> object:
    if isinstance(value, bool | dg.MetadataValue):
        return value
    if isinstance(value, int):
        return dg.MetadataValue.int(value)
    if isinstance(value, float):
        return dg.MetadataValue.float(value)
    return dg.MetadataValue.text(str(value))


NO_MONITORS = ("no_monitors", "no metric of this class was measured (empty partition or none apply)")


def check_result(asset: str, verdicts_by_day: dict[date, dict[FaultClass, ClassVerdict]], fault_class: FaultClass,
                 blocking: bool, note: str | None, empty: tuple[str, str] = NO_MONITORS, lead: str = "",
                 extra: Mapping[str, object] | None = None) -> dg.AssetCheckResult:  # fmt: skip
    """One fault class over the run's days: failed when any day has an anomaly; metadata of the
    decisive monitor (the worst anomaly, else the last day's worst monitor). `empty` is the status and
    description when no day has a metric of the class; `lead` starts the description."""
    per_day = {day: v[fault_class] for day, v in verdicts_by_day.items() if fault_class in v}
    anomalous = {day: v for day, v in per_day.items() if not v.passed}
    shown_day = (
        max(anomalous, key=lambda d: abs(anomalous[d].worst.score or 0)) if anomalous else max(per_day, default=None)
    )
    shown = per_day.get(shown_day) if shown_day else None
    metadata: dict[str, object] = {CHECK_TYPE: check_name(fault_class), **(extra or {})}
    if shown is None:
        status, description = empty
    else:
        status = shown.status
        metadata.update({"monitors": shown.monitors, "learning_monitors": shown.learning, "day": shown_day.isoformat()})
        if shown.worst is not None:
            w = shown.worst
            metadata.update({
                "monitor": shown.worst_metric, "model": w.model, "history_points": w.history_points,
                "value": _number(w.value), "expected": _number(w.expected), "band_low": _number(w.low),
                "band_high": _number(w.high), "score": _number(w.score),
            })  # fmt: skip
            description = f"{shown_day} {shown.worst_metric}: {w.describe()}"
        else:
            description = f"learning: {shown.learning} monitor(s) have too little history so far"
    metadata["status"] = status
    metadata["anomalies"] = dg.MetadataValue.json([
        {"day": day.isoformat(), "metric": metric, "value": _number(v.value), "expected": _number(v.expected),
         "band": [_number(v.low), _number(v.high)], "score": _number(v.score)}
        for day, cv in sorted(anomalous.items()) for metric, v in sorted(cv.anomalies.items())
    ])  # fmt: skip
    days = sorted(anomalous or per_day)
    metadata[PARTITION_KEYS_METADATA] = dg.MetadataValue.json([d.isoformat() for d in days])
    if note:
        metadata["note"] = note
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey.from_user_string(asset),
        check_name=check_name(fault_class),
        passed=not anomalous,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        description=lead + (f"anomaly on {len(anomalous)} day(s): " if anomalous else "") + description,
        metadata={k: _metadata_value(v) for k, v in metadata.items() if v is not None},
    )


def unmeasured_result(
    asset: str, fault_class: FaultClass, blocking: bool, problem: str, days: list[date]
) -> dg.AssetCheckResult:
    """The monitors could not measure the table (missing table or column, a bad partition column):
    a failed check naming the problem, never a silent pass."""
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey.from_user_string(asset),
        check_name=check_name(fault_class),
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        description=problem,
        metadata={
            CHECK_TYPE: check_name(fault_class),
            "status": "error",
            "error": problem,
            PARTITION_KEYS_METADATA: dg.MetadataValue.json([d.isoformat() for d in days]),
        },  # fmt: skip
    )


@dataclass(frozen=True)
class RunJudgement:
    """The days one check run judged, as the check results show them."""

    verdicts: dict[date, dict[FaultClass, ClassVerdict]]
    mode: str  # partitions | new_days | snapshot
    judged: list[date]  # measured by this run
    empty: tuple[str, str] = NO_MONITORS  # status and description when no day has a verdict
    lead: str = ""

    @property
    def metadata(self) -> dict[str, object]:
        return {"mode": self.mode, "judged_days": dg.MetadataValue.json([d.isoformat() for d in self.judged])}


def judge_run(
    con: Any, config: AnomalyConfig, asset: str, days: list[date], now: datetime, excluded: set[date]
) -> RunJudgement:
    """Which days a run judges: its complete partitions; else, with a day column, the complete days new
    or changed since the last judgement; else a whole-table snapshot for today. A partition still in
    progress (today's, filled all day) is never judged: it would look like a volume drop until
    midnight. A run that builds it judges the complete days new or changed since instead, so
    yesterday gets its verdict on its final rows."""
    from reliability.anomaly.service import NEW_DAYS_LOOKBACK, judge_asset_day, judge_new_days

    monitors = config.assets[asset]
    today = now.date()
    if monitors.partition_column is None:
        verdicts = {today: by_fault_class(judge_asset_day(con, config, asset, today, now, excluded))}
        return RunJudgement(verdicts, "snapshot", [today], lead="whole-table snapshot (no day column): ")
    complete = [day for day in days if day < today]
    verdicts = {day: by_fault_class(judge_asset_day(con, config, asset, day, now, excluded)) for day in complete}
    if days and len(complete) == len(days):
        return RunJudgement(verdicts, "partitions", days)
    new = judge_new_days(con, config, asset, now, excluded)
    if days:
        in_progress = ", ".join(day.isoformat() for day in days if day >= today)
        for day, day_verdicts in new.verdicts.items():
            verdicts.setdefault(day, by_fault_class(day_verdicts))
        judged = sorted({*complete, *new.judged})
        lead = f"{in_progress} in progress (judged once complete); "
        if not judged and new.repeated is not None:
            lead += f"no new or changed complete day since {new.repeated}; its verdict again: "
        empty = ("nothing_to_judge", f"nothing to judge yet: {in_progress} in progress, judged once complete")
        return RunJudgement(verdicts, "partitions", judged, empty=empty, lead=lead)
    verdicts = {day: by_fault_class(v) for day, v in new.verdicts.items()}
    if new.repeated is not None:
        lead = f"no new or changed complete day since {new.repeated} ({today} is in progress); its verdict again: "
        return RunJudgement(verdicts, "new_days", [], lead=lead)
    empty = (
        "nothing_to_judge",
        f"nothing to judge yet: no complete day with rows in {monitors.partition_column} in the last "
        f"{NEW_DAYS_LOOKBACK} days ({today} is in progress and judged once complete)",
    )
    return RunJudgement(verdicts, "new_days", list(new.judged), empty=empty if not new.judged else NO_MONITORS)


def _op_name(asset: str) -> str:
    """An op name from any asset key (`schema/table` -> `schema_table`)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", asset)


def anomaly_check(config: AnomalyConfig, asset: str, settings: Settings) -> dg.AssetChecksDefinition:
    monitors = config.assets[asset]
    key = dg.AssetKey.from_user_string(asset)
    specs = [
        dg.AssetCheckSpec(
            name=check_name(fault_class),
            asset=key,
            blocking=monitors.blocking,
            description=f"Anomaly monitor: {CLASS_DESCRIPTIONS[fault_class]}.",
            metadata={
                CHECK_TYPE: check_name(fault_class),
                "table": f"{monitors.schema}.{monitors.table}",
                "day_column": monitors.partition_column or "(none: whole-table snapshots)",
                "day_column_source": monitors.day_column_source or "-",
            },
        )
        for fault_class in _classes(config, asset)
    ]
    warehouse_path = settings.warehouse_path

    @dg.multi_asset_check(
        specs=specs, name=f"anomaly_monitors_{_op_name(asset)}", can_subset=True, compute_kind="duckdb",
        pool=DUCKDB_POOL,
        description=f"Anomaly monitors of {asset}: learned bands per metric, one check per fault class.",
    )  # fmt: skip
    def _monitors(context):
        import duckdb

        from reliability.clock import utcnow

        selected = {k.name for k in context.selected_asset_check_keys if k.asset_key == key}
        days = _days(partition_keys(context.run.tags))
        excluded, note = excluded_days(asset)
        now = utcnow()
        try:
            with duckdb.connect(str(warehouse_path)) as con:
                judged = judge_run(con, config, asset, days, now, excluded)
        except (duckdb.Error, ValueError) as exc:  # a table that cannot be measured: said, not crashed
            problem = f"could not measure {monitors.schema}.{monitors.table}: {type(exc).__name__}: {exc}"
            for fault_class in _classes(config, asset):
                if check_name(fault_class) in selected:
                    yield unmeasured_result(asset, fault_class, monitors.blocking, problem[:2000], days)
            return
        for fault_class in _classes(config, asset):
            if check_name(fault_class) in selected:
                yield check_result(
                    asset, judged.verdicts, fault_class, monitors.blocking, note, judged.empty, judged.lead,
                    judged.metadata,
                )  # fmt: skip

    return _monitors


def build_anomaly_checks(config: AnomalyConfig, settings: Settings) -> list[dg.AssetChecksDefinition]:
    return [anomaly_check(config, asset, settings) for asset in config.assets]


def _value(metadata: Mapping[str, Any], key: str) -> Any:
    value = metadata.get(key)
    return getattr(value, "value", value)


def table_asset(spec: dg.AssetSpec) -> TableAsset:
    """What the anomaly area needs to know of an asset, from its spec: a dbt node from the manifest
    dagster-dbt attaches, any other asset from its kinds and `reliability/day_column` metadata."""
    metadata = spec.metadata
    name = spec.key.to_user_string()
    is_table = "duckdb" in spec.kinds or _value(metadata, "dagster/storage_kind") == "duckdb"
    relation = _value(metadata, "dagster/table_name")
    unique_id = _value(metadata, "dagster_dbt/unique_id")
    manifest = getattr(_value(metadata, "dagster_dbt/manifest"), "manifest", None)
    if unique_id and isinstance(manifest, Mapping):
        node = (manifest.get("nodes") or {}).get(unique_id) or {}
        return dbt_table_asset(name, node, relation if isinstance(relation, str) else None, is_table)
    day_column = _value(metadata, DAY_COLUMN_METADATA)
    return TableAsset(
        name, spec.key.path[-1], "main", is_table, None, day_column if isinstance(day_column, str) else None,
        "asset metadata" if isinstance(day_column, str) else None,
    )  # fmt: skip


def _specs(assets: Iterable[Any]) -> Iterable[dg.AssetSpec]:
    for item in assets:
        if isinstance(item, dg.AssetSpec):
            yield item
        elif isinstance(item, dg.AssetsDefinition):
            yield from item.specs


def defs(settings: Settings, assets: Iterable[Any] = ()) -> dg.Definitions:
    """Checks for every table asset among `assets` (the code location's assets definitions and specs),
    with the `anomaly:` section of the assets file applied."""
    section = load_anomaly_config(settings.assets_file)
    tables = [table_asset(spec) for spec in _specs(assets)]
    config = monitored_assets(section, tables)
    missing = sorted(set(section.assets) - {t.asset for t in tables})
    if missing:
        log.info("anomaly monitors configured for assets this code location lacks: %s", missing)
    dropped = sorted(set(section.relations) - set(config.relations), key=str)
    if dropped:
        log.info("anomaly relations between assets not monitored here: %s", dropped)
    return dg.Definitions(asset_checks=build_anomaly_checks(config, settings))
