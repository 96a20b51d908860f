"""End to end: duplicate orders from a producer without idempotence -> incident -> post-mortem.

The orders of one day are produced to the real broker with `resend_every` (each 250th event sent twice in
a row, as a non-idempotent producer retrying a batch whose ack was lost), ingested exactly once into a
real DuckDB warehouse, checked by the real Soda contracts in a real Dagster instance, detected by the real
sensor, then worked to resolution. Its post-mortem must name the producer, with the adjacency evidence.
"""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import duckdb
import pytest

from reliability.clock import utcnow
from reliability.incidents.defs import build_incident_sensor
from reliability.incidents.lineage import graph_from_definitions
from reliability.incidents.model import TimelineKind
from reliability.incidents.store import IncidentStore
from reliability.kafka import clients
from reliability.kafka.ingest import ingest
from reliability.kafka.producer import produce_shop_days
from reliability.review.causes import PRODUCER_RETRIES
from reliability.review.metrics import times_of
from reliability.review.render import render
from reliability.review.service import lineage_edges, write_postmortem
from reliability.shop.generator import ShopScale
from tests.incidents.test_shop_end_to_end import GENERATED, soda_checks_of
from tests.shop_harness import DAY, build, failed_checks, run, shop_settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
RESEND_EVERY = 250  # 1000 orders a day: 4 duplicates


def test_duplicate_orders_postmortem_names_the_producer_with_adjacent_offsets(kafka_broker, topic_name, tmp_path,
                                                                               monkeypatch):  # fmt: skip
    defs = build(shop_settings(tmp_path))
    assert run(defs, GENERATED, dg.DagsterInstance.ephemeral(), partition_key=DAY).success
    clients.ensure_topic(topic_name, 4, kafka_broker)
    produced = produce_shop_days(topic_name, [date.fromisoformat(DAY)], ShopScale(), bootstrap=kafka_broker,
                                 resend_every=RESEND_EVERY)  # fmt: skip
    assert produced == 1000
    warehouse = tmp_path / "warehouse.duckdb"
    stats = ingest(warehouse, topic=topic_name, group_id=f"g.{topic_name}", bootstrap=kafka_broker)
    assert stats.rows == 1000 + 1000 // RESEND_EVERY  # exactly once per offset: the copies are stored too
    with duckdb.connect(str(warehouse)) as con:
        assert con.execute("select count(*) - count(distinct order_id) from raw_orders").fetchone()[0] == 4

    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        soda = run(defs, soda_checks_of(defs, "raw_orders"), instance)
        assert "raw_orders:soda_order_id_duplicate" in failed_checks(soda)
        build_incident_sensor(store_url=url)(dg.build_sensor_context(instance=instance, definitions=defs))

    with IncidentStore(url) as store:
        (incident,) = store.list_incidents()
        assert incident.fault_class == "duplicates" and incident.root_asset == "raw_orders"
        # worked to the end: acknowledged, mitigated, reconciled (deduplicated by key), resolved
        start = incident.detected_at
        store.acknowledge(incident.id, "oncall@shop.example", now=start + timedelta(minutes=3))
        store.mitigate(incident.id, "oncall@shop.example", note="orders marts paused", now=start + timedelta(minutes=9))
        with duckdb.connect(str(warehouse)) as con:
            con.execute("create or replace table raw_orders as select distinct on (order_id) * from raw_orders")
        store.add_timeline(incident.id, "oncall@shop.example", TimelineKind.ACTION, "reconciled: raw_orders "
                           "deduplicated by order_id, 4 copies removed", now=start + timedelta(minutes=30))  # fmt: skip
        store.resolve(incident.id, "oncall@shop.example", note="duplicates removed", now=start + timedelta(minutes=31))
        # written after the repair: the warehouse is clean again, the topic still holds what was produced
        written = write_postmortem(store, incident.id, "md", utcnow(), warehouse, topic_name, kafka_broker,
                                   edges=lineage_edges(graph_from_definitions(defs)),
                                   notes_path=tmp_path / "notes.yaml", record_impact=True)  # fmt: skip
        # the estimate is kept on the timeline: the incident metrics measure MTTD from the broker too
        recorded = store.get(incident.id)
        assert times_of(recorded).mttd is None  # the check-run impact start was not recorded for Soda
        mttd_from_broker = times_of(recorded, recorded.timeline).mttd
    pm = written.postmortem
    print(written.text)
    assert pm.hypothesis.cause == PRODUCER_RETRIES, pm.hypothesis
    assert "4 duplicate message(s) are identical payloads with identical keys at adjacent offsets" in written.text
    assert (
        "1004 message(s) read: 4 run(s) of identical payloads at adjacent offsets (4 extra copies), "
        "0 scattered copies" in written.text
    )
    assert "predicate no longer holds on raw_orders" in written.text  # re-run on the repaired table
    assert (
        "**Why did ingestion produce it?** producer retried without idempotence: identical copies at adjacent "
        "offsets are the signature of a batch re-sent after a lost acknowledgement by a producer without "
        "idempotence _(hypothesis)_" in written.text
    )
    # impact start from the broker: the first duplicate message's timestamp, before the detection
    assert pm.impact.method.startswith("broker timestamp of the first duplicate message, " + topic_name)
    mttd = next(d for d in pm.durations if d.name == "MTTD")
    assert pm.impact.at < incident.detected_at and mttd.seconds > 0
    assert mttd_from_broker == pytest.approx(mttd.seconds, abs=0.001)
    assert {d.name: d.seconds for d in pm.durations if d.name != "MTTD"} == {"MTTA": 180, "MTTM": 540, "MTTR": 1860}
    assert any("enable.idempotence" in a.text for a in pm.actions)
    html = render(pm, "html")
    assert '<svg id="blast-radius"' in html and "raw_orders" in html
    (tmp_path / "postmortem.md").write_text(written.text)
    (tmp_path / "postmortem.html").write_text(html)
