"""End to end: duplicate orders from a producer without idempotence -> incident -> reconciled -> post-mortem.

The orders of one day are produced to the real broker with `resend_every` (each 250th event sent twice in
a row, as a non-idempotent producer retrying a batch whose ack was lost), ingested exactly once into a
real DuckDB warehouse, checked by the real Soda contracts in a real Dagster instance, detected by the real
sensor, then worked to resolution through the product: `reconcile` replays the bad day from Kafka,
dropping the producer's copies, and submits one backfill; the backfill daemon's own iteration runs it in
process on the platform's code location (runs launched synchronously); `verify_and_close` judges its
checks and resolves the incident. Its post-mortem, written after the repair, must name the producer with
the adjacency evidence the topic still holds.
"""

from __future__ import annotations

import sys
from datetime import date, timedelta

import dagster as dg
import duckdb
import pytest

from reliability.clock import utcnow
from reliability.incidents.defs import build_incident_sensor
from reliability.incidents.lineage import graph_from_definitions
from reliability.incidents.model import Status
from reliability.incidents.store import IncidentStore
from reliability.kafka import clients
from reliability.kafka.dlq_ops import kafka_replayer
from reliability.kafka.ingest import ingest
from reliability.kafka.producer import produce_shop_days
from reliability.reconciliation.backfill import backfill_outcome
from reliability.reconciliation.service import (
    BACKFILL_ACTION,
    KAFKA_REPLAY_ACTION,
    VERIFY_ACTION,
    reconcile,
    verify_and_close,
)
from reliability.review.causes import PRODUCER_RETRIES
from reliability.review.metrics import times_of
from reliability.review.render import render
from reliability.review.service import lineage_edges, write_postmortem
from reliability.settings import get_settings
from reliability.shop.generator import ShopScale
from tests.daemon_harness import in_process_workspace
from tests.incidents.test_shop_end_to_end import GENERATED, soda_checks_of
from tests.shop_harness import DAY, build, failed_checks, run, shop_settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
RESEND_EVERY = 250  # 1000 orders a day: 4 duplicates
LOCATION = "tests.review.duplicates_location"


def run_backfill(instance: dg.DagsterInstance, backfill_id: str) -> None:
    """The backfill daemon's iteration, in process, on the platform's code location (`LOCATION`), until
    the backfill has ended: the instance launches each run synchronously, so the iteration runs it."""
    from dagster._core.execution.backfill import BULK_ACTION_TERMINAL_STATUSES
    from dagster._daemon.backfill import execute_backfill_iteration
    from dagster._daemon.daemon import get_default_daemon_logger

    with in_process_workspace(instance, LOCATION) as context:
        for _ in range(10):
            list(execute_backfill_iteration(context, get_default_daemon_logger("BackfillDaemon")))
            if instance.get_backfill(backfill_id).status in BULK_ACTION_TERMINAL_STATUSES:
                return
    raise AssertionError(
        f"backfill {backfill_id} still {instance.get_backfill(backfill_id).status} after 10 iterations"
    )


def test_duplicate_orders_reconciled_and_the_postmortem_names_the_producer_with_adjacent_offsets(
    kafka_broker, topic_name, tmp_path, monkeypatch
):
    group = f"g.{topic_name}"
    warehouse = tmp_path / "warehouse.duckdb"
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    env = {"RELIABILITY_WAREHOUSE": str(warehouse), "RELIABILITY_INCIDENT_STORE_URL": url,
           "REVIEW_TEST_KAFKA_BOOTSTRAP": kafka_broker, "REVIEW_TEST_KAFKA_TOPIC": topic_name,
           "REVIEW_TEST_KAFKA_GROUP": group}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    sys.modules.pop(LOCATION, None)  # the location reads the settings and the topic when it is imported
    defs = build(shop_settings(tmp_path))
    # the day's other raw tables and the customers model the repair's dbt tests join to, as a running
    # warehouse has them
    before = GENERATED | dg.AssetSelection.assets("stg_customers")
    assert run(defs, before, dg.DagsterInstance.ephemeral(), partition_key=DAY).success
    # the orders carry their order time, days back: the broker's 7-day time retention would delete them
    # mid-test (the post-mortem then reads an empty topic), so this topic keeps everything
    clients.ensure_topic(topic_name, 4, kafka_broker, config={"retention.ms": "-1"})
    # each order stamped with its order time, as the shop produces it: the day's window finds them
    produced = produce_shop_days(topic_name, [date.fromisoformat(DAY)], ShopScale(), bootstrap=kafka_broker,
                                 resend_every=RESEND_EVERY, at_order_time=True)  # fmt: skip
    assert produced == 1000
    stats = ingest(warehouse, topic=topic_name, group_id=group, bootstrap=kafka_broker)
    assert stats.rows == 1000 + 1000 // RESEND_EVERY  # exactly once per offset: the copies are stored too
    with duckdb.connect(str(warehouse)) as con:
        assert con.execute("select count(*) - count(distinct order_id) from raw_orders").fetchone()[0] == 4

    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home), synchronous_run_coordinator=True,
                              synchronous_run_launcher=True) as instance:  # fmt: skip
        soda = run(defs, soda_checks_of(defs, "raw_orders"), instance)
        assert "raw_orders:soda_order_id_duplicate" in failed_checks(soda)
        build_incident_sensor(store_url=url)(dg.build_sensor_context(instance=instance, definitions=defs))

        with IncidentStore(url) as store:
            (incident,) = store.list_incidents()
            assert incident.fault_class == "duplicates" and incident.root_asset == "raw_orders"
            start = incident.detected_at
            store.acknowledge(incident.id, "oncall@shop.example", now=start + timedelta(minutes=3))
            store.mitigate(incident.id, "oncall@shop.example", note="orders marts paused",
                           now=start + timedelta(minutes=9))  # fmt: skip
            # the repair the on-call runs: `reliability incidents reconcile INC-n --partition DAY --replay-kafka`
            at = start + timedelta(minutes=30)
            replayer = kafka_replayer(warehouse, kafka_broker, topic_name, group, now=at,
                                      actor="oncall@shop.example", incident=incident.display_id)  # fmt: skip
            graph = defs.resolve_asset_graph()
            dry = reconcile(store, None, graph, incident.id, now=at, partitions=[DAY], dry_run=True,
                            replay_kafka=replayer)  # fmt: skip
            assert sum(len(p.copies) for p in dry.kafka_replay.partitions) == 4
            assert sum(p.rows for p in dry.kafka_replay.partitions) == 1000
            done = reconcile(store, instance, graph, incident.id, now=at, partitions=[DAY],
                             actor="oncall@shop.example", replay_kafka=replayer)  # fmt: skip
            outcome = done.kafka_replay.outcome
            assert len(outcome.dropped) == 4 and outcome.rows_removed == 4 and outcome.replayed == []
            assert set(done.kafka_replay.to_dict()["copy_of"].values()) == {  # each copy right after its original
                f"{p}:{o - 1}" for p, o in outcome.dropped}  # fmt: skip
            with duckdb.connect(str(warehouse)) as con:
                assert con.execute("select count(*), count(distinct order_id) from raw_orders").fetchone() == (
                    1000, 1000)  # fmt: skip
            # a second replay finds nothing left to drop: idempotent
            again = replayer([DAY], False, True)
            assert again.outcome.dropped == [] and sum(len(p.copies) for p in again.partitions) == 0

            run_backfill(instance, done.backfill_id)
            result = backfill_outcome(instance, done.backfill_id)
            assert result.succeeded, result.status
            assert {("raw_orders", None), ("stg_orders", DAY)} <= result.materialized
            assert ("raw_orders", "soda_order_id_duplicate", True) in {
                (c.asset, c.check, c.passed) for c in result.checks
            }
            verdict = verify_and_close(
                store, instance, incident.id, done.backfill_id, now=start + timedelta(minutes=31)
            )
            assert verdict is not None and verdict.repaired, verdict
            recorded = store.get(incident.id)
            assert recorded.status == Status.RESOLVED
            actions = {e.data.get("action"): e for e in recorded.timeline}
            assert {KAFKA_REPLAY_ACTION, BACKFILL_ACTION, VERIFY_ACTION} <= set(actions)
            assert actions[KAFKA_REPLAY_ACTION].data["outcome"]["rows_removed"] == 4

            # written after the repair: the warehouse is clean again, the topic still holds what was produced
            written = write_postmortem(store, incident.id, "md", utcnow(), warehouse, topic_name, kafka_broker,
                                       edges=lineage_edges(graph_from_definitions(defs)),
                                       notes_path=tmp_path / "notes.yaml", record_impact=True)  # fmt: skip
            # the estimate is kept on the timeline: the incident metrics measure MTTD from the broker too
            recorded = store.get(incident.id)
            assert times_of(recorded).mttd is None  # the check-run impact start was not recorded for Soda
            mttd_from_broker = times_of(recorded, recorded.timeline).mttd
    get_settings.cache_clear()
    sys.modules.pop(LOCATION, None)
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
    # the repair is on the post-mortem's timeline, as the product recorded it
    assert "dropped 4 producer copy(ies) (identical key and payload at an earlier offset" in written.text
    assert f"reconciliation {done.backfill_id} verified" in written.text
    html = render(pm, "html")
    assert '<svg id="blast-radius"' in html and "raw_orders" in html
    (tmp_path / "postmortem.md").write_text(written.text)
    (tmp_path / "postmortem.html").write_text(html)
