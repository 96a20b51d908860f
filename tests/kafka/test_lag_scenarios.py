"""Lag verdicts on real consumer groups on the real broker, each checked on the FIRST `reliability lag` run.

Every CLI run here gets a fresh, empty state dir: it has never seen the group, so the verdict can only
come from the commit history the broker keeps (`__consumer_offsets`), as in Burrow. Commits are spaced
a little over Burrow's min-distance (1 s) so that each one is its own window entry.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import TopicPartition

from reliability.kafka import clients
from reliability.kafka.lag import LagConfig, LagState
from reliability.kafka.sampling import WatchConfig, run_tick

pytestmark = pytest.mark.kafka

SPACING_S = 1.1  # just over Burrow's default min-distance: every commit stays in the window


def first_lag_run(bootstrap: str, group: str, state_dir) -> tuple[int, dict]:
    """`reliability lag --group G --json --samples 1` with a state dir it has never used."""
    proc = subprocess.run(
        [sys.executable, "-m", "reliability.cli", "lag", "--group", group, "--json", "--samples", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "RELIABILITY_KAFKA_STATE_DIR": str(state_dir)},
    )
    assert proc.stdout, proc.stderr
    (result,) = json.loads(proc.stdout)
    return proc.returncode, result


class LiveGroup:
    """One topic of 1 partition, a producer, and a consumer in group `group` (subscribed or assign()-only)."""

    def __init__(self, bootstrap: str, topic: str, subscribe: bool) -> None:
        clients.ensure_topic(topic, 1, bootstrap)
        self.bootstrap, self.topic, self.group = bootstrap, topic, f"g.{topic}"
        self.producer = clients.producer(bootstrap)
        self.consumer = clients.consumer(
            self.group, bootstrap, **{"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
        )
        self.produced = 0
        if subscribe:
            self.consumer.subscribe([topic])
            deadline = time.monotonic() + 30
            while not self.consumer.assignment() and time.monotonic() < deadline:
                assert self.consumer.poll(0.2) is None  # the topic is still empty
            assert self.consumer.assignment(), "consumer never got its partition"
        else:
            self.consumer.assign([TopicPartition(topic, 0, 0)])

    def produce(self, n: int) -> None:
        for _ in range(n):
            self.producer.produce(self.topic, value=b"x" * 20)
        self.producer.flush(10)
        self.produced += n

    def commit(self, offset: int) -> None:
        self.consumer.commit(offsets=[TopicPartition(self.topic, 0, offset)], asynchronous=False)

    def commits(self, offsets: list[int], produce_each: int = 0) -> None:
        """Commit these offsets SPACING_S apart, producing `produce_each` messages before each."""
        for i, offset in enumerate(offsets):
            if i:
                time.sleep(SPACING_S)
            if produce_each:
                self.produce(produce_each)
            self.commit(offset)
            self.consumer.poll(0)  # serve callbacks; a subscribed member keeps heartbeating in the background

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.consumer.close()


@pytest.fixture
def live(kafka_broker, topic_name):
    made: list[LiveGroup] = []

    def make(subscribe: bool) -> LiveGroup:
        made.append(LiveGroup(kafka_broker, topic_name, subscribe))
        return made[-1]

    yield make
    for g in made:
        g.close()


def test_assign_only_consumer_committing_the_same_offset_with_lag_is_stall(live, kafka_broker, tmp_path):
    g = live(subscribe=False)  # like the project's ingester: assign(), no group members
    g.produce(100)
    g.commits([40] * 4, produce_each=10)
    code, result = first_lag_run(kafka_broker, g.group, tmp_path / "fresh")
    (p,) = result["partitions"]
    assert (p["status"], p["committed"], p["lag"], result["members"]) == ("STALL", 40, 100, 0), result
    assert result["status"] == "ERR" and code == 1


def test_member_whose_commits_stopped_is_stop(live, kafka_broker, tmp_path):
    g = live(subscribe=True)
    g.produce(200)
    g.commits([20, 40, 60], produce_each=10)  # behind the log end at every commit
    for _ in range(3):  # longer than the window spans; it stays a member (heartbeats run in the background)
        time.sleep(SPACING_S)
        g.produce(5)
    code, result = first_lag_run(kafka_broker, g.group, tmp_path / "fresh")
    (p,) = result["partitions"]
    assert p["status"] == "STOP" and result["members"] == 1, result
    assert result["status"] == "ERR" and code == 1


def test_consumer_that_left_while_lag_grows_is_stop_for_the_cli_and_a_fresh_sensor(live, kafka_broker, tmp_path):
    from reliability.kafka import defs as kafka_defs

    g = live(subscribe=True)
    g.produce(100)
    g.commits([10, 20, 30], produce_each=10)
    g.close()  # it leaves the group; the shop keeps producing
    for _ in range(4):
        time.sleep(SPACING_S)
        g.produce(10)
    code, result = first_lag_run(kafka_broker, g.group, tmp_path / "fresh")
    (p,) = result["partitions"]
    assert p["status"] == "STOP" and result["members"] == 0 and p["lag"] == g.produced - 30, result
    assert code == 1
    # a sensor that never ticked before (no cursor) says the same on its first tick
    _, results, (evaluation,) = kafka_defs.lag_tick(None, {g.group: kafka_defs.RAW_ORDERS}, bootstrap=kafka_broker)
    assert not evaluation.passed and evaluation.metadata["status"].value == "ERR"
    assert "STOP" in evaluation.description


def test_rewind_that_recovers_is_not_rewind_and_one_that_does_not_is(live, kafka_broker, tmp_path):
    g = live(subscribe=False)
    g.produce(1000)
    g.commits([100, 200, 150, 250])  # back 50, then past where it was
    code, recovered = first_lag_run(kafka_broker, g.group, tmp_path / "fresh1")
    assert recovered["partitions"][0]["status"] == "OK" and code == 0, recovered
    # another group on the same topic goes back and stays behind where it was
    other = clients.consumer(f"{g.group}.rewound", kafka_broker)
    try:
        for i, offset in enumerate([100, 200, 50, 60]):
            if i:
                time.sleep(SPACING_S)
            other.commit(offsets=[TopicPartition(g.topic, 0, offset)], asynchronous=False)
    finally:
        other.close()
    code, rewound = first_lag_run(kafka_broker, f"{g.group}.rewound", tmp_path / "fresh2")
    assert rewound["partitions"][0]["status"] == "REWIND" and code == 1, rewound


def test_stop_is_suppressed_while_the_log_end_recently_equalled_the_commit(live, kafka_broker, tmp_path):
    g = live(subscribe=True)
    g.produce(10)
    g.commits([10, 10, 10])  # caught up, committing at the log end
    g.close()
    time.sleep(3 * SPACING_S)  # longer than the window spans; then new messages arrive
    g.produce(10)
    code, result = first_lag_run(kafka_broker, g.group, tmp_path / "fresh")
    (p,) = result["partitions"]
    assert p["status"] == "OK" and p["lag"] == 10, result  # Burrow's recent-lag-zero: not STOP yet
    assert code == 0


def test_falling_behind_is_warn_on_the_first_run(live, kafka_broker, tmp_path):
    g = live(subscribe=True)
    g.commits([20, 40, 60, 80], produce_each=40)  # lag at each commit: 20, 40, 60, 80
    code, result = first_lag_run(kafka_broker, g.group, tmp_path / "fresh")
    (p,) = result["partitions"]
    assert p["status"] == "WARN" and result["status"] == "WARN" and code == 0, result


def test_unknown_group_is_not_found_with_a_non_zero_exit(kafka_broker, tmp_path):
    code, result = first_lag_run(kafka_broker, "no-such-group-anywhere", tmp_path / "fresh")
    assert result["status"] == "NOT_FOUND" and "not found" in result["message"] and code == 1


def test_the_lag_check_run_by_hand_has_a_verdict_on_its_first_run(live, kafka_broker):
    import dagster as dg

    from reliability.kafka.defs import KafkaSource, kafka_consumer_lag

    g = live(subscribe=False)
    g.produce(50)
    g.commits([5] * 3, produce_each=5)
    stop = threading.Event()

    def keep_committing() -> None:  # a stuck consumer keeps committing the same offset while the check runs
        while not stop.wait(SPACING_S):
            g.produce(5)
            g.commit(5)

    committer = threading.Thread(target=keep_committing, daemon=True)
    committer.start()
    try:
        result = kafka_consumer_lag(kafka=KafkaSource(bootstrap_servers=kafka_broker, group_id=g.group))
    finally:
        stop.set()
        committer.join(10)
    assert isinstance(result, dg.AssetCheckResult)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["worst_partition"].value.endswith("STALL"), result.description


# ------------------------------------------------------------------------------- tick by tick, time lag
def test_committed_offsets_from_the_commit_log_match_the_admin_api(live, kafka_broker):
    from reliability.kafka.sampling import committed_offsets

    g = live(subscribe=False)
    g.produce(30)
    g.commits([7, 19])
    _, (result,) = run_tick(kafka_broker, WatchConfig(groups=(g.group,)), time.time(), LagState())
    from_log = {(p.topic, p.partition): p.committed for p in result.partitions}
    assert from_log == committed_offsets(clients.admin(kafka_broker), g.group) == {(g.topic, 0): 19}


def test_time_lag_within_20_percent_at_a_steady_rate(kafka_broker, topic_name):
    clients.ensure_topic(topic_name, 1, kafka_broker)
    group = f"g.{topic_name}"
    rate, tick_s = 200.0, 0.4
    config = LagConfig(window_size=5, min_distance_s=0.2)
    stop = threading.Event()

    def produce_steadily() -> None:
        prod = clients.producer(kafka_broker, **{"linger.ms": 0})
        started, sent = time.monotonic(), 0
        while not stop.is_set():
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
            prod.produce(topic_name, value=b"tick")
            prod.poll(0)
            sent += 1
        prod.flush(10)

    thread = threading.Thread(target=produce_steadily, daemon=True)
    thread.start()
    watch = WatchConfig(groups=(group,))
    state = LagState()
    consumer = clients.consumer(group, kafka_broker)
    try:
        consumer.assign([TopicPartition(topic_name, 0, 0)])
        # the consumer reads for a second, commits, and stops; log-end samples go on at every tick
        committed = None
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            msg = consumer.poll(0.1)
            if msg is not None and not msg.error():
                committed = msg.offset() + 1
        assert committed is not None
        consumer.commit(offsets=[TopicPartition(topic_name, 0, committed)], asynchronous=False)
        for _ in range(13):
            sampled_at = time.time()
            state, (result,) = run_tick(kafka_broker, watch, sampled_at, state, config)
            time.sleep(tick_s)
        now_estimate = result.max_time_lag_s
        # truth: age of the oldest unconsumed message, from its own timestamp
        consumer.assign([TopicPartition(topic_name, 0, committed)])
        oldest = None
        while oldest is None:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                oldest = msg
        truth = sampled_at - oldest.timestamp()[1] / 1000.0
    finally:
        stop.set()
        thread.join(10)
        consumer.close()
    assert now_estimate is not None
    assert truth > 3.0
    assert abs(now_estimate - truth) <= 0.2 * truth, (now_estimate, truth)
