"""Ingestion stops with one clear line, and changes nothing, when the warehouse is locked or full or no
broker answers; a partial ingest says how far it got (real broker, real DuckDB files, real processes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import pytest

from reliability.kafka import clients
from reliability.kafka.ingest import ingest
from reliability.kafka.producer import produce_orders
from reliability.kafka.warehouse import OFFSETS_TABLE, OUTBOX_TABLE
from tests.kafka.test_exactly_once import _ingest_cmd


def _snapshot(warehouse: Path) -> tuple:
    """What an error must not change: the rows, the stored offsets, the outbox."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return (
            con.execute("select count(*), sum(order_id) from raw_orders").fetchone(),
            con.execute(f"select * exclude (updated_at) from {OFFSETS_TABLE} order by all").fetchall(),
            con.execute(f"select count(*) from {OUTBOX_TABLE}").fetchone(),
        )


def _committed(bootstrap: str, group: str) -> list[tuple[int, int]]:
    from confluent_kafka import ConsumerGroupTopicPartitions

    admin = clients.admin(bootstrap)
    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
    return sorted((tp.partition, tp.offset) for tp in res.topic_partitions)


def _assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in last, last
    return last


def test_no_reachable_broker_is_one_line_and_changes_nothing(tmp_path):
    warehouse = tmp_path / "wh.duckdb"
    duckdb.connect(str(warehouse)).close()
    proc = subprocess.run(
        _ingest_cmd(warehouse, "shop.orders", "g", "127.0.0.1:1", "--retry-for", "0"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = _assert_one_line_error(proc, "ingested 0 row(s)", "stopped on an error", "Kafka at 127.0.0.1:1 unavailable")
    assert len(line) < 300


@pytest.mark.kafka
def test_a_second_ingester_on_a_locked_warehouse_is_one_line_and_changes_nothing(kafka_broker, topic_name, tmp_path):
    clients.ensure_topic(topic_name, 2, kafka_broker)
    group = f"g.{topic_name}"
    warehouse = tmp_path / "wh.duckdb"
    produce_orders(topic_name, 300, bootstrap=kafka_broker)
    assert ingest(warehouse, topic=topic_name, group_id=group, bootstrap=kafka_broker).rows == 300
    produce_orders(topic_name, 50, first_id=301, bootstrap=kafka_broker)
    before, committed = _snapshot(warehouse), _committed(kafka_broker, group)

    hold = f"import duckdb, sys; c = duckdb.connect({str(warehouse)!r}); print('open', flush=True); sys.stdin.read()"
    holder = subprocess.Popen(  # the first "ingester": holds the warehouse open
        [sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        proc = subprocess.run(
            _ingest_cmd(warehouse, topic_name, group, kafka_broker), capture_output=True, text=True, timeout=120
        )
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    line = _assert_one_line_error(proc, f"cannot open warehouse {warehouse}", "locked by another process")
    assert f"PID {holder.pid}" in line
    assert _snapshot(warehouse) == before and _committed(kafka_broker, group) == committed


@pytest.mark.kafka
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root to mount a tiny tmpfs")
def test_a_full_disk_is_one_line_and_changes_nothing(kafka_broker, topic_name, tmp_path):
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mountpoint)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        clients.ensure_topic(topic_name, 1, kafka_broker)
        group = f"g.{topic_name}"
        warehouse = mountpoint / "wh.duckdb"
        produce_orders(topic_name, 200, bootstrap=kafka_broker)
        assert ingest(warehouse, topic=topic_name, group_id=group, bootstrap=kafka_broker).rows == 200
        filler = mountpoint / "filler"
        free = shutil.disk_usage(mountpoint).free
        filler.write_bytes(b"\0" * max(0, free - 64 * 1024))  # leave 64 KiB: not enough for the next batch
        produce_orders(topic_name, 20_000, first_id=201, bootstrap=kafka_broker)
        before, committed = _snapshot(warehouse), _committed(kafka_broker, group)

        proc = subprocess.run(
            _ingest_cmd(warehouse, topic_name, group, kafka_broker), capture_output=True, text=True, timeout=120
        )
        _assert_one_line_error(proc, "ingested 0 row(s)", "stopped on an error", "no space left on device")
        filler.unlink()
        assert _snapshot(warehouse) == before and _committed(kafka_broker, group) == committed
        # with space again, the same command ingests the rest, exactly once
        again = subprocess.run(
            _ingest_cmd(warehouse, topic_name, group, kafka_broker), capture_output=True, text=True, timeout=120
        )
        assert again.returncode == 0, again.stderr
        with duckdb.connect(str(warehouse), read_only=True) as con:
            assert con.execute("select count(*), count(distinct order_id) from raw_orders").fetchone() == (
                20_200,
                20_200,
            )
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


@pytest.mark.kafka
def test_a_run_cut_short_says_how_far_it_got(kafka_broker, topic_name, tmp_path):
    clients.ensure_topic(topic_name, 1, kafka_broker)
    produce_orders(topic_name, 5000, bootstrap=kafka_broker)
    proc = subprocess.run(
        _ingest_cmd(tmp_path / "wh.duckdb", topic_name, f"g.{uuid.uuid4().hex}", kafka_broker,
                    "--max-seconds", "0", "--batch-size", "100"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ingested ") and "stopped at --max-seconds 0" in last


@pytest.mark.kafka
def test_reliability_kafka_ingest_says_what_it_did(kafka_broker, topic_name, tmp_path):
    from tests.kafka.test_cli import cli

    produce_orders(topic_name, 300, poison_count=2, bootstrap=kafka_broker)
    env = {"RELIABILITY_WAREHOUSE": str(tmp_path / "wh.duckdb")}
    done = cli("kafka", "ingest", "--topic", topic_name, "--group", f"g.{topic_name}", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ingested 300 row(s), rejected 2 to {topic_name}.dlq (302 message(s)")
    assert done.stdout.rstrip().endswith("caught up with the end offsets seen at start")
