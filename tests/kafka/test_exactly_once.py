"""Exactly once under crashes: 200k messages, the ingestion process SIGKILLed at 20 random points."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from reliability.kafka import clients
from reliability.kafka.producer import produce_orders
from reliability.kafka.warehouse import OUTBOX_TABLE
from tests.kafka.test_ingest import read_topic

pytestmark = pytest.mark.kafka  # about 20 s: not marked slow, so CI always runs it

VALID = 200_000
POISON = 120
KILLS = 20


def _ingest_cmd(warehouse, topic, group, bootstrap, *options: str) -> list[str]:
    """The ingestion entry point as a separate process (the one the test kills)."""
    return [
        sys.executable, "-m", "reliability.kafka.ingest", "--warehouse", str(warehouse),
        "--topic", topic, "--group", group, "--bootstrap", bootstrap, *options,
    ]  # fmt: skip


def _start(warehouse, topic, group, bootstrap) -> subprocess.Popen:
    cmd = _ingest_cmd(
        warehouse, topic, group, bootstrap, "--batch-size", "2000", "--idle-timeout", "2", "--forever", "--progress"
    )
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_no_loss_no_duplicate_under_sigkill(kafka_broker, topic_name, tmp_path):
    rng = random.Random(20260101)
    clients.ensure_topic(topic_name, 4, kafka_broker)
    produced = produce_orders(topic_name, VALID, seed=11, poison_count=POISON, bootstrap=kafka_broker)
    assert produced.poison == POISON
    warehouse = tmp_path / "wh.duckdb"
    group = f"g.{topic_name}"

    kills_mid_run = 0
    for _ in range(KILLS):
        proc = _start(warehouse, topic_name, group, kafka_broker)
        # Kill at a random point after the first batch has started (never during interpreter start-up):
        # wait for its first messages, then for a random number of committed batches (0..3), then a random
        # delay, so the kill lands anywhere: consuming, validating, inside the transaction, publishing.
        started_batch = False
        wait_batches = rng.randint(0, 3)
        seen = 0
        deadline = time.monotonic() + 60
        while (not started_batch or seen < wait_batches) and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if '"first_batch"' in line:
                started_batch = True
            elif '"batches"' in line:
                seen += 1
        assert started_batch, "the ingester never started a batch"
        time.sleep(rng.uniform(0.0, 0.15))
        if proc.poll() is None:
            kills_mid_run += 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()

    assert kills_mid_run == KILLS, "every kill should hit a live ingestion process"
    con = duckdb.connect(str(warehouse), read_only=True)
    rows_before_final = con.execute("select count(*) from raw_orders").fetchone()[0]
    con.close()
    assert 0 < rows_before_final < VALID, "the kills should have landed during ingestion, not before or after"

    # a last run without kills ingests the rest
    final = subprocess.run(
        _ingest_cmd(warehouse, topic_name, group, kafka_broker, "--idle-timeout", "3"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert final.returncode == 0, final.stderr[-2000:]
    json.loads(final.stdout.strip().splitlines()[-1])

    con = duckdb.connect(str(warehouse), read_only=True)
    count, distinct = con.execute("select count(*), count(distinct order_id) from raw_orders").fetchone()
    assert count == VALID, f"rows {count} != valid messages produced {VALID}"
    assert distinct == VALID, "duplicate order ids"
    assert con.execute("select min(order_id), max(order_id) from raw_orders").fetchone() == (1, VALID)
    outbox = con.execute(f"select count(*), count(*) filter (where not published) from {OUTBOX_TABLE}").fetchone()
    con.close()
    assert outbox == (POISON, 0)
    dlq = read_topic(kafka_broker, f"{topic_name}.dlq")
    headers = [dict(m.headers()) for m in dlq]
    sources = {(h["dlq.source.topic"], h["dlq.source.partition"], h["dlq.source.offset"]) for h in headers}
    assert len(dlq) == POISON, f"DLQ holds {len(dlq)} messages, {POISON} poison messages were injected"
    assert len(sources) == POISON
