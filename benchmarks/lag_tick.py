"""One lag sensor tick over 200 groups x 20 partitions on the real broker, vs kafka-consumer-groups.

Setup: 10 topics of 20 partitions with a few messages each; 200 groups (20 per topic) with committed
offsets on every partition (set with the AdminClient, one group per call, concurrently).
Ours: `reliability.kafka.defs.lag_tick` (sample + Burrow evaluation + cursor round trip), steady state
(after one warm-up tick), best of 3. Baseline: `kafka-consumer-groups --describe --all-groups` run from
the same Kafka jars (ConsumerGroupCommand, JVM start included, as a user runs it). Target: <= 2 s.
"""

from __future__ import annotations

import subprocess
import time
import uuid

TOPICS = 10
PARTITIONS = 20
GROUPS_PER_TOPIC = 20


def _setup(bootstrap: str, quick: bool) -> list[str]:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    from reliability.kafka import clients
    from reliability.kafka.producer import produce

    run_id = uuid.uuid4().hex[:6]
    topics = [f"bench.lag.{run_id}.{i}" for i in range(TOPICS if not quick else 2)]
    for topic in topics:
        clients.ensure_topic(topic, PARTITIONS, bootstrap)
        produce(topic, ((str(k).encode(), b"m" * 50) for k in range(PARTITIONS * 50)), bootstrap=bootstrap)
    admin = clients.admin(bootstrap)
    groups: list[str] = []
    futures = []
    for t_index, topic in enumerate(topics):
        for g in range(GROUPS_PER_TOPIC):
            group = f"bench.lag.{run_id}.g{t_index}.{g}"
            groups.append(group)
            offsets = [TopicPartition(topic, p, (g * 7 + p) % 30) for p in range(PARTITIONS)]
            futures.append(admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, offsets)]))
    for fmap in futures:
        for fut in fmap.values():
            fut.result(timeout=60)
    return groups


def _ours(bootstrap: str, prefix: str) -> tuple[float, int, int, int]:
    from reliability.kafka.defs import lag_tick
    from reliability.kafka.sampling import WatchConfig

    watch = WatchConfig(pattern=f"{prefix}*", timeout_s=30)
    cursor, results, _ = lag_tick(None, {}, bootstrap=bootstrap, watch=watch)  # warm-up tick
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        cursor, results, _ = lag_tick(cursor, {}, bootstrap=bootstrap, watch=watch)
        best = min(best, time.perf_counter() - started)
    partitions = sum(len(r.partitions) for r in results)
    return best, len(results), partitions, len(cursor)


def _baseline(bootstrap: str) -> float:
    from reliability.kafka.broker import CONSUMER_GROUP_COMMAND_CLASS, java_command

    cmd = java_command(
        CONSUMER_GROUP_COMMAND_CLASS, "--bootstrap-server", bootstrap, "--describe", "--all-groups", heap="512m"
    )
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"kafka-consumer-groups failed: {proc.stderr[-2000:]}")
    return elapsed


def run(quick: bool) -> list[dict]:
    from reliability.kafka import broker, clients

    bootstrap, _ = broker.up()
    groups = _setup(bootstrap, quick)
    prefix = groups[0].rsplit(".g", 1)[0] + ".g"
    ours_s, n_groups, n_partitions, cursor_bytes = _ours(bootstrap, prefix)
    admin = clients.admin(bootstrap)
    on_broker = len(admin.list_consumer_groups(request_timeout=30).result().valid)
    baseline_s = _baseline(bootstrap)
    for fut in admin.delete_consumer_groups(groups, request_timeout=60).values():
        fut.result()
    return [
        {
            "name": "lag_tick_200_groups_x_20_partitions" if not quick else "lag_tick_40_groups_x_20_partitions",
            "groups": n_groups,
            "partitions_evaluated": n_partitions,
            "groups_on_broker": on_broker,
            "cursor_bytes_after_4_ticks": cursor_bytes,
            "ours_s": round(ours_s, 3),
            "baseline_s": round(baseline_s, 3),
            "ratio": round(ours_s / baseline_s, 3),
            "target": "ours <= 2 s per tick",
            "baseline": "kafka-consumer-groups --describe --all-groups (ConsumerGroupCommand, same jars; "
            "all groups on the broker, JVM start included)",
        }
    ]
