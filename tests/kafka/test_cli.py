"""`reliability kafka ...` and `reliability lag` as a user runs them, against the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from reliability.kafka import clients
from reliability.kafka.ingest import ingest

pytestmark = pytest.mark.kafka


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reliability.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_up_is_idempotent_and_status_answers(kafka_broker):
    up = cli("kafka", "up")
    assert up.returncode == 0 and "already available" in up.stdout
    status = cli("kafka", "status", "--json")
    assert status.returncode == 0
    info = json.loads(status.stdout)
    assert info["running"] is True and info["bootstrap"] == kafka_broker


def test_external_cluster_is_used_and_never_stopped(kafka_broker):
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_broker}
    status = json.loads(cli("kafka", "status", "--json", env=env).stdout)
    assert status == {"bootstrap": kafka_broker, "managed": False, "running": True}
    down = cli("kafka", "down", env=env)
    assert down.returncode == 0 and "not ours to stop" in down.stdout
    assert json.loads(cli("kafka", "status", "--json").stdout)["running"] is True


def test_produce_then_lag_table_and_json(kafka_broker, topic_name, tmp_path):
    produced = cli("kafka", "produce", "--topic", topic_name, "--count", "300", "--poison", "2", "--partitions", "3")
    assert produced.returncode == 0, produced.stderr
    assert "produced 300 order events and 2 poison" in produced.stdout
    group = f"g.{topic_name}"
    ingest(tmp_path / "wh.duckdb", topic=topic_name, group_id=group, bootstrap=kafka_broker)
    cli("kafka", "produce", "--topic", topic_name, "--count", "40", "--first-id", "301")

    table = cli("lag", "--group", group, "--samples", "1")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[:2]
    assert header.split()[:3] == ["GROUP", "STATUS", "TOTAL"]
    assert row.split()[:3] == [group, "OK", "40"]

    as_json = cli("lag", "--group", group, "--json", "--samples", "2", "--interval", "0.3")
    (result,) = json.loads(as_json.stdout)
    assert result["group"] == group and result["total_lag"] == 40 and result["status"] == "OK"
    assert len(result["partitions"]) == 3 and result["max_lag"]["lag"] > 0


def test_lag_for_a_group_that_does_not_exist(kafka_broker):
    out = cli("lag", "--group", "no-such-group-anywhere", "--json", "--samples", "1")
    (result,) = json.loads(out.stdout)
    assert result["state"] == "NOT_FOUND" and "not found" in result["message"]
    assert result["status"] == "NOT_FOUND" and out.returncode == 1


def test_unsafe_producer_profile_is_non_idempotent(kafka_broker, topic_name):
    unsafe = cli("kafka", "produce", "--topic", topic_name, "--count", "25", "--unsafe-retries")
    assert unsafe.returncode == 0 and "produced 25 order events" in unsafe.stdout
    assert clients.RETRYING_NON_IDEMPOTENT_PRODUCER["enable.idempotence"] is False
    assert clients.RETRYING_NON_IDEMPOTENT_PRODUCER["retries"] > 0
    assert clients.IDEMPOTENT_PRODUCER == {**clients.IDEMPOTENT_PRODUCER, "enable.idempotence": True, "acks": "all"}


def test_produce_days_matches_the_generator_and_never_resends_a_day(kafka_broker, topic_name, tmp_path):
    from datetime import date

    import duckdb

    from reliability.shop.generator import ShopScale, order_rows

    args = (
        "kafka",
        "produce",
        "--topic",
        topic_name,
        "--days",
        "2",
        "--end-date",
        "2026-01-05",
        "--orders-per-day",
        "50",
        "--poison",
        "1",
    )
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    assert "produced 100 order events for 2 day(s)" in first.stdout
    again = cli(*args)
    assert again.returncode == 0 and "up to date" in again.stdout
    stats = ingest(tmp_path / "wh.duckdb", topic=topic_name, group_id=f"g.{topic_name}", bootstrap=kafka_broker)
    assert (stats.rows, stats.rejected) == (100, 1)
    expected = order_rows(ShopScale(orders_per_day=50), date(2026, 1, 5))
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        got = con.execute(
            "select order_id, customer_id, order_date, ordered_at, status, amount from raw_orders "
            "where order_date = '2026-01-05' order by order_id"
        ).fetchall()
    assert got == [tuple(row[:6]) for row in expected]
