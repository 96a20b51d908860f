"""Dagster glue: each monitored table asset gets one multi-asset check with one check per fault class
(`anomaly_volume`, `anomaly_null_rate`, `anomaly_distribution`, `anomaly_freshness`, and
`anomaly_completeness` on the numerator of a declared relation).

The checks run after each partition materialization of their asset: they measure the run's days in one
scan per table, keep the measurements in `reliability.metric_history` in the warehouse, and judge them
against the history without the days an incident covers. Warn by default, blocking per asset. The
metadata shows the measured value, the expected band and the score (numbers, so Dagster plots them), or
"learning" while the history is too short. The check's `check_type` names the incident's fault class.
"""

from __future__ import annotations

import logging
import math
from datetime import date

import dagster as dg

from reliability.anomaly.config import AnomalyConfig, load_anomaly_config
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
    classes = [c for c in MONITORED_CLASSES if c != FaultClass.COMPLETENESS]
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


def check_result(asset: str, verdicts_by_day: dict[date, dict[FaultClass, ClassVerdict]], fault_class: FaultClass,
                 blocking: bool, note: str | None) -> dg.AssetCheckResult:  # fmt: skip
    """One fault class over the run's days: failed when any day has an anomaly; metadata of the
    decisive monitor (the worst anomaly, else the last day's worst monitor)."""
    per_day = {day: v[fault_class] for day, v in verdicts_by_day.items() if fault_class in v}
    anomalous = {day: v for day, v in per_day.items() if not v.passed}
    shown_day = (
        max(anomalous, key=lambda d: abs(anomalous[d].worst.score or 0)) if anomalous else max(per_day, default=None)
    )
    shown = per_day.get(shown_day) if shown_day else None
    metadata: dict[str, object] = {CHECK_TYPE: check_name(fault_class)}
    if shown is None:
        status, description = "no_monitors", "no metric of this class was measured (empty partition or none apply)"
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
        asset_key=dg.AssetKey([asset]),
        check_name=check_name(fault_class),
        passed=not anomalous,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        description=(f"anomaly on {len(anomalous)} day(s): " if anomalous else "") + description,
        metadata={k: _metadata_value(v) for k, v in metadata.items() if v is not None},
    )


def unmeasured_result(
    asset: str, fault_class: FaultClass, blocking: bool, problem: str, days: list[date]
) -> dg.AssetCheckResult:
    """The monitors could not measure the table (missing table or column, a bad partition column):
    a failed check naming the problem, never a silent pass."""
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey([asset]),
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


def anomaly_check(config: AnomalyConfig, asset: str, settings: Settings) -> dg.AssetChecksDefinition:
    monitors = config.assets[asset]
    key = dg.AssetKey([asset])
    specs = [
        dg.AssetCheckSpec(
            name=check_name(fault_class),
            asset=key,
            blocking=monitors.blocking,
            description=f"Anomaly monitor: {CLASS_DESCRIPTIONS[fault_class]}.",
            metadata={CHECK_TYPE: check_name(fault_class), "table": f"{monitors.schema}.{monitors.table}"},
        )
        for fault_class in _classes(config, asset)
    ]
    warehouse_path = settings.warehouse_path

    @dg.multi_asset_check(
        specs=specs, name=f"anomaly_monitors_{asset}", can_subset=True, compute_kind="duckdb", pool=DUCKDB_POOL,
        description=f"Anomaly monitors of {asset}: learned bands per metric, one check per fault class.",
    )  # fmt: skip
    def _monitors(context):
        import duckdb

        from reliability.anomaly.service import judge_asset_day
        from reliability.clock import utcnow

        selected = {k.name for k in context.selected_asset_check_keys if k.asset_key == key}
        days = _days(partition_keys(context.run.tags))
        verdicts_by_day: dict[date, dict[FaultClass, ClassVerdict]] = {}
        note = None
        if not days:
            note = "the run has no daily partition: anomaly monitors judge days only"
        else:
            excluded, note = excluded_days(asset)
            now = utcnow()
            try:
                with duckdb.connect(str(warehouse_path)) as con:
                    for day in days:
                        verdicts = judge_asset_day(con, config, asset, day, now, excluded)
                        verdicts_by_day[day] = by_fault_class(verdicts)
            except (duckdb.Error, ValueError) as exc:  # a table that cannot be measured: said, not crashed
                problem = f"could not measure {monitors.schema}.{monitors.table}: {type(exc).__name__}: {exc}"
                for fault_class in _classes(config, asset):
                    if check_name(fault_class) in selected:
                        yield unmeasured_result(asset, fault_class, monitors.blocking, problem[:2000], days)
                return
        for fault_class in _classes(config, asset):
            if check_name(fault_class) in selected:
                yield check_result(asset, verdicts_by_day, fault_class, monitors.blocking, note)

    return _monitors


def build_anomaly_checks(config: AnomalyConfig, settings: Settings) -> list[dg.AssetChecksDefinition]:
    return [anomaly_check(config, asset, settings) for asset in config.assets]


def defs(settings: Settings, known_assets: set[str] | None = None) -> dg.Definitions:
    """Checks for every asset of the `anomaly:` section of the assets file that the code location has."""
    config = load_anomaly_config(settings.assets_file)
    if known_assets is not None:
        missing = sorted(set(config.assets) - known_assets)
        if missing:
            log.info("anomaly monitors configured for assets this code location lacks: %s", missing)
        config = AnomalyConfig(
            {k: v for k, v in config.assets.items() if k in known_assets}, config.defaults, config.metric_overrides,
            tuple(r for r in config.relations if {r.numerator, r.denominator} <= known_assets),
        )  # fmt: skip
    return dg.Definitions(asset_checks=build_anomaly_checks(config, settings))
