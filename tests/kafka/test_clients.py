"""Transient broker errors are retried with backoff; anything else passes through at once."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from reliability.kafka.clients import retry_transient


def test_a_transient_error_is_retried_until_the_call_succeeds():
    answers = [KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, None]
    slept: list[float] = []

    def call():
        code = answers.pop(0)
        if code is not None:
            raise KafkaException(KafkaError(code))
        return (0, 42)

    assert retry_transient(call, timeout_s=30, sleep=slept.append) == (0, 42)
    assert slept == [0.1, 0.2]  # backoff doubles


def test_a_permanent_error_is_not_retried():
    calls = []

    def call():
        calls.append(1)
        raise KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))

    with pytest.raises(KafkaException):
        retry_transient(call, sleep=lambda _: None)
    assert len(calls) == 1


def test_a_transient_error_that_lasts_gives_up_at_the_timeout():
    def call():
        raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))

    with pytest.raises(KafkaException):
        retry_transient(call, timeout_s=0.0, sleep=lambda _: None)


@pytest.mark.kafka
def test_a_topic_is_created_with_its_topic_level_config(kafka_broker, topic_name):
    """Tests whose messages carry event times months back keep them with `retention.ms=-1`: the broker's
    time retention would otherwise delete them mid-test."""
    from confluent_kafka.admin import ConfigResource

    from reliability.kafka import clients

    assert clients.ensure_topic(topic_name, 2, kafka_broker, config={"retention.ms": "-1"})
    assert not clients.ensure_topic(topic_name, 2, kafka_broker, config={"retention.ms": "-1"})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    admin = clients.admin(kafka_broker)  # kept alive until the answer arrives
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    assert configs["retention.ms"].value == "-1"
