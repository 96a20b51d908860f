"""Partition keys on detections and incidents: the store keeps every partition a fault reached, per
asset, mapped downstream, and shows them in `incidents show` and its JSON."""

from __future__ import annotations

import json
from datetime import timedelta

from reliability.cli import main
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
