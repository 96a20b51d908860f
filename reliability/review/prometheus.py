"""Prometheus exposition of the incident metrics (prometheus-client), read from the store at each scrape.

Names follow Prometheus conventions: a `reliability_` namespace, base units (`_seconds`), `_total` for
counters. Histograms are built from the incidents (not observed live), so a restart loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from reliability.review.metrics import IncidentTimes

SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")
BUCKETS_S = (60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 86_400.0, 3 * 86_400.0, 7 * 86_400.0)


def _histogram(name: str, doc: str, values: Sequence[float]) -> Any:
    from prometheus_client.core import HistogramMetricFamily

    buckets = [(str(b), sum(v <= b for v in values)) for b in BUCKETS_S] + [("+Inf", len(values))]
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=float(sum(values)))


def families(times: Sequence[IncidentTimes], detections_by_class: dict[str, int]) -> list[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    open_gauge = GaugeMetricFamily(
        "reliability_open_incidents", "Incidents not resolved, by severity", labels=["severity"]
    )
    for severity in SEVERITIES:
        open_gauge.add_metric([severity], sum(t.status != "resolved" and t.severity == severity for t in times))
    detect = _histogram(
        "reliability_incident_time_to_detect_seconds",
        "Impact start to detection, per incident with a known impact start",
        [t.mttd for t in times if t.mttd is not None],
    )
    resolve = _histogram(
        "reliability_incident_time_to_resolve_seconds",
        "Detection to resolution, per resolved incident",
        [t.mttr for t in times if t.mttr is not None],
    )
    detections = CounterMetricFamily(
        "reliability_incident_detections", "Failure detections recorded on incidents, by fault class",
        labels=["fault_class"],
    )  # fmt: skip
    for fault_class, count in sorted(detections_by_class.items()):
        detections.add_metric([fault_class], count)
    return [open_gauge, detect, resolve, detections]


class IncidentCollector:
    """A prometheus-client collector: `load()` returns (incident times, detections by fault class)."""

    def __init__(self, load: Callable[[], tuple[Sequence[IncidentTimes], dict[str, int]]]) -> None:
        self.load = load

    def collect(self) -> Iterable[Any]:
        times, detections = self.load()
        yield from families(times, detections)


def registry_for(load: Callable[[], tuple[Sequence[IncidentTimes], dict[str, int]]]) -> Any:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(IncidentCollector(load))  # type: ignore[arg-type]
    return registry


def store_loader(store_url: str | None) -> Callable[[], tuple[list[IncidentTimes], dict[str, int]]]:
    """Reads every incident and its detections' fault classes from the store, at each call: a constant
    number of queries (`load_figures`), however many incidents the store holds."""

    def load() -> tuple[list[IncidentTimes], dict[str, int]]:
        from reliability.incidents.store import IncidentStore
        from reliability.review.metrics import load_figures

        with IncidentStore(store_url, create=False) as store:
            return load_figures(store)

    return load


def serve(registry: Any, host: str = "127.0.0.1", port: int = 9464) -> tuple[Any, Any]:
    """Serve `/metrics` in a daemon thread; returns (server, thread). Port 0 picks a free port."""
    from prometheus_client import start_http_server

    return start_http_server(port, addr=host, registry=registry)
