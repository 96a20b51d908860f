"""`reliability incidents reconcile`: the dry run changes nothing; the real one submits one asset backfill
of exactly the plan, tagged with the incident, and records plan and backfill id on the timeline.

Real shop definitions, a real incident store (SQLite) and a real Dagster instance; no daemon here
(tests/reconciliation/test_daemon.py runs the backfill)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest

from reliability import cli
from reliability.incidents.lineage import graph_from_definitions
from reliability.incidents.model import Detection, Source
from reliability.incidents.store import IncidentStore
from reliability.reconciliation.backfill import INCIDENT_TAG, backfill_target
from tests.incidents.conftest import T0, SteppingClock
from tests.shop_harness import build, shop_settings

REPO = Path(__file__).resolve().parents[2]
DAY = "2026-01-05"  # early in the shop's partitioning (from 2026-01-01): a partition whatever today is
PLANNED = {("raw_payments", DAY), ("stg_payments", DAY), ("fct_orders", DAY), ("daily_revenue", DAY),
           ("customer_lifetime_value", None)}  # fmt: skip


@pytest.fixture
def incident(tmp_path, monkeypatch):
    monkeypatch.setenv("RELIABILITY_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    defs = build(shop_settings(tmp_path))
    bad_day = Detection("check:run1:1", "raw_payments", Source.ASSET_CHECK, "soda_method_invalid", T0,
                        partition=DAY)  # fmt: skip
    with IncidentStore(url, clock=SteppingClock()) as store:
        (incident_id,) = store.ingest([bad_day], graph_from_definitions(defs)).incident_ids
    return url, incident_id


def test_dry_run_prints_the_plan_and_changes_nothing(incident, capsys):
    url, incident_id = incident
    with IncidentStore(url) as store:
        before = len(store.timeline(incident_id))
    assert cli.main(["incidents", "reconcile", f"INC-{incident_id}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        f"INC-{incident_id}: rebuild 5 (asset, partition) pair(s) from raw_payments [{DAY}; partitions from "
        "incident]" in out
    )
    assert "4. customer_lifetime_value: unpartitioned, once" in out and "dry run: nothing submitted" in out
    with IncidentStore(url) as store:
        assert len(store.timeline(incident_id)) == before
    with dg.DagsterInstance.get() as instance:
        assert instance.get_backfills() == []


def test_reconcile_submits_one_backfill_of_exactly_the_plan_and_records_it(incident, capsys):
    url, incident_id = incident
    assert cli.main(["incidents", "reconcile", str(incident_id), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    with dg.DagsterInstance.get() as instance:
        (backfill,) = instance.get_backfills()
        assert backfill.backfill_id == result["backfill_id"]
        assert backfill.tags[INCIDENT_TAG] == f"INC-{incident_id}"
        assert backfill_target(instance, backfill.backfill_id) == PLANNED
    with IncidentStore(url) as store:
        (entry,) = [e for e in store.timeline(incident_id) if e.data.get("action") == "reconcile_backfill"]
    assert entry.data["backfill_id"] == backfill.backfill_id
    assert entry.data["plan"]["size"] == 5 and entry.data["partitions_from"] == "incident"


def test_a_partition_option_overrides_and_a_bad_one_is_refused_in_one_line(incident, capsys):
    _, incident_id = incident
    assert cli.main(["incidents", "reconcile", str(incident_id), "--dry-run", "--partition-range",
                     "2026-01-06..2026-01-07"]) == 0  # fmt: skip
    assert "[2026-01-06, 2026-01-07; partitions from --partition-range]" in capsys.readouterr().out
    assert cli.main(["incidents", "reconcile", str(incident_id), "--dry-run", "--partition", "1999-01-01"]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: partition '1999-01-01' of raw_payments is not a partition of the daily partitioning"
    )


def test_a_backfill_that_ended_without_re_evaluating_the_incidents_check_keeps_it_open(incident):
    from dagster._core.execution.backfill import BulkActionStatus

    from reliability.reconciliation.service import reconcile, verified_backfills, verify_and_close

    url, incident_id = incident
    defs = build(shop_settings(Path(os.environ["RELIABILITY_WAREHOUSE"]).parent))
    with IncidentStore(url, clock=SteppingClock()) as store, dg.DagsterInstance.get() as instance:
        result = reconcile(store, instance, defs.resolve_asset_graph(), incident_id, now=T0)
        assert verify_and_close(store, instance, incident_id, result.backfill_id, now=T0) is None  # still running
        # the daemon gave up on it (no run ever checked raw_payments again)
        backfill = instance.get_backfill(result.backfill_id)
        instance.update_backfill(backfill.with_status(BulkActionStatus.FAILED))
        verdict = verify_and_close(store, instance, incident_id, result.backfill_id, now=T0)
        assert verdict is not None and not verdict.repaired
        assert verdict.not_evaluated == ("raw_payments::soda_method_invalid",)
        inc = store.get(incident_id)
        assert inc.status == "open" and inc.resolved_at is None
        (kept,) = [e for e in inc.timeline if e.data.get("action") == "reconcile_verify"]
        assert "did not repair" in kept.message and "the incident stays open" in kept.message
        assert verified_backfills(inc.timeline) == {result.backfill_id}


def test_the_reconcile_incident_job_submits_the_same_backfill_from_launchpad_config(incident):
    """Launched as the UI does: the job loaded from the code location (reliability.definitions:defs)."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    url, incident_id = incident
    repo = ReconstructableRepository.for_module("reliability.definitions", "defs", working_directory=str(REPO))
    job = repo.get_reconstructable_job("reconcile_incident")
    config = {"ops": {"reconcile": {"config": {"incident_id": f"INC-{incident_id}", "dry_run": True}}}}
    with dg.DagsterInstance.get() as instance:
        with dg.execute_job(job, instance, run_config=config) as dry:
            assert dry.success and dry.output_for_node("reconcile")["backfill_id"] is None
        assert instance.get_backfills() == []
        config["ops"]["reconcile"]["config"]["dry_run"] = False
        with dg.execute_job(job, instance, run_config=config) as real:
            assert real.success
            submitted = real.output_for_node("reconcile")["backfill_id"]
        (backfill,) = instance.get_backfills()
        assert submitted == backfill.backfill_id
        assert backfill_target(instance, backfill.backfill_id) == PLANNED
    with IncidentStore(url) as store:
        (entry,) = [e for e in store.timeline(incident_id) if e.data.get("action") == "reconcile_backfill"]
    assert entry.actor.startswith("reliability-reconcile (run ")


@pytest.mark.kafka
def test_replay_kafka_dry_run_prints_the_offsets_of_the_bad_day_per_partition(
    tmp_path, monkeypatch, capsys, kafka_broker, topic_name
):
    """A Kafka-fed root: `--replay-kafka --dry-run` shows, per partition, the offsets `offsets_for_times`
    gives for the day and what ingestion did with them; it reads no message and records nothing."""
    from datetime import UTC, datetime, timedelta

    from reliability.kafka import clients
    from reliability.kafka.events import encode, order_event
    from reliability.kafka.ingest import ingest

    warehouse = tmp_path / "warehouse.duckdb"
    monkeypatch.setattr("reliability.settings.get_settings", lambda: shop_settings(tmp_path))
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", url)
    # the messages carry their event time, months back: the broker's 7-day time retention would delete
    # them mid-test, so this topic keeps everything
    clients.ensure_topic(topic_name, 2, kafka_broker, config={"retention.ms": "-1"})
    day = datetime.fromisoformat(DAY).replace(tzinfo=UTC)

    def send(partition: int, value: bytes, at: datetime) -> None:
        prod = clients.producer(kafka_broker)
        prod.produce(topic_name, value=value, partition=partition, timestamp=int(at.timestamp() * 1000))
        assert prod.flush(30) == 0

    for i in range(3):
        send(0, encode(order_event(1, i + 1)), day + timedelta(hours=1 + i))
    send(1, encode(order_event(1, 4)), day + timedelta(hours=1))
    send(1, b"{not json", day + timedelta(hours=2))
    group = f"g.{topic_name}"
    assert ingest(warehouse, topic=topic_name, group_id=group, bootstrap=kafka_broker).rejected == 1
    send(1, encode(order_event(1, 5)), day + timedelta(hours=23))  # the bad day, not ingested yet
    send(0, encode(order_event(1, 6)), day + timedelta(days=1))  # the next day: outside the window
    poison = Detection("check:run9:1", "raw_orders", Source.ASSET_CHECK, "kafka_dlq_depth", T0)
    with IncidentStore(url, clock=SteppingClock()) as store:
        (incident_id,) = store.ingest([poison], graph_from_definitions(build(shop_settings(tmp_path)))).opened
        before = len(store.timeline(incident_id))

    assert cli.main(["incidents", "reconcile", f"INC-{incident_id}", "--dry-run", "--partition", DAY,
                     "--replay-kafka", "--kafka-topic", topic_name, "--kafka-group", group]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"replay {topic_name} for {DAY} (offsets_for_times):" in out
    assert ("partition 0: offsets 0..3 (3 message(s)): 3 already row(s), 0 dead letter(s) to replay, "
            "0 already handled, 0 not ingested yet") in out  # fmt: skip
    assert ("partition 1: offsets 0..3 (3 message(s)): 1 already row(s), 1 dead letter(s) to replay, "
            "0 already handled, 1 not ingested yet") in out  # fmt: skip
    assert "dry run: nothing submitted" in out
    with IncidentStore(url) as store:
        assert len(store.timeline(incident_id)) == before
