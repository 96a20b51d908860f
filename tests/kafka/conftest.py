"""A real Kafka broker for the session, started by the same code as `reliability kafka up`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """Bootstrap servers of a running broker; stopped at the end only if this session started it."""
    from reliability.kafka import broker

    bootstrap, started = broker.up(timeout_s=120)
    try:
        yield bootstrap
    finally:
        if started:
            broker.down()


@pytest.fixture
def topic_name(request) -> str:
    """A fresh topic name per test (topics are never shared between tests)."""
    name = "".join(ch if ch.isalnum() else "-" for ch in request.node.name)[:60]
    return f"test.{name}.{uuid.uuid4().hex[:8]}"
