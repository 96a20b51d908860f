"""Dagster definitions of the incidents area: the detection sensor.

The sensor reads the instance event log (failed/passed asset checks, freshness changes, failed runs)
after its cursor, turns them into incidents in the store, writes AssetObservations on affected
assets, tags runs, and delivers due notifications from the outbox with a time budget.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from reliability.incidents.config import load_incidents_config, open_store
from reliability.incidents.detection import run_tick
from reliability.incidents.eventlog import Cursor
from reliability.incidents.lineage import graph_from_asset_graph

SENSOR_NAME = "incident_detection_sensor"
_STORES: dict[str | None, Any] = {}


def _store(url: str | None) -> Any:
    store = _STORES.get(url)
    if store is None:
        store = _STORES[url] = open_store(url)
    return store


def build_incident_sensor(
    store_url: str | None = None,
    minimum_interval_seconds: int = 30,
    name: str = SENSOR_NAME,
    mitigation: bool = False,
) -> dg.SensorDefinition:
    """`mitigation`: after each tick, apply the circuit-breaker policy and report the `open_incident`
    checks (reliability.mitigation); on in the platform's code location."""

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Turns failed asset checks, freshness FAILs and failed runs into grouped, triaged, "
        "notified incidents (reliability incidents list).",
    )
    def incident_detection_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cfg = load_incidents_config()
        graph = graph_from_asset_graph(context.repository_def.asset_graph)
        outcome = run_tick(
            context.instance,
            _store(store_url),
            graph,
            Cursor.parse(context.cursor),
            delivery_budget_s=cfg.delivery_budget_s,
            delivery_timeout_s=cfg.delivery_timeout_s,
        )
        context.log.info(outcome.summary())
        if mitigation:
            from reliability.mitigation.defs import after_incident_tick

            for line in after_incident_tick(context, _store(store_url)):
                context.log.info(line)
        return dg.SensorResult(cursor=outcome.cursor.dumps(), skip_reason=outcome.summary())

    return incident_detection_sensor


def defs(settings: Any = None) -> dg.Definitions:
    """The incidents area. `settings` is accepted for symmetry with the other areas; the store URL
    comes from `RELIABILITY_INCIDENT_STORE_URL` / settings at tick time.

    The incidents config and the channel variables are checked here, once at start-up: a malformed
    webhook fails loading with the variable named (never its value) instead of failing every delivery."""
    from reliability.incidents.notify import check_channel_settings

    check_channel_settings(load_incidents_config().routes)
    return dg.Definitions(sensors=[build_incident_sensor(mitigation=True)])
