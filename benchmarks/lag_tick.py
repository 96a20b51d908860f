"""One lag sensor tick over 200 groups x 20 partitions on the real broker, vs the bare AdminClient calls.

Setup: 10 topics of 20 partitions with a few messages each; 200 groups (20 per topic) with committed
offsets on every partition (set with the AdminClient, one group per call, concurrently), committed twice
a little over a second apart so every window has history; before every round the 20 groups of the first
topic commit again (400 new commit records for ours to read; not timed).
Ours: `reliability.kafka.defs.lag_tick` (groups, members, new commit-log records, log ends, Burrow
evaluation, time lag, cursor and state-file round trip), after one warm-up tick.
Baseline (the floor): the bare AdminClient calls that fetch the same offsets - list the groups, one
`list_consumer_group_offsets` per group (all in flight together) and one `list_offsets` for the log ends
- on a warm client, nothing evaluated or stored. The two are alternated ROUNDS times in one run; the
ratio is the median of the per-round ratios. Targets: ratio <= 1.5 and ours <= 2 s per tick.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid

TOPICS = 10
PARTITIONS = 20
GROUPS_PER_TOPIC = 20
ROUNDS = 15


def _commit_all(admin, topics: list[str], run_id: str, shift: int) -> list[str]:
    """Every group commits an offset on each of its topic's partitions (concurrently); returns the groups."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    groups: list[str] = []
    futures = []
    for t_index, topic in enumerate(topics):
        for g in range(GROUPS_PER_TOPIC):
            group = f"bench.lag.{run_id}.g{t_index}.{g}"
            groups.append(group)
            offsets = [TopicPartition(topic, p, (g * 7 + p) % 30 + shift) for p in range(PARTITIONS)]
            futures.append(admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, offsets)]))
    for fmap in futures:
        for fut in fmap.values():
            fut.result(timeout=60)
    return groups


def _setup(bootstrap: str, quick: bool) -> list[str]:
    from reliability.kafka import clients
    from reliability.kafka.producer import produce

    run_id = uuid.uuid4().hex[:6]
    topics = [f"bench.lag.{run_id}.{i}" for i in range(TOPICS if not quick else 2)]
    for topic in topics:
        clients.ensure_topic(topic, PARTITIONS, bootstrap)
        produce(topic, ((str(k).encode(), b"m" * 50) for k in range(PARTITIONS * 50)), bootstrap=bootstrap)
    admin = clients.admin(bootstrap)
    _commit_all(admin, topics, run_id, shift=0)
    time.sleep(1.1)
    return _commit_all(admin, topics, run_id, shift=5)


def _churn(bootstrap: str, groups: list[str], round_index: int) -> None:
    """Between rounds, the groups of the first topic commit again, so every tick has new commit records."""
    from reliability.kafka import clients

    run_id = groups[0].split(".")[2]
    topic = f"bench.lag.{run_id}.0"
    _commit_all(clients.admin(bootstrap), [topic], run_id, shift=10 + round_index)


def _baseline_tick(admin, prefix: str, timeout: float = 30) -> float:
    """The floor: committed offsets of the matching groups and the log ends of their partitions."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    started = time.perf_counter()
    listing = admin.list_consumer_groups(request_timeout=timeout).result()
    names = [g.group_id for g in listing.valid if g.group_id.startswith(prefix)]
    futures = [
        admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)], request_timeout=timeout)[g] for g in names
    ]
    partitions = {(tp.topic, tp.partition) for fut in futures for tp in fut.result().topic_partitions}
    ends = admin.list_offsets(
        {TopicPartition(t, p): OffsetSpec.latest() for t, p in partitions}, request_timeout=timeout
    )
    assert all(fut.result().offset >= 0 for fut in ends.values())
    return time.perf_counter() - started


def run(quick: bool) -> list[dict]:
    from reliability.kafka import broker, clients
    from reliability.kafka.defs import lag_tick
    from reliability.kafka.sampling import WatchConfig

    bootstrap, _ = broker.up()
    groups = _setup(bootstrap, quick)
    prefix = groups[0].rsplit(".g", 1)[0] + ".g"
    watch = WatchConfig(pattern=f"{prefix}*", timeout_s=30)
    admin = clients.admin(bootstrap)
    started = time.perf_counter()
    cursor, results, _ = lag_tick(None, {}, bootstrap=bootstrap, watch=watch)  # warm-up: reads the history
    first_tick_s = time.perf_counter() - started
    _baseline_tick(admin, prefix)  # warm-up
    ours, base, ours_cpu, base_cpu = [], [], [], []
    for round_index in range(ROUNDS):
        _churn(bootstrap, groups, round_index)  # not timed: 400 new commits for ours to read
        started, cpu = time.perf_counter(), time.process_time()
        cursor, results, _ = lag_tick(cursor, {}, bootstrap=bootstrap, watch=watch)
        ours.append(time.perf_counter() - started)
        ours_cpu.append(time.process_time() - cpu)
        cpu = time.process_time()
        base.append(_baseline_tick(admin, prefix))
        base_cpu.append(time.process_time() - cpu)
    partitions = sum(len(r.partitions) for r in results)
    statuses = sorted({r.status.value for r in results})
    for fut in admin.delete_consumer_groups(groups, request_timeout=60).values():
        fut.result()
    ratio = statistics.median(o / b for o, b in zip(ours, base, strict=True))
    return [
        {
            "name": "lag_tick_200_groups_x_20_partitions" if not quick else "lag_tick_40_groups_x_20_partitions",
            "groups": len(results),
            "partitions_evaluated": partitions,
            "statuses": statuses,
            "cursor_bytes": len(cursor),
            "first_tick_s": round(first_tick_s, 3),
            "ours_s": round(statistics.median(ours), 3),
            "baseline_s": round(statistics.median(base), 3),
            "ratio": round(ratio, 3),
            "ours_cpu_s": round(statistics.median(ours_cpu), 3),
            "baseline_cpu_s": round(statistics.median(base_cpu), 3),
            "load_average_1m": round(os.getloadavg()[0], 1),
            "rounds": ROUNDS,
            "target": "ratio <= 1.5 and ours <= 2 s per tick",
            "baseline": "bare AdminClient calls fetching the same offsets (list groups, list_consumer_group_offsets "
            "per group concurrently, list_offsets), warm, alternated with ours; ratio = median of per-round ratios",
        }
    ]
