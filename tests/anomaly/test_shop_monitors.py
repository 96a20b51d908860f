"""Each anomaly type injected into a clean shop history is flagged on its day by the matching monitor;
a clean history raises nothing; cold start says learning (real generator, real DuckDB)."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from reliability.anomaly.defs import check_result
from reliability.anomaly.detector import LEARNING
from reliability.anomaly.monitors import by_fault_class
from reliability.incidents.mapping import fault_class_of
from reliability.incidents.model import FaultClass
from reliability.partitions import PARTITION_KEYS_METADATA
from reliability.shop.generator import PARTITION_COLUMN
from tests.anomaly.shop_history import judge_days, write_days

HISTORY_DAYS = 24
FAULT_DAY_INDEX = HISTORY_DAYS  # the day after the clean history


def _day_filter(table: str) -> str:
    return f"{PARTITION_COLUMN[table]} = ?"


FAULTS = {  # name: (table, SQL run on the fault day, fault classes that must flag it)
    "volume_drop": ("raw_orders", "delete from raw_orders where {f} and order_id % 10 <> 0", {FaultClass.VOLUME}),
    "volume_spike": (
        "raw_orders", "insert into raw_orders select raw_orders.* from raw_orders, range(2) where {f}",
        {FaultClass.VOLUME},
    ),
    "missing_day": ("raw_payments", "delete from raw_payments where {f}", {FaultClass.VOLUME, FaultClass.COMPLETENESS}),
    "null_spike": (
        "raw_customers", "update raw_customers set country = null where {f} and hash(customer_id, 'p') % 7 < 2",
        {FaultClass.NULL_RATE},
    ),
    "scale_change": ("raw_orders", "update raw_orders set amount = amount * 100 where {f}", {FaultClass.DISTRIBUTION}),
    "category_shift": ("raw_payments", "update raw_payments set method = 'coupon' where {f} and payment_id % 2 = 0",
                       {FaultClass.DISTRIBUTION}),
    "late_load": ("raw_orders", "update raw_orders set _loaded_at = _loaded_at + interval 30 hour where {f}",
                  {FaultClass.FRESHNESS}),
}  # fmt: skip


@pytest.fixture(scope="module")
def clean_history(tmp_path_factory) -> tuple[Path, list]:
    warehouse = tmp_path_factory.mktemp("history") / "warehouse.duckdb"
    dates = write_days(warehouse, HISTORY_DAYS + 1)
    judge_days(warehouse, dates[:HISTORY_DAYS])  # measured day by day into the metric history
    return warehouse, dates


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_injected_fault_is_flagged_on_its_day_by_the_matching_monitor(fault, clean_history, tmp_path) -> None:
    source, dates = clean_history
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(source, warehouse)
    table, sql, expected = FAULTS[fault]
    day = dates[FAULT_DAY_INDEX]
    with duckdb.connect(str(warehouse)) as con:
        con.execute(sql.format(f=_day_filter(table)), [day])
    verdicts = judge_days(warehouse, [day], ("raw_orders", table) if table != "raw_orders" else (table,))
    classes = by_fault_class(verdicts[(table, day)])
    flagged = {c for c, v in classes.items() if not v.passed}
    assert flagged >= expected, {c: v.anomalies for c, v in classes.items()}
    if fault == "null_spike":  # the nulls are not also a share shift: shares are among values
        assert flagged == {FaultClass.NULL_RATE}
    for fault_class in expected:  # the check's result names the incident's fault class
        result = check_result(table, {day: classes}, fault_class, blocking=False, note=None)
        assert not result.passed and result.metadata[PARTITION_KEYS_METADATA].value == [day.isoformat()]
        assert fault_class_of({"check_type": result.metadata["check_type"].value}) == fault_class


def test_a_clean_history_of_60_days_raises_nothing_and_learns_first(tmp_path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    dates = write_days(warehouse, 60, ("raw_orders", "raw_payments"))
    verdicts = judge_days(warehouse, dates, ("raw_orders", "raw_payments"))
    anomalies = {key: [m for m, v in vs.items() if v.is_anomaly] for key, vs in verdicts.items()}
    assert {key: ms for key, ms in anomalies.items() if ms} == {}
    first = by_fault_class(verdicts[("raw_orders", dates[0])])
    assert {v.status for v in first.values()} == {LEARNING}
    assert verdicts[("raw_orders", dates[20])]["row_count"].status == LEARNING
    assert verdicts[("raw_orders", dates[21])]["row_count"].status == "ok"
    assert verdicts[("raw_orders", dates[59])]["row_count"].history_points >= 21


def test_days_excluded_for_an_incident_are_not_learned(tmp_path) -> None:
    """Payments stop for four weeks (an incident, resolved); the same fault a week later is flagged
    only when the incident's days are left out of training."""
    warehouse = tmp_path / "warehouse.duckdb"
    dates = write_days(warehouse, 60, ("raw_orders", "raw_payments"))
    outage = dates[24:52]
    with duckdb.connect(str(warehouse)) as con:
        for day in [*outage, dates[59]]:
            con.execute("delete from raw_payments where payment_date = ? and payment_id % 2 = 0", [day])
    learned = judge_days(warehouse, dates, ("raw_orders", "raw_payments"))
    fault_day = dates[59]
    assert not learned[("raw_payments", fault_day)]["row_count"].is_anomaly  # half the payments became normal
    kept_out = judge_days(warehouse, [fault_day], ("raw_orders", "raw_payments"), excluded=set(outage))
    assert kept_out[("raw_payments", fault_day)]["row_count"].is_anomaly
    assert kept_out[("raw_payments", fault_day)]["ratio:raw_payments/raw_orders"].is_anomaly
    assert fault_day - timedelta(days=7) == outage[-1] + timedelta(days=1)


def test_a_gradual_drift_is_flagged_once_it_leaves_the_band_and_stays_flagged(tmp_path) -> None:
    """Order amounts creep up 5% a day for six days after a clean history. Flagged days open
    incidents and so are left out of training: the drift never becomes the new normal."""
    warehouse = tmp_path / "warehouse.duckdb"
    dates = write_days(warehouse, HISTORY_DAYS + 6, ("raw_orders",))
    ramp = dates[HISTORY_DAYS:]
    with duckdb.connect(str(warehouse)) as con:
        for step, day in enumerate(ramp, start=1):
            con.execute("update raw_orders set amount = amount * ? where order_date = ?", [1 + 0.05 * step, day])
    judge_days(warehouse, dates[:HISTORY_DAYS], ("raw_orders",))
    excluded: set = set()
    flagged_days = []
    for day in ramp:
        classes = by_fault_class(judge_days(warehouse, [day], ("raw_orders",), excluded)[("raw_orders", day)])
        if not classes[FaultClass.DISTRIBUTION].passed:
            flagged_days.append(day)
            excluded.add(day)  # the incident covers the day
    assert flagged_days and flagged_days == ramp[ramp.index(flagged_days[0]) :]  # from its first flag on, every day
    assert ramp.index(flagged_days[0]) <= 2  # by +15% at the latest
