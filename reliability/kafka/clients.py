"""confluent-kafka client factories with one place for shared settings (quiet logs, timeouts).

librdkafka logs every refused connection to stderr by default; during broker restarts that floods the
terminal and the Dagster logs, so errors surface through return values and exceptions instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_log = logging.getLogger("reliability.kafka.librdkafka")
_log.addHandler(logging.NullHandler())
_log.propagate = False

# Producer configurations: the seed's recommendation, and a deliberately unsafe one for fault injection.
IDEMPOTENT_PRODUCER: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 20,
    "compression.type": "lz4",
}
RETRYING_NON_IDEMPOTENT_PRODUCER: dict[str, Any] = {
    "enable.idempotence": False,
    "acks": 1,
    "retries": 2147483647,
    "max.in.flight.requests.per.connection": 5,
    "retry.backoff.ms": 10,
    "linger.ms": 20,
}


# Broker errors that pass by themselves (a restart, a leader moving, a coordinator loading): retried.
TRANSIENT_ERROR_NAMES = frozenset(
    {
        "_TRANSPORT", "_ALL_BROKERS_DOWN", "_TIMED_OUT", "_MSG_TIMED_OUT", "_RESOLVE", "_WAIT_COORD",
        "_UNKNOWN_PARTITION", "_UNKNOWN_TOPIC", "UNKNOWN_TOPIC_OR_PART", "NOT_LEADER_FOR_PARTITION",
        "LEADER_NOT_AVAILABLE", "REQUEST_TIMED_OUT", "NETWORK_EXCEPTION", "COORDINATOR_NOT_AVAILABLE",
        "NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "BROKER_NOT_AVAILABLE", "KAFKA_STORAGE_ERROR",
        "NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS_AFTER_APPEND", "FENCED_LEADER_EPOCH", "UNKNOWN_LEADER_EPOCH",
    }
)  # fmt: skip


def is_transient(name: str, retriable: bool, fatal: bool) -> bool:
    """Whether a Kafka error (by librdkafka name and flags) is worth retrying: never a fatal one."""
    return not fatal and (retriable or name in TRANSIENT_ERROR_NAMES)


def retry_transient(call: Callable[[], T], timeout_s: float = 30.0, sleep: Callable[[float], None] = time.sleep) -> T:
    """`call()`, retried with a short backoff while it fails with a transient broker error (a broker
    that has just started, a leader moving), for at most `timeout_s`; other errors pass through."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while True:
        try:
            return call()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            transient = err is not None and is_transient(err.name(), err.retriable(), err.fatal())
            if not transient or time.monotonic() + delay > deadline:
                raise
        sleep(delay)
        delay = min(delay * 2, 2.0)


def base_config(bootstrap: str | None = None, **extra: Any) -> dict[str, Any]:
    if bootstrap is None:
        from reliability.kafka.broker import bootstrap_servers

        bootstrap = bootstrap_servers()
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": _log}
    config.update(extra)
    return config


def admin(bootstrap: str | None = None, **extra: Any):
    from confluent_kafka.admin import AdminClient

    return AdminClient(base_config(bootstrap, **extra))


def producer(bootstrap: str | None = None, idempotent: bool = True, **extra: Any):
    from confluent_kafka import Producer

    profile = IDEMPOTENT_PRODUCER if idempotent else RETRYING_NON_IDEMPOTENT_PRODUCER
    return Producer(base_config(bootstrap, **{**profile, **extra}))


def consumer(group_id: str, bootstrap: str | None = None, **extra: Any):
    from confluent_kafka import Consumer

    config = {
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        **extra,
    }
    return Consumer(base_config(bootstrap, **config))


def ensure_topic(
    topic: str,
    partitions: int,
    bootstrap: str | None = None,
    timeout_s: float = 30,
    config: Mapping[str, str] | None = None,
) -> bool:
    """Create `topic` (with topic-level `config`, e.g. `retention.ms`) unless it exists; returns True if
    this call created it."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    client = admin(bootstrap)
    if topic in client.list_topics(timeout=timeout_s).topics:
        return False
    new_topic = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=dict(config or {}))
    future = client.create_topics([new_topic])[topic]
    try:
        future.result(timeout=timeout_s)
    except KafkaException as exc:
        if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise
    # wait until the metadata shows every partition with a leader
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        md = client.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if (
            md is not None
            and md.error is None
            and len(md.partitions) == partitions
            and all(p.leader >= 0 for p in md.partitions.values())
        ):
            break
        time.sleep(0.1)
    return True
