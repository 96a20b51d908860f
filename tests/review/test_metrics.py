"""Incident metrics: known incidents in, known medians out; the Prometheus exposition parses."""

from __future__ import annotations

import urllib.request
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, event

from reliability.cli import main
from reliability.incidents.model import Detection, FaultClass, Source, TimelineKind
from reliability.incidents.store import IncidentStore
from reliability.review.metrics import (
    IMPACT_ESTIMATE,
    IncidentTimes,
    figures,
    overall,
    p90,
    since,
    stats_by,
    times_of,
)
from reliability.review.prometheus import registry_for, serve, store_loader
from tests.incidents.conftest import T0, shop_graph
from tests.review.helpers import open_incident, work_through


def test_medians_and_nearest_rank_p90():
    assert p90([]) is None and p90([5.0]) == 5.0
    assert p90([float(v) for v in range(1, 11)]) == 9.0  # rank ceil(0.9 * 10) = 9
    assert p90([float(v) for v in range(1, 12)]) == 10.0  # rank ceil(9.9) = 10
    times = [
        IncidentTimes(1, "SEV1", "duplicates", "a", T0, "resolved", 60, 10, 100, 1000),
        IncidentTimes(2, "SEV1", "duplicates", "a", T0 + timedelta(days=7), "resolved", 120, 20, 200, 3000),
        IncidentTimes(3, "SEV2", "volume", "b", T0, "open", None, 30, None, None),
    ]
    by_severity = {g.value: g for g in stats_by(times, "severity")}
    assert by_severity["SEV1"].count == 2 and by_severity["SEV1"].open == 0
    assert by_severity["SEV1"].figures["mttr"] == (2000, 3000)
    assert by_severity["SEV2"].figures["mttr"] == (None, None)  # never resolved: left out, not zero
    assert overall(times).figures["mtta"] == (20, 30)
    assert [g.value for g in stats_by(times, "week")] == ["2026-W48", "2026-W49"]
    assert [t.incident_id for t in since(times, T0 + timedelta(days=1))] == [2]


def _incidents(url: str) -> None:
    """Three incidents with known intervals: MTTR 600 and 1800 s for SEV1/SEV2 duplicates, one open."""
    with IncidentStore(url) as store:
        a = open_incident(store, at=T0, impact=T0 - timedelta(seconds=120), key="a")
        work_through(store, a, T0, ack=60, mitigate=300, resolve=600)
        b = open_incident(store, at=T0 + timedelta(hours=2), impact=T0 + timedelta(hours=2) - timedelta(seconds=360),
                          key="b")  # fmt: skip
        work_through(store, b, T0 + timedelta(hours=2), ack=180, mitigate=900, resolve=1800)
        open_incident(store, asset="raw_payments", signal="soda_row_count", fault=FaultClass.VOLUME,
                      at=T0 + timedelta(hours=3), key="c")  # fmt: skip


def test_store_incidents_to_stats_table_and_prometheus(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    _incidents(url)
    with IncidentStore(url) as store:
        times = [times_of(i) for i in store.list_incidents()]
    assert overall(times).figures["mttr"] == (1200, 1800) and overall(times).figures["mttd"] == (240, 360)
    assert overall(times).count == 3 and overall(times).open == 1

    assert main(["incidents", "--store-url", url, "stats", "--by", "fault_class"]) == 0
    out = capsys.readouterr().out
    assert "by fault_class" in out and "duplicates" in out and "20 min 0 s" in out  # MTTR median 1200 s

    server, thread = serve(registry_for(store_loader(url)), "127.0.0.1", 0)
    try:
        port = server.server_address[1]
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        server.shutdown()
    families = {f.name: f for f in text_string_to_metric_families(body)}
    open_by_severity = {s.labels["severity"]: s.value for s in families["reliability_open_incidents"].samples}
    assert sum(open_by_severity.values()) == 1
    resolve = {
        (s.name, s.labels.get("le")): s.value for s in families["reliability_incident_time_to_resolve_seconds"].samples
    }
    assert resolve[("reliability_incident_time_to_resolve_seconds_count", None)] == 2
    assert resolve[("reliability_incident_time_to_resolve_seconds_sum", None)] == 2400
    assert resolve[("reliability_incident_time_to_resolve_seconds_bucket", "900.0")] == 1
    detections = {s.labels["fault_class"]: s.value for s in families["reliability_incident_detections"].samples
                  if s.name.endswith("_total")}  # fmt: skip
    assert detections == {"duplicates": 2, "volume": 1}

    textfile = tmp_path / "incidents.prom"
    assert main(["metrics", "serve", "--store-url", url, "--textfile", str(textfile)]) == 0
    assert "reliability_incident_time_to_detect_seconds_count 2.0" in textfile.read_text()


def _store_with(url: str, count: int) -> None:
    """`count` incidents over several days, fault classes and severities: most resolved, some with a
    second detection (joined while open) or a post-mortem's impact estimate on their timeline, the last
    three still open."""
    faults = [("raw_orders", "soda_order_id_duplicate", FaultClass.DUPLICATES),
              ("raw_payments", "soda_row_count", FaultClass.VOLUME),
              ("raw_customers", "soda_email_missing", FaultClass.DATA_QUALITY)]  # fmt: skip
    with IncidentStore(url) as store:
        for i in range(count):
            at = T0 + timedelta(hours=6 * i)
            asset, signal, fault = faults[i % 3]
            impact = at - timedelta(seconds=60 * (i + 1)) if i % 2 else None
            inc = open_incident(store, asset=asset, signal=signal, fault=fault, at=at, impact=impact, key=f"k{i}")
            if i % 4 == 0:  # the same signal again while open: joins, one more detection on the timeline
                again = Detection(f"k{i}b", asset, Source.ASSET_CHECK, signal, at + timedelta(seconds=30),
                                  fault_class=fault)  # fmt: skip
                assert store.ingest([again], shop_graph(), now=at + timedelta(seconds=30)).opened == []
            if i % 5 == 0:  # a post-mortem estimated the impact start from the data
                store.add_timeline(inc, "reliability-review", TimelineKind.TRIAGE, "impact start estimated",
                                   {IMPACT_ESTIMATE: {"at": (at - timedelta(hours=1)).isoformat(), "method": "x"}},
                                   now=at + timedelta(seconds=40))  # fmt: skip
            if i < count - 3:
                work_through(store, inc, at, ack=60 + i, mitigate=300 + i, resolve=600 + 10 * i)


def _per_incident_figures(url: str) -> tuple[list, dict[str, int]]:
    """The figures from the obvious read, one whole-timeline query per incident: the reference."""
    with IncidentStore(url) as store:
        incidents = store.list_incidents()
        return figures(incidents, {inc.id: store.timeline(inc.id) for inc in incidents})


def _scrape_counting_queries(url: str) -> tuple[tuple[list, dict[str, int]], int]:
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        figures = store_loader(url)()
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    return figures, len(statements)


def test_a_scrape_costs_the_same_queries_for_3_or_30_incidents_and_the_figures_do_not_change(tmp_path):
    few, many = f"sqlite:///{tmp_path / 'few.db'}", f"sqlite:///{tmp_path / 'many.db'}"
    _store_with(few, 3)
    _store_with(many, 30)
    (few_figures, few_queries), (many_figures, many_queries) = map(_scrape_counting_queries, (few, many))
    assert few_figures == _per_incident_figures(few)
    assert many_figures == _per_incident_figures(many)
    times, detections = many_figures
    assert len(times) == 30 and sum(detections.values()) == 30 + 8  # 8 incidents got a second detection
    assert sum(t.mttd is not None for t in times) > 15  # impact starts from detections and estimates
    assert many_queries == few_queries, (few_queries, many_queries)
