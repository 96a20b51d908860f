"""Anomaly monitors vs the z-score baseline on labeled shop data; and the cost of measuring a day.

Data: the shop generator (seed 7) writes 180 days of raw_orders, raw_payments and raw_customers into
DuckDB, with weekday seasonality, a slow upward trend and day-to-day noise in the volume (the
generator's `orders_per_day` is set per day). Then labeled anomalies are injected on known days with SQL:
volume drops and spikes, a missing day of one table, null spikes, a value scale change, a category
share shift and a gradual drift (order amounts ramp up 4% a day for 10 days; every day labeled).

Both detectors see the same metrics, measured by the platform's own one-scan collector for every
table and day, plus the declared relation payments per order. A day is flagged for an asset when any
of its monitors flags it. Ours: `reliability.anomaly.monitors.judge_day` with the defaults the
platform ships; a flagged asset-day opens an incident in the platform, so it is left out of that
asset's later training, as the platform does. Baseline: mean +/- 3 sd over the trailing 14 days, no
seasonality, no trend, nothing left out (Elementary's default). Days 28..179 are scored for both.

Scoring unit: an asset-day. Overall precision/recall/F1 over all asset-days; per type, a labeled day
counts as found only when a monitor of the type's fault class flagged it (volume drops, spikes and
missing days: volume or completeness; null spikes: null rate; scale change, share shift, drift:
distribution), and false alarms are charged to the type whose fault class raised them. A relation
(ratio) flag belongs to whichever of its two assets is labeled that day.

Cost: metric collection of one day of a 10M-row raw_orders (10 days of 1M rows) through the platform
(describe the table, pick low-cardinality columns, one query, store in the metric history) vs one
hand-written DuckDB query computing the same metrics; both open the warehouse, warm, alternated, medians.
"""

from __future__ import annotations

import math
import random
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from reliability.anomaly.collect import collect_partition, ensure_history, store_metrics, table_shape
from reliability.anomaly.detector import Point, zscore_verdict
from reliability.anomaly.metrics import fault_class_of_metric, ratio_metric, relation_ratio
from reliability.anomaly.monitors import judge_day
from reliability.incidents.model import FaultClass
from reliability.shop.generator import PARTITION_COLUMN, ShopScale, generate, write_partition

SEED = 7
DAYS = 180
FIRST_DAY = date(2026, 3, 2)  # a Monday
SCORED_FROM = 28
TABLES = ("raw_orders", "raw_payments", "raw_customers")
ID_COLUMN = {"raw_orders": "order_id", "raw_payments": "payment_id", "raw_customers": "customer_id"}
WEEKDAY_FACTOR = (0.85, 0.9, 0.95, 1.0, 1.1, 1.3, 1.2)
TREND_PER_DAY = 0.0025
NOISE_SD = 0.03
RELATION = ("raw_payments", "raw_orders")  # payments per order, judged on raw_payments
DRIFT_START, DRIFT_DAYS, DRIFT_STEP = 160, 10, 0.04

TYPE_CLASSES = {
    "volume_drop": {FaultClass.VOLUME, FaultClass.COMPLETENESS},
    "volume_spike": {FaultClass.VOLUME, FaultClass.COMPLETENESS},
    "missing_day": {FaultClass.VOLUME, FaultClass.COMPLETENESS},
    "null_spike": {FaultClass.NULL_RATE},
    "scale_change": {FaultClass.DISTRIBUTION},
    "category_shift": {FaultClass.DISTRIBUTION},
    "drift": {FaultClass.DISTRIBUTION},
}


def _where(table: str, day: date) -> str:
    return f"\"{PARTITION_COLUMN[table]}\" = date '{day.isoformat()}'"


def _sample(table: str, every: int, keep: bool) -> str:
    """Rows picked deterministically: one in `every` (keep=True) or all but one in `every`."""
    op = "=" if keep else "<>"
    # high bits of the hash: its low bits follow the generator's own hash(...) % n choices of method/status
    return f"(hash({ID_COLUMN[table]}, 'inject') >> 20) % {every} {op} 0"


def _injections() -> list[tuple[str, str, int, Callable[[str, date], list[str]]]]:
    """(type, table, day index, SQL for that day) of every labeled point anomaly."""

    def drop(keep_one_in: int) -> Callable[[str, date], list[str]]:
        return lambda t, d: [f"delete from {t} where {_where(t, d)} and not ({_sample(t, keep_one_in, True)})"]

    def halve(t: str, d: date) -> list[str]:
        return [f"delete from {t} where {_where(t, d)} and {_sample(t, 2, True)}"]

    def drop_quarter(t: str, d: date) -> list[str]:
        return [f"delete from {t} where {_where(t, d)} and {_sample(t, 4, True)}"]

    def spike(copies: int) -> Callable[[str, date], list[str]]:
        return lambda t, d: [f"insert into {t} select {t}.* from {t}, range({copies - 1}) r(i) where {_where(t, d)}"]

    def nulls(column: str, one_in: int) -> Callable[[str, date], list[str]]:
        return lambda t, d: [f"update {t} set {column} = null where {_where(t, d)} and {_sample(t, one_in, True)}"]

    def missing(t: str, d: date) -> list[str]:
        return [f"delete from {t} where {_where(t, d)}"]

    def scale(factor: float) -> Callable[[str, date], list[str]]:
        return lambda t, d: [f"update {t} set amount = (amount * {factor})::decimal(12, 2) where {_where(t, d)}"]

    def share(column: str, value: str, one_in: int) -> Callable[[str, date], list[str]]:
        return lambda t, d: [f"update {t} set {column} = '{value}' where {_where(t, d)} and {_sample(t, one_in, True)}"]

    return [
        ("volume_drop", "raw_orders", 50, drop(10)),
        ("volume_drop", "raw_customers", 95, halve),
        ("volume_drop", "raw_payments", 140, drop(3)),
        ("volume_drop", "raw_orders", 118, drop_quarter),
        ("volume_spike", "raw_orders", 70, spike(3)),
        ("volume_spike", "raw_payments", 120, spike(2)),
        ("missing_day", "raw_payments", 80, missing),
        ("missing_day", "raw_customers", 150, missing),
        ("null_spike", "raw_orders", 60, nulls("customer_id", 4)),
        ("null_spike", "raw_customers", 110, nulls("email", 7)),
        ("null_spike", "raw_payments", 165, nulls("method", 12)),
        ("null_spike", "raw_orders", 125, nulls("amount", 25)),
        ("scale_change", "raw_orders", 100, scale(100)),
        ("scale_change", "raw_payments", 155, scale(0.01)),
        ("category_shift", "raw_payments", 90, share("method", "coupon", 3)),
        ("category_shift", "raw_orders", 130, share("status", "cancelled", 4)),
        ("category_shift", "raw_customers", 135, share("country", "US", 8)),
    ]


def _volumes(rng: random.Random) -> list[int]:
    return [
        max(50, round(2000 * WEEKDAY_FACTOR[(FIRST_DAY + timedelta(i)).weekday()] * (1 + TREND_PER_DAY * i)
                      * math.exp(rng.gauss(0, NOISE_SD))))
        for i in range(DAYS)
    ]  # fmt: skip


def build_labeled_warehouse(path: Path, scale: float = 1.0) -> dict[tuple[str, int], str]:
    """Write the 180 days and inject the anomalies; return the labels {(table, day index): type}."""
    rng = random.Random(SEED)
    volumes = _volumes(rng)
    labels: dict[tuple[str, int], str] = {}
    with duckdb.connect(str(path)) as con:
        for i, orders in enumerate(volumes):
            day = FIRST_DAY + timedelta(i)
            midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
            loaded_at = midnight + timedelta(days=1, minutes=rng.randint(20, 90))
            for table in TABLES:
                write_partition(con, table, day, ShopScale(seed=SEED, orders_per_day=max(10, int(orders * scale))),
                                loaded_at=loaded_at)  # fmt: skip
        for kind, table, index, sql_for in _injections():
            for sql in sql_for(table, FIRST_DAY + timedelta(index)):
                con.execute(sql)
            labels[(table, index)] = kind
        for k in range(1, DRIFT_DAYS + 1):  # gradual drift of order amounts
            index = DRIFT_START + k - 1
            con.execute(f"update raw_orders set amount = (amount * {1 + DRIFT_STEP * k})::decimal(12, 2) "
                        f"where {_where('raw_orders', FIRST_DAY + timedelta(index))}")  # fmt: skip
            labels[("raw_orders", index)] = "drift"
    return labels


def collect_all(path: Path) -> dict[str, dict[int, dict[str, float]]]:
    """Every metric of every table and day, through the platform's collector; plus the relation."""
    out: dict[str, dict[int, dict[str, float]]] = {t: {} for t in TABLES}
    with duckdb.connect(str(path)) as con:
        for table in TABLES:
            for i in range(DAYS):
                start = datetime.combine(FIRST_DAY + timedelta(i), datetime.min.time())
                shape = table_shape(con, table, PARTITION_COLUMN[table], start, start + timedelta(days=1))
                out[table][i] = collect_partition(con, shape, start, start + timedelta(days=1))
    numerator, denominator = RELATION
    for i in range(DAYS):
        ratio = relation_ratio(out[numerator][i].get("row_count"), out[denominator][i].get("row_count"))
        if ratio is not None:
            out[numerator][i][ratio_metric(numerator, denominator)] = ratio
    return out


def _ours(metrics: dict[int, dict[str, float]]) -> dict[int, dict[str, bool]]:
    """Per day, per metric: flagged? Flagged days are left out of later training (an incident covers them)."""
    history: dict[str, list[tuple[date, float]]] = defaultdict(list)
    excluded: set[date] = set()
    flags: dict[int, dict[str, bool]] = {}
    for i in range(DAYS):
        day = FIRST_DAY + timedelta(i)
        verdicts = judge_day(metrics[i], history, day, excluded)
        flags[i] = {m: v.is_anomaly for m, v in verdicts.items()}
        if any(flags[i].values()):
            excluded.add(day)
        for metric, value in metrics[i].items():
            history[metric].append((day, value))
    return flags


def _baseline(metrics: dict[int, dict[str, float]]) -> dict[int, dict[str, bool]]:
    history: dict[str, list[Point]] = defaultdict(list)
    flags: dict[int, dict[str, bool]] = {}
    for i in range(DAYS):
        flags[i] = {}
        for metric, value in metrics[i].items():
            point = Point(float(i), value)
            flags[i][metric] = zscore_verdict(history[metric], point).is_anomaly
            history[metric].append(point)
    return flags


def _prf(tp: int, fp: float, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    rounded = {"precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3)}
    return {**rounded, "tp": tp, "fp": round(fp, 2), "fn": fn}


def score(flags_by_table: dict[str, dict[int, dict[str, bool]]], labels: dict[tuple[str, int], str]) -> dict:
    """Overall and per-type figures, and false alarms per 100 clean asset-days."""
    flagged_classes: dict[tuple[str, int], set[FaultClass]] = defaultdict(set)
    for table, days in flags_by_table.items():
        for i, flags in days.items():
            if i < SCORED_FROM:
                continue
            for metric, flagged in flags.items():
                if not flagged:
                    continue
                owner = table
                if metric.startswith("ratio:") and (table, i) not in labels:
                    other = RELATION[1] if table == RELATION[0] else RELATION[0]
                    owner = other if (other, i) in labels else table
                flagged_classes[(owner, i)].add(fault_class_of_metric(metric))
    asset_days = [(t, i) for t in TABLES for i in range(SCORED_FROM, DAYS)]
    tp = sum(1 for k in asset_days if k in labels and flagged_classes.get(k))
    fp = sum(1 for k in asset_days if k not in labels and flagged_classes.get(k))
    fn = sum(1 for k in asset_days if k in labels and not flagged_classes.get(k))
    clean = sum(1 for k in asset_days if k not in labels)
    per_type = {}
    for kind, classes in TYPE_CLASSES.items():
        labeled = [k for k in asset_days if labels.get(k) == kind]
        found = sum(1 for k in labeled if flagged_classes.get(k, set()) & classes)
        # false alarms of the type's fault classes, shared among the types of those classes by labeled days
        family = [k for k in asset_days if labels.get(k) in {o for o, c in TYPE_CLASSES.items() if c == classes}]
        family_fp = sum(1 for k in asset_days if k not in labels and flagged_classes.get(k, set()) & classes)
        per_type[kind] = _prf(found, family_fp * len(labeled) / len(family) if family else 0, len(labeled) - found)
    return {
        "overall": _prf(tp, fp, fn),
        "per_type": per_type,
        "false_alarms_per_100_clean_asset_days": round(100 * fp / clean, 3),
        "clean_asset_days": clean,
        "labeled_asset_days": sum(1 for k in asset_days if k in labels),
    }


def detection_rows(quick: bool) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench_anomaly_") as tmp:
        path = Path(tmp) / "labeled.duckdb"
        start = time.perf_counter()
        labels = build_labeled_warehouse(path, scale=0.5 if quick else 1.0)
        metrics = collect_all(path)
        prepare_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = score({t: _ours(metrics[t]) for t in TABLES}, labels)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    base = score({t: _baseline(metrics[t]) for t in TABLES}, labels)
    base_s = time.perf_counter() - start
    rows = []
    for kind in TYPE_CLASSES:
        o, b = ours["per_type"][kind], base["per_type"][kind]
        rows.append({
            "name": f"anomaly_detection_{kind}", "ours_s": None, "baseline_s": None, "ratio": None, "target": None,
            "ours": o, "baseline": b, "f1_gain": round(o["f1"] - b["f1"], 3),
        })  # fmt: skip
    o, b = ours["overall"], base["overall"]
    rows.append({
        "name": "anomaly_detection_overall", "ours_s": round(ours_s, 3), "baseline_s": round(base_s, 3),
        "ratio": None, "target": "f1 >= baseline f1 + 0.15", "ours": o, "baseline": b,
        "f1_gain": round(o["f1"] - b["f1"], 3), "met": o["f1"] >= b["f1"] + 0.15,
        "labeled_asset_days": ours["labeled_asset_days"], "clean_asset_days": ours["clean_asset_days"],
        "seed": SEED, "days": DAYS, "prepare_s": round(prepare_s, 2),
    })  # fmt: skip
    rows.append({
        "name": "anomaly_false_alarms_per_100_clean_asset_days", "ours_s": None, "baseline_s": None, "ratio": None,
        "target": "<= 1", "ours": ours["false_alarms_per_100_clean_asset_days"],
        "baseline": base["false_alarms_per_100_clean_asset_days"],
        "met": ours["false_alarms_per_100_clean_asset_days"] <= 1,
    })  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------------ cost
FLOOR_SQL = """
select count(*), count(*) - count(order_id), count(*) - count(customer_id), count(*) - count(order_date),
    count(*) - count(ordered_at), max(ordered_at), count(*) - count(status), histogram(status),
    count(*) - count(amount), min(amount::double), max(amount::double), avg(amount::double),
    quantile_cont(amount::double, [0.5, 0.95]), count(*) - count(_loaded_at), max(_loaded_at)
from main.raw_orders where order_date >= ? and order_date < ?
"""


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cost_rows(quick: bool) -> list[dict]:
    rows_per_day = 200_000 if quick else 1_000_000
    days = [date(2026, 11, 11) + timedelta(i) for i in range(10)]
    runs = 5 if quick else 9
    with tempfile.TemporaryDirectory(prefix="bench_anomaly_cost_") as tmp:
        path = Path(tmp) / "big.duckdb"
        generate(str(path), days, ShopScale(orders_per_day=rows_per_day), tables=("raw_orders",))
        day = days[5]
        start = datetime.combine(day, datetime.min.time())
        end = start + timedelta(days=1)
        collected_at = datetime(2026, 11, 30, tzinfo=UTC)

        def ours() -> dict:
            with duckdb.connect(str(path)) as con:
                shape = table_shape(con, "raw_orders", "order_date", start, end)
                metrics = collect_partition(con, shape, start, end)
                ensure_history(con)
                store_metrics(con, "raw_orders", day, metrics, collected_at)
                return metrics

        def floor() -> tuple:
            with duckdb.connect(str(path)) as con:
                return con.execute(FLOOR_SQL, [day, day + timedelta(days=1)]).fetchone()

        assert ours()["row_count"] == rows_per_day and floor()[0] == rows_per_day
        pairs = [(_timed(ours), _timed(floor)) for _ in range(runs)]
        total = int(duckdb.connect(str(path), read_only=True).execute("select count(*) from raw_orders").fetchone()[0])
    return [{
        "name": "anomaly_metric_collection_one_day",
        "ours_s": round(statistics.median(p[0] for p in pairs), 4),
        "baseline_s": round(statistics.median(p[1] for p in pairs), 4),
        "ratio": round(statistics.median(p[0] / p[1] for p in pairs), 3),
        "target": 1.5, "table_rows": total, "rows_in_partition": rows_per_day, "runs": runs,
        "note": "ours: describe + low-cardinality pick + one metric query + store in reliability.metric_history",
    }]  # fmt: skip


def run(quick: bool) -> list[dict]:
    return detection_rows(quick) + cost_rows(quick)
