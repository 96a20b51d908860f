"""Partition keys on detections and incidents: the store keeps every partition a fault reached, per
asset, mapped downstream, and shows them in `incidents show` and its JSON."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import dagster as dg

from reliability.cli import main
from reliability.incidents.eventlog import Cursor, fast_check_events, public_check_events, read_events
from reliability.incidents.mapping import CheckEvent, check_partitions, detections_from_events
from reliability.incidents.model import Detection, FaultClass, Source
from reliability.incidents.store import IncidentStore
from reliability.incidents.triage import ALL_PARTITIONS
from tests.incidents.conftest import T0, SteppingClock, shop_graph


def _failure(key: str, asset: str, signal: str, partitions: tuple[str, ...], minutes: int = 0) -> Detection:
    return Detection(key, asset, Source.ASSET_CHECK, signal, T0 + timedelta(minutes=minutes),
                     fault_class=FaultClass.DUPLICATES, partition_keys=partitions)  # fmt: skip


def test_an_incident_lists_the_partitions_each_detection_reached(store_url):
    with IncidentStore(store_url, clock=SteppingClock()) as store:
        store.ingest([_failure("a", "raw_orders", "soda_order_id_duplicate", ("2026-11-21",))], shop_graph())
        store.ingest([_failure("b", "stg_orders", "unique_stg_orders_order_id", ("2026-11-22",), 5)], shop_graph())
        (incident,) = store.list_incidents()
        inc = store.get(incident.id)
    parts = {a.asset_key: a.partitions for a in inc.assets}
    assert parts["raw_orders"] == ["2026-11-21"]  # unpartitioned root: the day its check saw
    assert parts["stg_orders"] == ["2026-11-21", "2026-11-22"]
    assert parts["daily_revenue"] == ["2026-11-21", "2026-11-22"]
    assert parts["customer_lifetime_value"] == []  # unpartitioned: the whole asset
    full = inc.to_dict(full=True)
    assert full["affected_partitions"]["fct_orders"] == ["2026-11-21", "2026-11-22"]
    assert inc.timeline[0].data["partition_keys"] == ["2026-11-21"]


def test_a_detection_without_partitions_means_every_partition(store_url):
    with IncidentStore(store_url, clock=SteppingClock()) as store:
        store.ingest([_failure("a", "stg_orders", "soda_row_count", ("2026-11-21",))], shop_graph())
        store.ingest([_failure("b", "stg_orders", "soda_schema", (), 1)], shop_graph())
        inc = store.get(store.list_incidents()[0].id)
    assert {a.asset_key: a.partitions for a in inc.assets}["fct_orders"] == [ALL_PARTITIONS]


def test_incidents_show_prints_the_partitions(sqlite_url, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    with IncidentStore(sqlite_url, clock=SteppingClock()) as store:
        store.ingest([_failure("a", "raw_payments", "soda_row_count", ("2026-11-21",))], shop_graph())
    assert main(["incidents", "--store-url", sqlite_url, "show", "INC-1"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "fct_orders" in line)
    assert "2026-11-21" in row
    assert main(["incidents", "--store-url", sqlite_url, "show", "INC-1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["affected_partitions"]["raw_payments"] == ["2026-11-21"]
    assert {a["asset_key"]: a["partitions"] for a in shown["assets"]}["fct_orders"] == ["2026-11-21"]


# ---------------------------------------------------------------- event log -> detections, real Dagster instance
DAYS = dg.DailyPartitionsDefinition(start_date="2026-11-01")


@dg.asset(partitions_def=DAYS)
def daily_table() -> None:
    return None


@dg.asset_check(asset=daily_table, name="soda_row_count")
def named_window() -> dg.AssetCheckResult:  # a Soda contract check names its window itself
    return dg.AssetCheckResult(passed=False, metadata={"partition_keys": dg.MetadataValue.json(["2026-11-21"])})


@dg.asset_check(asset=daily_table, name="not_null_id", blocking=True)
def from_the_run() -> dg.AssetCheckResult:  # a dbt test does not: the run's partition labels it
    return dg.AssetCheckResult(passed=False)


def test_detections_carry_the_partitions_of_the_check_or_of_the_run(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        dg.materialize([daily_table, named_window], instance=instance, partition_key="2026-11-21")
        dg.materialize([daily_table, from_the_run], instance=instance, partition_key="2026-11-22",
                       raise_on_error=False)  # fmt: skip
        fast = fast_check_events(instance, Cursor(), strict=True)
        assert fast is not None
        public, _ = public_check_events(instance, Cursor())
        assert sorted(e.partition_keys for e in fast[0]) == sorted(e.partition_keys for e in public)
        batch, _ = read_events(instance, Cursor())
        detections = detections_from_events(batch)
    by_signal = {(d.source, d.signal): d for d in detections}
    assert by_signal[("asset_check", "soda_row_count")].partitions == ("2026-11-21",)
    assert by_signal[("asset_check", "not_null_id")].partitions == ("2026-11-22",)
    (failure,) = [d for d in detections if d.source == "run_failure"]
    assert failure.asset_key == "daily_table" and failure.partitions == ("2026-11-22",)


def test_a_check_result_names_its_partitions_before_the_run_does():
    event = CheckEvent(1, "r", 0.0, "a", "c", False, "ERROR", run_partition_keys=("2026-11-01", "2026-11-02"))
    assert check_partitions(event) == ("2026-11-01", "2026-11-02")
    assert check_partitions(replace(event, partition_keys=("2026-11-02",))) == ("2026-11-02",)
    assert check_partitions(replace(event, partition="2026-11-03", partition_keys=("x",))) == ("2026-11-03",)
