"""Exactly-once ingestion into DuckDB vs a bare confluent-kafka consume loop that keeps nothing.

Both read the same topic (4 partitions) from the beginning on the real broker (`reliability kafka up`),
interleaved, best of two runs each. Ours validates every value strictly (see reliability.kafka.validation)
and commits rows and offsets in one DuckDB transaction per batch. Target: our throughput >= 0.5 x the
ceiling's.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path


def _bare_consume(bootstrap: str, topic: str, total: int, partitions: int) -> tuple[float, float]:
    from confluent_kafka import TopicPartition

    from reliability.kafka import clients

    started, cpu = time.perf_counter(), time.process_time()
    consumer = clients.consumer(
        f"bench-bare-{uuid.uuid4().hex[:6]}",
        bootstrap,
        **{
            "fetch.max.bytes": 52428800,
            "queued.max.messages.kbytes": 262144,
            "queued.min.messages": 1_000_000,
            "fetch.wait.max.ms": 50,
        },
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen = 0
    while seen < total:
        for msg in consumer.consume(50_000, timeout=1.0):
            if msg.error() is None:
                seen += 1
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    consumer.close()
    return elapsed, cpu


def _ours(bootstrap: str, topic: str, total: int, workdir: Path) -> tuple[float, float, int]:
    from reliability.kafka.ingest import ingest

    started, cpu = time.perf_counter(), time.process_time()
    stats = ingest(
        workdir / "bench.duckdb",
        topic=topic,
        group_id=f"bench-eo-{uuid.uuid4().hex[:6]}",
        bootstrap=bootstrap,
        batch_size=50_000,
    )
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert stats.rows == total, (stats.rows, total)
    return elapsed, cpu, stats.rows


def run(quick: bool) -> list[dict]:
    from reliability.kafka import broker, clients
    from reliability.kafka.producer import produce_orders

    bootstrap, _ = broker.up()
    total = 100_000 if quick else 1_000_000
    partitions = 4
    topic = f"bench.ingest.{uuid.uuid4().hex[:8]}"
    clients.ensure_topic(topic, partitions, bootstrap)
    produce_orders(topic, total, seed=1, bootstrap=bootstrap)
    # Interleaved, best of 2 each: neither side always meets the warmer broker cache or the quieter moment.
    baselines, runs = [], []
    for _ in range(2):
        baselines.append(_bare_consume(bootstrap, topic, total, partitions))
        with tempfile.TemporaryDirectory() as tmp:  # a fresh warehouse and group each run
            runs.append(_ours(bootstrap, topic, total, Path(tmp)))
    baseline_s, baseline_cpu = min(baselines)
    ours_s, ours_cpu, rows = min(runs)
    admin = clients.admin(bootstrap)
    for fut in admin.delete_topics([topic]).values():
        fut.result()
    ours_rate, base_rate = total / ours_s, total / baseline_s
    return [
        {
            "name": "ingest_exactly_once_duckdb",
            "messages": total,
            "rows": rows,
            "ours_s": round(ours_s, 3),
            "baseline_s": round(baseline_s, 3),
            "ratio": round(ours_rate / base_rate, 3),
            "target": ">= 0.5 (throughput ours / bare consume loop)",
            "ours_msgs_per_s": round(ours_rate),
            "baseline_msgs_per_s": round(base_rate),
            "ours_cpu_us_per_msg": round(ours_cpu / total * 1e6, 2),
            "baseline_cpu_us_per_msg": round(baseline_cpu / total * 1e6, 2),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "baseline": "bare confluent-kafka consume loop, keeps nothing",
        }
    ]
