"""A broker restart during `--forever` ingestion: the ingester rides it out and every message lands once.

Stops and restarts the session's broker (as test_sensor_recovery does); the broker keeps its port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import duckdb
import pytest

from reliability.kafka import broker, clients
from reliability.kafka.producer import produce_orders
from reliability.kafka.warehouse import OUTBOX_TABLE
from tests.kafka.test_exactly_once import _ingest_cmd
from tests.kafka.test_ingest import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.serial]

BEFORE, AFTER, POISON = 20_000, 2_000, 6


class Progress:
    """The ingester's `--progress` lines and its stderr, read in threads (a live process's pipes never
    end): rows committed so far."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.rows = 0
        self.errors: list[str] = []
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()
        threading.Thread(target=lambda: self.errors.extend(proc.stderr), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            if line.startswith('{"batches"'):
                self.rows = json.loads(line)["rows"]

    @property
    def stderr(self) -> str:
        return "".join(self.errors)

    def wait_rows(self, at_least: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while self.rows < at_least and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.rows


@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="an external cluster is not ours to stop")
def test_forever_ingestion_rides_out_a_broker_restart_exactly_once(kafka_broker, topic_name, tmp_path):
    clients.ensure_topic(topic_name, 2, kafka_broker)
    produce_orders(topic_name, BEFORE, seed=8, poison_count=POISON // 2, bootstrap=kafka_broker)
    warehouse = tmp_path / "wh.duckdb"
    group = f"g.{topic_name}"
    cmd = _ingest_cmd(
        warehouse, topic_name, group, kafka_broker, "--forever", "--progress", "--batch-size", "1000",
        "--idle-timeout", "1",
    )  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress = Progress(proc)
    try:
        assert progress.wait_rows(1, 60) >= 1, progress.stderr
        broker.down()  # mid-ingestion
        print(f"broker stopped with {progress.rows} of {BEFORE} rows committed")
        try:
            time.sleep(8)  # long enough for consume, metadata and offset calls to fail
            assert proc.poll() is None, "the ingester exited while the broker was down"
        finally:
            bootstrap, _ = broker.up(timeout_s=120)
        assert bootstrap == kafka_broker, "the broker came back on another port; later tests would break"
        produce_orders(topic_name, AFTER, seed=8, first_id=BEFORE + 1, poison_count=POISON // 2, bootstrap=bootstrap)
        rows = progress.wait_rows(BEFORE + AFTER, 180)
        assert proc.poll() is None, "the ingester exited"
        assert rows == BEFORE + AFTER, f"{rows} rows after the restart; stderr: {progress.stderr[-3000:]}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    time.sleep(0.5)  # let the readers see the end of the pipes
    stderr = progress.stderr
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]  # stopped by us, cleanly
    assert "Traceback" not in stderr, stderr[-3000:]
    # whether it logged the outage depends on whether it was mid-request when the broker went away: the
    # exactly-once count above and the clean exit are what must hold

    with duckdb.connect(str(warehouse), read_only=True) as con:
        count, distinct, lo, hi = con.execute(
            "select count(*), count(distinct order_id), min(order_id), max(order_id) from raw_orders"
        ).fetchone()
        outbox = con.execute(f"select count(*), count(*) filter (where not published) from {OUTBOX_TABLE}").fetchone()
    assert (count, distinct, lo, hi) == (BEFORE + AFTER, BEFORE + AFTER, 1, BEFORE + AFTER)
    assert outbox == (POISON, 0)
    dlq = read_topic(kafka_broker, f"{topic_name}.dlq")
    sources = {(dict(m.headers())["dlq.source.partition"], dict(m.headers())["dlq.source.offset"]) for m in dlq}
    assert len(dlq) == len(sources) == POISON
