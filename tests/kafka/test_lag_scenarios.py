"""Lag scenarios on real consumer groups: each gets the status Burrow's rules give, and time lag is right."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from confluent_kafka import TopicPartition

from reliability.kafka import clients
from reliability.kafka.lag import GroupStatus, LagConfig, LagState, PartitionStatus, advance
from reliability.kafka.sampling import WatchConfig, take_sample

pytestmark = pytest.mark.kafka

CFG = LagConfig(window_size=5, min_distance_s=0.2)
TICK_S = 0.4


class Probe:
    """What the lag sensor does, tick by tick, for one group."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.admin = clients.admin(bootstrap)
        self.group = group
        self.state = LagState()
        self.watch = WatchConfig(groups=(group,))

    def tick(self):
        sample = take_sample(self.admin, self.watch)
        assert sample.error is None, sample.error
        self.state, results = advance(self.state, sample, time.time(), CFG)
        (result,) = [r for r in results if r.group == self.group]
        time.sleep(TICK_S)
        return result


class Scenario:
    """One topic (1 partition), a producer and a subscribed consumer in group `group`."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        clients.ensure_topic(topic, 1, bootstrap)
        self.bootstrap, self.topic, self.group = bootstrap, topic, f"g.{topic}"
        self.producer = clients.producer(bootstrap)
        self.consumer = clients.consumer(
            self.group, bootstrap, **{"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
        )
        self.consumer.subscribe([topic])
        self.position = 0
        self.produced = 0
        self.probe = Probe(bootstrap, self.group)

    def produce(self, n: int) -> None:
        for _ in range(n):
            self.producer.produce(self.topic, value=b"x" * 20)
            self.produced += 1
        self.producer.flush(10)

    def consume(self, n: int) -> None:
        """Read exactly n messages and commit the next offset (a healthy consumer's step)."""
        got = 0
        deadline = time.monotonic() + 30
        while got < n and time.monotonic() < deadline:
            msg = self.consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            got += 1
            self.position = msg.offset() + 1
            if got == n:
                break
        assert got == n, f"consumed {got} of {n}"
        self.commit(self.position)

    def commit(self, offset: int) -> None:
        self.consumer.commit(offsets=[TopicPartition(self.topic, 0, offset)], asynchronous=False)

    def seek_back(self, offset: int) -> None:
        """An offset reset backwards while the consumer stays in the group."""
        self.consumer.seek(TopicPartition(self.topic, 0, offset))
        self.position = offset
        self.commit(offset)

    def wait_joined(self) -> None:
        deadline = time.monotonic() + 30
        while not self.consumer.assignment() and time.monotonic() < deadline:
            assert self.consumer.poll(0.2) is None
        assert self.consumer.assignment(), "consumer never got its partition"

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def scenario(kafka_broker, topic_name):
    s = Scenario(kafka_broker, topic_name)
    s.wait_joined()  # on the empty topic, so no message is polled away while joining
    s.produce(10)
    s.consume(10)
    yield s
    with contextlib.suppress(RuntimeError):  # already closed by the scenario
        s.close()


def test_keeping_up_is_ok(scenario):
    for _ in range(CFG.window_size + 2):
        scenario.produce(50)
        scenario.consume(50)
        result = scenario.probe.tick()
    assert result.partitions[0].window_len == CFG.window_size
    assert result.partitions[0].status is PartitionStatus.OK
    assert result.status is GroupStatus.OK and result.total_lag == 0 and result.members == 1


def test_falling_behind_steadily_is_warn(scenario):
    for _ in range(CFG.window_size + 2):
        scenario.produce(100)
        scenario.consume(50)
        result = scenario.probe.tick()
    assert result.partitions[0].status is PartitionStatus.WARN
    assert result.status is GroupStatus.WARN
    assert result.total_lag == (CFG.window_size + 2) * 50


def test_stopped_consumer_while_producing_is_stop(scenario):
    for _ in range(CFG.window_size):
        scenario.produce(20)
        scenario.consume(20)
        scenario.probe.tick()
    scenario.close()  # the consumer goes away; the shop keeps producing
    statuses = []
    for _ in range(20):
        scenario.produce(20)
        result = scenario.probe.tick()
        statuses.append(result.partitions[0].status)
        if result.partitions[0].status is PartitionStatus.STOP:
            break
    assert statuses[0] is PartitionStatus.OK, "not stopped right away: the window span has to pass first"
    assert result.partitions[0].status is PartitionStatus.STOP, statuses
    assert result.status is GroupStatus.ERR and result.members == 0


def test_committing_the_same_offset_while_lag_grows_is_stall(scenario):
    scenario.produce(100)
    stuck_at = scenario.position
    for _ in range(CFG.window_size + 2):
        scenario.produce(20)
        scenario.consumer.poll(0.1)  # alive in the group, but not getting anywhere
        scenario.commit(stuck_at)
        result = scenario.probe.tick()
    assert result.partitions[0].committed == stuck_at
    assert result.partitions[0].status is PartitionStatus.STALL
    assert result.status is GroupStatus.ERR


def test_offset_reset_backwards_is_rewind(scenario):
    for _ in range(CFG.window_size):
        scenario.produce(30)
        scenario.consume(30)
        scenario.probe.tick()
    scenario.seek_back(0)
    result = scenario.probe.tick()
    assert result.partitions[0].status is PartitionStatus.REWIND
    assert result.status is GroupStatus.ERR
    assert result.total_lag == scenario.produced


def test_time_lag_within_20_percent_at_a_steady_rate(kafka_broker, topic_name):
    clients.ensure_topic(topic_name, 1, kafka_broker)
    group = f"g.{topic_name}"
    rate = 200.0
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
    probe = Probe(kafka_broker, group)
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
        probe.tick()  # first sample of the group
        for _ in range(12):
            result = probe.tick()
        now_estimate = result.max_time_lag_s
        # truth: age of the oldest unconsumed message, from its own timestamp
        consumer.assign([TopicPartition(topic_name, 0, committed)])
        oldest = None
        while oldest is None:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                oldest = msg
        sampled_at = time.time() - TICK_S  # the last tick's `now` (tick sleeps after sampling)
        truth = sampled_at - oldest.timestamp()[1] / 1000.0
    finally:
        stop.set()
        thread.join(10)
        consumer.close()
    assert now_estimate is not None
    assert truth > 3.0
    assert abs(now_estimate - truth) <= 0.2 * truth, (now_estimate, truth)
