"""Incidents for the review tests, made through the real store (SQLite) and the shop lineage."""

from __future__ import annotations

from datetime import datetime, timedelta

from reliability.incidents.model import Detection, FaultClass, Source
from reliability.incidents.store import IncidentStore
from tests.incidents.conftest import T0, shop_graph


def open_incident(
    store: IncidentStore,
    asset: str = "raw_orders",
    signal: str = "soda_order_id_duplicate",
    fault: FaultClass = FaultClass.DUPLICATES,
    at: datetime = T0,
    impact: datetime | None = None,
    metadata: dict | None = None,
    key: str = "d1",
) -> int:
    detection = Detection(key, asset, Source.ASSET_CHECK, signal, at, fault_class=fault, impact_started_at=impact,
                          metadata=metadata or {})  # fmt: skip
    (incident_id,) = store.ingest([detection], shop_graph(), now=at).opened
    return incident_id


def work_through(store: IncidentStore, incident_id: int, at: datetime, ack: float, mitigate: float,
                 resolve: float | None) -> None:  # fmt: skip
    """Acknowledge, mitigate and (optionally) resolve `ack`, `mitigate`, `resolve` seconds after `at`."""
    store.acknowledge(incident_id, "oncall@shop.example", now=at + timedelta(seconds=ack))
    store.mitigate(incident_id, "oncall@shop.example", note="paused the orders marts",
                   now=at + timedelta(seconds=mitigate))  # fmt: skip
    if resolve is not None:
        store.resolve(incident_id, "oncall@shop.example", note="reconciled", now=at + timedelta(seconds=resolve))
